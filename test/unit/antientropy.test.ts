/**
 * Anti-entropy rounds on small simulated clusters of real nodes: repairs without any read, and tombstone collection
 * once every owner agrees and the grace has passed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cluster } from '../sim/cluster.ts';
import { N, type World, dots, world } from './sync-world.ts';

const text = new TextEncoder();

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
    // Long enough for the replication to n2 to give up (an owner with no fallback gets a second timeout).
    await w.scheduler.advance(2_000);
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
    // Long enough for the replication to n2 to give up (an owner with no fallback gets a second timeout).
    await w.scheduler.advance(2_000);
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
