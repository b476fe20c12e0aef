import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from './cluster.ts';
import { awaitConvergence, storedFinal } from './convergence.ts';
import { Network } from './network.ts';
import { Rng } from './random.ts';
import { runSimulation } from './run.ts';
import { type Owner, Scheduler } from './scheduler.ts';
import { settle } from './settle.ts';
import { valueId, writeValue } from './values.ts';
import { Witness, audit } from './witness.ts';
import type { MemoryStorage } from '../../worker/storage/memory.ts';

const utf8 = new TextEncoder();
const text = new TextDecoder();

describe('seeded randomness', () => {
  it('replays the same stream from the same seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    assert.deepEqual(
      Array.from({ length: 20 }, () => a.uint32()),
      Array.from({ length: 20 }, () => b.uint32()),
    );
  });

  it('gives different streams for different seeds and fork labels', () => {
    const root = new Rng(42);
    const streams = [new Rng(43), root.fork('x'), root.fork('y')].map((r) => Array.from({ length: 5 }, () => r.next()));
    const first = Array.from({ length: 5 }, () => new Rng(42).next());
    for (const s of streams) assert.notDeepEqual(s, first);
    assert.notDeepEqual(streams[1], streams[2]);
  });

  it('draws integers below the bound and covers it', () => {
    const rng = new Rng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const x = rng.int(5);
      assert.ok(Number.isInteger(x) && x >= 0 && x < 5);
      seen.add(x);
    }
    assert.equal(seen.size, 5);
  });
});

describe('virtual time', () => {
  it('runs events in time order, and in scheduling order within one millisecond', async () => {
    const scheduler = new Scheduler();
    const order: string[] = [];
    scheduler.schedule(5, () => order.push('c'));
    scheduler.schedule(1, () => order.push('a'));
    scheduler.schedule(5, () => order.push('d'));
    scheduler.schedule(1, () => order.push('b'));
    await scheduler.run(() => false);
    assert.deepEqual(order, ['a', 'b', 'c', 'd']);
    assert.equal(scheduler.now, 5);
  });

  it('lets a microtask chain started by an event finish before time moves on', async () => {
    const scheduler = new Scheduler();
    const seen: string[] = [];
    scheduler.schedule(1, () => {
      void (async () => {
        for (let i = 0; i < 100; i++) await Promise.resolve();
        seen.push(`chain done at ${scheduler.now}`);
      })();
    });
    scheduler.schedule(2, () => seen.push(`next event at ${scheduler.now}`));
    await scheduler.run(() => false);
    assert.deepEqual(seen, ['chain done at 1', 'next event at 2']);
  });

  it('drops the timers of an owner that died, and honours clearTimeout', async () => {
    const scheduler = new Scheduler();
    const owner = { alive: true };
    const timers = scheduler.timersFor(owner);
    const fired: string[] = [];
    timers.setTimeout(() => fired.push('dead'), 10);
    const cleared = timers.setTimeout(() => fired.push('cleared'), 5);
    scheduler.schedule(10, () => fired.push('world'));
    timers.clearTimeout(cleared);
    owner.alive = false;
    await scheduler.run(() => false);
    assert.deepEqual(fired, ['world']);
  });

  it('stops at the given time with the clock set to it', async () => {
    const scheduler = new Scheduler();
    const fired: number[] = [];
    scheduler.schedule(10, () => fired.push(10));
    scheduler.schedule(30, () => fired.push(30));
    await scheduler.advance(20);
    assert.deepEqual(fired, [10]);
    assert.equal(scheduler.now, 20);
  });
});

/** A network of plain receivers, for tests of the network alone. */
function testNetwork(seed: number, ids: string[], conditions: ConstructorParameters<typeof Network>[2] = {}) {
  const scheduler = new Scheduler();
  const network = new Network(scheduler, new Rng(seed), conditions);
  const received = new Map<string, string[]>(ids.map((id) => [id, []]));
  const owners = new Map(ids.map((id): [string, Owner] => [id, { alive: true }]));
  const transports = new Map(
    ids.map((id) => [
      id,
      network.attach(id, owners.get(id)!, (from, frame) => received.get(id)!.push(`${from}:${text.decode(frame)}`)),
    ]),
  );
  return { scheduler, network, received, transports, owners };
}

