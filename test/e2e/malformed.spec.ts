/**
 * Hostile input at both of a node's doors: the signalling server's Socket.IO events and the peer frames a worker
 * decodes. Each bad input is refused and counted, and the cluster keeps serving.
 */
import { encode } from '@msgpack/msgpack';
import { io, type Socket } from 'socket.io-client';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import { DATA_PLANES, expect, freshCluster, openCluster, test, type Tab } from './fixtures.ts';
import { RoguePeer } from './rogue-peer.ts';

/** The sum of a Prometheus counter's series on the server's `/metrics`. */
async function counterTotal(url: string, name: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ')));
  }
  return total;
}

/** A put of `key` in one tab is read back in another. */
async function expectServing(writer: Tab, reader: Tab, key: string): Promise<void> {
  const value = `${key} from ${writer.nodeId}`;
  await writer.call((store, [key, value]) => store.put(key, value, { w: 2 }), [key, value] as const);
  const read = await reader.call((store, key) => store.get(key, { r: 2 }), key);
  expect(read.values).toEqual([value]);
}

test('malformed Socket.IO events are refused with error acknowledgements and counted, and the cluster keeps serving', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('bad-events');
  const [a, b] = await openCluster(context, server, 2, { cluster, dataPlane: 'transfer' });
  const viewBefore = server.view(cluster);
  const rejectedBefore = await counterTotal(server.url, 'dynamesh_signaling_events_rejected_total');

  const socket: Socket = io(server.url, { transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const valid = { cluster, nodeId: 'intruder', domain: 'elsewhere' };
  const attacks: { what: string; event: string; args: unknown[]; code: string }[] = [
    { what: 'a join without its fields', event: 'join', args: [{ cluster }], code: 'ERR_INVALID_ARGUMENT' },
    {
      what: "a join taking over a member's id with a bad domain",
      event: 'join',
      args: [{ cluster, nodeId: a!.nodeId, domain: '../../etc' }],
      code: 'ERR_INVALID_ARGUMENT',
    },
    {
      what: 'a join with an unknown field',
      event: 'join',
      args: [{ ...valid, admin: true }],
      code: 'ERR_INVALID_ARGUMENT',
    },
    { what: 'a join that is a string', event: 'join', args: ['let me in'], code: 'ERR_INVALID_ARGUMENT' },
    { what: 'a join with two payloads', event: 'join', args: [valid, valid], code: 'ERR_INVALID_ARGUMENT' },
    {
      what: 'a signal whose data is not an object',
      event: 'signal',
      args: [{ to: b!.nodeId, data: 'sdp' }],
      code: 'ERR_INVALID_ARGUMENT',
    },
    {
      what: 'a signal over the size limit',
      event: 'signal',
      args: [{ to: b!.nodeId, data: { sdp: 'x'.repeat(20_000) } }],
      code: 'ERR_TOO_LARGE',
    },
    {
      what: 'a heartbeat with a negative epoch',
      event: 'heartbeat',
      args: [{ epoch: -1 }],
      code: 'ERR_INVALID_ARGUMENT',
    },
    { what: 'metrics with a bad name', event: 'metrics', args: [{ 'bad name!': 1 }], code: 'ERR_INVALID_ARGUMENT' },
    {
      what: 'a report naming a number',
      event: 'report-unreachable',
      args: [{ nodeId: 42 }],
      code: 'ERR_INVALID_ARGUMENT',
    },
    { what: 'a leave with a payload', event: 'leave', args: [{ everyone: true }], code: 'ERR_INVALID_ARGUMENT' },
    { what: 'an unknown event', event: 'drop-cluster', args: [{ cluster }], code: 'ERR_INVALID_ARGUMENT' },
  ];
  for (const attack of attacks) {
    const ack = (await socket.timeout(5000).emitWithAck(attack.event, ...attack.args)) as {
      ok: boolean;
      error?: { code: string };
    };
    expect({ what: attack.what, ok: ack.ok, code: ack.error?.code }).toEqual({
      what: attack.what,
      ok: false,
      code: attack.code,
    });
  }
  expect(await counterTotal(server.url, 'dynamesh_signaling_events_rejected_total')).toBe(
    rejectedBefore + attacks.length,
  );

  // A packet that is not Socket.IO at all: the server drops the connection that sent it.
  const dropped = new Promise<string>((resolve) => socket.once('disconnect', resolve));
  socket.io.engine.write('2["join",{"cluster":');
  expect(await dropped).toBe('transport close');

  expect(server.view(cluster)).toEqual(viewBefore);
  await expectServing(a!, b!, 'after-bad-events');
  expect(server.view(cluster)).toEqual(viewBefore);
});

for (const dataPlane of DATA_PLANES) {
  test(`malformed peer frames are dropped and counted by the receiving node, which keeps serving (${dataPlane} data plane)`, async ({
    context,
    server,
  }) => {
    const cluster = freshCluster('bad-frames');
    // Formed first: the rogue member answers no holder probe, and would keep a cluster still learning that nobody holds
    // anything from holding its partitions (see the README's limitations).
    const [victim, witness] = await openCluster(context, server, 2, { cluster, dataPlane }, { settled: true });
    const rogue = await RoguePeer.connect(context, server, {
      cluster,
      id: '--------rogue',
      victimId: victim!.nodeId,
      plane: dataPlane,
    });
    const metricsOf = async (tab: Tab) => (await tab.call((store) => store.metrics(), null)).node;

    const whole = (message: Uint8Array): Uint8Array => new Uint8Array([0x00, ...message]);
    const read = (from: string, requestId: number): Uint8Array =>
      whole(
        encodeMessage({ type: 'read', from, requestId, key: new TextEncoder().encode('probe'), requireHeld: false }),
      );
    const chunk = (id: number, index: number, count: number): Uint8Array => {
      const frame = new Uint8Array(10);
      const view = new DataView(frame.buffer);
      view.setUint8(0, 0x01);
      view.setUint32(1, id);
      view.setUint16(5, index);
      view.setUint16(7, count);
      return frame;
    };
    const junk: { what: string; frame: Uint8Array | string }[] = [
      { what: 'a message claiming to come from another member', frame: read(witness!.nodeId, 2) },
      { what: 'bytes that are not MessagePack', frame: new Uint8Array([0x00, 0xc1, 0xc1]) },
      {
        what: 'a message with a negative request id',
        frame: whole(encode({ type: 'read', from: rogue.id, requestId: -1, key: new Uint8Array([1]) })),
      },
      {
        what: 'a message of an unknown type',
        frame: whole(encode({ type: 'format-disk', from: rogue.id, requestId: 3 })),
      },
      { what: 'a frame of an unknown kind', frame: new Uint8Array([0x07, 1, 2, 3]) },
      { what: 'a chunk of a one-chunk message', frame: chunk(9, 0, 1) },
      { what: 'a chunk out of sequence', frame: chunk(10, 1, 3) },
      { what: 'a text frame', frame: 'hello, worker' },
    ];

    // The victim's replies to the rogue; it may also send the member requests of its own (holder probes while it still
    // fetches partitions), which are not answers.
    const replies = async (): Promise<PeerMessage[]> =>
      (await rogue.received())
        .filter((frame) => frame[0] === 0x00)
        .map((frame) => decodeMessage(frame.subarray(1)))
        .filter((m) => m.type === 'read-reply' || m.type === 'error');

    // A well-formed request first: the rogue's channel really reaches the victim's node, which answers it.
    const before = await metricsOf(victim!);
    await rogue.send(read(rogue.id, 1));
    await expect.poll(async () => (await replies()).length).toBe(1);
    for (const { frame } of junk) await rogue.send(frame);
    await rogue.send(read(rogue.id, 4));
    await expect.poll(async () => (await replies()).length).toBe(2);

    expect((await replies()).map((m: PeerMessage) => [m.type, m.from, m.requestId])).toEqual([
      ['read-reply', victim!.nodeId, 1],
      ['read-reply', victim!.nodeId, 4],
    ]);
    const after = await metricsOf(victim!);
    expect(after.malformedFrames - before.malformedFrames).toBe(junk.length);
    expect(after.readsServed - before.readsServed).toBe(2);

    await expectServing(witness!, victim!, 'after-bad-frames-1');
    await expectServing(victim!, witness!, 'after-bad-frames-2');
  });
}
