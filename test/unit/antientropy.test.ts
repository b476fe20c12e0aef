/**
 * Anti-entropy rounds on small simulated clusters of real nodes: repairs without any read, and tombstone collection
 * once every owner agrees and the grace has passed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DynamoNode } from '../../worker/node.ts';
import { Cluster, type SimNodeOptions } from '../sim/cluster.ts';
import { Network } from '../sim/network.ts';
import { Rng } from '../sim/random.ts';
import { Scheduler } from '../sim/scheduler.ts';

const text = new TextEncoder();
const N = 3;
const Q = 16;
const T = 16;

interface World {
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly cluster: Cluster;
  settle<T>(promise: Promise<T>): Promise<T>;
  /** Runs virtual time until `done()` holds, failing after `cap` ms. */
  until(done: () => boolean | Promise<boolean>, what: string, cap?: number): Promise<void>;
  node(id: string): DynamoNode;
}

/** A settled cluster: every node holds what it owns. */
async function world(size: number, node: Partial<SimNodeOptions> = {}, seed = 1): Promise<World> {
  const scheduler = new Scheduler();
  const rng = new Rng(seed);
  const network = new Network(scheduler, rng.fork('network'));
  const cluster = new Cluster({
    scheduler,
    network,
    rng,
    size,
    failureDetection: 3000,
    node: { n: N, r: 2, w: 2, partitions: Q, tokensPerNode: T, requestTimeout: 200, antiEntropyInterval: 0, ...node },
  });
  const w: World = {
    scheduler,
    network,
    cluster,
    async settle<T>(promise: Promise<T>): Promise<T> {
      let done = false;
      void promise.finally(() => (done = true)).catch(() => {});
      await scheduler.run(() => done);
      return promise;
    },
    async until(done, what, cap = 60_000) {
      const end = scheduler.now + cap;
      while (!(await done())) {
        assert.ok(scheduler.now < end, `${what}: not after ${cap} ms`);
        await scheduler.advance(100);
      }
    },
    node(id) {
      const n = cluster.node(id);
      assert.ok(n, `${id} is running`);
      return n;
    },
  };
  await w.until(() => cluster.alive().every((id) => w.node(id).fetchingCount() === 0), 'first fetch');
  return w;
}

/** Every version node `id` stores for `key`, as `node:counter` dots, straight from its data. */
async function dots(cluster: Cluster, id: string, key: string): Promise<string[]> {
  const handle = cluster.slot(id).data.reopen();
  const stored = await handle.get(text.encode(key));
  return stored.map((v) => `${v.dot.node}:${v.dot.counter}${v.value === null ? '(tombstone)' : ''}`).sort();
}

/** True when every node of `ids` stores nothing for `key`. */
async function goneFrom(cluster: Cluster, ids: readonly string[], key: string): Promise<boolean> {
  for (const id of ids) if ((await dots(cluster, id, key)).length > 0) return false;
  return true;
}

/** Writes `key` with W = N, then deletes it with W = N: every owner holds the tombstone. */
async function writeThenDelete(w: World, key: string): Promise<readonly string[]> {
  const owners = w.cluster.preferenceList(text.encode(key), N);
  const coordinator = w.node(owners[0]!);
  await w.settle(coordinator.put(key, text.encode('v'), { w: N }));
  const read = await w.settle(coordinator.get(key, { r: N }));
  await w.settle(coordinator.delete(key, { context: read.context, w: N }));
  for (const id of owners) {
    const stored = await dots(w.cluster, id, key);
    assert.ok(stored.length === 1 && stored[0]!.endsWith('(tombstone)'), `${id} stores [${stored.join(' ')}]`);
  }
  return owners;
}

describe('AntiEntropy', () => {
  it('pulls a write its node missed, with no read involved', async () => {
    // Rounds run only when the test asks.
    const w = await world(3, { antiEntropyInterval: 1e9 });
    const key = 'missed';
    w.network.partition(new Map([['n2', 'b' as const]]));
    await w.settle(w.node('n0').put(key, text.encode('v'), { w: 2 }));
    w.network.heal();
    await w.scheduler.advance(1000);
    assert.deepEqual(await dots(w.cluster, 'n2', key), []);
    const repaired = await w.settle(w.node('n2').antiEntropyRound());
    assert.ok(repaired >= 1);
    assert.deepEqual(await dots(w.cluster, 'n2', key), await dots(w.cluster, 'n0', key));
    assert.equal(w.node('n2').metrics().readsServed, 0);
  });

  it('pushes a write to the owner it compares with when that owner missed it', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9 });
    // A key whose first owner is n0: n0's round compares with every other owner.
    const ring = w.cluster.ring;
    let key = '';
    for (let i = 0; key === ''; i++)
      if (ring.preferenceList(ring.partitionOf(text.encode(`k${i}`)), N)[0] === 'n0') key = `k${i}`;
    w.network.partition(new Map([['n2', 'b' as const]]));
    await w.settle(w.node('n0').put(key, text.encode('v'), { w: 2 }));
    w.network.heal();
    await w.scheduler.advance(1000);
    assert.deepEqual(await dots(w.cluster, 'n2', key), []);
    await w.settle(w.node('n0').antiEntropyRound());
    await w.scheduler.advance(100);
    assert.deepEqual(await dots(w.cluster, 'n2', key), await dots(w.cluster, 'n0', key));
  });

  it('repairs nothing and counts no repair when every owner agrees', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9 });
    await w.settle(w.node('n0').put('k', text.encode('v'), { w: 3 }));
    assert.equal(await w.settle(w.node('n1').antiEntropyRound()), 0);
    assert.equal(w.node('n1').metrics().antiEntropyRepairs, 0);
  });

  it('keeps a tombstone on every owner while the grace has not passed', async () => {
    const w = await world(3, { antiEntropyInterval: 500, tombstoneGrace: 10_000 });
    const owners = await writeThenDelete(w, 'doomed');
    await w.scheduler.advance(8_000);
    for (const id of owners) assert.equal((await dots(w.cluster, id, 'doomed')).length, 1, id);
  });

  it('collects a tombstone on every owner once they all agree and the grace has passed', async () => {
    const w = await world(4, { antiEntropyInterval: 500, tombstoneGrace: 5_000 });
    const owners = await writeThenDelete(w, 'doomed');
    await w.until(() => goneFrom(w.cluster, owners, 'doomed'), 'tombstone collected', 30_000);
    const collected = w.cluster.live().reduce((sum, id) => sum + w.node(id).metrics().tombstonesCollected, 0);
    assert.equal(collected, owners.length);
  });

  it('keeps a tombstone past the grace while one owner is unreachable', async () => {
    const w = await world(3, { antiEntropyInterval: 500, tombstoneGrace: 5_000 });
    const owners = await writeThenDelete(w, 'doomed');
    w.network.partition(new Map([[owners[1]!, 'b' as const]]));
    await w.scheduler.advance(30_000);
    for (const id of owners) assert.equal((await dots(w.cluster, id, 'doomed')).length, 1, id);
  });
});