describe('simulated network', () => {
  it('keeps a link in order when reordering is off, despite random latencies', async () => {
    const { scheduler, received, transports } = testNetwork(1, ['a', 'b'], { latencyTail: 30 });
    for (let i = 0; i < 200; i++) transports.get('a')!.send('b', utf8.encode(String(i)));
    await scheduler.run(() => false);
    assert.deepEqual(
      received.get('b'),
      Array.from({ length: 200 }, (_, i) => `a:${i}`),
    );
  });

  it('lets frames overtake each other when reordering is on', async () => {
    const { scheduler, received, transports } = testNetwork(1, ['a', 'b'], { latencyTail: 30, reorder: true });
    for (let i = 0; i < 200; i++) transports.get('a')!.send('b', utf8.encode(String(i)));
    await scheduler.run(() => false);
    const got = received.get('b')!.map((s) => Number(s.slice(2)));
    assert.equal(got.length, 200);
    assert.ok(
      got.some((x, i) => i > 0 && x < got[i - 1]!),
      'some frame arrived before an earlier one',
    );
  });

  it('drops about the configured share of frames', async () => {
    const { scheduler, received, transports, network } = testNetwork(3, ['a', 'b'], { lossRate: 0.3 });
    for (let i = 0; i < 2000; i++) transports.get('a')!.send('b', utf8.encode('x'));
    await scheduler.run(() => false);
    const delivered = received.get('b')!.length;
    assert.ok(delivered > 1300 && delivered < 1500, `${delivered} of 2000 delivered`);
    assert.equal(network.stats.lost + delivered, 2000);
  });

  it('blocks frames across a partition but lets a bridge reach both sides', async () => {
    const { scheduler, received, transports, network } = testNetwork(4, ['a', 'b', 'c']);
    network.partition(
      new Map([
        ['b', 'b'],
        ['c', 'bridge'],
      ]),
    );
    transports.get('a')!.send('b', utf8.encode('1'));
    transports.get('a')!.send('c', utf8.encode('2'));
    transports.get('c')!.send('b', utf8.encode('3'));
    await scheduler.run(() => false);
    network.heal();
    transports.get('a')!.send('b', utf8.encode('4'));
    await scheduler.run(() => false);
    assert.deepEqual(received.get('b'), ['c:3', 'a:4']);
    assert.deepEqual(received.get('c'), ['a:2']);
  });

  it('holds frames for a paused node and keeps its links in order when the pause ends early', async () => {
    const { scheduler, received, transports, network, owners } = testNetwork(7, ['a', 'b'], { latencyTail: 5 });
    owners.get('b')!.pausedUntil = 1000;
    for (let i = 0; i < 5; i++) transports.get('a')!.send('b', utf8.encode(String(i)));
    await scheduler.advance(50);
    assert.deepEqual(received.get('b'), []);
    owners.get('b')!.pausedUntil = scheduler.now;
    for (let i = 5; i < 10; i++) transports.get('a')!.send('b', utf8.encode(String(i)));
    network.flush('b');
    await scheduler.run(() => false);
    assert.deepEqual(
      received.get('b'),
      Array.from({ length: 10 }, (_, i) => `a:${i}`),
    );
  });

  it('delivers a copy of the frame, not the sender buffer', async () => {
    const { scheduler, received, transports } = testNetwork(5, ['a', 'b']);
    const frame = utf8.encode('abc');
    transports.get('a')!.send('b', frame);
    frame[0] = 'z'.charCodeAt(0);
    await scheduler.run(() => false);
    assert.deepEqual(received.get('b'), ['a:abc']);
  });

  it('drops frames in flight to a crashed incarnation and sends nothing from a dead one', async () => {
    const { scheduler, received, transports, network, owners } = testNetwork(6, ['a', 'b', 'c']);
    transports.get('a')!.send('b', utf8.encode('to the old b'));
    network.detach('b');
    network.attach('b', { alive: true }, (from, frame) => received.get('b')!.push(`${from}:${text.decode(frame)}`));
    transports.get('a')!.send('b', utf8.encode('to the new b'));
    owners.get('c')!.alive = false;
    transports.get('c')!.send('b', utf8.encode('from the dead c'));
    await scheduler.run(() => false);
    assert.deepEqual(received.get('b'), ['a:to the new b']);
  });
});

