/**
 * Rebalancing on membership change, on small simulated clusters of real nodes: fetching the partitions a node newly
 * owns, releasing those it no longer owns, and starting afresh after an absence longer than the tombstone grace.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage } from '../../worker/wire/codec.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { createVersion } from '../../worker/versions/version.ts';
import type { Cluster } from '../sim/cluster.ts';
import { N, Q, T, type World, dots, world } from './sync-world.ts';
import { text, utf8, world as clusterWorld } from './cluster-world.ts';

/** The ring the cluster will have once `extra` joins (its domain is the next free one, as the cluster gives it). */
function ringWith(cluster: Cluster, extra: string): Ring {
  const members = [...cluster.members, { id: extra, domain: `d${cluster.ids.length}` }];
  return new Ring(members, { partitions: Q, tokensPerNode: T });
}

function keysIn(ring: Ring, p: number, count: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const key = `${prefix}-${i}`;
    if (ring.partitionOf(text.encode(key)) === p) out.push(key);
  }
  return out;
}

async function keyCount(cluster: Cluster, id: string, p: number): Promise<number> {
  return (await cluster.slot(id).data.reopen().scanPartition(p)).length;
}

async function writeAll(w: World, keys: readonly string[], value: (key: string) => Uint8Array): Promise<void> {
  await w.settle(
    Promise.all(
      keys.map((key) => {
        const owner = w.cluster.preferenceList(text.encode(key), N)[0]!;
        return w.node(owner).put(key, value(key), { w: N });
      }),
    ),
  );
}

