/**
 * Bounds at write time, as a client of a node sees them, on small simulated clusters of real nodes: puts that would
 * leave too many siblings or too many bytes of a key are refused with their own errors and store nothing, the key
 * stays readable and resolvable with its context; contexts that name versions the cluster never issued are refused;
 * and partition sync moves a key beyond the wire limits in parts, or withholds what no peer can decode, without
 * stopping the rest of the partition.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode as msgpackEncode } from '@msgpack/msgpack';
import { TooManySiblingsError, errorFromCode, hasErrorCode } from '../../worker/errors.ts';
import { decodeContext, encodeContext } from '../../worker/wire/context.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { MAX_COUNTER, type VClock, counterOf, setEntry } from '../../worker/versions/vclock.ts';
import { type Version, clockOf, contextOf, createVersion } from '../../worker/versions/version.ts';
import type { Cluster, SimNodeOptions } from '../sim/cluster.ts';
import type { NodeOptions } from '../../worker/node.ts';
import { N, Q, T, type World, dots, world } from './sync-world.ts';
import { rejection, text, values } from './cluster-world.ts';
import { Peers, type Reply } from '../../worker/transport/peers.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import { Scheduler } from '../sim/scheduler.ts';
import { carryingTimeout } from '../../worker/wire/fit.ts';

/** Node options beyond the simulation's own, which the cluster passes on to every node as they are. */
function options(extra: Partial<NodeOptions>): Partial<SimNodeOptions> {
  return extra as Partial<SimNodeOptions>;
}

function owners(w: World, key: string): string[] {
  return [...w.cluster.preferenceList(text.encode(key), N)];
}

/** A context string as a client could hand one in: the base64url of any MessagePack clock. */
function rawContext(clock: { node: string; counter: number; timestamp: number }[]): string {
  return Buffer.from(msgpackEncode(clock)).toString('base64url');
}

describe('bounds at write time', () => {
  it('refuses blind puts past maxSiblings with ERR_TOO_MANY_SIBLINGS; the key stays readable and one put with its context resolves it', async () => {
    const w = await world(3);
    const results: string[] = [];
    for (let i = 0; i < 40; i++) {
      const node = w.node(`n${i % 3}`);
      try {
        await w.settle(node.put('hot', text.encode(`v${i}`)));
        results.push('ok');
      } catch (error) {
        assert.ok(hasErrorCode(error, 'ERR_TOO_MANY_SIBLINGS'), String(error));
        assert.match(String((error as Error).message), /limit of 32 \(maxSiblings\).*context/);
        results.push('refused');
      }
    }
    assert.deepEqual(results, [...Array<string>(32).fill('ok'), ...Array<string>(8).fill('refused')]);
    const read = await w.settle(w.node('n1').get('hot', { r: 3 }));
    assert.equal(read.values.length, 32);
    const put = await w.settle(w.node('n2').put('hot', text.encode('merged'), { context: read.context, w: 3 }));
    assert.ok(put.context);
    assert.deepEqual(values(await w.settle(w.node('n0').get('hot'))), ['merged']);
    // Once resolved, blind puts are accepted again.
    await w.settle(w.node('n0').put('hot', text.encode('again')));
    assert.deepEqual(values(await w.settle(w.node('n1').get('hot'))), ['again', 'merged']);
    assert.equal(w.cluster.metricTotals()['putsOverBounds'], 8);
  });

  it('refuses blind puts past maxSiblingSetBytes with ERR_TOO_LARGE, storing nothing; the key stays readable', async () => {
    const w = await world(3);
    const big = (i: number): Uint8Array => new Uint8Array(600 * 1024).fill(i);
    const outcomes: string[] = [];
    for (let i = 0; i < 8; i++) {
      try {
        await w.settle(w.node(`n${i % 3}`).put('large', big(i)));
        outcomes.push('ok');
      } catch (error) {
        assert.ok(hasErrorCode(error, 'ERR_TOO_LARGE'), String(error));
        assert.match(String((error as Error).message), /maxSiblingSetBytes/);
        outcomes.push('refused');
      }
    }
    // 6 × 600 KiB fit 4 MiB; a seventh would not.
    assert.deepEqual(outcomes, ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'refused', 'refused']);
    const read = await w.settle(w.node('n2').get('large', { r: 3 }));
    assert.equal(read.values.length, 6);
    await w.settle(w.node('n0').put('large', text.encode('small'), { context: read.context }));
    assert.deepEqual(values(await w.settle(w.node('n1').get('large'))), ['small']);
  });

  it('rebuilds ERR_TOO_MANY_SIBLINGS with its counts on the far side of a boundary', () => {
    const error = errorFromCode('ERR_TOO_MANY_SIBLINGS', new TooManySiblingsError(33, 32).message);
    assert.ok(error instanceof TooManySiblingsError);
    assert.equal(error.count, 33);
    assert.equal(error.limit, 32);
  });

  it('keeps its bounds as options, and refuses bad ones', async () => {
    const w = await world(3, options({ maxSiblings: 2, maxSiblingSetBytes: 100_000 }));
    await w.settle(w.node('n0').put('k', text.encode('a')));
    await w.settle(w.node('n1').put('k', text.encode('b')));
    const error = await rejection(w.settle(w.node('n2').put('k', text.encode('c'))));
    assert.equal(error.code, 'ERR_TOO_MANY_SIBLINGS');
    const tooBig = await rejection(w.settle(w.node('n2').put('other', new Uint8Array(200_000))));
    assert.equal(tooBig.code, 'ERR_TOO_LARGE');
    for (const bad of [{ maxSiblings: 0 }, { maxSiblings: 1.5 }, { maxSiblingSetBytes: -1 }]) {
      await assert.rejects(
        world(1, options(bad)),
        (e: unknown) => hasErrorCode(e, 'ERR_INVALID_ARGUMENT'),
        JSON.stringify(bad),
      );
    }
  });
});

