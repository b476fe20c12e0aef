/**
 * Hostile members: a rogue page that joins the cluster through the real signalling server and speaks the peer
 * protocol correctly, but sends what no honest node would. Each test asserts that honest data stays byte for byte as
 * it was on the node attacked, and that honest requests keep succeeding.
 */
import type { BrowserContext } from '@playwright/test';
import type { SignalingServer } from '../../signaling/server.ts';
import { io } from 'socket.io-client';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { Reassembler } from '../../worker/wire/frames.ts';
import { type PeerMessage, type SyncEntry, TREE_LEAVES } from '../../worker/wire/protocol.ts';
import type { Ring } from '../../worker/ring/ring.ts';
import { DERIVED_ID_PATTERN } from '../../signaling/events.ts';
import { decodeValue, encodeValue } from '../../client/values.ts';

import { type Tab, demoUrl, expect, freshCluster, openCluster, openTab, ringOf, tabOf, test } from './fixtures.ts';
import { RoguePeer } from './rogue-peer.ts';
import { PROTOCOL_VERSION } from '../../signaling/events.ts';

/** A whole message as one data-plane frame (kind 0x00). */
const frame = (message: PeerMessage): Uint8Array => new Uint8Array([0x00, ...encodeMessage(message)]);

/** Every message the victim sent the rogue, in order, its frames (whole, bundled or chunked) put back together. */
async function repliesTo(rogue: RoguePeer): Promise<PeerMessage[]> {
  const frames = new Reassembler(1 << 24);
  const out: PeerMessage[] = [];
  for (const bytes of await rogue.received()) {
    const outcome = frames.push(bytes);
    if (outcome.kind === 'invalid') throw new Error(`the victim sent an invalid frame: ${outcome.reason}`);
    if (outcome.kind === 'messages') out.push(...outcome.messages.map((m) => decodeMessage(m)));
  }
  return out;
}

/** Each key with its versions as `node:counter=value`, sorted: what a node stores, to compare byte for byte. */
function shown(entries: readonly SyncEntry[]): string[] {
  const hex = (b: Uint8Array | null): string => (b === null ? '(tombstone)' : Buffer.from(b).toString('hex'));
  return entries
    .map((e) => `${hex(e.key)} ${e.versions.map((v) => `${v.dot.node}:${v.dot.counter}=${hex(v.value)}`).join(' ')}`)
    .sort();
}

/** A ring of the cluster's Q, as `tab` runs it, to tell which partition a key falls in. */
function keyRing(tab: Tab): Promise<Ring> {
  return ringOf(tab, [{ id: 'any', domain: 'any' }]);
}

/** What the victim stores in `partitions`, partition by partition, as its replies to the rogue's `sync-keys` tell. */
async function storedAt(
  rogue: RoguePeer,
  partitions: readonly number[],
  ids: { next: number },
): Promise<Map<number, SyncEntry[]>> {
  const all = Array.from({ length: TREE_LEAVES }, (_, i) => i);
  const asked = new Map<number, number>();
  for (const partition of partitions) {
    const requestId = ++ids.next;
    asked.set(requestId, partition);
    const ask = { type: 'sync-keys', from: rogue.id, requestId, partition, leaves: all } as const;
    await rogue.send(frame({ ...ask, after: null, maxBytes: 1 << 20 }));
  }
  const answered = async (): Promise<PeerMessage[]> => (await repliesTo(rogue)).filter((m) => asked.has(m.requestId));
  await expect.poll(async () => (await answered()).length, { timeout: 20_000 }).toBe(partitions.length);
  const out = new Map<number, SyncEntry[]>();
  for (const reply of await answered()) {
    expect(reply.type).toBe('sync-keys-reply');
    if (reply.type === 'sync-keys-reply' && reply.entries.length > 0) {
      out.set(asked.get(reply.requestId)!, [...reply.entries]);
    }
  }
  return out;
}

