import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WalOverlay } from '../../worker/storage/wal-overlay.ts';
import type { LoggedKey } from '../../worker/storage/wal-overlay.ts';
import type { StoredKey } from '../../worker/storage/storage.ts';
import { createVersion } from '../../worker/versions/version.ts';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

function record(key: string, value: string, partition = 0): StoredKey {
  return { key: bytes(key), partition, siblings: [createVersion('n', 1, 1, [], bytes(value))] };
}

/** The main store of one partition, as sorted records, scanned the way `Storage.scanPartition` answers. */
function store(...keys: string[]): {
  scan: (after: Uint8Array | undefined, limit: number) => Promise<StoredKey[]>;
  calls: number[];
} {
  const records = keys.sort().map((k) => record(k, 'stored'));
  const calls: number[] = [];
  return {
    calls,
    scan: async (after, limit) => {
      calls.push(limit);
      const from = after === undefined ? 0 : records.findIndex((r) => text(r.key) > text(after));
      return from < 0 ? [] : records.slice(from, from + limit);
    },
  };
}

/** An overlay whose payloads are the logged records themselves (the engine keeps offsets into its log instead). */
type Payload = StoredKey | undefined;
const recordOf = (logged: LoggedKey<Payload>): StoredKey => logged.payload!;

/** Logs `value` for `key` in log record `seq` (undefined: a removal). */
function log(overlay: WalOverlay<Payload>, key: string, seq: number, value?: string, partition = 0): void {
  overlay.set(
    key,
    partition,
    seq,
    value === undefined,
    value === undefined ? undefined : record(key, value, partition),
  );
}

/** Each answered key as `key=value`. */
function shown(page: readonly StoredKey[]): string[] {
  return page.map((r) => `${text(r.key)}=${text(r.siblings[0]!.value!)}`);
}

describe('the log overlay', () => {
  it('answers the newest logged state of a key, a removal included', () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0, '1');
    log(overlay, 'a', 1, '2');
    log(overlay, 'b', 1, '1');
    log(overlay, 'b', 2);
    assert.equal(text(overlay.get('a')!.payload!.siblings[0]!.value!), '2');
    assert.equal(overlay.get('b')!.removed, true);
    assert.equal(overlay.get('c'), undefined);
    assert.equal(overlay.size, 2);
  });

  it('hands compaction the oldest keys in whole log records, so every log record it covers can be dropped', () => {
    const overlay = new WalOverlay<Payload>();
    for (const [key, seq] of [
      ['a', 0],
      ['b', 0],
      ['c', 1],
      ['d', 1],
      ['e', 1],
      ['f', 2],
    ] as const) {
      log(overlay, key, seq, 'v');
    }
    // Three asked for: the third, c, is in log record 1, which is taken whole.
    const share = overlay.oldest(3)!;
    assert.deepEqual(
      share.keys.map((k) => k.id),
      ['a', 'b', 'c', 'd', 'e'],
    );
    assert.equal(share.upTo, 1);
  });

  it('counts a key logged again as part of its newest log record only', () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0, '1');
    log(overlay, 'b', 0, '1');
    log(overlay, 'a', 1, '2');
    const share = overlay.oldest(1)!;
    assert.deepEqual(
      share.keys.map((k) => k.id),
      ['b'],
    );
    assert.equal(share.upTo, 0);
  });

  it('forgets what a compaction copied, but keeps a key logged again while it ran', () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0, '1');
    log(overlay, 'b', 0, '1');
    const share = overlay.oldest(10)!;
    log(overlay, 'a', 1, '2');
    overlay.release(share.keys);
    assert.equal(overlay.get('b'), undefined);
    assert.equal(text(overlay.get('a')!.payload!.siblings[0]!.value!), '2');
    assert.equal(overlay.size, 1);
  });

  it('answers nothing to compact when nothing is logged', () => {
    assert.equal(new WalOverlay<Payload>().oldest(10), null);
  });

  it('lists the partitions with a live logged key apart from those with a logged removal', () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0, '1', 3);
    log(overlay, 'b', 0, undefined, 5);
    const { live, removed } = overlay.partitions();
    assert.deepEqual([...live], [3]);
    assert.deepEqual([...removed], [5]);
  });

  it('scans a partition with logged records in place of stored ones, new keys in key order', async () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'b', 0, 'logged');
    log(overlay, 'd', 0, 'logged');
    log(overlay, 'z', 0, 'other partition', 1);
    const page = await overlay.scan(0, undefined, Infinity, store('a', 'b', 'c').scan, recordOf);
    assert.deepEqual(shown(page), ['a=stored', 'b=logged', 'c=stored', 'd=logged']);
  });

  it('hides a stored key whose removal is logged', async () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'b', 0);
    const page = await overlay.scan(0, undefined, Infinity, store('a', 'b', 'c').scan, recordOf);
    assert.deepEqual(shown(page), ['a=stored', 'c=stored']);
  });

  it('fills a page past logged removals by reading further, and never passes the limit', async () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0);
    log(overlay, 'b', 0);
    log(overlay, 'bb', 0, 'logged');
    const main = store('a', 'b', 'c', 'd', 'e');
    const page = await overlay.scan(0, undefined, 3, main.scan, recordOf);
    assert.deepEqual(shown(page), ['bb=logged', 'c=stored', 'd=stored']);
    assert.ok(main.calls.length >= 2, 'read further after the removals');
  });

  it('continues after a cursor without answering logged keys before it', async () => {
    const overlay = new WalOverlay<Payload>();
    log(overlay, 'a', 0, 'logged');
    log(overlay, 'd', 0, 'logged');
    const page = await overlay.scan(0, bytes('b'), 10, store('a', 'b', 'c').scan, recordOf);
    assert.deepEqual(shown(page), ['c=stored', 'd=logged']);
  });

  it('pages through a partition without losing or repeating a key, whatever the page size', async () => {
    const overlay = new WalOverlay<Payload>();
    for (const k of ['a', 'c', 'e']) log(overlay, k, 0, 'logged');
    for (const k of ['b', 'f']) log(overlay, k, 1);
    const main = store('b', 'd', 'f', 'g');
    for (const size of [1, 2, 3, 10]) {
      const seen: string[] = [];
      let after: Uint8Array | undefined;
      for (;;) {
        const page = await overlay.scan(0, after, size, main.scan, recordOf);
        assert.ok(page.length <= size);
        if (page.length === 0) break;
        seen.push(...shown(page));
        after = page[page.length - 1]!.key;
      }
      assert.deepEqual(seen, ['a=logged', 'c=logged', 'd=stored', 'e=logged', 'g=stored'], `pages of ${size}`);
    }
  });
});
