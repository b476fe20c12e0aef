/**
 * Membership change in simulated clusters of real nodes: joins, leaves and failures move partitions, hints follow
 * their data, and deletes stay deleted across stale returns and tombstone collection. Each test drives the cluster
 * by hand, then lets virtual time run until the stored state converges by itself (no client read repairs anything).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DynamoNode, PutResult } from '../../worker/node.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { Cluster, type SimNodeOptions } from './cluster.ts';
import { awaitConvergence, withData } from './convergence.ts';
import { Network } from './network.ts';
import { Rng } from './random.ts';
import { Scheduler } from './scheduler.ts';
import { settle } from './settle.ts';

const utf8 = new TextEncoder();
const text = new TextDecoder();
const N = 3;
const PARTITIONS = 16;

interface World {
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly cluster: Cluster;
}

/** A quiet cluster of `size` nodes with N = 3 over 16 partitions and frequent anti-entropy rounds. */
function world(size: number, seed: number, node: Partial<SimNodeOptions> = {}): World {
  const scheduler = new Scheduler();
  const rng = new Rng(seed);
  const network = new Network(scheduler, rng.fork('network'));
  const cluster = new Cluster({
    scheduler,
    network,
    rng: rng.fork('nodes'),
    size,
    failureDetection: 3000,
    node: {
      n: N,
      r: 2,
      w: 2,
      partitions: PARTITIONS,
      tokensPerNode: 16,
      requestTimeout: 500,
      hintInterval: 1000,
      antiEntropyInterval: 1000,
      ...node,
    },
  });
  return { scheduler, network, cluster };
}

/** Runs the next batch of events (one virtual instant) and the microtasks it starts. */
async function oneBatch(scheduler: Scheduler): Promise<void> {
  let ran = false;
  // run() asks before every batch whether to stop: no the first time, yes the second.
  await scheduler.run(() => {
    if (ran) return true;
    ran = true;
    return false;
  });
}

/** Lets virtual time run until the stored state converges, failing the test with what is left after the cap. */
async function converge({ scheduler, cluster }: World, cap = 300_000): Promise<number> {
  const outcome = await awaitConvergence(cluster, scheduler, N, { cap, step: 500 });
  assert.ok(outcome.converged, `not converged after ${outcome.ms} ms:\n  ${outcome.details.join('\n  ')}`);
  return outcome.ms;
}

function running(cluster: Cluster, id: string): DynamoNode {
  const node = cluster.node(id);
  assert.ok(node !== null, `${id} is not running`);
  return node;
}

/** `count` keys, each written once with W = N through a node of its preference list; their values are `v:<key>`. */
async function writeKeys({ scheduler, cluster }: World, count: number, prefix = 'key'): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const writes: Promise<PutResult>[] = keys.map((key) => {
    const coordinator = cluster.preferenceList(utf8.encode(key), N)[0]!;
    return running(cluster, coordinator).put(key, utf8.encode(`v:${key}`), { w: N });
  });
  await settle(scheduler, Promise.all(writes));
  return keys;
}

/** The live values node `id` stores for `key`, straight from its storage. */
async function storedValues(cluster: Cluster, id: string, key: string): Promise<string[]> {
  const siblings = await withData(cluster.slot(id), (s) => s.get(utf8.encode(key)));
  return siblings.flatMap((s) => (s.value === null ? [] : [text.decode(s.value)])).sort();
}

/** Every version node `id` stores for `key`, tombstones included, as `node:counter` dots. */
async function storedDots(cluster: Cluster, id: string, key: string): Promise<string[]> {
  const siblings = await withData(cluster.slot(id), (s) => s.get(utf8.encode(key)));
  return siblings.map((s) => `${s.dot.node}:${s.dot.counter}${s.value === null ? '(tombstone)' : ''}`).sort();
}

/** Keys among `keys` that fall in partition `p`. */
function keysOf(ring: Ring, keys: readonly string[], p: number): string[] {
  return keys.filter((key) => ring.partitionOf(utf8.encode(key)) === p);
}

/** The partitions whose preference list holds `id`. */
function ownedBy(ring: Ring, id: string): number[] {
  return Array.from({ length: ring.partitions }, (_, p) => p).filter((p) => ring.preferenceList(p, N).includes(id));
}

/** Keys named `<prefix>-<i>` that fall in partition `p`, the first `count` of them. */
function keysIn(ring: Ring, p: number, count: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const key = `${prefix}-${i}`;
    if (ring.partitionOf(utf8.encode(key)) === p) out.push(key);
  }
  return out;
}