test('a member cannot collect live keys: a sync-drop naming them as tombstones removes nothing, from a first owner or any other', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('hostile-drop');
  const [victim, witness] = await openCluster(context, server, 2, { cluster, dataPlane: 'transfer' });
  const keys = Array.from({ length: 40 }, (_, i) => `honest-${i}`);
  for (const key of keys) await victim!.call((store, key) => store.put(key, `value of ${key}`, { w: 2 }), key);

  const rogue = await RoguePeer.connect(context, server, {
    cluster,
    id: '--------rogue',
    victimId: victim!.nodeId,
    plane: 'transfer',
  });
  const ids = { next: 0 };
  const ring = await keyRing(victim!);
  const written = [...new Set(keys.map((key) => ring.partitionOf(utf8.encode(key))))];
  const stored = (): Promise<Map<number, SyncEntry[]>> => storedAt(rogue, written, ids);

  const before = await stored();
  expect([...before.values()].flat()).toHaveLength(keys.length);
  // Every key named back with the dots it has, as tombstones, to be collected.
  let sent = 0;
  for (const [partition, entries] of before) {
    const forged = entries.map((e) => ({ key: e.key, versions: e.versions.map((v) => ({ ...v, value: null })) }));
    await rogue.send(frame({ type: 'sync-drop', from: rogue.id, requestId: ++ids.next, partition, entries: forged }));
    sent++;
  }
  expect(sent).toBeGreaterThan(0);
  const after = await stored();

  expect(shown([...after.values()].flat())).toEqual(shown([...before.values()].flat()));
  for (const key of keys.slice(0, 5)) {
    const read = await witness!.call((store, key) => store.get(key, { r: 2 }), key);
    expect(read.values).toEqual([`value of ${key}`]);
  }
});

test("a member cannot take over a live tab's node id: a join under it without the tab's key is refused", async ({
  context,
  server,
}) => {
  const cluster = freshCluster('hostile-takeover');
  const [victim, witness] = await openCluster(context, server, 2, { cluster, dataPlane: 'transfer' });
  // A new node's id is derived from its key: no other key can sign for it, on this server or after its restart.
  expect(victim!.nodeId).toMatch(DERIVED_ID_PATTERN);
  const superseded = victim!.page.evaluate(
    () =>
      new Promise<boolean>((resolve) => {
        const store = (window as unknown as { store: { on(event: 'superseded', listener: () => void): void } }).store;
        store.on('superseded', () => resolve(true));
        setTimeout(() => resolve(false), 3000);
      }),
  );
  const impostor = io(server.url, { transports: ['websocket'], reconnection: false, forceNew: true });
  try {
    await new Promise<void>((resolve) => impostor.once('connect', () => resolve()));
    const ack = (await impostor.emitWithAck('join', {
      cluster,
      nodeId: victim!.nodeId,
      domain: 'elsewhere',
      protocol: PROTOCOL_VERSION,
    })) as {
      ok: boolean;
      error?: { code: string };
    };
    expect(ack.ok).toBe(false);
    expect(ack.error?.code).toBe('ERR_UNAUTHORIZED');
  } finally {
    impostor.close();
  }
  expect(await superseded).toBe(false);
  expect(server.view(cluster)?.members.map((m) => m.domain)).not.toContain('elsewhere');
  await victim!.call((store) => store.put('after-takeover', 'still mine', { w: 2 }), null);
  const read = await witness!.call((store) => store.get('after-takeover', { r: 2 }), null);
  expect(read.values).toEqual(['still mine']);
});

/** What the victim stores of `keys`, by partition, as its answers to the rogue's reads tell (any member may read). */
async function readAt(
  rogue: RoguePeer,
  keys: readonly Uint8Array[],
  partitionOf: (key: Uint8Array) => number,
  ids: { next: number },
): Promise<Map<number, SyncEntry[]>> {
  const asked = new Map<number, Uint8Array>();
  for (const key of keys) {
    const requestId = ++ids.next;
    asked.set(requestId, key);
    await rogue.send(frame({ type: 'read', from: rogue.id, requestId, key, requireHeld: true }));
  }
  const answered = async (): Promise<PeerMessage[]> => (await repliesTo(rogue)).filter((m) => asked.has(m.requestId));
  await expect.poll(async () => (await answered()).length, { timeout: 20_000 }).toBe(keys.length);
  const out = new Map<number, SyncEntry[]>();
  for (const reply of await answered()) {
    expect(reply.type).toBe('read-reply');
    if (reply.type !== 'read-reply' || reply.versions.length === 0) continue;
    const key = asked.get(reply.requestId)!;
    const entries = out.get(partitionOf(key)) ?? [];
    entries.push({ key, versions: reply.versions });
    out.set(partitionOf(key), entries);
  }
  return out;
}

