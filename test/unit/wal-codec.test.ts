import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hasErrorCode } from '../../worker/errors.ts';
import { WalWriter, decodeWalEntry, encodeWal, walStarts } from '../../worker/storage/wal-codec.ts';
import type { WalEntry } from '../../worker/storage/wal-codec.ts';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

const entries: WalEntry[] = [
  {
    key: bytes('k1'),
    partition: 7,
    siblings: [
      {
        dot: { node: 'nöde-a', counter: 2 ** 40, timestamp: 1_765_000_000_123 },
        context: [
          { node: 'nöde-a', counter: 2 ** 40 - 1, timestamp: 5 },
          { node: 'node-b', counter: 3, timestamp: 6 },
        ],
        value: bytes('value'),
      },
      { dot: { node: 'node-b', counter: 4, timestamp: 7 }, context: [], value: null },
    ],
  },
  { key: new Uint8Array([0, 255, 0]), partition: 0, siblings: null },
  { key: new Uint8Array(0), partition: 65535, siblings: [] },
];

describe('the write-ahead log codec', () => {
  it('decodes every entry of a record as it was encoded, tombstones and removals included', () => {
    const { bytes: record, starts } = encodeWal(entries);
    assert.deepEqual(walStarts(record), starts);
    assert.deepEqual(
      starts.map((at) => decodeWalEntry(record, at)),
      entries,
    );
  });

  it('decodes keys and values into bytes of their own, not views of the record', () => {
    const { bytes: record, starts } = encodeWal(entries);
    const entry = decodeWalEntry(record, starts[0]!);
    assert.notEqual(entry.key.buffer, record.buffer);
    assert.notEqual(entry.siblings![0]!.value!.buffer, record.buffer);
  });

  it('encodes no entries as an empty record with no starts', () => {
    const writer = new WalWriter();
    assert.equal(writer.empty, true);
    const { bytes: record, starts } = writer.finish();
    assert.equal(record.byteLength, 0);
    assert.deepEqual(starts, []);
    assert.deepEqual(walStarts(record), []);
  });

  it('refuses an entry it cannot encode, or could not decode, when it is added, leaving the record without it', () => {
    const writer = new WalWriter();
    writer.add(entries[1]!);
    const bad = { key: bytes('x'), partition: 1, siblings: [{ dot: { node: 'a', counter: 1, timestamp: () => 1 } }] };
    assert.throws(() => writer.add(bad as unknown as WalEntry));
    // Encodable, but not what a read could decode: refused too, or it would fail every read of its key.
    const stringly = { key: bytes('y'), partition: 1, siblings: [{ dot: { node: 'a', counter: 1, timestamp: '1' } }] };
    assert.throws(
      () =>
        writer.add({
          ...stringly,
          siblings: [{ ...stringly.siblings[0]!, context: [], value: null }],
        } as unknown as WalEntry),
      TypeError,
    );
    const { bytes: record } = writer.finish();
    assert.deepEqual(
      walStarts(record).map((at) => decodeWalEntry(record, at)),
      [entries[1]],
    );
  });

  it('reports a cut or damaged record as ERR_STORAGE, naming the log', () => {
    const { bytes: record, starts } = encodeWal(entries);
    const cut = record.subarray(0, record.byteLength - 3);
    const damaged = record.slice();
    damaged[starts[1]! + 4] = 0xc1; // a byte MessagePack never uses
    for (const attempt of [
      () => decodeWalEntry(cut, starts[2]!),
      () => decodeWalEntry(damaged, starts[1]!),
      () => walStarts(record.subarray(0, 2)),
    ]) {
      assert.throws(attempt, (e: unknown) => hasErrorCode(e, 'ERR_STORAGE') && /write-ahead log/.test(String(e)));
    }
  });
});