/**
 * A quiet cluster of `size` nodes (N = R = W = 3), a helper that runs the scheduler until a call settles, and one
 * that lets time run until the nodes' stored state has converged (every partition held by its owners).
 */
function quietCluster(size: number, options: { viewDelay?: number; failureDetection?: number } = {}) {
  const scheduler = new Scheduler();
  const network = new Network(scheduler, new Rng(1));
  const cluster = new Cluster({
    scheduler,
    network,
    rng: new Rng(2),
    size,
    node: { n: 3, r: 3, w: 3, antiEntropyInterval: 0 },
    ...options,
  });
  const call = <T>(promise: Promise<T>): Promise<T> => settle(scheduler, promise);
  const settled = async (): Promise<void> => {
    const outcome = await awaitConvergence(cluster, scheduler, 3, { step: 100, cap: 60_000 });
    assert.ok(outcome.converged, outcome.details.join('\n'));
  };
  return { scheduler, cluster, call, settled };
}

const viewOf = (cluster: Cluster, id: string): string[] => cluster.node(id)!.members.map((m) => m.id);

describe('simulated cluster', () => {
  it('keeps what a node stored across its crash and restart', async () => {
    const { cluster, call, settled } = quietCluster(3);
    await settled();
    await call(cluster.node('n0')!.put('k', utf8.encode('v1')));
    await settled();
    for (const id of cluster.ids) await cluster.crash(id);
    assert.equal(cluster.node('n1'), null);
    for (const id of cluster.ids) cluster.restart(id);
    const read = await call(cluster.node('n1')!.get('k', { r: 3 }));
    assert.deepEqual(
      read.values.map((v) => text.decode(v)),
      ['v1'],
    );
    assert.equal(cluster.slot('n1').incarnations, 2);
    await cluster.close();
  });
});

