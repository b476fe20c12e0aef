/**
 * The node's behaviour as a client sees it, on small simulated clusters of real nodes (virtual time, a quiet
 * network): quorums, siblings, contexts, conditional puts, deletes, fallbacks with hints, read repair, validation.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage } from '../../worker/wire/codec.ts';
import { STRANGER_HOLD_MS } from '../../worker/membership/strangers.ts';
import { hasErrorCode } from '../../worker/errors.ts';
import type { NodeOptions } from '../../worker/node.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';
import type { NetworkConditions } from '../sim/network.ts';
import {
  type World,
  placement,
  rejection,
  text,
  unsettledWorld as clusterWorld,
  utf8,
  values,
  world as settledWorld,
} from './cluster-world.ts';

/** What these tests vary of a node; every other option is the node's own default. */
type Tunables = Partial<Pick<NodeOptions, 'n' | 'r' | 'w' | 'requestTimeout' | 'hintInterval'>>;

/** Requests time out after 100 virtual ms unless a test says otherwise: a fallback takes over quickly. */
const REQUEST_TIMEOUT = 100;

/** A world of `size` nodes, seed 1, that all hold their partitions, spread over `domains` failure domains. */
function world(size: number, node: Tunables = {}, domains?: number): Promise<World> {
  return settledWorld(size, { node: { requestTimeout: REQUEST_TIMEOUT, ...node }, domains });
}

/** A world of `size` nodes, seed 1, as it starts, on a network with `conditions`. */
function unsettledWorld(size: number, node: Tunables = {}, conditions: Partial<NetworkConditions> = {}): World {
  return clusterWorld(size, { node: { requestTimeout: REQUEST_TIMEOUT, ...node }, conditions });
}

/** `count` keys named `${prefix}-…` whose preference lists (N=3) hold every node of `key`'s. */
function sameOwners(w: World, key: string, count: number, prefix = 'same'): string[] {
  const owners = new Set(w.cluster.preferenceList(text.encode(key), 3));
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const candidate = `${prefix}-${i}`;
    if (w.cluster.preferenceList(text.encode(candidate), 3).every((id) => owners.has(id))) out.push(candidate);
  }
  return out;
}

/** A `replicate` frame of `versions` of `key` from `from`, as a coordinator (or a member posing as one) sends it. */
function replicateFrame(
  from: string,
  requestId: number,
  key: string,
  versions: Version[],
  fresh: number | null = null,
) {
  return encodeMessage({
    type: 'replicate',
    from,
    requestId,
    key: text.encode(key),
    versions,
    hintFor: null,
    durable: false,
    fresh,
  });
}