const utf8 = new TextEncoder();
const evil = utf8.encode('evil');

/**
 * A cluster of three tabs (the first the victim, the second the witness) and a rogue member linked to the victim, in
 * their failure domain (a member alone in its own would be an owner of every partition), once the victim sees it.
 */
async function rogueBeside(context: BrowserContext, server: SignalingServer, name: string) {
  const cluster = freshCluster(name);
  // Formed first: the attacks rely on which owners hold which partitions (a tab still fetching one hands its puts on,
  // so a write would not carry the writer's own dot).
  const [victim, witness] = await openCluster(
    context,
    server,
    3,
    { cluster, dataPlane: 'transfer' },
    { settled: true },
  );
  const domain = await victim!.call((store) => store.domain, null);
  const rogue = await RoguePeer.connect(context, server, {
    cluster,
    id: '--------rogue',
    victimId: victim!.nodeId,
    plane: 'transfer',
    domain,
  });
  await expect.poll(async () => (await victim!.call((store) => store.members(), null)).length).toBe(4);
  return { victim: victim!, witness: witness!, rogue };
}

/**
 * A cluster of three tabs and a rogue member in their failure domain, and twelve keys written with W = 3 into
 * partitions the victim owns and the rogue does not (in the victim's view of four members, N = 3), as the victim
 * stores them: what each test of writes from a non-owner attacks.
 */
async function foreignKeys(context: BrowserContext, server: SignalingServer, name: string) {
  const { victim, witness, rogue } = await rogueBeside(context, server, name);
  const partitions = await victim.call((store) => store.partitions(), null);
  const foreign = new Set(
    partitions.filter((p) => p.owners.includes(victim.nodeId) && !p.owners.includes(rogue.id)).map((p) => p.partition),
  );
  expect(foreign.size).toBeGreaterThan(0);
  const ring = await keyRing(victim);
  const keys: string[] = [];
  for (let i = 0; keys.length < 12; i++) {
    if (foreign.has(ring.partitionOf(utf8.encode(`owned-${i}`)))) keys.push(`owned-${i}`);
  }
  for (const key of keys) await victim.call((store, key) => store.put(key, `value of ${key}`, { w: 3 }), key);
  const ids = { next: 0 };
  const keyBytes = keys.map((k) => utf8.encode(k));
  const partitionOf = (key: Uint8Array): number => ring.partitionOf(key);
  const before = await readAt(rogue, keyBytes, partitionOf, ids);
  expect([...before.values()].flat()).toHaveLength(keys.length);
  return { witness, rogue, ring, keys, keyBytes, partitionOf, before, ids };
}

/**
 * The rogue's forgeries of `entries`: for even keys a version of the rogue's own that has seen every stored one (it
 * would supersede them all), for odd keys their honest dots with another value and such a context.
 */
function forgeries(rogue: string, entries: readonly SyncEntry[]): SyncEntry[] {
  return entries.map((e, i) => {
    const context = e.versions.map((v) => ({ ...v.dot, counter: v.dot.counter + 1000 }));
    if (i % 2 === 0) {
      return {
        key: e.key,
        versions: [{ dot: { node: rogue, counter: 1, timestamp: Date.now() }, context, value: evil }],
      };
    }
    return { key: e.key, versions: e.versions.map((v) => ({ ...v, context, value: evil })) };
  });
}

/** The replies of the victim to the rogue's requests `first` to `last`, once all have come. */
async function repliesBetween(rogue: RoguePeer, first: number, last: number): Promise<PeerMessage[]> {
  const replies = async (): Promise<PeerMessage[]> =>
    (await repliesTo(rogue)).filter((m) => m.requestId >= first && m.requestId <= last);
  await expect.poll(async () => (await replies()).length, { timeout: 20_000 }).toBe(last - first + 1);
  return replies();
}

