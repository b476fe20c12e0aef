/**
 * Partition sync, both sides: two sync endpoints made of the real parts a node wires (memory storage observed by
 * Merkle trees, peers, the codec) talk over the simulated network in virtual time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteBudget } from '../../worker/transport/budget.ts';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { DynameshError, hasErrorCode } from '../../worker/errors.ts';
import { silentLogger } from '../../worker/env.ts';
import { PartitionTrees, leafOf } from '../../worker/membership/merkle.ts';
import { Metrics } from '../../worker/metrics.ts';
import { Ownership } from '../../worker/membership/ownership.ts';
import { type Outgoing, Peers, isReply } from '../../worker/transport/peers.ts';
import { type PeerMessage, type SyncEntry, TREE_LEAVES } from '../../worker/wire/protocol.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { ObservedStorage } from '../../worker/storage/observed.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { corroborate } from '../../worker/membership/corroborate.ts';
import { PartitionSync, SYNC_PAGE_BYTES, entrySize } from '../../worker/membership/sync.ts';
import type { Version } from '../../worker/versions/version.ts';
import { Network } from '../sim/network.ts';
import { Rng } from '../sim/random.ts';
import { Scheduler } from '../sim/scheduler.ts';
import { settle } from '../sim/settle.ts';

const text = new TextEncoder();
const Q = 16;
const RING = new Ring(
  [
    { id: 'a', domain: 'a' },
    { id: 'b', domain: 'b' },
  ],
  { partitions: Q },
);

/** One side of sync: what a node wires for it, with the node's dispatch of sync requests. */
interface Endpoint {
  readonly id: string;
  readonly storage: ObservedStorage;
  readonly ownership: Ownership;
  readonly sync: PartitionSync;
  readonly metrics: Metrics;
  /** The sync-keys requests this endpoint served. */
  keysServed: number;
}

interface World {
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly a: Endpoint;
  readonly b: Endpoint;
  settle<T>(promise: Promise<T>): Promise<T>;
  budget(): ByteBudget;
}

/** Bytes of sync-keys answers an endpoint serves a peer per second: far above what the tests' transfers pull. */
const SERVE_RATE = 64 * 1024 * 1024;
/** The owners of every partition in these tests. */
const OWNERS = ['a', 'b'];

function endpoint(id: string, scheduler: Scheduler, network: Network): Endpoint {
  const owner = { alive: true };
  const timers = scheduler.timersFor(owner);
  const inner = new MemoryStorage();
  const trees = new PartitionTrees({ partitions: Q, scan: (p, page) => inner.scanPartition(p, page) });
  const storage = new ObservedStorage(inner, (key, siblings) => trees.update(RING.partitionOf(key), key, siblings));
  const ownership = new Ownership(storage);
  const metrics = new Metrics();
  const transport = network.attach(id, owner, (from, frame) => receive(from, frame));
  const peers = new Peers({
    self: id,
    clock: scheduler.clock,
    timers,
    random: new Rng(id.charCodeAt(0)).asRandom(),
    suspicionMs: 400,
    send: (to, message) => transport.send(to, encodeMessage(message)),
  });
  const sync = new PartitionSync({
    storage,
    peers,
    metrics,
    logger: silentLogger,
    requestTimeout: 100,
    partitions: Q,
    partitionOf: (key) => RING.partitionOf(key),
    tree: (p) => trees.get(p),
    holds: (p) => ownership.holds(p),
    // In these tests a is every partition's first owner.
    mayCollect: (node) => node === 'a',
    // In these tests a and b own every partition; any other endpoint is a member that owns none.
    mayWrite: (node) => OWNERS.includes(node),
    mayPull: (node) => OWNERS.includes(node),
    nextView: () => Promise.resolve(),
    corroborate: (key, versions, sender) =>
      corroborate(
        { self: id, peers, requestTimeout: 100, isMember: (node) => node !== 'gone', readLocal: (k) => storage.get(k) },
        key,
        versions,
        OWNERS,
        sender,
      ),
    clock: scheduler.clock,
    serveBytesPerSecond: SERVE_RATE,
  });
  const self: Endpoint = { id, storage, ownership, sync, metrics, keysServed: 0 };
  function receive(from: string, frame: Uint8Array): void {
    const message = decodeMessage(frame);
    if (isReply(message)) {
      peers.settle(message);
      return;
    }
    void serve(message).then(
      (reply) => peers.reply(from, message.requestId, reply),
      (error: unknown) =>
        peers.reply(from, message.requestId, {
          type: 'error',
          code: error instanceof DynameshError ? error.code : 'ERR_STORAGE',
          message: String(error),
          required: null,
          acknowledged: null,
        }),
    );
  }
  function serve(message: PeerMessage): Promise<Outgoing> {
    switch (message.type) {
      case 'sync-tree':
        return sync.serveTree(message);
      case 'sync-keys':
        self.keysServed++;
        return sync.serveKeys(message);
      case 'sync-push':
        return sync.servePush(message);
      case 'sync-drop':
        return sync.serveDrop(message);
      case 'read':
        return storage.get(message.key).then((versions) => ({ type: 'read-reply', versions }));
      default:
        return Promise.reject(new Error(`unexpected ${message.type}`));
    }
  }
  return self;
}

