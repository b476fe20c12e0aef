import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  children,
  differing,
  keyDigest,
  leafOf,
  PartitionTree,
  PartitionTrees,
  type ScanPage,
} from '../../worker/membership/merkle.ts';
import { TREE_DEPTH, TREE_FANOUT, TREE_HASH_BYTES, TREE_LEAVES } from '../../worker/wire/protocol.ts';
import { keyPosition } from '../../worker/ring/ring.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Version } from '../../worker/versions/version.ts';

const Q = 16;
const BITS = Math.log2(Q);
const ALL_LEAVES = Array.from({ length: TREE_LEAVES }, (_, i) => i);
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);

function partitionOf(key: Uint8Array): number {
  return Number(keyPosition(key) >> BigInt(64 - BITS));
}

function version(node: string, counter: number, value: Uint8Array | null = Uint8Array.of(counter)): Version {
  return { dot: { node, counter, timestamp: counter * 10 }, context: [], value };
}

const nodeArb = fc.constantFrom('a', 'b', 'node-1', 'node-2');
const versionArb: fc.Arbitrary<Version> = fc.record({
  dot: fc.record({ node: nodeArb, counter: fc.integer({ min: 1, max: 1000 }), timestamp: fc.nat() }),
  context: fc.constant([]),
  value: fc.option(fc.uint8Array({ maxLength: 4 }), { nil: null }),
});
const siblingsArb = fc.uniqueArray(versionArb, {
  selector: (v) => `${v.dot.node}:${v.dot.counter}`,
  minLength: 1,
  maxLength: 3,
});
const keyArb = fc.uint8Array({ minLength: 1, maxLength: 12 });
/** Distinct keys, each with a sibling set. */
const contentArb = fc.uniqueArray(fc.record({ key: keyArb, versions: siblingsArb }), {
  selector: (e) => e.key.join(','),
  maxLength: 60,
});

function treeOf(entries: readonly { key: Uint8Array; versions: readonly Version[] }[]): PartitionTree {
  const tree = new PartitionTree(Q);
  for (const { key, versions } of entries) tree.set(key, versions);
  return tree;
}

function allHashes(tree: PartitionTree): Uint8Array[] {
  return Array.from({ length: TREE_DEPTH + 1 }, (_, level) =>
    tree.hashes(
      level,
      Array.from({ length: TREE_FANOUT ** level }, (_, i) => i),
    ),
  );
}

/** Keys named k0, k1, … that fall in `partition`. */
function keysIn(partition: number, count: number): Uint8Array[] {
  const keys: Uint8Array[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = encode(`k${i}`);
    if (partitionOf(key) === partition) keys.push(key);
  }
  return keys;
}

describe('keyDigest', () => {
  it('ignores the order of the siblings', () => {
    fc.assert(
      fc.property(keyArb, siblingsArb, (key, versions) => {
        assert.deepEqual(keyDigest(key, [...versions].reverse()), keyDigest(key, versions));
      }),
    );
  });

  it('depends on the signature of a signed version, which covers its value, and on whether it has one', () => {
    const key = encode('k');
    const proof = (fill: number) => new Uint8Array(96).fill(7, 0, 32).fill(fill, 32);
    const plain = keyDigest(key, [version('a', 1)]);
    const signed = keyDigest(key, [{ ...version('a', 1), proof: proof(1) }]);
    assert.notDeepEqual(signed, plain);
    assert.notDeepEqual(keyDigest(key, [{ ...version('a', 1), proof: proof(2) }]), signed);
    assert.deepEqual(keyDigest(key, [{ ...version('a', 1, encode('other')), proof: proof(1) }]), signed);
  });

  it('depends on the dots alone, not on values, contexts or timestamps, for unsigned versions', () => {
    const key = encode('k');
    const a = [version('a', 1), version('b', 2)];
    const b = [
      { ...version('a', 1, null), context: [{ node: 'b', counter: 1, timestamp: 3 }] },
      { ...version('b', 2, encode('other')), dot: { node: 'b', counter: 2, timestamp: 99 } },
    ];
    assert.deepEqual(keyDigest(key, b), keyDigest(key, a));
  });

  it('changes when a dot, the dot set or the key changes', () => {
    const key = encode('k');
    const base = keyDigest(key, [version('a', 1)]);
    assert.notDeepEqual(keyDigest(key, [version('a', 2)]), base);
    assert.notDeepEqual(keyDigest(key, [version('b', 1)]), base);
    assert.notDeepEqual(keyDigest(key, [version('a', 1), version('b', 1)]), base);
    assert.notDeepEqual(keyDigest(encode('j'), [version('a', 1)]), base);
  });

  it('frames its parts so that moving bytes between node id and counter changes the digest', () => {
    const key = encode('k');
    assert.notDeepEqual(keyDigest(key, [version('a1', 1)]), keyDigest(key, [version('a', 11)]));
    assert.notDeepEqual(keyDigest(encode('ka'), [version('b', 1)]), keyDigest(key, [version('ab', 1)]));
  });

  it('is zero for an empty version list', () => {
    assert.deepEqual(keyDigest(encode('k'), []), [0, 0]);
  });
});