/** Reads `key` with R = N through `id`. */
async function readAll(world: World, id: string, key: string): Promise<string[]> {
  const result = await settle(world.scheduler, running(world.cluster, id).get(key, { r: N }));
  return result.values.map((v) => text.decode(v)).sort();
}

describe('membership: joins', () => {
  it('a joining node ends up holding its partitions and the node it displaced releases them', async () => {
    const w = world(5, 11);
    const keys = await writeKeys(w, 120);
    await converge(w);
    const before = w.cluster.ring;
    const joiner = w.cluster.join();
    await converge(w);
    const after = w.cluster.ring;

    const gained = ownedBy(after, joiner);
    assert.ok(gained.length > 0, `${joiner} owns no partition`);
    const infos = new Map((await running(w.cluster, joiner).partitions()).map((i) => [i.partition, i]));
    let displaced = 0;
    for (const p of gained) {
      assert.equal(infos.get(p)?.state, 'held', `${joiner} does not hold partition ${p}`);
      for (const key of keysOf(after, keys, p)) {
        assert.deepEqual(await storedValues(w.cluster, joiner, key), [`v:${key}`], `${joiner} lacks ${key}`);
      }
      for (const old of before.preferenceList(p, N).filter((id) => !after.preferenceList(p, N).includes(id))) {
        if (keysOf(after, keys, p).length > 0) displaced++;
        const left = await withData(w.cluster.slot(old), (s) => s.scanPartition(p));
        assert.deepEqual(
          left.map((k) => text.decode(k.key)),
          [],
          `${old} still stores keys of partition ${p} it no longer owns`,
        );
      }
    }
    assert.ok(displaced > 0, 'the join displaced no node from a partition with keys');
    await w.cluster.close();
  });

  it('at no moment of a join do fewer than N nodes hold an acknowledged write', async () => {
    // A slow transfer, so that the join passes through many states.
    const w = world(5, 12, { transferBytesPerSecond: 4096 });
    const keys = await writeKeys(w, 120);
    await converge(w);
    const joiner = w.cluster.join();
    const moving = ownedBy(w.cluster.ring, joiner).flatMap((p) => keysOf(w.cluster.ring, keys, p));
    assert.ok(moving.length > 0, 'no written key moves to the joining node');
    const watched = moving.slice(0, 8);
    // The dots each watched write was stored under, taken from one of its owners once everything agreed.
    const dots = new Map<string, string[]>();
    for (const key of watched) {
      const owner = w.cluster.ring
        .preferenceList(w.cluster.ring.partitionOf(utf8.encode(key)), N)
        .find((id) => id !== joiner)!;
      dots.set(key, await storedDots(w.cluster, owner, key));
    }
    // One event batch at a time: every state the cluster passes through is checked.
    let checks = 0;
    let nextConvergenceCheck = w.scheduler.now;
    for (;;) {
      for (const key of watched) {
        let holders = 0;
        for (const id of w.cluster.ids) {
          const held = await storedDots(w.cluster, id, key);
          if (dots.get(key)!.every((dot) => held.includes(dot))) holders++;
        }
        assert.ok(holders >= N, `at ${w.scheduler.now} ms only ${holders} nodes hold ${key}`);
      }
      checks++;
      if (w.scheduler.now >= nextConvergenceCheck) {
        if ((await awaitConvergence(w.cluster, w.scheduler, N, { cap: 0 })).converged) break;
        assert.ok(w.scheduler.now < 300_000, 'the join never converged');
        nextConvergenceCheck = w.scheduler.now + 500;
      }
      await oneBatch(w.scheduler);
    }
    assert.ok(checks > 100, `only ${checks} states were checked`);
    await w.cluster.close();
  });
});