describe('contexts that name versions never issued', () => {
  it('refuses a context with a counter of 2^53 - 1 or 1e15 with ERR_INVALID_ARGUMENT', async () => {
    const w = await world(3);
    for (const counter of [2 ** 53 - 1, 1e15, MAX_COUNTER + 1]) {
      const context = rawContext([{ node: 'n1', counter, timestamp: 1 }]);
      const error = await rejection(w.settle(w.node('n0').put('k', text.encode('x'), { context })));
      assert.equal(error.code, 'ERR_INVALID_ARGUMENT', String(counter));
    }
    assert.deepEqual((await w.settle(w.node('n0').get('k'))).values, []);
  });

  it("refuses a context naming the coordinator's own future counter, and stores nothing", async () => {
    const w = await world(4);
    const [first] = owners(w, 'own');
    const outsider = w.cluster.ids.find((id) => !owners(w, 'own').includes(id))!;
    const context = encodeContext([{ node: first!, counter: 1000, timestamp: 1 }]);
    // Coordinated by the named node itself, and forwarded to it by a node outside the key's preference list.
    for (const via of [first!, outsider]) {
      const error = await rejection(w.settle(w.node(via).put('own', text.encode('forged'), { context })));
      assert.equal(error.code, 'ERR_INVALID_ARGUMENT', via);
      assert.match(String(error.message), /names version 1000 of node/);
    }
    assert.deepEqual((await w.settle(w.node(first!).get('own', { r: 3 }))).values, []);
    for (const id of w.cluster.ids) assert.deepEqual(await dots(w.cluster, id, 'own'), []);
  });

  it("refuses a context naming another node's version that no replica of the key has seen", async () => {
    const w = await world(3);
    await w.settle(w.node('n1').put('k', text.encode('real')));
    const [coordinator] = owners(w, 'k');
    const other = w.cluster.ids.find((id) => id !== coordinator)!;
    const context = encodeContext([{ node: other, counter: 5000, timestamp: 1 }]);
    const error = await rejection(w.settle(w.node(coordinator!).put('k', text.encode('forged'), { context })));
    assert.equal(error.code, 'ERR_INVALID_ARGUMENT');
    assert.deepEqual(values(await w.settle(w.node('n2').get('k', { r: 3 }))), ['real']);
  });

  it('fails with ERR_QUORUM, storing nothing, when the node a context names cannot be asked, and refuses once it can', async () => {
    const w = await world(4);
    const [coordinator] = owners(w, 'far');
    const outsider = w.cluster.ids.find((id) => !owners(w, 'far').includes(id))!;
    const context = encodeContext([{ node: outsider, counter: 5000, timestamp: 1 }]);
    w.network.partition(new Map([[outsider, 'b' as const]]));
    const unreachable = await rejection(w.settle(w.node(coordinator!).put('far', text.encode('x'), { context })));
    assert.equal(unreachable.code, 'ERR_QUORUM');
    w.network.heal();
    await w.settle(w.scheduler.sleep(1000));
    const refused = await rejection(w.settle(w.node(coordinator!).put('far', text.encode('x'), { context })));
    assert.equal(refused.code, 'ERR_INVALID_ARGUMENT');
    for (const id of w.cluster.ids) assert.deepEqual(await dots(w.cluster, id, 'far'), []);
  });

  it('accepts a context naming a version only other replicas hold: the coordinator asks R replicas first', async () => {
    const w = await world(3);
    const [coordinator, b, c] = owners(w, 'lag');
    // A version of b's that the coordinator has not received yet (as after a write it missed).
    const version: Version = { dot: { node: b!, counter: 1, timestamp: 1 }, context: [], value: text.encode('b1') };
    const partition = w.cluster.ring.partitionOf(text.encode('lag'));
    for (const id of [b!, c!]) await w.cluster.slot(id).data.reopen().apply(text.encode('lag'), partition, [version]);
    const context = encodeContext([{ node: b!, counter: 1, timestamp: 1 }]);
    await w.settle(w.node(coordinator!).put('lag', text.encode('over'), { context, w: 3 }));
    assert.deepEqual(values(await w.settle(w.node(c!).get('lag', { r: 3 }))), ['over']);
  });

  it("accepts an honest context whose oldest entry the key's clocks have pruned since, its node gone, leaving the entry out", async () => {
    const w = await world(3);
    const key = text.encode('pruned');
    const partition = w.cluster.ring.partitionOf(key);
    // A client read the key when its clock named nine nodes, the oldest entry of `gone`, a member that has left since.
    const read: VClock = [
      { node: 'gone', counter: 58, timestamp: 100 },
      ...Array.from({ length: 8 }, (_, i) => ({ node: `x${i + 1}`, counter: 3, timestamp: 200 + i })),
    ];
    // Two more nodes wrote the key: the tenth entry filled the clock, and the next read's context pruned the oldest.
    const tenth = createVersion('x9', 1, 1000, read, text.encode('x9'));
    const eleventh = createVersion('y1', 1, 1100, contextOf([tenth]), text.encode('y1'));
    assert.equal(counterOf(clockOf(eleventh), 'gone'), 0);
    for (const id of w.cluster.ids) await w.cluster.slot(id).data.reopen().apply(key, partition, [eleventh]);
    // The client's put, later, is honest: it is accepted, a sibling of the two writes it did not see.
    const put = await w.settle(w.node('n0').put('pruned', text.encode('late'), { context: encodeContext(read) }));
    assert.deepEqual(values(await w.settle(w.node('n1').get('pruned', { r: 3 }))), ['late', 'y1']);
    // What nothing can vouch for any longer is left out: the new version supersedes nothing of `gone`'s.
    assert.equal(counterOf(decodeContext(put.context), 'gone'), 0);
    assert.equal(w.cluster.metricTotals()['contextsRefused'] ?? 0, 0);
    // Entries newer than the clocks kept are still refused on that key: a ghost's, or one of `gone`'s made recent.
    for (const forged of [
      { node: 'ghost', counter: 5, timestamp: 2000 },
      { node: 'gone', counter: 58, timestamp: 2000 },
    ]) {
      const context = encodeContext(setEntry(read, forged));
      const error = await rejection(w.settle(w.node('n0').put('pruned', text.encode('forged'), { context })));
      assert.equal(error.code, 'ERR_INVALID_ARGUMENT', forged.node);
      assert.match(String(error.message), new RegExp(`names version ${forged.counter} of node ${forged.node}`));
    }
    for (const id of w.cluster.ids) assert.equal((await dots(w.cluster, id, 'pruned')).length, 2, id);
  });

  it('after refused forged contexts, 100 put/get rounds over the nodes read back exactly what was put', async () => {
    const w = await world(3);
    const keys = ['a', 'b', 'c', 'd'];
    const forged = [
      rawContext([{ node: 'n0', counter: 2 ** 53 - 1, timestamp: 1 }]),
      rawContext([{ node: 'n1', counter: 1e15, timestamp: 1 }]),
      encodeContext([{ node: 'n2', counter: 2 ** 47, timestamp: 1 }]),
      encodeContext([{ node: 'n0', counter: 100, timestamp: 1 }]),
    ];
    for (const key of keys) {
      for (const context of forged) {
        for (const id of w.cluster.ids) {
          const error = await rejection(w.settle(w.node(id).put(key, text.encode('forged'), { context })));
          assert.equal(error.code, 'ERR_INVALID_ARGUMENT');
        }
      }
    }
    const contexts = new Map<string, string>();
    for (let i = 0; i < 100; i++) {
      const key = keys[i % keys.length]!;
      const value = `${key}:${i}`;
      const context = contexts.get(key);
      await w.settle(w.node(`n${i % 3}`).put(key, text.encode(value), context === undefined ? {} : { context }));
      const read = await w.settle(w.node(`n${(i + 1) % 3}`).get(key));
      assert.deepEqual(values(read), [value], `round ${i}`);
      contexts.set(key, read.context);
    }
    for (const key of keys) {
      for (const id of w.cluster.ids) {
        const stored = await dots(w.cluster, id, key);
        assert.ok(stored.length <= 1, `${id} holds ${stored.join(' ')} of ${key}`);
      }
    }
    assert.equal(w.cluster.metricTotals()['contextsRefused'], keys.length * 2 * 3);
  });
});