describe('leafOf', () => {
  it('is the six ring-position bits after the partition bits', () => {
    fc.assert(
      fc.property(keyArb, fc.integer({ min: 0, max: 16 }), (key, bits) => {
        const expected = Number((keyPosition(key) >> BigInt(64 - bits - 6)) & 63n);
        assert.equal(leafOf(key, 2 ** bits), expected);
        assert.ok(expected >= 0 && expected < TREE_LEAVES);
      }),
    );
  });

  it('puts the keys of one partition and leaf in a contiguous range of ring positions', () => {
    const keys = Array.from({ length: 3000 }, (_, i) => encode(`key-${i}`));
    const sorted = keys
      .map((key) => ({ position: keyPosition(key), bucket: partitionOf(key) * TREE_LEAVES + leafOf(key, Q) }))
      .sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
    const seen = new Set<number>();
    for (let i = 0; i < sorted.length; i++) {
      const { bucket } = sorted[i]!;
      if (i > 0 && sorted[i - 1]!.bucket === bucket) continue;
      assert.ok(!seen.has(bucket), `bucket ${bucket} comes back after another bucket`);
      seen.add(bucket);
    }
    assert.ok(seen.size > TREE_LEAVES, 'the keys spread over many buckets');
  });

  it('refuses a partition count that is not a power of two', () => {
    for (const partitions of [0, 3, 100, 2 ** 17, 1.5]) {
      assert.throws(() => leafOf(encode('k'), partitions), { code: 'ERR_INVALID_ARGUMENT' });
    }
  });
});