describe('membership: requests during transfers', () => {
  it('a forwarded put goes back to an owner that refused it while fetching once that owner holds the partition', async () => {
    const w = world(6, 21);
    await converge(w);
    const p = 0;
    const [key] = keysIn(w.cluster.ring, p, 1, 'stored') as [string];
    const before = w.cluster.ring.preferenceList(p, N);
    await settle(w.scheduler, running(w.cluster, before[0]!).put(key, utf8.encode(`v:${key}`), { w: N }));
    await converge(w);
    // A node joins at the head of the partition's preference list and fetches it from the owner it displaced, which
    // holds it until its release ends; the other two owners go down, so that the put waits for them to time out.
    const joiner = w.cluster.join(leader(w.cluster, p));
    const owners = w.cluster.ring.preferenceList(p, N);
    const [displaced] = before.filter((id) => !owners.includes(id)) as [string];
    const down = owners.filter((id) => id !== joiner);
    for (const id of down) await w.cluster.crash(id);
    const via = w.cluster.live().find((id) => !owners.includes(id) && id !== displaced)!;
    // Cut off from every holder, the joiner can neither fetch the partition nor coordinate its puts.
    w.network.partition(
      new Map([
        [joiner, 'b'],
        [via, 'bridge'],
      ]),
    );
    await w.scheduler.advance(1000);
    const refusals = (): number => running(w.cluster, joiner).metrics().putsRedirected;
    const [put] = keysIn(w.cluster.ring, p, 1, 'forwarded') as [string];
    const outcome = running(w.cluster, via).put(put, utf8.encode(`v:${put}`));
    void outcome.catch(() => {});
    await w.scheduler.run(() => refusals() > 0);
    // It refused the put; it fetches the partition while the put is tried at the owners that are down.
    w.network.heal();
    await settle(w.scheduler, outcome);
    assert.equal(
      (await running(w.cluster, joiner).partitions()).find((i) => i.partition === p)?.state,
      'held',
      `${joiner} never held partition ${p}`,
    );
    assert.deepEqual(await storedValues(w.cluster, joiner, put), [`v:${put}`]);
    await w.cluster.close();
  });
});

describe('membership: failures and leaves', () => {
  it("a failed node's partitions are re-replicated to the node that completes the preference list", async () => {
    const w = world(6, 13);
    const keys = await writeKeys(w, 120);
    await converge(w);
    const before = w.cluster.ring;
    const victim = 'n2';
    await w.cluster.fail(victim);
    await w.scheduler.advance(w.cluster.failureDetection + 100);
    assert.equal(w.cluster.memberIds().includes(victim), false, 'the failed node is still in the view');
    await converge(w);
    const after = w.cluster.ring;

    let moved = 0;
    for (const p of ownedBy(before, victim)) {
      const newcomer = after.preferenceList(p, N).find((id) => !before.preferenceList(p, N).includes(id));
      assert.ok(newcomer !== undefined, `partition ${p} got no new owner`);
      for (const key of keysOf(after, keys, p)) {
        moved++;
        assert.deepEqual(await storedValues(w.cluster, newcomer, key), [`v:${key}`], `${newcomer} lacks ${key}`);
      }
    }
    assert.ok(moved > 0, 'the failed node owned no written key');
    await w.cluster.close();
  });

  it('hints held for a node that left the view are delivered to the current owners', async () => {
    const w = world(7, 14);
    await converge(w);
    const departing = 'n2';
    const p = ownedBy(w.cluster.ring, departing)[0]!;
    const [a, b] = w.cluster.ring.preferenceList(p, N).filter((id) => id !== departing) as [string, string];
    const keys = keysIn(w.cluster.ring, p, 5, 'hinted');
    // The departing owner is down, so each write leaves a hint for it on a fallback.
    await w.cluster.crash(departing);
    await settle(
      w.scheduler,
      Promise.all(keys.map((key) => running(w.cluster, a).put(key, utf8.encode(`v:${key}`), { w: N }))),
    );
    const holders: string[] = [];
    for (const id of w.cluster.alive()) {
      if ((await withData(w.cluster.slot(id), (s) => s.listHints({ target: departing }))).length > 0) holders.push(id);
    }
    assert.ok(holders.length > 0, 'no hint was left for the departing node');

    // The other two owners leave too: the hints for the departed node are now the only copies of the writes.
    await w.cluster.leave(departing);
    await w.cluster.leave(a);
    await w.cluster.leave(b);
    for (const key of keys) {
      for (const id of w.cluster.live()) assert.deepEqual(await storedValues(w.cluster, id, key), []);
    }
    await converge(w);
    for (const key of keys) {
      for (const owner of w.cluster.preferenceList(utf8.encode(key), N)) {
        assert.deepEqual(await storedValues(w.cluster, owner, key), [`v:${key}`], `${owner} lacks ${key}`);
      }
    }
    await w.cluster.close();
  });
});