describe('Rebalancer', () => {
  it('fetches the partitions a node newly owns after a view change, then holds them', async () => {
    const w = await world(4);
    const future = ringWith(w.cluster, 'n4');
    const owned = Array.from({ length: Q }, (_, p) => p).filter((p) => future.preferenceList(p, N).includes('n4'));
    assert.ok(owned.length > 0);
    const keys = owned.flatMap((p) => keysIn(future, p, 3, `p${p}`));
    await writeAll(w, keys, (key) => text.encode(`v:${key}`));
    const id = w.cluster.join('n4');
    await w.until(() => w.node(id).fetchingCount() === 0, 'n4 fetched');
    const info = await w.settle(w.node(id).partitions());
    for (const p of owned) {
      const mine = info.find((i) => i.partition === p);
      assert.equal(mine?.state, 'held', `partition ${p}`);
      const other = future.preferenceList(p, N).find((o) => o !== id)!;
      const theirs = (await w.settle(w.node(other).partitions())).find((i) => i.partition === p);
      assert.equal(mine.root, theirs?.root, `partition ${p} differs from ${other}'s`);
    }
    for (const key of keys) assert.equal((await dots(w.cluster, id, key)).length, 1, key);
    assert.ok(w.node(id).metrics().partitionsFetched > 0);
  });

  it('answers reads of a partition it is still fetching at once, its copy completed from a holder', async () => {
    const w = await world(4, { transferBytesPerSecond: 2000 });
    const future = ringWith(w.cluster, 'n4');
    const p = Array.from({ length: Q }, (_, q) => q).find((q) => future.preferenceList(q, N).includes('n4'))!;
    const keys = keysIn(future, p, 30, 'big');
    await writeAll(w, keys, () => new Uint8Array(8000).fill(1));
    const id = w.cluster.join('n4');
    await w.scheduler.advance(1000);
    const state = (await w.settle(w.node(id).partitions())).find((i) => i.partition === p)?.state;
    assert.equal(state, 'fetching');
    const reader = w.cluster.live().find((r) => r !== id)!;
    const started = w.scheduler.now;
    // The last key: a transfer in key order reaches it last.
    const read = await w.settle(w.node(reader).get(keys[keys.length - 1]!, { r: N }));
    assert.equal(read.values.length, 1);
    assert.deepEqual(read.values[0], new Uint8Array(8000).fill(1));
    assert.equal(w.node(id).metrics().readsCompleted, 1);
    assert.equal(w.node(reader).metrics().timeouts, 0);
    assert.ok(w.scheduler.now - started < 100, `answered after ${w.scheduler.now - started} ms`);
    assert.ok(w.node(id).fetchingCount() > 0, 'the transfer was still running');
  });

  it("answers its own reads of a partition it is still fetching with the holders' versions", async () => {
    const w = await world(4, { transferBytesPerSecond: 2000 });
    const future = ringWith(w.cluster, 'n4');
    const p = Array.from({ length: Q }, (_, q) => q).find((q) => future.preferenceList(q, N).includes('n4'))!;
    const keys = keysIn(future, p, 30, 'big');
    await writeAll(w, keys, () => new Uint8Array(8000).fill(2));
    const id = w.cluster.join('n4');
    await w.scheduler.advance(1000);
    assert.ok(w.node(id).fetchingCount() > 0);
    const read = await w.settle(w.node(id).get(keys[keys.length - 1]!, { r: N }));
    assert.ok(read.receipt.replied.includes(id));
    assert.deepEqual(read.values, [new Uint8Array(8000).fill(2)]);
  });

  it('forwards puts of a partition it is still fetching to an owner that holds it', async () => {
    const w = await world(4, { transferBytesPerSecond: 2000 });
    const future = ringWith(w.cluster, 'n4');
    const p = Array.from({ length: Q }, (_, q) => q).find((q) => future.preferenceList(q, N).includes('n4'))!;
    const keys = keysIn(future, p, 30, 'big');
    await writeAll(w, keys, () => new Uint8Array(8000).fill(1));
    const id = w.cluster.join('n4');
    await w.scheduler.advance(1000);
    assert.ok(w.node(id).fetchingCount() > 0);
    const result = await w.settle(w.node(id).put(keys[1]!, text.encode('new')));
    assert.notEqual(result.receipt.coordinator, id);
    assert.ok(future.preferenceList(p, N).includes(result.receipt.coordinator));
    assert.equal(w.node(id).metrics().forwards, 1);
  });

  it('keeps the keys of a partition it no longer owns while one new owner is unreachable, and releases them after', async () => {
    const w = await world(4);
    const old = w.cluster.ring;
    const future = ringWith(w.cluster, 'n4');
    // A partition that some node X leaves and some node Y (not the newcomer) keeps owning.
    let pick: { p: number; x: string; y: string } | undefined;
    for (let p = 0; p < Q && pick === undefined; p++) {
      const before = old.preferenceList(p, N);
      const after = future.preferenceList(p, N);
      const x = before.find((id) => !after.includes(id));
      const y = after.find((id) => id !== 'n4' && id !== x);
      if (x !== undefined && y !== undefined) pick = { p, x, y };
    }
    assert.ok(pick, 'no partition changes hands');
    const { p, x, y } = pick;
    const keys = keysIn(future, p, 8, 'moving');
    await writeAll(w, keys, (key) => text.encode(`v:${key}`));
    await w.cluster.crash(y);
    w.cluster.join('n4');
    await w.scheduler.advance(20_000);
    assert.equal(await keyCount(w.cluster, x, p), keys.length, `${x} released with ${y} unreachable`);
    w.cluster.restart(y);
    await w.until(async () => (await keyCount(w.cluster, x, p)) === 0, `${x} released`);
    for (const owner of future.preferenceList(p, N)) {
      for (const key of keys) assert.equal((await dots(w.cluster, owner, key)).length, 1, `${owner} lacks ${key}`);
    }
  });

  it('drops its old copies on a return after longer than the tombstone grace, and fetches afresh', async () => {
    const w = await world(3, { tombstoneGrace: 5000 });
    const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`);
    await writeAll(w, keys, (key) => text.encode(`v:${key}`));
    await w.cluster.crash('n2');
    await w.scheduler.advance(10_000);
    w.cluster.restart('n2');
    const node = w.node('n2');
    await node.ready();
    assert.equal((await w.cluster.slot('n2').data.reopen().stats()).keys, 0, 'old copies kept');
    assert.ok(node.fetchingCount() > 0);
    await w.until(() => node.fetchingCount() === 0, 'n2 fetched again');
    for (const key of keys) assert.equal((await dots(w.cluster, 'n2', key)).length, 1, key);
    assert.ok(node.metrics().partitionsFetched > 0);
  });

  it('keeps its copies on a return within the tombstone grace', async () => {
    const w = await world(3, { tombstoneGrace: 60_000 });
    const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`);
    await writeAll(w, keys, (key) => text.encode(`v:${key}`));
    await w.cluster.crash('n2');
    await w.scheduler.advance(10_000);
    w.cluster.restart('n2');
    await w.node('n2').ready();
    assert.equal((await w.cluster.slot('n2').data.reopen().stats()).keys, keys.length);
    assert.equal(w.node('n2').fetchingCount(), 0);
  });

  it('pulls a partition that no member holds from the members that store keys of it, before holding it', async () => {
    const w = await world(4, { tombstoneGrace: 5000 });
    const ring = w.cluster.ring;
    const key = 'stranded';
    const p = ring.partitionOf(text.encode(key));
    const owners = ring.preferenceList(p, N);
    const other = w.cluster.memberIds().find((id) => !owners.includes(id))!;
    await w.settle(w.node(owners[0]!).put(key, text.encode('kept'), { w: N }));
    // The write lives on only at a member that stores keys of the partition without holding it (after churn: an old
    // owner that never finished fetching it), and every owner comes back after the grace with no copy at all.
    const versions = await w.cluster.slot(owners[0]!).data.reopen().get(text.encode(key));
    const message = { type: 'replicate', from: owners[0]!, requestId: 9, key: text.encode(key), versions } as const;
    w.node(other).receive(owners[0]!, encodeMessage({ ...message, hintFor: null, durable: false, fresh: null }));
    await w.scheduler.advance(1);
    assert.equal((await dots(w.cluster, other, key)).length, 1);
    for (const id of owners) await w.cluster.crash(id);
    await w.scheduler.advance(10_000);
    for (const id of owners) w.cluster.restart(id);
    await w.until(() => owners.every((id) => w.node(id).fetchingCount() === 0), 'the owners fetched');
    // Held with nothing of it, an owner would answer the key as absent.
    for (const id of owners) assert.deepEqual(await dots(w.cluster, id, key), await dots(w.cluster, other, key), id);
  });

  // ---- found in review: these fail today (see the report)

  it('holds a partition after a long absence only once it has every version its reachable owners hold', async () => {
    const w = await world(3, { tombstoneGrace: 5000 });
    const self = 'n0';
    // A key whose first transfer source for n0 (the first other node of the ring walk) will miss n0's write.
    const ring = w.cluster.ring;
    const key = 'lonely';
    const p = ring.partitionOf(text.encode(key));
    const [first, second] = ring.walk(p).filter((id) => id !== self);
    w.network.partition(new Map([[first!, 'b' as const]]));
    await w.settle(w.node(self).put(key, text.encode('v1'), { w: 2 }));
    w.network.heal();
    assert.deepEqual(await dots(w.cluster, first!, key), [], `${first} was meant to miss the write`);
    const written = await dots(w.cluster, second!, key);
    assert.equal(written.length, 1);
    await w.cluster.crash(self);
    await w.scheduler.advance(10_000);
    w.cluster.restart(self);
    await w.until(() => w.node(self).fetchingCount() === 0, `${self} fetched`);
    // n0 now coordinates puts of the key: a new dot of its own must not claim to follow n0:1 without having it.
    assert.deepEqual(await dots(w.cluster, self, key), written);
  });

  it('coordinates no put over the old copies it is dropping on a return after the grace', async () => {
    const w = await world(3, { tombstoneGrace: 5000, antiEntropyInterval: 500 });
    const key = 'doomed';
    await w.settle(w.node('n0').put(key, text.encode('old'), { w: 3 }));
    await w.cluster.fail('n2');
    await w.scheduler.advance(w.cluster.failureDetection + 500);
    const read = await w.settle(w.node('n0').get(key));
    await w.settle(w.node('n0').delete(key, { context: read.context, w: 2 }));
    await w.until(
      async () => (await dots(w.cluster, 'n0', key)).length === 0 && (await dots(w.cluster, 'n1', key)).length === 0,
      'tombstone collected',
    );
    w.cluster.rejoin('n2');
    // The new view reaches n0 and n1 at once, and a put reaches n2 while n2 is still loading: it goes to an owner
    // that holds the partition, or waits for n2's own copy, never over the old copies n2 is dropping.
    for (const id of ['n0', 'n1']) w.node(id).setMembers(w.cluster.members);
    const put = await w.settle(w.node('n2').put(key, text.encode('new'), { w: 1 }));
    assert.ok(put.receipt.acknowledged.length >= 1);
    await w.scheduler.advance(10_000);
    const after = await w.settle(w.node('n0').get(key, { r: N }));
    assert.deepEqual(
      after.values.map((v) => utf8.decode(v)),
      ['new'],
    );
  });

  it('keeps its copies on a return after minutes away, but counts them whole only once compared with the holders', async () => {
    const w = await world(3);
    const key = 'missed';
    await w.settle(w.node('n0').put(key, text.encode('before'), { w: 3 }));
    await w.cluster.crash('n2');
    const read = await w.settle(w.node('n0').get(key));
    await w.settle(w.node('n0').put(key, text.encode('while away'), { context: read.context, w: 2 }));
    await w.scheduler.advance(5 * 60_000);
    w.cluster.restart('n2');
    const node = w.node('n2');
    await node.ready();
    // Its old copy is not served as whole: a read it answers is completed from a holder.
    const p = w.cluster.ring.partitionOf(text.encode(key));
    assert.equal((await w.settle(node.partitions())).find((i) => i.partition === p)?.state, 'fetching');
    const got = await w.settle(node.get(key, { r: 1 }));
    assert.deepEqual(
      got.values.map((v) => utf8.decode(v)),
      ['while away'],
    );
    await w.until(async () => node.fetchingCount() === 0, 'n2 holds its partitions again');
    assert.deepEqual(
      (await w.settle(node.get(key, { r: 1 }))).values.map((v) => utf8.decode(v)),
      ['while away'],
    );
  });

  it('keeps a write it acknowledged while it drops its old copies on a return after the grace', async () => {
    const w = await world(3, { tombstoneGrace: 5000 });
    const ring = w.cluster.ring;
    const old = 'old-key';
    await w.settle(w.node('n0').put(old, text.encode('old'), { w: 3 }));
    await w.cluster.crash('n2');
    await w.scheduler.advance(10_000);
    // A write of the same partition, replicated to n2 as soon as it is back.
    const fresh = keysIn(ring, ring.partitionOf(text.encode(old)), 1, 'fresh')[0]!;
    const version = createVersion('n0', 1000, w.scheduler.now, [], text.encode('fresh'));
    w.cluster.restart('n2');
    const node = w.node('n2');
    node.receive(
      'n0',
      encodeMessage({
        type: 'replicate',
        from: 'n0',
        requestId: 9,
        key: text.encode(fresh),
        versions: [version],
        hintFor: null,
        durable: false,
        fresh: null,
      }),
    );
    await node.ready();
    await w.scheduler.advance(1);
    assert.equal(node.metrics().replicasWritten, 1, 'n2 acknowledged the write');
    assert.deepEqual(await dots(w.cluster, 'n2', fresh), ['n0:1000']);
  });
});