test('a member cannot write a partition it does not own: keys it pushes there are refused unless an owner holds the very same versions', async ({
  context,
  server,
}) => {
  const { witness, rogue, ring, keys, keyBytes, partitionOf, before, ids } = await foreignKeys(
    context,
    server,
    'hostile-push',
  );
  // Nor may it pull those partitions whole.
  const pull = { type: 'sync-keys', from: rogue.id, requestId: ++ids.next, partition: [...before.keys()][0]! } as const;
  await rogue.send(frame({ ...pull, leaves: [0], after: null, maxBytes: 1 << 16 }));
  await expect
    .poll(async () => (await repliesTo(rogue)).find((m) => m.requestId === pull.requestId), { timeout: 10_000 })
    .toMatchObject({ type: 'error', code: 'ERR_UNAUTHORIZED' });

  // The forgeries, and one key nobody wrote.
  const first = ids.next + 1;
  for (const [partition, entries] of before) {
    const planted = {
      key: utf8.encode(`planted-${partition}`),
      versions: [{ dot: { node: rogue.id, counter: 2, timestamp: Date.now() }, context: [], value: evil }],
    };
    const forged = forgeries(rogue.id, entries);
    const entriesOut = ring.partitionOf(planted.key) === partition ? [...forged, planted] : forged;
    await rogue.send(
      frame({ type: 'sync-push', from: rogue.id, requestId: ++ids.next, partition, entries: entriesOut }),
    );
  }
  // Refused: the owners hold other versions (ERR_UNAUTHORIZED), or, while they still fetch the partition, the victim
  // cannot check with them (ERR_QUORUM). Either way nothing is stored, as the reads below show.
  for (const reply of await repliesBetween(rogue, first, ids.next)) {
    expect(reply.type).toBe('error');
    expect(['ERR_UNAUTHORIZED', 'ERR_QUORUM']).toContain((reply as { code?: string }).code);
  }

  const planted = [...before.keys()].map((p) => utf8.encode(`planted-${p}`));
  const after = await readAt(rogue, [...keyBytes, ...planted], partitionOf, ids);
  expect(shown([...after.values()].flat())).toEqual(shown([...before.values()].flat()));
  for (const key of keys) {
    const read = await witness.call((store, key) => store.get(key, { r: 3 }), key);
    expect(read.values).toEqual([`value of ${key}`]);
  }
});

test('another value a member ships under an honest dot through replicate changes nothing a replica holds', async ({
  context,
  server,
}) => {
  const { witness, rogue, keys, keyBytes, partitionOf, before, ids } = await foreignKeys(
    context,
    server,
    'hostile-replicate',
  );
  // As a get's coordinator repairing the owners or a fallback delivering its hints would ship them: the victim's
  // versions, each with another value (a tombstone for every other key) under its honest dot and context.
  const first = ids.next + 1;
  let i = 0;
  for (const entries of before.values()) {
    for (const e of entries) {
      const value = i++ % 2 === 0 ? evil : null;
      const message = { type: 'replicate', from: rogue.id, requestId: ++ids.next, key: e.key } as const;
      const versions = e.versions.map((v) => ({ ...v, value }));
      await rogue.send(frame({ ...message, versions, hintFor: null, durable: false, fresh: null }));
    }
  }
  // Answered, taken or not: a replica keeps what it holds under a dot, and dots are never reused.
  await repliesBetween(rogue, first, ids.next);

  const after = await readAt(rogue, keyBytes, partitionOf, ids);
  expect(shown([...after.values()].flat())).toEqual(shown([...before.values()].flat()));
  for (const key of keys) {
    const read = await witness.call((store, key) => store.get(key, { r: 3 }), key);
    expect(read.values).toEqual([`value of ${key}`]);
  }
});