describe('PartitionTree', () => {
  it('has the same hashes whatever order the keys are set in', () => {
    fc.assert(
      fc.property(
        contentArb.chain((entries) =>
          fc.tuple(fc.constant(entries), fc.shuffledSubarray(entries, { minLength: entries.length })),
        ),
        ([entries, shuffled]) => {
          assert.deepEqual(allHashes(treeOf(shuffled)), allHashes(treeOf(entries)));
        },
      ),
    );
  });

  it('changes exactly one leaf and its ancestors when one key gets new dots', () => {
    const keys = Array.from({ length: 200 }, (_, i) => encode(`key-${i}`));
    const tree = treeOf(keys.map((key) => ({ key, versions: [version('a', 1)] })));
    const before = allHashes(tree);
    const key = keys[77]!;
    tree.set(key, [version('a', 1), version('b', 1)]);
    const after = allHashes(tree);
    const leaf = leafOf(key, Q);
    assert.deepEqual(differing(before[2]!, after[2]!), [leaf]);
    assert.deepEqual(differing(before[1]!, after[1]!), [Math.floor(leaf / TREE_FANOUT)]);
    assert.deepEqual(differing(before[0]!, after[0]!), [0]);
  });

  it('returns to the previous hashes when an added key is removed', () => {
    fc.assert(
      fc.property(contentArb, keyArb, siblingsArb, (entries, key, versions) => {
        fc.pre(!entries.some((e) => e.key.join(',') === key.join(',')));
        const tree = treeOf(entries);
        const before = allHashes(tree);
        tree.set(key, versions);
        assert.equal(tree.keyCount, entries.length + 1);
        tree.set(key, []);
        assert.deepEqual(allHashes(tree), before);
        assert.equal(tree.keyCount, entries.length);
      }),
    );
  });

  it('hashes an inner node as the XOR of its children', () => {
    const tree = treeOf(
      Array.from({ length: 100 }, (_, i) => ({ key: encode(`x${i}`), versions: [version('a', i + 1)] })),
    );
    for (let level = 0; level < TREE_DEPTH; level++) {
      for (let index = 0; index < TREE_FANOUT ** level; index++) {
        const kids = tree.hashes(level + 1, children(index));
        const xor = new Uint8Array(TREE_HASH_BYTES);
        for (let i = 0; i < kids.length; i++) xor[i % TREE_HASH_BYTES]! ^= kids[i]!;
        assert.deepEqual(tree.hashes(level, [index]), xor);
      }
    }
  });

  it('hashes an empty tree and empty nodes as zero', () => {
    const tree = new PartitionTree(Q);
    assert.equal(tree.rootHex(), '0000000000000000');
    assert.deepEqual(tree.hashes(TREE_DEPTH, ALL_LEAVES), new Uint8Array(TREE_LEAVES * TREE_HASH_BYTES));
  });

  it('shows the root as the 16 hex digits of its hash', () => {
    const tree = treeOf([{ key: encode('k'), versions: [version('a', 1)] }]);
    assert.equal(tree.rootHex(), Buffer.from(tree.hashes(0, [0])).toString('hex'));
    assert.match(tree.rootHex(), /^[0-9a-f]{16}$/);
    assert.notEqual(tree.rootHex(), '0000000000000000');
  });

  it('refuses a level or an index that the tree does not have', () => {
    const tree = new PartitionTree(Q);
    assert.throws(() => tree.hashes(TREE_DEPTH + 1, [0]), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => tree.hashes(1, [TREE_FANOUT]), { code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('differing and children', () => {
  it('finds exactly the leaves whose keys changed between two trees', () => {
    fc.assert(
      fc.property(contentArb, fc.array(fc.nat(), { maxLength: 5 }), (entries, picks) => {
        fc.pre(entries.length > 0);
        const mine = treeOf(entries);
        const theirs = treeOf(entries);
        const changed = new Set<number>();
        for (const pick of picks) {
          const { key } = entries[pick % entries.length]!;
          theirs.set(key, [version('z', 1 + pick)]);
          changed.add(leafOf(key, Q));
        }
        // Keys changed in the same leaf could cancel out only by an md5 collision.
        const expected = [...changed].sort((a, b) => a - b);
        assert.deepEqual(differing(mine.hashes(2, ALL_LEAVES), theirs.hashes(2, ALL_LEAVES)), expected);
      }),
    );
  });

  it('refuses hash lists of different lengths', () => {
    assert.throws(() => differing(new Uint8Array(8), new Uint8Array(16)), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => differing(new Uint8Array(7), new Uint8Array(7)), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('names the fanout children of an inner node and refuses a leaf', () => {
    assert.deepEqual(children(0), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(children(3), [24, 25, 26, 27, 28, 29, 30, 31]);
    assert.throws(() => children(TREE_FANOUT), { code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('PartitionTrees', () => {
  const partition = 5;

  /** A storage holding `count` keys of the partition, each with one version. */
  async function stored(count: number): Promise<{ storage: MemoryStorage; keys: Uint8Array[] }> {
    const storage = new MemoryStorage();
    const keys = keysIn(partition, count);
    for (const key of keys) await storage.apply(key, partition, [version('a', 1)]);
    return { storage, keys };
  }

  /** The tree of what `storage` holds now, built in one page. */
  async function fresh(storage: MemoryStorage): Promise<PartitionTree> {
    const tree = new PartitionTree(Q);
    for (const { key, siblings } of await storage.scanPartition(partition)) tree.set(key, siblings);
    return tree;
  }

  it('builds a tree from every page of the partition', async () => {
    const { storage, keys } = await stored(25);
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o), pageSize: 4 });
    const tree = await trees.get(partition);
    assert.equal(tree.keyCount, keys.length);
    assert.equal(tree.rootHex(), (await fresh(storage)).rootHex());
  });

  it('keeps a write that lands while the build reads later pages', async () => {
    const { storage, keys } = await stored(20);
    const writer: { trees?: PartitionTrees } = {};
    let pages = 0;
    const scan: ScanPage = async (p, o) => {
      const page = await storage.scanPartition(p, o);
      if (++pages === 2) {
        // The first page is already in the tree: rewrite one of its keys, as the node would, and tell the trees.
        const first = (await storage.scanPartition(p, { limit: 1 }))[0]!.key;
        const { siblings } = await storage.apply(first, p, [version('b', 7)]);
        writer.trees!.update(p, first, siblings);
      }
      return page;
    };
    const trees = new PartitionTrees({ partitions: Q, scan, pageSize: 5 });
    writer.trees = trees;
    const tree = await trees.get(partition);
    assert.ok(pages >= 3, 'the write landed mid-build');
    assert.equal(tree.keyCount, keys.length);
    assert.equal(tree.rootHex(), (await fresh(storage)).rootHex());
  });

  it('applies updates to a built tree and ignores partitions not built', async () => {
    const { storage, keys } = await stored(10);
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    trees.update(partition, keys[0]!, []);
    const tree = await trees.get(partition);
    assert.equal(tree.keyCount, keys.length);
    const { siblings } = await storage.apply(keys[1]!, partition, [version('c', 3)]);
    trees.update(partition, keys[1]!, siblings);
    assert.equal(tree.rootHex(), (await fresh(storage)).rootHex());
  });

  it('shares one build among concurrent gets of a partition', async () => {
    const { storage } = await stored(10);
    let scans = 0;
    const trees = new PartitionTrees({
      partitions: Q,
      scan: (p, o) => {
        scans++;
        return storage.scanPartition(p, o);
      },
      pageSize: 100,
    });
    const [a, b] = await Promise.all([trees.get(partition), trees.get(partition)]);
    assert.equal(a, b);
    assert.equal(await trees.get(partition), a);
    assert.equal(scans, 1);
  });

  it('forgets a dropped tree and builds it again on the next get', async () => {
    const { storage } = await stored(3);
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    const first = await trees.get(partition);
    trees.drop(partition);
    assert.equal(trees.peek(partition), undefined);
    const second = await trees.get(partition);
    assert.notEqual(second, first);
    assert.deepEqual(trees.built(), [partition]);
  });

  it('keeps no tree of a partition that stores no key', async () => {
    const storage = new MemoryStorage();
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    assert.equal((await trees.get(partition)).keyCount, 0);
    assert.deepEqual(trees.built(), []);
  });

  it('answers a key written since a partition was found empty', async () => {
    const storage = new MemoryStorage();
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    const empty = await trees.get(partition);
    const [key] = keysIn(partition, 1);
    const { siblings } = await storage.apply(key!, partition, [version('a', 1)]);
    trees.update(partition, key!, siblings);
    assert.equal(empty.keyCount, 0);
    assert.equal((await trees.get(partition)).rootHex(), (await fresh(storage)).rootHex());
    assert.equal((await trees.get(partition)).keyCount, 1);
  });

  it('forgets a tree whose last key is gone and builds it again from storage', async () => {
    const { storage, keys } = await stored(1);
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    await trees.get(partition);
    await storage.deleteIfUnchanged(keys[0]!, [version('a', 1)]);
    trees.update(partition, keys[0]!, []);
    assert.deepEqual(trees.built(), []);
    const { siblings } = await storage.apply(keys[0]!, partition, [version('b', 2)]);
    trees.update(partition, keys[0]!, siblings);
    assert.equal((await trees.get(partition)).rootHex(), (await fresh(storage)).rootHex());
  });

  it('does not keep a tree dropped while it was being built', async () => {
    const { storage } = await stored(3);
    const trees = new PartitionTrees({ partitions: Q, scan: (p, o) => storage.scanPartition(p, o) });
    const building = trees.get(partition);
    trees.drop(partition);
    assert.equal((await building).keyCount, 3);
    assert.deepEqual(trees.built(), []);
  });

  it('tries again after a build whose scan failed', async () => {
    const { storage } = await stored(3);
    let fail = true;
    const trees = new PartitionTrees({
      partitions: Q,
      scan: (p, o) => {
        if (fail) throw new Error('disk gone');
        return storage.scanPartition(p, o);
      },
    });
    await assert.rejects(trees.get(partition), /disk gone/);
    fail = false;
    assert.equal((await trees.get(partition)).keyCount, 3);
  });

  it('refuses a partition outside the ring', async () => {
    const trees = new PartitionTrees({ partitions: Q, scan: async () => [] });
    await assert.rejects(trees.get(Q), { code: 'ERR_INVALID_ARGUMENT' });
  });
});