describe('partition sync beyond the wire limits', () => {
  /** The ring the cluster will have once `extra` joins. */
  function ringWith(cluster: Cluster, extra: string): Ring {
    return new Ring([...cluster.members, { id: extra, domain: `d${cluster.ids.length}` }], {
      partitions: Q,
      tokensPerNode: T,
    });
  }

  function keyIn(ring: Ring, p: number, prefix: string, skip = 0): string {
    for (let i = 0, found = 0; ; i++) {
      const key = `${prefix}-${i}`;
      if (ring.partitionOf(text.encode(key)) === p && found++ === skip) return key;
    }
  }

  /**
   * Stores `versions` of `key` straight into the data of `holders`, as an older release or larger limits could have
   * left them, and restarts those nodes so that their Merkle trees are built from what they store.
   */
  async function plant(w: World, holders: readonly string[], key: string, p: number, versions: Version[]) {
    for (const id of holders) {
      await w.cluster.crash(id);
      await w.cluster.slot(id).data.reopen().apply(text.encode(key), p, versions);
      w.cluster.restart(id);
    }
    await w.until(() => holders.every((id) => w.node(id).fetchingCount() === 0), 'restarted');
  }

  /** A partition the joining node will own, and the nodes holding it now. */
  function setting(w: World, extra: string): { p: number; holders: string[] } {
    const future = ringWith(w.cluster, extra);
    const p = Array.from({ length: Q }, (_, i) => i).find((i) => future.preferenceList(i, N).includes(extra))!;
    return { p, holders: [...w.cluster.ring.preferenceList(p, N)] };
  }

  it('moves a key with more siblings than one message may carry in parts, and the join finishes', async () => {
    // Wire limits of 16 siblings per message (bound 1 × WIRE_HEADROOM): a set merged past them must still move.
    const w = await world(3, options({ maxSiblings: 1, limits: { maxSiblings: 4 } }));
    const { p, holders } = setting(w, 'n3');
    const future = ringWith(w.cluster, 'n3');
    const wide = keyIn(future, p, 'wide');
    const plain = keyIn(future, p, 'plain');
    const versions: Version[] = Array.from({ length: 40 }, (_, i) => ({
      dot: { node: holders[i % holders.length]!, counter: i + 1, timestamp: i },
      context: [],
      value: text.encode(`s${i}`),
    }));
    await w.settle(w.node(holders[0]!).put(plain, text.encode('plain'), { w: N }));
    await plant(w, holders, wide, p, versions);
    const joined = w.cluster.join('n3');
    await w.until(() => w.node(joined).fetchingCount() === 0, 'n3 fetched');
    assert.equal((await dots(w.cluster, joined, wide)).length, 40);
    assert.deepEqual(await dots(w.cluster, joined, wide), await dots(w.cluster, holders[0]!, wide));
    assert.equal((await dots(w.cluster, joined, plain)).length, 1);
    assert.ok(w.cluster.metricTotals()['syncKeysSplit']! >= 1);
  });

  it('withholds a version no peer can decode, and moves the rest of the partition', async () => {
    const w = await world(3);
    const { p, holders } = setting(w, 'n3');
    const future = ringWith(w.cluster, 'n3');
    const poisoned = keyIn(future, p, 'poisoned');
    const plain = keyIn(future, p, 'plain');
    // Stored before counters had a bound: a counter of 2^53 - 1 that every decoder now refuses, beside a good one.
    const versions: Version[] = [
      { dot: { node: 'old', counter: 2 ** 53 - 1, timestamp: 1 }, context: [], value: text.encode('old') },
      { dot: { node: holders[1]!, counter: 1, timestamp: 1 }, context: [], value: text.encode('good') },
    ];
    await w.settle(w.node(holders[0]!).put(plain, text.encode('plain'), { w: N }));
    await plant(w, holders, poisoned, p, versions);
    const joined = w.cluster.join('n3');
    await w.until(() => w.node(joined).fetchingCount() === 0, 'n3 fetched');
    assert.deepEqual(await dots(w.cluster, joined, poisoned), [`${holders[1]!}:1`]);
    assert.equal((await dots(w.cluster, joined, plain)).length, 1);
    assert.ok(w.cluster.metricTotals()['syncKeysWithheld']! >= 1);
    // What is withheld stays where it is.
    assert.equal((await dots(w.cluster, holders[0]!, poisoned)).length, 2);
  });
});

