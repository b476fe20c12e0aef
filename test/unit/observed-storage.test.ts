/**
 * The storage decorator that keeps a node's Merkle trees in step with its main store.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PartitionTrees } from '../../worker/membership/merkle.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { ObservedStorage } from '../../worker/storage/observed.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Version } from '../../worker/versions/version.ts';

const text = new TextEncoder();
const Q = 16;
const RING = new Ring([{ id: 'a', domain: 'a' }], { partitions: Q });

interface Change {
  readonly key: string;
  readonly dots: string[];
}

function observed(): { inner: MemoryStorage; storage: ObservedStorage; changes: Change[] } {
  const inner = new MemoryStorage();
  const changes: Change[] = [];
  const storage = new ObservedStorage(inner, (key, siblings) =>
    changes.push({ key: new TextDecoder().decode(key), dots: siblings.map((v) => `${v.dot.node}:${v.dot.counter}`) }),
  );
  return { inner, storage, changes };
}

function write(storage: ObservedStorage, key: string, value: string | null, node = 'a') {
  const bytes = text.encode(key);
  return storage.write(bytes, RING.partitionOf(bytes), {
    node,
    timestamp: 1,
    context: [],
    value: value === null ? null : text.encode(value),
    ifMatch: false,
  });
}

function keysOf(p: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) if (RING.partitionOf(text.encode(`k${i}`)) === p) out.push(`k${i}`);
  return out;
}

describe('ObservedStorage', () => {
  it('reports each changed entry of a batch, in entry order, and nothing for an entry that changed nothing', async () => {
    const [x, y] = keysOf(3, 2) as [string, string];
    const source = observed();
    const x1 = (await write(source.storage, x, 'one', 'b')).version;
    const y1 = (await write(source.storage, y, 'one', 'b')).version;
    const x2 = (await write(source.storage, x, 'two', 'b')).version;
    const { storage, changes } = observed();
    await storage.applyMany(3, [{ key: text.encode(x), versions: [x1] }]);
    changes.length = 0;
    const results = await storage.applyMany(3, [
      { key: text.encode(x), versions: [x1] },
      { key: text.encode(y), versions: [y1] },
      { key: text.encode(x), versions: [x1, x2] },
    ]);
    assert.deepEqual(
      results.map((r) => r.changed),
      [false, true, true],
    );
    assert.deepEqual(changes, [
      { key: y, dots: ['b:2'] },
      { key: x, dots: ['b:1', 'b:3'] },
    ]);
  });

  it('reports the siblings a local write leaves', async () => {
    const { storage, changes } = observed();
    await write(storage, 'k', 'one');
    await write(storage, 'k', 'two');
    assert.deepEqual(changes, [
      { key: 'k', dots: ['a:1'] },
      { key: 'k', dots: ['a:1', 'a:2'] },
    ]);
  });

  it('reports an apply that changed the key and stays silent about one that did not', async () => {
    const source = observed();
    const { version } = await write(source.storage, 'k', 'v', 'b');
    const { storage, changes } = observed();
    const key = text.encode('k');
    await storage.apply(key, RING.partitionOf(key), [version]);
    await storage.apply(key, RING.partitionOf(key), [version]);
    assert.deepEqual(changes, [{ key: 'k', dots: ['b:1'] }]);
  });

  it('reports a key removed by deleteIfUnchanged as gone, and nothing when the key changed meanwhile', async () => {
    const { storage, changes } = observed();
    const first = await write(storage, 'gone', null);
    const kept = await write(storage, 'kept', null);
    await write(storage, 'kept', 'later', 'c');
    changes.length = 0;
    assert.equal(await storage.deleteIfUnchanged(text.encode('gone'), first.siblings), true);
    assert.equal(await storage.deleteIfUnchanged(text.encode('kept'), kept.siblings), false);
    assert.deepEqual(changes, [{ key: 'gone', dots: [] }]);
  });

  it('reports nothing for hints, which are not part of the main store', async () => {
    const { storage, changes } = observed();
    const source = observed();
    const { siblings } = await write(source.storage, 'k', 'v', 'b');
    const key = text.encode('k');
    await storage.putHint({ target: 'c', key, partition: RING.partitionOf(key), siblings });
    await storage.deleteHint('c', key, siblings);
    assert.deepEqual(changes, []);
  });

  it('keeps a tree equal to a fresh build of the store through writes made during its own build', async () => {
    const inner = new MemoryStorage();
    const trees = new PartitionTrees({ partitions: Q, scan: (p, page) => inner.scanPartition(p, page), pageSize: 16 });
    const storage = new ObservedStorage(inner, (key, siblings: readonly Version[]) =>
      trees.update(RING.partitionOf(key), key, siblings),
    );
    const keys = keysOf(3, 100);
    for (const key of keys.slice(0, 80)) await write(storage, key, 'v');
    const building = trees.get(3);
    // While the build reads its pages: new keys, rewritten keys, removed keys.
    for (const key of keys.slice(80)) await write(storage, key, 'late');
    await write(storage, keys[0]!, 'rewritten', 'z');
    const doomed = await write(storage, keys[79]!, null, 'y');
    await storage.deleteIfUnchanged(text.encode(keys[79]!), doomed.siblings);
    const tree = await building;
    const fresh = new PartitionTrees({ partitions: Q, scan: (p, page) => inner.scanPartition(p, page) });
    assert.equal(tree.keyCount, 99);
    assert.equal(tree.rootHex(), (await fresh.get(3)).rootHex());
  });
});
