/**
 * Anti-entropy rounds on small simulated clusters of real nodes: repairs without any read, and tombstone collection
 * once every owner agrees and the grace has passed since the first owner first found the tombstone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cluster } from '../sim/cluster.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';
import { encodeMessage } from '../../worker/wire/codec.ts';
import { N, type World, dots, world } from './sync-world.ts';
import { text } from './cluster-world.ts';

/** The grace of the tests that forge tombstones. */
const GRACE = 10_000;

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

/**
 * Writes `key` on every owner, then has every owner store a tombstone over it stamped with timestamp 0, as a hostile
 * owner would push it; `counter` numbers its dot, `seen` lists the versions it covers. Resolves with the owners.
 */
async function forgeTombstone(w: World, key: string, counter: number, seen: readonly Version[] = []) {
  const owners = w.cluster.preferenceList(text.encode(key), N);
  const writer = owners[1]!;
  if (seen.length === 0) {
    await w.settle(w.node(owners[0]!).put(key, text.encode('v'), { w: N }));
    seen = await w.cluster.slot(owners[0]!).data.reopen().get(text.encode(key));
  }
  const tombstone = createVersion(
    writer,
    counter,
    0,
    seen.map((v) => v.dot),
    null,
  );
  const partition = w.cluster.ring.partitionOf(text.encode(key));
  const entries = [{ key: text.encode(key), versions: [tombstone] }];
  for (const [i, id] of owners.entries()) {
    const from = id === writer ? owners[0]! : writer;
    w.node(id).receive(from, encodeMessage({ type: 'sync-push', from, requestId: 90_000 + i, partition, entries }));
  }
  await w.scheduler.advance(50);
  for (const id of owners) assert.deepEqual(await dots(w.cluster, id, key), [`${writer}:${counter}(tombstone)`], id);
  return { owners, tombstone };
}

/** Runs one anti-entropy round on `id` now; resolves with the virtual time it started at. */
async function roundOn(w: World, id: string): Promise<number> {
  const started = w.scheduler.now;
  await w.settle(w.node(id).antiEntropyRound());
  return started;
}

/** Runs virtual time until `at`. */
async function advanceTo(w: World, at: number): Promise<void> {
  assert.ok(at >= w.scheduler.now, `${at} is already past`);
  await w.scheduler.advance(at - w.scheduler.now);
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

  it('keeps a tombstone stamped 0 until the grace has passed since the first owner first found it', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: GRACE });
    // Long past the grace of a tombstone its stamp would date to the start of time.
    await w.scheduler.advance(2 * GRACE);
    const { owners } = await forgeTombstone(w, 'doomed', 500);
    const first = await roundOn(w, owners[0]!);
    await advanceTo(w, first + GRACE - 1000);
    await roundOn(w, owners[0]!);
    for (const id of owners) assert.equal((await dots(w.cluster, id, 'doomed')).length, 1, id);
    assert.equal(w.node(owners[0]!).metrics().tombstonesCollected, 0);
  });

  it('collects a tombstone stamped 0 once the grace has passed since the first owner first found it', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: GRACE });
    await w.scheduler.advance(2 * GRACE);
    const { owners } = await forgeTombstone(w, 'doomed', 500);
    const first = await roundOn(w, owners[0]!);
    await advanceTo(w, first + GRACE + 500);
    await roundOn(w, owners[0]!);
    await w.scheduler.advance(100);
    assert.ok(await goneFrom(w.cluster, owners, 'doomed'));
  });

  it('believes the stamp of a tombstone older than the grace once its first owner has held it an hour, not before', async () => {
    const HOUR = 3_600_000;
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: 2 * HOUR });
    // The grace is longer than the hour: honest stamps matter when the first owner changes, as tabs come and go.
    await w.scheduler.advance(4 * HOUR);
    const { owners } = await forgeTombstone(w, 'doomed', 500);
    const first = await roundOn(w, owners[0]!);
    await advanceTo(w, first + HOUR - 1000);
    await roundOn(w, owners[0]!);
    for (const id of owners) assert.equal((await dots(w.cluster, id, 'doomed')).length, 1, id);
    await advanceTo(w, first + HOUR + 500);
    await roundOn(w, owners[0]!);
    await w.scheduler.advance(100);
    assert.ok(await goneFrom(w.cluster, owners, 'doomed'));
  });

  it('measures a tombstone from when its first owner first found it across a restart of that owner', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: GRACE });
    await w.scheduler.advance(2 * GRACE);
    const { owners } = await forgeTombstone(w, 'doomed', 500);
    const head = owners[0]!;
    const first = await roundOn(w, head);
    await w.scheduler.advance(1000);
    assert.equal((await dots(w.cluster, head, 'doomed')).length, 1, 'collected before the restart');
    await w.cluster.crash(head);
    w.cluster.restart(head);
    await w.settle(w.node(head).ready());
    await w.until(() => w.node(head).fetchingCount() === 0, `${head} holds its partitions again`);
    // Seen afresh after the restart, the tombstone would be kept for a whole grace more.
    await advanceTo(w, first + GRACE + 500);
    await roundOn(w, head);
    await w.scheduler.advance(100);
    assert.ok(await goneFrom(w.cluster, owners, 'doomed'));
  });

  it('measures a tombstone that replaced another from when the first owner first found the new one', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: GRACE });
    await w.scheduler.advance(2 * GRACE);
    const { owners, tombstone } = await forgeTombstone(w, 'doomed', 500);
    const first = await roundOn(w, owners[0]!);
    await w.scheduler.advance(GRACE / 2);
    await forgeTombstone(w, 'doomed', 501, [tombstone]);
    const second = await roundOn(w, owners[0]!);
    await advanceTo(w, first + GRACE + 500);
    await roundOn(w, owners[0]!);
    for (const id of owners) assert.deepEqual(await dots(w.cluster, id, 'doomed'), [`${owners[1]}:501(tombstone)`]);
    await advanceTo(w, second + GRACE + 500);
    await roundOn(w, owners[0]!);
    await w.scheduler.advance(100);
    assert.ok(await goneFrom(w.cluster, owners, 'doomed'));
  });

  it('collects a tombstone at the first round that finds it when the grace is 0', async () => {
    const w = await world(3, { antiEntropyInterval: 1e9, tombstoneGrace: 0 });
    const owners = await writeThenDelete(w, 'doomed');
    await roundOn(w, owners[0]!);
    await w.scheduler.advance(100);
    assert.ok(await goneFrom(w.cluster, owners, 'doomed'));
  });
});