describe('simulated membership', () => {
  it('delivers a view change to every running node, each after its own delay of at most viewDelay', async () => {
    const { scheduler, cluster } = quietCluster(8, { viewDelay: 20 });
    const start = scheduler.now;
    const joiner = cluster.join();
    assert.deepEqual(viewOf(cluster, joiner), cluster.memberIds().sort(), 'the new node starts with the view');
    const arrival = new Map<string, number>();
    for (let t = 0; t <= 20; t++) {
      for (const id of cluster.alive()) {
        if (!arrival.has(id) && viewOf(cluster, id).includes(joiner)) arrival.set(id, scheduler.now - start);
      }
      await scheduler.advance(1);
    }
    assert.equal(arrival.size, 9);
    assert.ok(new Set(arrival.values()).size > 2, `arrivals ${JSON.stringify([...arrival])} are not spread`);
    await cluster.close();
  });

  it('keeps a crashed node in the view and drops a failed one only after the detection delay', async () => {
    const { scheduler, cluster } = quietCluster(5, { failureDetection: 3000 });
    await cluster.crash('n1');
    await cluster.fail('n2');
    await scheduler.advance(2990);
    assert.deepEqual(cluster.memberIds(), ['n0', 'n1', 'n2', 'n3', 'n4']);
    await scheduler.advance(10 + 20);
    assert.deepEqual(cluster.memberIds(), ['n0', 'n1', 'n3', 'n4']);
    assert.deepEqual(viewOf(cluster, 'n0'), ['n0', 'n1', 'n3', 'n4']);
    assert.deepEqual(cluster.failed(), ['n2']);
    await cluster.close();
  });

  it('brings a failed node back into the view with what it stored when it rejoins', async () => {
    const { scheduler, cluster, call, settled } = quietCluster(4);
    await settled();
    await call(cluster.node('n0')!.put('k', utf8.encode('v1')));
    const owner = cluster.preferenceList(utf8.encode('k'), 3).find((id) => id !== 'n0')!;
    await cluster.fail(owner);
    await scheduler.advance(cluster.failureDetection + 100);
    assert.equal(cluster.memberIds().includes(owner), false);
    cluster.rejoin(owner);
    assert.deepEqual(viewOf(cluster, owner), ['n0', 'n1', 'n2', 'n3']);
    assert.deepEqual(cluster.memberIds().sort(), ['n0', 'n1', 'n2', 'n3']);
    const own = await cluster.slot(owner).storage!.get(utf8.encode('k'));
    assert.deepEqual(
      own.map((v) => text.decode(v.value!)),
      ['v1'],
    );
    await cluster.close();
  });

  it('never runs a node again once it has left, and removes it from the view at once', async () => {
    const { cluster } = quietCluster(5);
    await cluster.leave('n3');
    assert.deepEqual(cluster.memberIds(), ['n0', 'n1', 'n2', 'n4']);
    assert.equal(cluster.node('n3'), null);
    assert.throws(() => cluster.restart('n3'), RangeError);
    assert.deepEqual(cluster.crashed(), []);
    assert.equal(cluster.available().includes('n3'), false);
    await cluster.close();
  });

  it('gives a node that restarts the view as it is now', async () => {
    const { cluster } = quietCluster(4);
    await cluster.crash('n1');
    const joiner = cluster.join();
    cluster.restart('n1');
    assert.deepEqual(viewOf(cluster, 'n1'), ['n0', 'n1', 'n2', 'n3', joiner].sort());
    await cluster.close();
  });

  it('derives the final values of a key from what its replicas store, tombstones left out', async () => {
    const { cluster, call, settled } = quietCluster(3);
    await settled();
    await call(cluster.node('n0')!.put('k', utf8.encode('a'), { w: 3 }));
    await call(cluster.node('n1')!.put('k', utf8.encode('b'), { w: 3 }));
    const both = await storedFinal(cluster, 'k', 3);
    assert.deepEqual(both.values, ['a', 'b']);
    assert.deepEqual(
      both.replicas.map((r) => r.versions.length),
      [2, 2, 2],
    );
    const read = await call(cluster.node('n2')!.get('k', { r: 3 }));
    await call(cluster.node('n2')!.delete('k', { context: read.context, w: 3 }));
    const gone = await storedFinal(cluster, 'k', 3);
    assert.deepEqual(gone.values, []);
    assert.ok(gone.replicas.every((r) => r.versions.length > 0 && r.versions.every((v) => v.value === null)));
    await cluster.close();
  });
});

describe('determinism', () => {
  it('replays a faulty run exactly from its seed', async () => {
    const options = { seed: 99, nodes: 5, ops: 600, faults: ['partition', 'crash', 'loss', 'reorder'] as const };
    const runs = [await runSimulation(options), await runSimulation(options)];
    const [a, b] = runs.map((r) => ({
      writes: JSON.stringify(r.verdict),
      faults: JSON.stringify(r.faultLog),
      network: r.network,
      events: r.events,
      simulatedMs: r.simulatedMs,
      metrics: r.metrics,
    }));
    assert.deepEqual(a, b);
    assert.ok(runs[0]!.faultLog.length > 0);
  });

  it('replays a run with joins, leaves and failures exactly from its seed, convergence time included', async () => {
    const options = { seed: 98, nodes: 6, ops: 600, faults: ['join', 'leave', 'fail', 'partition'] as const };
    const runs = [await runSimulation(options), await runSimulation(options)];
    const [a, b] = runs.map((r) => ({
      writes: JSON.stringify(r.verdict),
      faults: JSON.stringify(r.faultLog),
      events: r.events,
      convergenceMs: r.convergenceMs,
      members: r.members,
      metrics: r.metrics,
    }));
    assert.deepEqual(a, b);
    assert.ok(runs[0]!.faultLog.some((e) => e.kind === 'join' || e.kind === 'leave' || e.kind === 'fail'));
  });
});

describe('client values', () => {
  it('names the write of a value by its leading id, padded or not', () => {
    assert.equal(valueId(writeValue('c3:17')), 'c3:17');
    const big = writeValue('o0:4', 300_000);
    assert.equal(big.byteLength, 300_000);
    assert.equal(valueId(big), 'o0:4');
  });
});

