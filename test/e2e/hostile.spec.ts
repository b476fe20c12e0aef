/**
 * Hostile members: a rogue page that joins the cluster through the real signalling server and speaks the peer
 * protocol correctly, but sends what no honest node would. Each test asserts that honest data stays byte for byte as
 * it was on the node attacked, and that honest requests keep succeeding.
 */
import { io } from 'socket.io-client';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { Reassembler } from '../../worker/wire/frames.ts';
import { type PeerMessage, type SyncEntry, TREE_LEAVES } from '../../worker/wire/protocol.ts';
import { DEFAULT_PARTITIONS } from '../../worker/ring/ring.ts';

import { expect, freshCluster, openCluster, test } from './fixtures.ts';
import { RoguePeer } from './rogue-peer.ts';

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
  let requestId = 0;
  const all = Array.from({ length: TREE_LEAVES }, (_, i) => i);
  /** What the victim stores, partition by partition, as its replies to `sync-keys` tell. */
  const stored = async (): Promise<Map<number, SyncEntry[]>> => {
    const first = requestId + 1;
    for (let partition = 0; partition < DEFAULT_PARTITIONS; partition++) {
      const ask = { type: 'sync-keys', from: rogue.id, requestId: ++requestId, partition, leaves: all } as const;
      await rogue.send(frame({ ...ask, after: null, maxBytes: 1 << 20 }));
    }
    const answered = async (): Promise<PeerMessage[]> =>
      (await repliesTo(rogue)).filter((m) => m.requestId >= first && m.requestId <= requestId);
    await expect.poll(async () => (await answered()).length, { timeout: 20_000 }).toBe(DEFAULT_PARTITIONS);
    const out = new Map<number, SyncEntry[]>();
    for (const reply of await answered()) {
      expect(reply.type).toBe('sync-keys-reply');
      if (reply.type === 'sync-keys-reply' && reply.entries.length > 0) {
        out.set(reply.requestId - first, [...reply.entries]);
      }
    }
    return out;
  };

  const before = await stored();
  expect([...before.values()].flat()).toHaveLength(keys.length);
  // Every key named back with the dots it has, as tombstones, to be collected.
  let sent = 0;
  for (const [partition, entries] of before) {
    const forged = entries.map((e) => ({ key: e.key, versions: e.versions.map((v) => ({ ...v, value: null })) }));
    await rogue.send(frame({ type: 'sync-drop', from: rogue.id, requestId: ++requestId, partition, entries: forged }));
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
    const ack = (await impostor.emitWithAck('join', { cluster, nodeId: victim!.nodeId, domain: 'elsewhere' })) as {
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
