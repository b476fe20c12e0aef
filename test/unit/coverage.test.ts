/**
 * The pure part of `keys`: byte order, where a prefix starts, the opaque cursor, and the merge of per-partition
 * streams into pages in key order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CoverageMerge,
  compareKeys,
  decodeCursor,
  encodeCursor,
  hasPrefix,
  keyBefore,
} from '../../worker/replication/coverage.ts';
import { hasErrorCode } from '../../worker/errors.ts';

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');

describe('compareKeys', () => {
  it('orders keys by their bytes, a key before every longer key it starts', () => {
    assert.ok(compareKeys(bytes(0x7f, 0xff), bytes(0xff)) < 0);
    assert.ok(compareKeys(bytes(1), bytes(1, 0)) < 0);
    assert.equal(compareKeys(bytes(1, 2), bytes(1, 2)), 0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        assert.equal(Math.sign(compareKeys(a, b)), Math.sign(Buffer.compare(a, b)));
      }),
    );
  });
});

describe('keyBefore', () => {
  it('bounds from below exactly the keys at or after the prefix, for keys up to maxKeyBytes', () => {
    const max = 4;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: max }), fc.uint8Array({ minLength: 1, maxLength: max }), (prefix, key) => {
        const before = keyBefore(prefix, max);
        const scanned = before === undefined || compareKeys(key, before) > 0;
        assert.equal(scanned, compareKeys(key, prefix) >= 0, `prefix ${hex(prefix)} key ${hex(key)}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('starts at the beginning for the empty prefix', () => {
    assert.equal(keyBefore(bytes(), 1024), undefined);
  });
});

describe('cursors', () => {
  it('round trip the key they continue after, as base64url text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (key) => {
        const cursor = encodeCursor(key);
        assert.match(cursor, /^[A-Za-z0-9_-]+$/);
        assert.deepEqual(decodeCursor(cursor, bytes(), 1024), key);
      }),
    );
  });

  it('are refused with ERR_INVALID_ARGUMENT when not made by keys()', () => {
    const good = encodeCursor(bytes(97, 98));
    for (const bad of [
      42,
      '',
      'a',
      'ab+c',
      'ab/c',
      'abc=',
      good.slice(0, 1),
      encodeCursor(bytes(1)).replace(/^A/, 'B'),
    ]) {
      assert.throws(
        () => decodeCursor(bad, bytes(), 1024),
        (e: unknown) => hasErrorCode(e, 'ERR_INVALID_ARGUMENT'),
      );
    }
    // A format byte alone, no key.
    assert.throws(
      () => decodeCursor('AQ', bytes(), 1024),
      (e: unknown) => hasErrorCode(e, 'ERR_INVALID_ARGUMENT'),
    );
    // A key longer than any stored key.
    assert.throws(
      () => decodeCursor(encodeCursor(new Uint8Array(9)), bytes(), 8),
      (e: unknown) => hasErrorCode(e, 'ERR_INVALID_ARGUMENT'),
    );
  });

  it('of another prefix are refused', () => {
    assert.throws(
      () => decodeCursor(encodeCursor(bytes(98, 1)), bytes(97), 1024),
      /cursor belongs to a listing of another prefix/,
    );
    assert.ok(hasPrefix(decodeCursor(encodeCursor(bytes(97, 1)), bytes(97), 1024), bytes(97)));
  });
});

/** Pages a listing of `data` (keys by partition) through a merge, each answer cut to at most `cut` keys. */
function listAll(data: Uint8Array[][], limit: number, cut: (partition: number, round: number) => number): string[][] {
  const sorted = data.map((keys) => [...keys].sort(compareKeys));
  const pages: string[][] = [];
  let after: Uint8Array | null = null;
  for (let page = 0; page < 1000; page++) {
    const merge: CoverageMerge = new CoverageMerge(
      sorted.map((_, p) => p),
      after,
      limit,
    );
    for (let round = 0; ; round++) {
      merge.take();
      const needed = merge.needed();
      if (needed.length === 0) break;
      for (const { partition, after: from } of needed) {
        const rest = sorted[partition]!.filter((k) => from === null || compareKeys(k, from) > 0);
        const n = Math.max(1, Math.min(limit, cut(partition, round)));
        assert.ok(merge.add(partition, { keys: rest.slice(0, n), more: rest.length > n }));
      }
    }
    pages.push(merge.page.map(hex));
    const last: Uint8Array | undefined = merge.page[merge.page.length - 1];
    if (!merge.more || last === undefined) return pages;
    after = last;
  }
  assert.fail('the listing did not end');
}

describe('CoverageMerge', () => {
  it('pages every key of every partition once, in key order, at most limit a page', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 3 }), { selector: hex, maxLength: 12 }), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.integer({ min: 1, max: 7 }),
        fc.func(fc.integer({ min: 1, max: 7 })),
        (data, limit, cut) => {
          // One key in one partition only, as the ring places it.
          const seen = new Set<string>();
          const placed = data.map((keys) => keys.filter((k) => !seen.has(hex(k)) && seen.add(hex(k))));
          const pages = listAll(placed, limit, (p, r) => cut(p, r));
          for (const page of pages) assert.ok(page.length <= limit);
          const expected = placed.flat().sort(compareKeys).map(hex);
          assert.deepEqual(pages.flat(), expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('emits nothing past a partition whose next key is not known yet', () => {
    const merge: CoverageMerge = new CoverageMerge([0, 1], null, 10);
    merge.add(0, { keys: [bytes(5)], more: false });
    merge.take();
    assert.deepEqual(merge.page, []);
    assert.deepEqual(
      merge.needed().map((n) => n.partition),
      [1],
    );
    merge.add(1, { keys: [bytes(3)], more: true });
    merge.take();
    assert.deepEqual(merge.page, [bytes(3)]);
    assert.deepEqual(merge.needed(), [{ partition: 1, after: bytes(3) }]);
  });

  it('refuses an answer whose keys do not ascend past where the partition was asked from', () => {
    const merge: CoverageMerge = new CoverageMerge([0], bytes(5), 10);
    assert.equal(merge.add(0, { keys: [bytes(5)], more: false }), false);
    assert.equal(merge.add(0, { keys: [bytes(7), bytes(6)], more: false }), false);
    assert.equal(merge.add(0, { keys: [bytes(6), bytes(7)], more: false }), true);
    assert.equal(merge.add(0, { keys: [bytes(8)], more: false }), false, 'the partition was not waiting');
  });

  it('says there is no more once every partition is exhausted', () => {
    const merge: CoverageMerge = new CoverageMerge([0, 1], null, 2);
    merge.add(0, { keys: [bytes(1)], more: false });
    merge.add(1, { keys: [bytes(2)], more: false });
    merge.take();
    assert.equal(merge.done, true);
    assert.equal(merge.more, false);
  });
});