describe('membership: restarts', () => {
  it('a node restarted while releasing a partition fetches it again before holding it when it owns it again', async () => {
    const w = world(5, 20);
    await converge(w);
    // The last owner of a partition, which a join ahead of it pushes out.
    const p = 0;
    const returning = w.cluster.ring.preferenceList(p, N)[N - 1]!;
    const [key] = keysIn(w.cluster.ring, p, 1, 'lapsed') as [string];
    const first = await settle(w.scheduler, running(w.cluster, returning).put(key, utf8.encode('v1'), { w: N }));
    await converge(w);
    // A join pushes the node out of the partition while it is cut off, so that it stops still holding its copy.
    w.network.partition(new Map([[returning, 'b']]));
    const joiner = w.cluster.join(displacer(w.cluster, p, returning));
    await w.scheduler.advance(100);
    await w.cluster.crash(returning);
    w.network.heal();
    // A write it misses: it is no owner, so no hint is kept for it.
    const owner = w.cluster.ring.preferenceList(p, N).find((id) => id !== joiner)!;
    await settle(w.scheduler, running(w.cluster, owner).put(key, utf8.encode('v2'), { context: first.context, w: N }));
    // The joiner leaves and the partition is the returning node's again; it holds it only once it has the write.
    await w.cluster.leave(joiner);
    w.cluster.restart(returning);
    assert.ok(w.cluster.ring.preferenceList(p, N).includes(returning));
    const start = w.scheduler.now;
    for (let held = false; !held; await w.scheduler.advance(10)) {
      assert.ok(w.scheduler.now < start + 30_000, `${returning} never held partition ${p} again`);
      const info = (await running(w.cluster, returning).partitions()).find((i) => i.partition === p);
      held = info?.state === 'held';
      if (held) assert.deepEqual(await storedValues(w.cluster, returning, key), ['v2'], 'held without the write');
    }
    await w.cluster.close();
  });
});

describe('membership: hints across view changes', () => {
  it('a hint for a node that has since stopped owning the partition leaves no key stranded on that node', async () => {
    const w = world(6, 19);
    await converge(w);
    const target = 'n2';
    // A partition where the target is last of the preference list: a join ahead of it pushes it out.
    const p = ownedBy(w.cluster.ring, target).find((q) => w.cluster.ring.preferenceList(q, N)[N - 1] === target)!;
    const coordinator = w.cluster.ring.preferenceList(p, N)[0]!;
    const keys = keysIn(w.cluster.ring, p, 3, 'displaced');
    await w.cluster.crash(target);
    await settle(
      w.scheduler,
      Promise.all(keys.map((key) => running(w.cluster, coordinator).put(key, utf8.encode(`v:${key}`), { w: N }))),
    );
    const holders: string[] = [];
    for (const id of w.cluster.alive()) {
      if ((await withData(w.cluster.slot(id), (s) => s.listHints({ target }))).length > 0) holders.push(id);
    }
    assert.ok(holders.length > 0, 'no hint was left for the crashed owner');
    // A new node takes the crashed owner's place in the partition; the crashed node stays a member elsewhere.
    w.cluster.join(displacer(w.cluster, p, target));
    assert.equal(w.cluster.ring.preferenceList(p, N).includes(target), false);
    w.cluster.restart(target);
    // Reads across every partition before the hints come due, as in a busy cluster: every peer has talked to the
    // restarted node, which has long finished releasing the partition when the hints arrive.
    const probes = Array.from({ length: PARTITIONS }, (_, q) => keysIn(w.cluster.ring, q, 1, 'probe')[0]!);
    await settle(w.scheduler, Promise.allSettled(probes.map((key) => running(w.cluster, target).get(key, { r: N }))));
    await converge(w);
    assert.deepEqual(
      (await withData(w.cluster.slot(target), (s) => s.scanPartition(p))).map((k) => text.decode(k.key)),
      [],
    );
    for (const key of keys) {
      for (const owner of w.cluster.preferenceList(utf8.encode(key), N)) {
        assert.deepEqual(await storedValues(w.cluster, owner, key), [`v:${key}`], `${owner} lacks ${key}`);
      }
    }
    await w.cluster.close();
  });
});

/** An id for a new node that would come first in partition `p`'s preference list. */
function leader(cluster: Cluster, p: number): string {
  const domain = `d${cluster.ids.length}`;
  for (let i = 0; i < 10_000; i++) {
    const id = `j${i}`;
    const ring = new Ring([...cluster.members, { id, domain }], { partitions: PARTITIONS, tokensPerNode: 16 });
    if (ring.preferenceList(p, N)[0] === id) return id;
  }
  throw new Error(`no new node id comes first in partition ${p}`);
}

/** An id for a new node that would push `displaced` out of partition `p`'s preference list. */
function displacer(cluster: Cluster, p: number, displaced: string): string {
  const domain = `d${cluster.ids.length}`;
  for (let i = 0; i < 10_000; i++) {
    const id = `j${i}`;
    const ring = new Ring([...cluster.members, { id, domain }], { partitions: PARTITIONS, tokensPerNode: 16 });
    const owners = ring.preferenceList(p, N);
    if (owners.includes(id) && !owners.includes(displaced)) return id;
  }
  throw new Error(`no new node id pushes ${displaced} out of partition ${p}`);
}