function world(): World {
  const scheduler = new Scheduler();
  const network = new Network(scheduler, new Rng(7));
  return {
    scheduler,
    network,
    a: endpoint('a', scheduler, network),
    b: endpoint('b', scheduler, network),
    settle: (promise) => settle(scheduler, promise),
    budget: () => new ByteBudget(1024 * 1024, scheduler.clock, scheduler.timersFor({ alive: true })),
  };
}

/** `count` keys of partition `p`, named `prefix…`. */
function keysOf(p: number, count: number, prefix = 'key'): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; out.length < count; i++) {
    const key = text.encode(`${prefix}-${i}`);
    if (RING.partitionOf(key) === p) out.push(key);
  }
  return out;
}

async function put(e: Endpoint, key: Uint8Array, value: string | Uint8Array | null, node = e.id): Promise<Version[]> {
  const bytes = typeof value === 'string' ? text.encode(value) : value;
  const written = await e.storage.write(key, RING.partitionOf(key), {
    node,
    timestamp: 1,
    context: [],
    value: bytes,
    ifMatch: false,
  });
  return written.siblings;
}

/** What b's serving of a push of `entries` from `from` ends with: its error, or null when it was taken. */
function pushTo(w: World, from: string, entries: readonly SyncEntry[]): Promise<unknown> {
  const push = { type: 'sync-push', from, requestId: 1, partition: P, entries } as const;
  return w.settle(w.b.sync.servePush(push)).then(
    () => null,
    (e: unknown) => e,
  );
}

async function copy(from: Endpoint, to: Endpoint, key: Uint8Array): Promise<void> {
  await to.storage.apply(key, RING.partitionOf(key), await from.storage.get(key));
}

async function rootOf(e: Endpoint, p: number): Promise<string> {
  return (await e.sync.tree(p)).rootHex();
}

async function everything(e: Endpoint, p: number): Promise<string[]> {
  const out: string[] = [];
  for (const k of await e.storage.scanPartition(p)) {
    out.push(`${Buffer.from(k.key).toString()}=${k.siblings.map((v) => `${v.dot.node}:${v.dot.counter}`).join(',')}`);
  }
  return out;
}

const P = 5;