describe('DynamoNode', () => {
  it('reads on one node a value put through another', async () => {
    const w = await world(5);
    await w.settle(w.node('n0').put('k', text.encode('v1')));
    const read = await w.settle(w.node('n4').get('k'));
    assert.deepEqual(values(read), ['v1']);
  });

  it('returns an empty value list and a context for an absent key', async () => {
    const w = await world(3);
    const read = await w.settle(w.node('n1').get('nothing-here'));
    assert.deepEqual(read.values, []);
    assert.equal(typeof read.context, 'string');
  });

  it('returns both siblings after concurrent puts with the same context', async () => {
    const w = await world(5);
    const { owners } = placement(w, 'k');
    const first = await w.settle(w.node(owners[0]!).put('k', text.encode('base')));
    await w.settle(
      Promise.all([
        w.node(owners[0]!).put('k', text.encode('left'), { context: first.context }),
        w.node(owners[1]!).put('k', text.encode('right'), { context: first.context }),
      ]),
    );
    const read = await w.settle(w.node(owners[2]!).get('k', { r: 3 }));
    assert.deepEqual(values(read), ['left', 'right']);
  });

  it('keeps two blind puts coordinated by the same node as siblings', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('one')));
    await w.settle(w.node('n0').put('k', text.encode('two')));
    const read = await w.settle(w.node('n1').get('k'));
    assert.deepEqual(values(read), ['one', 'two']);
  });

  it('leaves one value after a put with the merged context of the siblings', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('one')));
    await w.settle(w.node('n1').put('k', text.encode('two')));
    const read = await w.settle(w.node('n2').get('k', { r: 3 }));
    assert.equal(read.values.length, 2);
    await w.settle(w.node('n2').put('k', text.encode('merged'), { context: read.context }));
    const after = await w.settle(w.node('n0').get('k', { r: 3 }));
    assert.deepEqual(values(after), ['merged']);
  });

  it('replaces the value read when a put carries the read context', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('old')));
    const read = await w.settle(w.node('n1').get('k'));
    await w.settle(w.node('n1').put('k', text.encode('new'), { context: read.context }));
    assert.deepEqual(values(await w.settle(w.node('n2').get('k', { r: 3 }))), ['new']);
  });

  it('hides a deleted key from reads', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('doomed')));
    const read = await w.settle(w.node('n0').get('k'));
    await w.settle(w.node('n1').delete('k', { context: read.context }));
    assert.deepEqual((await w.settle(w.node('n2').get('k', { r: 3 }))).values, []);
  });

  it('fails a conditional put over a stale context with ERR_STALE_CONTEXT and stores nothing', async () => {
    const w = await world(3);
    const first = await w.settle(w.node('n0').put('k', text.encode('first')));
    const second = await w.settle(w.node('n0').put('k', text.encode('second'), { context: first.context }));
    assert.ok(second.context);
    const error = await rejection(
      w.settle(w.node('n1').put('k', text.encode('stale'), { context: first.context, ifMatch: true })),
    );
    assert.ok(hasErrorCode(error, 'ERR_STALE_CONTEXT'), String(error));
    assert.deepEqual(values(await w.settle(w.node('n2').get('k', { r: 3 }))), ['second']);
  });

  it('accepts a conditional put over the context of the latest read', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('first')));
    const read = await w.settle(w.node('n1').get('k', { r: 3 }));
    await w.settle(w.node('n1').put('k', text.encode('next'), { context: read.context, ifMatch: true }));
    assert.deepEqual(values(await w.settle(w.node('n2').get('k', { r: 3 }))), ['next']);
  });

  it('creates an absent key with a conditional put and no context', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('fresh', text.encode('created'), { ifMatch: true }));
    assert.deepEqual(values(await w.settle(w.node('n1').get('fresh'))), ['created']);
  });

  it('answers a put with a receipt naming the coordinator and W acknowledging replicas', async () => {
    const w = await world(5);
    const { owners } = placement(w, 'k');
    const result = await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 3 }));
    assert.equal(result.receipt.coordinator, owners[0]);
    assert.deepEqual([...result.receipt.acknowledged].sort(), [...owners].sort());
    assert.deepEqual(result.receipt.fallbacks, []);
  });

  it('acknowledges a put only once replicas in two failure domains hold it, when its owners span two', async () => {
    const w = await world(4, {}, 2);
    const domainOf = (id: string) => w.cluster.members.find((m) => m.id === id)!.domain;
    for (let i = 0; i < 30; i++) {
      const key = `spread-${i}`;
      const { owners } = placement(w, key);
      const result = await w.settle(w.node(owners[0]!).put(key, text.encode('v'), { w: 2 }));
      assert.equal(
        new Set(result.receipt.acknowledged.map(domainOf)).size,
        2,
        `${key}: ${result.receipt.acknowledged}`,
      );
    }
  });

  it('asks a busy owner of the failure domain a put lacks again rather than a fallback of a domain it has', async () => {
    const w = await world(4, {}, 2);
    const domainOf = (id: string) => w.cluster.members.find((m) => m.id === id)!.domain;
    const { owners } = placement(w, 'k');
    const other = w.cluster.ids.filter((id) => domainOf(id) !== domainOf(owners[0]!));
    // Heard from a moment ago (a read asks every owner), then busy for two and a half request timeouts (100 ms),
    // not failed: the view keeps them alive.
    await w.settle(w.node(owners[0]!).get('k', { r: 3 }));
    for (const id of other) w.cluster.pause(id, 250);
    const result = await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 2 }));
    assert.ok(
      result.receipt.acknowledged.some((id) => other.includes(id)),
      `${result.receipt.acknowledged}`,
    );
    assert.deepEqual(result.receipt.hints, []);
  });

  it('gives up at once on the owner of the failure domain a put lacks when the view has it as suspect', async () => {
    const w = await world(4, {}, 2);
    const domainOf = (id: string) => w.cluster.members.find((m) => m.id === id)!.domain;
    const { owners } = placement(w, 'k');
    const other = w.cluster.ids.filter((id) => domainOf(id) !== domainOf(owners[0]!));
    for (const id of other) w.cluster.pause(id, 5000);
    const coordinator = w.node(owners[0]!);
    coordinator.setMembers(w.cluster.members, other);
    const started = w.scheduler.now;
    const result = await w.settle(coordinator.put('k', text.encode('v'), { w: 2 }));
    assert.ok(result.receipt.acknowledged.every((id) => !other.includes(id)));
    // Each slot waits out one request timeout (100 ms) per node it asks, and never asks a suspect owner again.
    assert.ok(w.scheduler.now - started < 400, `took ${w.scheduler.now - started} ms`);
  });

  it('acknowledges a put from one failure domain when every node of the other is down', async () => {
    const w = await world(4, {}, 2);
    const { owners } = placement(w, 'k');
    const domainOf = (id: string) => w.cluster.members.find((m) => m.id === id)!.domain;
    const other = w.cluster.ids.filter((id) => domainOf(id) !== domainOf(owners[0]!));
    for (const id of other) await w.cluster.crash(id);
    const result = await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 2 }));
    assert.equal(result.receipt.acknowledged.length, 2);
    assert.ok(result.receipt.acknowledged.every((id) => domainOf(id) === domainOf(owners[0]!)));
  });

  it('forwards a put from a node outside the preference list to an owner that coordinates it', async () => {
    const w = await world(5);
    const { owners, outsider } = placement(w, 'k');
    const result = await w.settle(w.node(outsider).put('k', text.encode('v')));
    assert.ok(owners.includes(result.receipt.coordinator));
    assert.equal(w.node(outsider).metrics().forwards, 1);
  });

  it('writes through a fallback with a hint when an owner is down', async () => {
    const w = await world(5);
    const { owners } = placement(w, 'k');
    await w.cluster.crash(owners[1]!);
    await w.cluster.crash(owners[2]!);
    const result = await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 2 }));
    assert.equal(result.receipt.fallbacks.length, 1);
    const fallback = result.receipt.fallbacks[0]!;
    assert.ok(!owners.includes(fallback));
    assert.equal(result.receipt.hints.length, 1);
    assert.equal(result.receipt.hints[0]!.holder, fallback);
    assert.ok(owners.slice(1).includes(result.receipt.hints[0]!.target));
  });

  it('delivers a hint to its owner when the owner returns, then forgets it', async () => {
    const w = await world(5, { hintInterval: 200 });
    const { owners } = placement(w, 'k');
    await w.cluster.crash(owners[2]!);
    const result = await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 3 }));
    const hint = result.receipt.hints[0];
    assert.ok(hint, 'the put left a hint');
    assert.equal(await w.cluster.hintsHeld(), 1);
    w.cluster.restart(owners[2]!);
    await w.scheduler.advance(2_000);
    assert.equal(await w.cluster.hintsHeld(), 0);
    const stored = await w.cluster.slot(owners[2]!).storage!.get(text.encode('k'));
    assert.deepEqual(
      stored.map((v) => utf8.decode(v.value!)),
      ['v'],
    );
  });

  it('reads from a fallback that holds a hint when the owners are down', async () => {
    const w = await world(5);
    const { owners } = placement(w, 'k');
    await w.cluster.crash(owners[1]!);
    await w.cluster.crash(owners[2]!);
    await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 2 }));
    await w.cluster.crash(owners[0]!);
    const reader = w.cluster.alive()[0]!;
    const read = await w.settle(w.node(reader).get('k', { r: 1 }));
    assert.deepEqual(values(read), ['v']);
  });

  it('answers a get with R=1 from an owner busy for two request timeouts, not from the fallbacks that have nothing', async () => {
    const w = await world(5);
    const { owners, outsider } = placement(w, 'k');
    await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 3 }));
    await w.cluster.crash(owners[1]!);
    await w.cluster.crash(owners[2]!);
    // Heard from a moment ago, then busy for two and a half request timeouts (100 ms): not failed.
    assert.deepEqual(values(await w.settle(w.node(outsider).get('k', { r: 1 }))), ['v']);
    w.cluster.pause(owners[0]!, 250);
    const read = await w.settle(w.node(outsider).get('k', { r: 1 }));
    assert.deepEqual(values(read), ['v']);
    assert.ok(read.receipt.replied.includes(owners[0]!));
  });

  it('answers a get with R=1 from the owner that has the key, not from a fallback that has nothing', async () => {
    const w = await world(5);
    const { owners } = placement(w, 'k');
    await w.settle(w.node(owners[0]!).put('k', text.encode('v'), { w: 3 }));
    await w.cluster.crash(owners[1]!);
    await w.cluster.crash(owners[2]!);
    for (const reader of w.cluster.ids.filter((id) => !owners.includes(id))) {
      // A first read times out on the crashed owners, so that the next ones go straight to fallbacks for them (the
      // reader itself among them, whose empty answer is at hand before the surviving owner's arrives).
      await w.settle(w.node(reader).get('k', { r: 1 }));
      await w.scheduler.advance(150);
      for (let i = 0; i < 3; i++) {
        const read = await w.settle(w.node(reader).get('k', { r: 1 }));
        assert.deepEqual(values(read), ['v']);
        assert.ok(read.receipt.replied.includes(owners[0]!));
      }
    }
  });

  it('fails a put with ERR_QUORUM and the counts when too few replicas answer', async () => {
    const w = await world(3);
    await w.cluster.crash('n1');
    await w.cluster.crash('n2');
    const error = await rejection(w.settle(w.node('n0').put('k', text.encode('v'), { w: 2 })));
    assert.ok(hasErrorCode(error, 'ERR_QUORUM'), String(error));
    assert.equal((error as { required: number }).required, 2);
    assert.equal((error as { acknowledged: number }).acknowledged, 1);
  });

  it('answers a get with R=1 while the other replicas are down', async () => {
    const w = await world(3);
    await w.settle(w.node('n0').put('k', text.encode('v'), { w: 3 }));
    await w.cluster.crash('n1');
    await w.cluster.crash('n2');
    assert.deepEqual(values(await w.settle(w.node('n0').get('k', { r: 1 }))), ['v']);
    const error = await rejection(w.settle(w.node('n0').get('k', { r: 2 })));
    assert.ok(hasErrorCode(error, 'ERR_QUORUM'), String(error));
  });

  it('gives an owner a second timeout when no fallback can stand in for it', async () => {
    const w = await world(3);
    // n2 misses the first request of the put, then the network heals before its timeout (100 ms) ends.
    w.network.partition(new Map([['n2', 'b'] as const, ['n0', 'a'] as const, ['n1', 'a'] as const]));
    const put = w.node('n0').put('k', text.encode('v'), { w: 3 });
    await w.scheduler.advance(50);
    w.network.heal();
    const result = await w.settle(put);
    assert.deepEqual([...result.receipt.acknowledged].sort(), ['n0', 'n1', 'n2']);
    assert.deepEqual(
      (await w.settle(w.node('n0').get('k', { r: 3 }))).values.map((v) => utf8.decode(v)),
      ['v'],
    );
  });

  it('repairs a replica that missed a write when a read finds it stale', async () => {
    const w = await world(3);
    w.network.partition(new Map([['n2', 'b'] as const, ['n0', 'a'] as const, ['n1', 'a'] as const]));
    await w.settle(w.node('n0').put('k', text.encode('v'), { w: 2 }));
    // Long enough for the replication to n2 to give up (an owner with no fallback gets a second timeout).
    await w.scheduler.advance(2_000);
    w.network.heal();
    await w.scheduler.advance(1_000);
    const stale = await w.cluster.slot('n2').storage!.get(text.encode('k'));
    assert.equal(stale.length, 0, 'n2 missed the write (no fallback exists with 3 nodes)');
    await w.settle(w.node('n0').get('k', { r: 3 }));
    await w.scheduler.advance(100);
    const repaired = await w.cluster.slot('n2').storage!.get(text.encode('k'));
    assert.deepEqual(
      repaired.map((v) => utf8.decode(v.value!)),
      ['v'],
    );
    assert.ok(w.node('n0').metrics().readRepairs >= 1);
  });

  it('rejects r and w outside 1..N with ERR_INVALID_ARGUMENT', async () => {
    const w = await world(3);
    for (const promise of [
      w.node('n0').get('k', { r: 0 }),
      w.node('n0').get('k', { r: 4 }),
      w.node('n0').put('k', text.encode('v'), { w: 0 }),
      w.node('n0').put('k', text.encode('v'), { w: 1.5 }),
    ]) {
      assert.ok(hasErrorCode(await rejection(promise), 'ERR_INVALID_ARGUMENT'));
    }
  });

  it('rejects a context it did not issue with ERR_INVALID_ARGUMENT', async () => {
    const w = await world(3);
    const error = await rejection(w.node('n0').put('k', text.encode('v'), { context: 'not a context!' }));
    assert.ok(hasErrorCode(error, 'ERR_INVALID_ARGUMENT'), String(error));
  });

  it('rejects empty keys and non-byte values with ERR_INVALID_ARGUMENT', async () => {
    const w = await world(3);
    assert.ok(hasErrorCode(await rejection(w.node('n0').get('')), 'ERR_INVALID_ARGUMENT'));
    const notBytes = 'text' as unknown as Uint8Array;
    assert.ok(hasErrorCode(await rejection(w.node('n0').put('k', notBytes)), 'ERR_INVALID_ARGUMENT'));
  });

  it('rejects a key over 1 KiB and a value over 1 MiB with ERR_TOO_LARGE', async () => {
    const w = await world(3);
    const bigKey = 'k'.repeat(1025);
    assert.ok(hasErrorCode(await rejection(w.node('n0').get(bigKey)), 'ERR_TOO_LARGE'));
    const bigValue = new Uint8Array(1024 * 1024 + 1);
    assert.ok(hasErrorCode(await rejection(w.node('n0').put('k', bigValue)), 'ERR_TOO_LARGE'));
  });

  it('coordinates the first put of a new cluster at once, without waiting for its partition to be marked held', async () => {
    // Slow links: the rebalancer's probes of the 256 partitions take seconds, and the put's partition is not among
    // the first ones it marks held.
    const w = unsettledWorld(2, { n: 2, w: 2, requestTimeout: 2000 }, { baseLatency: 400 });
    const key = 'first';
    const partition = w.node('n0').ring.partitionOf(text.encode(key));
    const put = w.node('n0').put(key, text.encode('v'));
    const settled = await w.settle(put);
    assert.equal(settled.receipt.acknowledged.length, 2);
    const states = (await w.node('n0').partitions()).find((p) => p.partition === partition)?.state;
    assert.equal(states, 'fetching', 'the put did not wait for its partition');
  });

  it('does not let a caller change a stored value by mutating the array it put', async () => {
    const w = await world(3);
    const value = text.encode('original');
    const put = w.node('n0').put('k', value, { w: 3 });
    value.fill(0);
    await w.settle(put);
    assert.deepEqual(values(await w.settle(w.node('n1').get('k'))), ['original']);
  });

  it('drops and counts a frame from a node outside its view once no view naming it came in time', async () => {
    const w = await world(3);
    const frame = encodeMessage({
      type: 'read',
      from: 'stranger',
      requestId: 1,
      key: text.encode('k'),
      requireHeld: false,
    });
    w.node('n0').receive('stranger', frame);
    await w.scheduler.advance(STRANGER_HOLD_MS + 1);
    w.node('n0').setMembers(w.cluster.members);
    assert.equal(w.node('n0').metrics().rejectedFrames, 1);
    assert.equal(w.node('n0').metrics().readsServed, 0);
  });

  it('answers a request that arrived just before the view naming its sender', async () => {
    const w = await world(3);
    const frame = encodeMessage({
      type: 'read',
      from: 'newcomer',
      requestId: 1,
      key: text.encode('k'),
      requireHeld: false,
    });
    w.node('n0').receive('newcomer', frame);
    assert.equal(w.node('n0').metrics().readsServed, 0);
    w.node('n0').setMembers([...w.cluster.members, { id: 'newcomer', domain: 'elsewhere' }]);
    await w.scheduler.advance(10);
    assert.equal(w.node('n0').metrics().readsServed, 1);
    assert.equal(w.node('n0').metrics().rejectedFrames, 0);
  });

  it("serves at most 4,096 of one peer's requests at once and answers the rest ERR_OVERLOADED at once", async () => {
    const w = await world(3);
    const flood = 5000;
    for (let i = 1; i <= flood; i++) {
      const key = text.encode(`k${i}`);
      w.node('n0').receive(
        'n2',
        encodeMessage({ type: 'read', from: 'n2', requestId: 1e6 + i, key, requireHeld: false }),
      );
    }
    assert.equal(w.node('n0').metrics().peerRequestsRefused, flood - 4096);
    await w.scheduler.advance(100);
    assert.equal(w.node('n0').metrics().readsServed, 4096);
    // Another peer, and the flooding one once its requests are answered, are served as before.
    assert.deepEqual(values(await w.settle(w.node('n1').get('k1'))), []);
    w.node('n0').receive(
      'n2',
      encodeMessage({ type: 'read', from: 'n2', requestId: 1, key: text.encode('k'), requireHeld: false }),
    );
    await w.scheduler.advance(10);
    assert.equal(w.node('n0').metrics().peerRequestsRefused, flood - 4096);
  });

  it("keeps a write as a hint only for an owner of its key, on an owner's word", async () => {
    const w = await world(5);
    const { owners, outsider } = placement(w, 'k');
    const fallback = outsider;
    const stranger = w.cluster.ids.find((id) => id !== fallback && !owners.includes(id))!;
    const replicate = (from: string, hintFor: string, requestId: number) =>
      w.node(fallback).receive(
        from,
        encodeMessage({
          type: 'replicate',
          from,
          requestId,
          key: text.encode('k'),
          versions: [createVersion(owners[0]!, 1, 1, [], text.encode('v'))],
          hintFor,
          durable: false,
          fresh: null,
        }),
      );
    replicate(owners[0]!, stranger, 1); // for a node that owns no copy of the key
    replicate(stranger, owners[1]!, 2); // on the word of a node that owns none either
    // Each waits a second for a newer view that could allow it, then is refused.
    await w.scheduler.advance(1100);
    assert.equal(w.node(fallback).metrics().unauthorizedMessages, 2);
    assert.equal(w.node(fallback).metrics().hintsStored, 0);
    replicate(owners[0]!, owners[1]!, 3); // an owner's coordinator standing in for another owner: kept
    await w.scheduler.advance(10);
    assert.equal(w.node(fallback).metrics().hintsStored, 1);
  });

  it('puts the value its coordinator wrote under a dot at every owner, over another a member planted under it first', async () => {
    const w = await world(5);
    const { owners, outsider: rogue } = placement(w, 'k');
    const coordinator = owners[0]!;
    const stored = async (id: string) => await w.cluster.slot(id).data.reopen().get(text.encode('k'));
    await w.settle(w.node(coordinator).put('k', text.encode('first'), { w: 3 }));
    const issued = (await stored(coordinator)).find((v) => v.dot.node === coordinator)!.dot.counter;
    // The coordinator's next dot, with another value, at the other owners before the coordinator issues it.
    const planted = createVersion(coordinator, issued + 1, 1, [], text.encode('evil'));
    for (const [i, owner] of owners.slice(1).entries()) {
      w.node(owner).receive(rogue, replicateFrame(rogue, i + 1, 'k', [planted]));
    }
    await w.scheduler.advance(10);
    // Taken: the owners cannot tell it from a fallback's delivery of the coordinator's write.
    for (const owner of owners.slice(1)) assert.ok((await stored(owner)).some((v) => v.dot.counter === issued + 1));
    await w.settle(w.node(coordinator).put('k', text.encode('real'), { w: 3 }));
    for (const owner of owners) {
      const mine = (await stored(owner)).filter((v) => v.dot.node === coordinator);
      assert.deepEqual(
        mine.map((v) => `${v.dot.counter}=${utf8.decode(v.value!)}`).sort(),
        [`${issued}=first`, `${issued + 1}=real`],
        `at ${owner}`,
      );
    }
    assert.deepEqual(values(await w.settle(w.node(owners[2]!).get('k', { r: 3 }))), ['first', 'real']);
  });

  it('refuses a version with a proof under the dot of a node that cannot sign, keeping the value it holds', async () => {
    const w = await world(5);
    const { owners, outsider: rogue } = placement(w, 'k');
    await w.settle(w.node(owners[0]!).put('k', text.encode('honest'), { w: 3 }));
    const [written] = await w.cluster.slot(owners[1]!).data.reopen().get(text.encode('k'));
    // The honest dot with another value and 96 bytes of "proof", which would win over an unsigned copy if trusted.
    const forged = { ...written!, value: text.encode('evil'), proof: new Uint8Array(96) };
    for (const [i, owner] of owners.entries()) {
      w.node(owner).receive(rogue, replicateFrame(rogue, i + 1, 'k', [forged]));
    }
    await w.scheduler.advance(10);
    for (const owner of owners) assert.equal(w.node(owner).metrics().malformedFrames, 1);
    assert.deepEqual(values(await w.settle(w.node(owners[2]!).get('k', { r: 3 }))), ['honest']);
  });

  for (const restarted of [false, true]) {
    it(`keeps the value a coordinator shipped fresh under a dot when it later ships another value under it as fresh${restarted ? ', after the replica restarted' : ''}`, async () => {
      const w = await world(5);
      const { owners } = placement(w, 'k');
      const [coordinator, replica] = owners as [string, string];
      await w.settle(w.node(coordinator).put('k', text.encode('acknowledged'), { w: 3 }));
      const stored = async () => await w.cluster.slot(replica).data.reopen().get(text.encode('k'));
      const [written] = await stored();
      if (restarted) {
        await w.cluster.crash(replica);
        w.cluster.restart(replica);
        await w.scheduler.advance(2_000);
      }
      // The same dot with another value, marked as just issued: a member rewriting a write it acknowledged.
      const rewritten = { ...written!, value: text.encode('rewritten') };
      w.node(replica).receive(
        coordinator,
        encodeMessage({
          type: 'replicate',
          from: coordinator,
          requestId: 1,
          key: text.encode('k'),
          versions: [rewritten],
          hintFor: null,
          durable: false,
          fresh: written!.dot.counter,
        }),
      );
      await w.scheduler.advance(10);
      assert.deepEqual(
        (await stored()).map((v) => utf8.decode(v.value!)),
        ['acknowledged'],
      );
    });
  }

  it('keeps at most 20,000 hints for one owner, and still keeps hints for others', async () => {
    const w = await world(5);
    const { owners, outsider: fallback } = placement(w, 'k');
    let requestId = 0;
    const hint = (hintFor: string, key: string) =>
      w.node(fallback).receive(
        owners[0]!,
        encodeMessage({
          type: 'replicate',
          from: owners[0]!,
          requestId: ++requestId,
          key: text.encode(key),
          versions: [createVersion(owners[0]!, requestId, 1, [], text.encode('v'))],
          hintFor,
          durable: false,
          fresh: null,
        }),
      );
    // Keys whose owners are k's, so that owners[1] and owners[2] own them all; owners[1] is down, so that its hints
    // wait here instead of being handed over.
    const keys = sameOwners(w, 'k', 20_100);
    await w.cluster.crash(owners[1]!);
    for (let i = 0; i < keys.length; i += 2000) {
      for (const key of keys.slice(i, i + 2000)) hint(owners[1]!, key);
      // The count is trusted for a second: let it be taken again.
      await w.scheduler.advance(1100);
    }
    assert.equal(w.node(fallback).metrics().hintsStored, 20_000);
    hint(owners[2]!, keys[0]!);
    await w.scheduler.advance(10);
    assert.equal(w.node(fallback).metrics().hintsStored, 20_001);
  });

  it('drops and counts a frame whose sender field differs from its link', async () => {
    const w = await world(3);
    const frame = encodeMessage({ type: 'read', from: 'n2', requestId: 1, key: text.encode('k'), requireHeld: false });
    w.node('n0').receive('n1', frame);
    assert.equal(w.node('n0').metrics().malformedFrames, 1);
  });

  it('rejects requests with ERR_CLOSED once closed', async () => {
    const w = await world(3);
    const node = w.node('n0');
    await node.close();
    await node.close();
    assert.ok(hasErrorCode(await rejection(node.get('k')), 'ERR_CLOSED'));
  });
});