describe('membership: deletes and tombstones', () => {
  const GRACE = 5000;

  /** Writes `key` with W = N and returns its owners, its coordinator first. */
  async function written(w: World, key: string): Promise<readonly string[]> {
    const owners = w.cluster.preferenceList(utf8.encode(key), N);
    await settle(w.scheduler, running(w.cluster, owners[0]!).put(key, utf8.encode(`v:${key}`), { w: N }));
    return owners;
  }

  /** Deletes `key` through `id` over what a read there returns. */
  async function deleted(w: World, id: string, key: string, wq: number): Promise<void> {
    const node = running(w.cluster, id);
    const read = await settle(w.scheduler, node.get(key, { r: 2 }));
    assert.deepEqual(
      read.values.map((v) => text.decode(v)),
      [`v:${key}`],
    );
    await settle(w.scheduler, node.delete(key, { context: read.context, w: wq }));
  }

  /** Every node that stores a live value of `key`. */
  async function holdersOfValue(cluster: Cluster, key: string): Promise<string[]> {
    const out: string[] = [];
    for (const id of cluster.ids) {
      if (!cluster.slot(id).left && (await storedValues(cluster, id, key)).length > 0) out.push(id);
    }
    return out;
  }

  it('a deleted key does not come back when a stale replica returns from a crash', async () => {
    const w = world(5, 15, { tombstoneGrace: GRACE });
    await converge(w);
    const key = 'doomed';
    const [a, , stale] = await written(w, key);
    await converge(w);
    await w.cluster.crash(stale!);
    await deleted(w, a!, key, 2);
    await w.scheduler.advance(3 * GRACE);
    assert.deepEqual(await storedValues(w.cluster, stale!, key), [`v:${key}`], 'the stale replica lost its value');
    w.cluster.restart(stale!);
    await converge(w);
    for (const id of w.cluster.live()) assert.deepEqual(await readAll(w, id, key), [], `${id} reads the key back`);
    assert.deepEqual(await holdersOfValue(w.cluster, key), []);
    await w.cluster.close();
  });

  it('a deleted key does not come back when a failed replica rejoins after the grace', async () => {
    const w = world(5, 16, { tombstoneGrace: GRACE });
    await converge(w);
    const key = 'doomed';
    const [a, , stale] = await written(w, key);
    await converge(w);
    await w.cluster.fail(stale!);
    await w.scheduler.advance(w.cluster.failureDetection + 100);
    await converge(w);
    await deleted(w, a!, key, N);
    await converge(w);
    // Long enough for the tombstone to be collected everywhere the view reaches.
    await w.scheduler.advance(3 * GRACE);
    await converge(w);
    const live = w.cluster.live();
    for (const id of live) assert.deepEqual(await storedDots(w.cluster, id, key), [], `${id} still stores the key`);
    assert.deepEqual(await storedValues(w.cluster, stale!, key), [`v:${key}`], 'the failed replica lost its value');
    w.cluster.rejoin(stale!);
    await converge(w);
    for (const id of w.cluster.live()) assert.deepEqual(await readAll(w, id, key), [], `${id} reads the key back`);
    assert.deepEqual(await holdersOfValue(w.cluster, key), []);
    await w.cluster.close();
  });

  it('keeps a tombstone on every owner while the grace has not passed', async () => {
    const w = world(5, 17, { tombstoneGrace: GRACE });
    await converge(w);
    const key = 'doomed';
    const owners = await written(w, key);
    await deleted(w, owners[0]!, key, N);
    await w.scheduler.advance(GRACE / 2);
    for (const id of owners) {
      const dots = await storedDots(w.cluster, id, key);
      assert.ok(dots.length > 0 && dots.every((d) => d.endsWith('(tombstone)')), `${id} stores [${dots.join(' ')}]`);
    }
    await w.cluster.close();
  });

  it('collects a tombstone once every owner holds it and the grace has passed', async () => {
    const w = world(5, 18, { tombstoneGrace: GRACE });
    await converge(w);
    const key = 'doomed';
    const owners = await written(w, key);
    await deleted(w, owners[0]!, key, N);
    for (const id of owners) {
      assert.ok(
        (await storedDots(w.cluster, id, key)).some((d) => d.endsWith('(tombstone)')),
        `${id} has no tombstone`,
      );
    }
    let holders = owners.length;
    for (let waited = 0; holders > 0 && waited < 120_000; waited += 500) {
      await w.scheduler.advance(500);
      holders = 0;
      for (const id of w.cluster.ids) if ((await storedDots(w.cluster, id, key)).length > 0) holders++;
    }
    assert.equal(holders, 0, 'the tombstone is still stored somewhere');
    await w.cluster.close();
  });
});