describe('timeouts of large messages', () => {
  function peersOn(scheduler: Scheduler): { peers: Peers; sent: PeerMessage[] } {
    const sent: PeerMessage[] = [];
    const peers = new Peers({
      self: 'a',
      clock: { now: () => scheduler.now },
      timers: scheduler.timersFor({ alive: true }),
      random: () => 0.5,
      suspicionMs: 1000,
      send: (_to, message) => sent.push(message),
    });
    return { peers, sent };
  }

  function ask(peers: Peers): { outcome: Reply | null | 'waiting' } {
    const state: { outcome: Reply | null | 'waiting' } = { outcome: 'waiting' };
    peers.send('b', { type: 'sync-tree', partition: 0, level: 0, indexes: [0] }, 100, {
      onReply: (reply) => (state.outcome = reply),
    });
    return state;
  }

  it('gives a request more time while its peer is still sending a large message, and ends it once the peer stops', async () => {
    const scheduler = new Scheduler();
    const { peers, sent } = peersOn(scheduler);
    const answered = ask(peers);
    for (let t = 0; t < 10; t++) {
      await scheduler.advance(60);
      peers.progress('b');
    }
    assert.equal(answered.outcome, 'waiting', 'timed out while chunks kept arriving');
    const reply: Reply = {
      type: 'sync-tree-reply',
      from: 'b',
      requestId: sent[0]!.requestId,
      held: true,
      hashes: new Uint8Array(8),
    };
    assert.ok(peers.settle(reply));
    assert.equal(answered.outcome, reply);

    const stalled = ask(peers);
    await scheduler.advance(60);
    peers.progress('b');
    await scheduler.advance(250);
    assert.equal(stalled.outcome, null, 'a peer that stopped sending times out within two timeouts');
  });

  it('puts a deadline off a bounded number of times', async () => {
    const scheduler = new Scheduler();
    const { peers } = peersOn(scheduler);
    const endless = ask(peers);
    for (let t = 0; t < 100 && endless.outcome === 'waiting'; t++) {
      await scheduler.advance(50);
      peers.progress('b');
    }
    assert.equal(endless.outcome, null);
    assert.ok(scheduler.now <= 16 * 100 + 100, `timed out at ${scheduler.now}`);
  });

  it('allows a replicate of a large sibling set the time to travel at the floor rate', () => {
    const small = [{ dot: { node: 'a', counter: 1, timestamp: 1 }, context: [], value: new Uint8Array(100) }];
    assert.equal(carryingTimeout(500, small), 500);
    const large = [{ dot: { node: 'a', counter: 1, timestamp: 1 }, context: [], value: new Uint8Array(4 << 20) }];
    assert.equal(carryingTimeout(500, large), 500 + 4096);
  });
});