test('a value a member plants under another tab’s next dot is dropped, as the tab never signed it, and the tab’s own write of the dot goes everywhere', async ({
  context,
  server,
}) => {
  const { victim, witness: writer, rogue } = await rogueBeside(context, server, 'hostile-next-dot');
  // A key the victim and the writer own (the writer coordinates its puts) and the rogue does not.
  const partitions = await victim.call((store) => store.partitions(), null);
  const shared = new Set(
    partitions.filter((p) => p.owners.includes(writer.nodeId) && !p.owners.includes(rogue.id)).map((p) => p.partition),
  );
  const ring = await keyRing(victim);
  let key = '';
  for (let i = 0; key === ''; i++) if (shared.has(ring.partitionOf(utf8.encode(`next-${i}`)))) key = `next-${i}`;
  const keyBytes = [utf8.encode(key)];
  const partitionOf = (k: Uint8Array): number => ring.partitionOf(k);
  const ids = { next: 0 };
  const put = async (value: string) => {
    const { receipt } = await writer.call((store, [k, v]) => store.put(k, v, { w: 3 }), [key, value] as const);
    expect(receipt.coordinator).toBe(writer.nodeId);
  };
  const writerDots = async () =>
    [...(await readAt(rogue, keyBytes, partitionOf, ids)).values()]
      .flat()
      .flatMap((e) => e.versions)
      .filter((v) => v.dot.node === writer.nodeId)
      .map((v) => `${v.dot.counter}=${String(decodeValue(v.value!))}`)
      .sort();

  await put('first');
  const [written] = await writerDots();
  const issued = Number(written!.split('=')[0]);
  // The writer's next dot with the rogue's value, at the victim, before the writer issues it.
  const requestId = ++ids.next;
  const planted = {
    dot: { node: writer.nodeId, counter: issued + 1, timestamp: Date.now() },
    context: [],
    value: encodeValue('evil'),
  };
  const message = { type: 'replicate', from: rogue.id, requestId, key: keyBytes[0]!, versions: [planted] } as const;
  await rogue.send(frame({ ...message, hintFor: null, durable: false, fresh: null }));
  await repliesBetween(rogue, requestId, requestId);
  // The writer's id derives from its key, and it signs every version it writes: the victim takes none of the
  // writer's versions from anyone else without the writer's proof.
  expect(await writerDots()).toEqual([`${issued}=first`]);
  expect((await victim.call((store) => store.metrics(), null)).node.unprovenVersions).toBe(1);

  await put('real');
  expect(await writerDots()).toEqual([`${issued}=first`, `${issued + 1}=real`]);
  const read = await writer.call((store, k) => store.get(k, { r: 3 }), key);
  expect([...read.values].sort()).toEqual(['first', 'real']);
});

/**
 * What a signalling server standing in the middle would have to hand a tab: a description whose certificate is not
 * the one its sender's key signed. Here the relay alters the signed fingerprint of every description it carries to
 * the tab (a server cannot sign one for its own certificate).
 */
function withAlteredFingerprints(frame: string): string {
  if (!frame.startsWith('42[')) return frame;
  const packet = JSON.parse(frame.slice(2)) as [string, { data?: { auth?: { fingerprint: string } } }];
  const auth = packet[0] === 'signal' ? packet[1].data?.auth : undefined;
  if (auth === undefined) return frame;
  auth.fingerprint = auth.fingerprint.slice(0, -1) + (auth.fingerprint.endsWith('0') ? '1' : '0');
  return `42${JSON.stringify(packet)}`;
}

test('a tab refuses a peer connection whose certificate the peer’s key does not vouch for, so no server can stand in the middle', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('hostile-middle');
  const honest = await openTab(context, server, { cluster, dataPlane: 'transfer' });
  const page = await context.newPage();
  await page.routeWebSocket(/\/socket\.io\//, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((message) => upstream.send(message));
    upstream.onMessage((message) => ws.send(typeof message === 'string' ? withAlteredFingerprints(message) : message));
  });
  await page.goto(demoUrl(server, { cluster, dataPlane: 'transfer' }));
  const tab = await tabOf(page);
  expect(tab.nodeId).toMatch(DERIVED_ID_PATTERN);
  await page.evaluate(() => {
    const w = window as unknown as {
      refusals: unknown[];
      store: { on(e: 'log', l: (entry: { msg: string }) => void): void };
    };
    w.refusals = [];
    w.store.on('log', (entry) => {
      if (entry.msg.startsWith('refused a peer connection')) w.refusals.push(entry);
    });
  });
  // Both see each other in the view; the tab keeps refusing the other's descriptions and never connects to it.
  await expect.poll(async () => (await tab.call((store) => store.members(), null)).length).toBe(2);
  await expect
    .poll(() => page.evaluate(() => (window as unknown as { refusals: unknown[] }).refusals.length), {
      timeout: 15_000,
    })
    .toBeGreaterThan(0);
  expect((await tab.call((store) => store.peers(), null))[honest.nodeId]).not.toBe('connected');
  expect((await honest.call((store) => store.peers(), null))[tab.nodeId]).not.toBe('connected');
});