describe('PartitionSync', () => {
  it('finds exactly the leaves whose keys differ', async () => {
    const w = world();
    const shared = keysOf(P, 40, 'shared');
    for (const key of shared) {
      await put(w.a, key, 'same');
      await copy(w.a, w.b, key);
    }
    const extra = keysOf(P, 3, 'only-a');
    for (const key of extra) await put(w.a, key, 'mine');
    // A key both hold, changed on b only.
    await put(w.b, shared[7]!, 'changed', 'b');
    const expected = [...new Set([...extra, shared[7]!].map((k) => leafOf(k, Q)))].sort((x, y) => x - y);
    const comparison = await w.settle(w.a.sync.compare('b', P, w.budget()));
    assert.deepEqual(comparison, { held: false, leaves: expected });
  });

  it('finds no differing leaf between equal replicas, and tells whether the peer holds the partition', async () => {
    const w = world();
    for (const key of keysOf(P, 20)) {
      await put(w.a, key, 'v');
      await copy(w.a, w.b, key);
    }
    await w.b.ownership.markHeld(P);
    assert.deepEqual(await w.settle(w.a.sync.compare('b', P, w.budget())), { held: true, leaves: [] });
  });

  it('answers null to a comparison with a peer that does not answer', async () => {
    const w = world();
    await put(w.a, keysOf(P, 1)[0]!, 'v');
    w.network.detach('b');
    assert.equal(await w.settle(w.a.sync.compare('b', P, w.budget())), null);
  });

  it('probes whether a peer holds a partition, and its root', async () => {
    const w = world();
    await w.b.ownership.markHeld(P);
    const held = await w.settle(w.a.sync.probe('b', P, w.budget()));
    assert.equal(held?.held, true);
    assert.deepEqual(held?.root, (await w.b.sync.tree(P)).hashes(0, [0]));
    assert.equal((await w.settle(w.a.sync.probe('b', P + 1)))?.held, false);
  });

  it("pulls a peer's differing keys until both trees are equal", async () => {
    const w = world();
    for (const key of keysOf(P, 30)) await put(w.b, key, 'theirs');
    await put(w.a, keysOf(P, 1, 'mine')[0]!, 'mine');
    const comparison = await w.settle(w.a.sync.compare('b', P, w.budget()));
    assert.ok(comparison !== null && comparison.leaves.length > 0);
    assert.equal(await w.settle(w.a.sync.pull('b', P, comparison.leaves, w.budget())), true);
    const theirs = await everything(w.b, P);
    const mine = await everything(w.a, P);
    assert.deepEqual(
      mine.filter((k) => !k.startsWith('mine')),
      theirs,
    );
    // a's own key stays: a pull only adds.
    assert.equal(mine.length, theirs.length + 1);
  });

  it('pulls more keys than fit in one page, page by page', async () => {
    const w = world();
    const value = new Uint8Array(4096).fill(7);
    const keys = keysOf(P, Math.ceil((3 * SYNC_PAGE_BYTES) / value.length));
    for (const key of keys) await put(w.b, key, value);
    const fractions: number[] = [];
    const comparison = await w.settle(w.a.sync.compare('b', P, w.budget()));
    const pulled = await w.settle(w.a.sync.pull('b', P, comparison!.leaves, w.budget(), (f) => fractions.push(f)));
    assert.equal(pulled, true);
    assert.ok(w.b.keysServed >= 3, `served ${w.b.keysServed} pages`);
    assert.equal(fractions.at(-1), 1);
    assert.equal(await rootOf(w.a, P), await rootOf(w.b, P));
    assert.equal((await w.a.storage.scanPartition(P)).length, keys.length);
  });

  it('pushes keys to a peer, which acknowledges and stores them', async () => {
    const w = world();
    const entries: SyncEntry[] = [];
    for (const key of keysOf(P, 10)) entries.push({ key, versions: await put(w.a, key, 'pushed') });
    assert.equal(await w.settle(w.a.sync.push('b', P, entries, w.budget())), true);
    assert.deepEqual(await everything(w.b, P), await everything(w.a, P));
    assert.equal(w.b.metrics.snapshot().keysRepaired, 10);
  });

  it('reports a push to a peer that does not answer as not done', async () => {
    const w = world();
    const key = keysOf(P, 1)[0]!;
    const entries = [{ key, versions: await put(w.a, key, 'pushed') }];
    w.network.detach('b');
    assert.equal(await w.settle(w.a.sync.push('b', P, entries, w.budget())), false);
  });

  it('refuses a pushed key of another partition and stores nothing of that push', async () => {
    const w = world();
    const good = keysOf(P, 1)[0]!;
    const stray = keysOf(P + 1, 1)[0]!;
    const entries = [
      { key: good, versions: await put(w.a, good, 'v') },
      { key: stray, versions: await put(w.a, stray, 'v') },
    ];
    const error = await w.b.sync.servePush({ type: 'sync-push', from: 'a', requestId: 1, partition: P, entries }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(hasErrorCode(error, 'ERR_INVALID_ARGUMENT'), String(error));
    assert.deepEqual(await w.b.storage.get(good), []);
    assert.deepEqual(await w.b.storage.get(stray), []);
  });

  it('merges a push from a node that owns no copy only where an owner holds the same versions, and refuses the rest', async () => {
    const w = world();
    const rogue = endpoint('r', w.scheduler, w.network);
    const [held, forged] = keysOf(P, 2);
    const honest = await put(w.a, held!, 'honest');
    const planted = await put(rogue, forged!, 'planted');
    const entries = [
      { key: held!, versions: honest },
      { key: forged!, versions: planted },
    ];
    const error = await pushTo(w, 'r', entries);
    assert.ok(hasErrorCode(error, 'ERR_UNAUTHORIZED'), String(error));
    assert.deepEqual(await w.b.storage.get(held!), honest);
    assert.deepEqual(await w.b.storage.get(forged!), []);
    assert.equal(w.b.metrics.snapshot().unauthorizedMessages, 1);
  });

  it('merges none of a key pushed by a node that owns no copy when an owner vouches for only some of its versions', async () => {
    const w = world();
    const rogue = endpoint('r', w.scheduler, w.network);
    const key = keysOf(P, 1)[0]!;
    const honest = await put(w.a, key, 'honest');
    // A sibling no owner holds beside one the owner holds: taken alone, the honest one would leave b with a clock
    // claiming whatever of the key's writes the refused one's coordinator made before.
    const [planted] = await put(rogue, key, 'planted');
    const error = await pushTo(w, 'r', [{ key, versions: [...honest, planted!] }]);
    assert.ok(hasErrorCode(error, 'ERR_UNAUTHORIZED'), String(error));
    assert.deepEqual(await w.b.storage.get(key), []);
  });

  it("refuses a version pushed by a node that owns no copy when it differs from the owner's under the same dot", async () => {
    const w = world();
    endpoint('r', w.scheduler, w.network);
    const key = keysOf(P, 1)[0]!;
    const honest = await put(w.a, key, 'honest');
    // The owner's own write, its dot kept, with another value and a clock that would supersede anything.
    const forged = honest.map((v) => ({
      ...v,
      value: new TextEncoder().encode('evil'),
      context: [{ node: 'zz', counter: 1_000, timestamp: 1 }],
    }));
    const error = await pushTo(w, 'r', [{ key, versions: forged }]);
    assert.ok(hasErrorCode(error, 'ERR_UNAUTHORIZED'), String(error));
    assert.deepEqual(await w.b.storage.get(key), []);
  });

  it('takes from a node that owns no copy a key only a departed node wrote, which supersedes nothing', async () => {
    const w = world();
    endpoint('r', w.scheduler, w.network);
    const key = keysOf(P, 1)[0]!;
    const versions = await put(w.a, key, 'left behind', 'gone');
    await w.a.storage.deleteIfUnchanged(key, versions);
    const push = { type: 'sync-push', from: 'r', requestId: 1, partition: P, entries: [{ key, versions }] } as const;
    await w.settle(w.b.sync.servePush(push));
    assert.deepEqual(await w.b.storage.get(key), versions);
  });

  it("refuses a departed node's version that would supersede what an owner holds, or claims a live node's later writes", async () => {
    const w = world();
    endpoint('r', w.scheduler, w.network);
    const [held, fresh] = keysOf(P, 2);
    const honest = await put(w.a, held!, 'honest');
    const dot = { node: 'gone', counter: 1, timestamp: 1 };
    const over = [{ dot, context: [honest[0]!.dot], value: text.encode('over') }];
    const ahead = [{ dot, context: [{ node: 'a', counter: 1_000_000, timestamp: 1 }], value: text.encode('ahead') }];
    for (const [key, versions] of [
      [held!, over],
      [fresh!, ahead],
    ] as const) {
      const error = await pushTo(w, 'r', [{ key, versions }]);
      assert.ok(hasErrorCode(error, 'ERR_UNAUTHORIZED'), String(error));
      assert.deepEqual(await w.b.storage.get(key), []);
    }
  });

  it('merges a push from an owner without asking anyone', async () => {
    const w = world();
    const key = keysOf(P, 1)[0]!;
    const versions = await put(w.a, key, 'from an owner');
    w.network.detach('a');
    await w.settle(
      w.b.sync.servePush({ type: 'sync-push', from: 'a', requestId: 1, partition: P, entries: [{ key, versions }] }),
    );
    assert.deepEqual(await w.b.storage.get(key), versions);
  });

  it('refuses to drop a key named with a live version', async () => {
    const w = world();
    const key = keysOf(P, 1)[0]!;
    const versions = await put(w.b, key, 'alive');
    const error = await w.b.sync
      .serveDrop({ type: 'sync-drop', from: 'a', requestId: 1, partition: P, entries: [{ key, versions }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(hasErrorCode(error, 'ERR_INVALID_ARGUMENT'), String(error));
    assert.equal((await w.b.storage.get(key)).length, 1);
  });

  it('answers sync-keys only to an owner of the partition', async () => {
    const w = world();
    await put(w.b, keysOf(P, 1)[0]!, 'kept');
    const ask = (from: string) =>
      w.b.sync
        .serveKeys({
          type: 'sync-keys',
          from,
          requestId: 1,
          partition: P,
          leaves: Array.from({ length: TREE_LEAVES }, (_, i) => i),
          after: null,
          maxBytes: 1 << 20,
        })
        .then(
          (reply) => reply,
          (e: unknown) => e,
        );
    const refused = await ask('r');
    assert.ok(hasErrorCode(refused, 'ERR_UNAUTHORIZED'), String(refused));
    assert.equal(w.b.metrics.snapshot().unauthorizedMessages, 1);
    const answered = await ask('a');
    assert.ok((answered as { type?: string }).type === 'sync-keys-reply');
  });

  it('answers a sync-keys asking for 16 MiB with one page of at most 64 KiB', async () => {
    const w = world();
    const value = new Uint8Array(1000).fill(7);
    for (const key of keysOf(P, 200)) await put(w.b, key, value);
    const reply = await w.b.sync.serveKeys({
      type: 'sync-keys',
      from: 'a',
      requestId: 1,
      partition: P,
      leaves: Array.from({ length: TREE_LEAVES }, (_, i) => i),
      after: null,
      maxBytes: 16 * 1024 * 1024,
    });
    assert.ok(reply.type === 'sync-keys-reply');
    const bytes = reply.entries.reduce((sum, e) => sum + entrySize(e), 0);
    assert.ok(bytes <= SYNC_PAGE_BYTES, `${bytes} bytes in ${reply.entries.length} keys`);
    assert.ok(reply.entries.length > 0 && reply.next !== null, 'a page, and more after it');
  });

  it('answers a peer that pulls keys faster than its allowance ERR_OVERLOADED, and serves it again once it refills', async () => {
    const w = world();
    const value = new Uint8Array(60 * 1024).fill(7);
    for (const key of keysOf(P, 8)) await put(w.b, key, value);
    const ask = (requestId: number) =>
      w.b.sync
        .serveKeys({
          type: 'sync-keys',
          from: 'a',
          requestId,
          partition: P,
          leaves: Array.from({ length: TREE_LEAVES }, (_, i) => i),
          after: null,
          maxBytes: SYNC_PAGE_BYTES,
        })
        .then(
          () => 'served',
          (e: unknown) => (hasErrorCode(e, 'ERR_OVERLOADED') ? 'ERR_OVERLOADED' : String(e)),
        );
    // Two seconds of allowance at once (128 MiB), a page of ~60 KiB each: the 2,200th is over it.
    const answers: string[] = [];
    for (let i = 0; i < 2200; i++) answers.push(await ask(i));
    assert.equal(answers.filter((a) => a === 'served').length, answers.indexOf('ERR_OVERLOADED'));
    assert.ok(answers.includes('ERR_OVERLOADED'));
    await w.scheduler.advance(100);
    assert.equal(await ask(9999), 'served');
  });

  it('refuses a sync-drop from a node that is not the first owner of the partition, removing nothing', async () => {
    const w = world();
    const key = keysOf(P, 1)[0]!;
    const versions = await put(w.b, key, null);
    const drop = { type: 'sync-drop', from: 'c', requestId: 1, partition: P, entries: [{ key, versions }] } as const;
    const error = await w.b.sync.serveDrop(drop).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(hasErrorCode(error, 'ERR_UNAUTHORIZED'), String(error));
    assert.equal((await w.b.storage.get(key)).length, 1);
    assert.equal(w.b.metrics.snapshot().unauthorizedMessages, 1);
  });

  it('keeps a live key whose dots a sync-drop names as tombstones', async () => {
    const w = world();
    const key = keysOf(P, 1)[0]!;
    const live = await put(w.b, key, 'alive');
    const forged = live.map((v) => ({ ...v, value: null }));
    await w.b.sync.serveDrop({
      type: 'sync-drop',
      from: 'a',
      requestId: 1,
      partition: P,
      entries: [{ key, versions: forged }],
    });
    assert.deepEqual(
      (await w.b.storage.get(key)).map((v) => v.value),
      live.map((v) => v.value),
    );
    assert.equal(w.b.metrics.snapshot().tombstonesCollected ?? 0, 0);
  });

  it('drops a tombstone stored exactly as named, and keeps a key that changed since', async () => {
    const w = world();
    const [same, changed] = keysOf(P, 2);
    const sameTomb = await put(w.b, same!, null);
    const oldTomb = await put(w.b, changed!, null);
    // A concurrent write reached b after the first owner read its tombstones.
    await put(w.b, changed!, 'later', 'c');
    const entries = [
      { key: same!, versions: sameTomb },
      { key: changed!, versions: oldTomb },
    ];
    await w.b.sync.serveDrop({ type: 'sync-drop', from: 'a', requestId: 1, partition: P, entries });
    assert.deepEqual(await w.b.storage.get(same!), []);
    assert.equal((await w.b.storage.get(changed!)).length, 2);
    assert.equal(w.b.metrics.snapshot().tombstonesCollected, 1);
  });
});