describe('storage witness', () => {
  /** A quiet three-node cluster whose storage the witness watches. */
  function watched() {
    const scheduler = new Scheduler();
    const network = new Network(scheduler, new Rng(1));
    const witness = new Witness();
    const cluster = new Cluster({
      scheduler,
      network,
      rng: new Rng(2),
      size: 3,
      witness,
      node: { n: 3, r: 2, w: 2, antiEntropyInterval: 0 },
    });
    const call = <T>(promise: Promise<T>): Promise<T> => settle(scheduler, promise);
    const bounds = { blindKeys: new Set(['hot']), maxSiblings: 2, maxKeyBytes: 1 << 20 };
    return { cluster, witness, call, bounds };
  }
  const version = (
    node: string,
    counter: number,
    value: string,
    context: { node: string; counter: number }[] = [],
  ) => ({
    dot: { node, counter, timestamp: 1 },
    context: context.map((e) => ({ ...e, timestamp: 1 })),
    value: utf8.encode(value),
  });

  it('sees every dot drawn and every value stored, and finds nothing wrong in honest writes', async () => {
    const { cluster, witness, call, bounds } = watched();
    const first = await call(cluster.node('n0')!.put('k', utf8.encode('a')));
    await call(cluster.node('n1')!.put('k', utf8.encode('b'), { context: first.context }));
    const drawn = witness.issued('n0') + witness.issued('n1') + witness.issued('n2');
    assert.equal(drawn, 2);
    assert.ok(witness.everStored('k', 'a') && witness.everStored('k', 'b'));
    assert.equal(witness.everStored('k', 'c'), false);
    assert.equal(witness.repeatedCount, 0);
    const found = await audit(cluster, witness, bounds);
    assert.deepEqual([found.poisoned, found.overBound], [[], []]);
    await cluster.close();
  });

  it('reports a dot stored with two values, a dot never drawn, and a context naming a version never issued', async () => {
    const { cluster, witness, bounds } = watched();
    const storage = cluster.slot('n0').storage!;
    const key = utf8.encode('k');
    const partition = cluster.ring.partitionOf(key);
    await storage.apply(key, partition, [version('n1', 4, 'x', [{ node: 'n2', counter: 9 }])]);
    await cluster.slot('n1').storage!.apply(key, partition, [version('n1', 4, 'y')]);
    assert.deepEqual(
      witness.repeated.map((r) => [r.dot, r.writes]),
      [['n1:4', ['k=x', 'k=y']]],
    );
    const found = await audit(cluster, witness, bounds);
    assert.ok(found.poisoned.some((line) => /n1:4, a dot that n1 never drew/.test(line)));
    assert.ok(found.poisoned.some((line) => /written over n2:9, a version never issued/.test(line)));
    await cluster.close();
  });

  it('reports a node whose counter ran past its own writes', async () => {
    const { cluster, witness, bounds } = watched();
    // A storage engine that draws dot 5 on the node's first local write, as one raised by a context would.
    const engine = {
      write: async () => ({ version: version('n0', 5, 'a'), siblings: [version('n0', 5, 'a')] }),
    } as unknown as MemoryStorage;
    await witness.wrap('n0', engine).write(utf8.encode('k'), 0, {
      node: 'n0',
      timestamp: 1,
      context: [],
      value: utf8.encode('a'),
      ifMatch: false,
    });
    assert.equal(witness.issued('n0'), 5);
    const found = await audit(cluster, witness, bounds);
    assert.deepEqual(found.poisoned, ['n0 drew dot n0:5 after only 1 local writes']);
    await cluster.close();
  });

  it('reports a blind-only key holding more siblings of one coordinator than the bound', async () => {
    const { cluster, witness, bounds } = watched();
    const key = utf8.encode('hot');
    const partition = cluster.ring.partitionOf(key);
    const storage = cluster.slot('n2').storage!;
    await storage.apply(key, partition, [version('n0', 1, 'a'), version('n0', 2, 'b'), version('n1', 1, 'c')]);
    assert.deepEqual((await audit(cluster, witness, bounds)).overBound, []);
    await storage.apply(key, partition, [version('n0', 3, 'd')]);
    const found = await audit(cluster, witness, bounds);
    assert.deepEqual(found.overBound, ['n2 stores 3 siblings of hot with dots of n0, over 2']);
    await cluster.close();
  });
});