describe('Rebalancer: what a request waits for first', () => {
  it('fetches first the partition a put waits for, so that its new sole owner coordinates it while other transfers go on', async () => {
    // N = 1 and slow links: the new node is the key's only owner, and its transfers take seconds of virtual time.
    const w = await clusterWorld(3, {
      node: { n: 1, r: 1, w: 1, requestTimeout: 100 },
      conditions: { baseLatency: 40 },
    });
    // Keys to move: 4 KiB each, so that the new node's transfers are a stream, not one round trip each.
    const value = new Uint8Array(4096);
    await w.settle(Promise.all(Array.from({ length: 1500 }, (_, i) => w.node('n0').put(`load-${i}`, value))));
    const joined = w.cluster.join();
    await w.until(() => w.node(joined).ring.has(joined) && w.node(joined).fetchingCount() > 0, 'the join is seen');
    const ring = w.node(joined).ring;
    const owned = ring.partitionsOf(joined, 1);
    // The last partition it would fetch in order, and a key in it.
    const last = owned[owned.length - 1]!;
    const [key] = keysIn(ring, last, 1, 'waited') as [string];
    const put = await w.settle(w.node(joined).put(key, text.encode('v')));
    assert.equal(put.receipt.coordinator, joined);
    assert.ok(w.node(joined).fetchingCount() > 0, 'other partitions were still being fetched');
  });
});
