/**
 * One replica's part of `keys`: the live keys of one partition under a prefix, from a real storage engine.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { listPartition } from '../../worker/replication/key-listing.ts';
import { createVersion } from '../../worker/versions/version.ts';

const text = new TextEncoder();
const utf8 = new TextDecoder();
const bounds = { maxKeyBytes: 1024, maxBytes: 1 << 20 };
let counter = 0;

/** Stores `key` in partition 0, live or as a tombstone. */
async function store(storage: MemoryStorage, key: string, live: boolean): Promise<void> {
  const version = createVersion('a', ++counter, 1, [], live ? text.encode('v') : null);
  await storage.apply(text.encode(key), 0, [version]);
}

const names = (keys: readonly Uint8Array[]): string[] => keys.map((k) => utf8.decode(k));

describe('listPartition', () => {
  it('skips tombstones, however many lie before the next live key', async () => {
    const storage = new MemoryStorage();
    for (let i = 0; i < 600; i++) await store(storage, `p:a${String(i).padStart(3, '0')}`, false);
    await store(storage, 'p:b', true);
    await store(storage, 'p:c', true);
    const page = await listPartition(storage, 0, text.encode('p:'), null, 10, bounds);
    assert.deepEqual(names(page.keys), ['p:b', 'p:c']);
    assert.equal(page.more, false);
  });

  it('starts at the prefix and stops at its end, whatever sorts around it', async () => {
    const storage = new MemoryStorage();
    for (const key of ['o', 'p', 'p:', 'p:1', 'p:2', 'p;', 'q']) await store(storage, key, true);
    const page = await listPartition(storage, 0, text.encode('p:'), null, 10, bounds);
    assert.deepEqual(names(page.keys), ['p:', 'p:1', 'p:2']);
    assert.equal(page.more, false);
  });

  it('continues after the given key and says more only when a live key follows the page', async () => {
    const storage = new MemoryStorage();
    for (const key of ['k1', 'k2', 'k3', 'k4']) await store(storage, key, true);
    await store(storage, 'k5', false);
    const first = await listPartition(storage, 0, text.encode('k'), text.encode('k1'), 2, bounds);
    assert.deepEqual(names(first.keys), ['k2', 'k3']);
    assert.equal(first.more, true);
    const last = await listPartition(storage, 0, text.encode('k'), text.encode('k3'), 2, bounds);
    assert.deepEqual(names(last.keys), ['k4']);
    assert.equal(last.more, false, 'only a tombstone follows k4');
  });

  it('stops at its byte budget with more to come, giving one key at least', async () => {
    const storage = new MemoryStorage();
    for (const key of ['key-aaaa', 'key-bbbb', 'key-cccc']) await store(storage, key, true);
    const page = await listPartition(storage, 0, text.encode(''), null, 10, { maxKeyBytes: 1024, maxBytes: 12 });
    assert.deepEqual(names(page.keys), ['key-aaaa']);
    assert.equal(page.more, true);
    const starved = await listPartition(storage, 0, text.encode(''), null, 10, { maxKeyBytes: 1024, maxBytes: 0 });
    assert.deepEqual(names(starved.keys), ['key-aaaa']);
  });
});
