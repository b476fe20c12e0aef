/**
 * The tab's signalling client against a scripted Socket.IO server, for what the real server does not do by itself:
 * change release between two joins of one client.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { Server } from 'socket.io';
import { SignalingClient, type SignalingClientOptions } from '../../client/signaling.ts';
import { type JoinAck, type JoinRequest, PROTOCOL_VERSION } from '../../signaling/events.ts';
import type { DynameshError } from '../../worker/errors.ts';

/** A server that answers joins with `answer`, the joins it got, and a way to cut every connection as a crash would. */
async function scriptedServer(t: TestContext, answer: (request: JoinRequest) => JoinAck) {
  const http = createServer();
  const io = new Server(http);
  const joins: JoinRequest[] = [];
  io.on('connection', (socket) => {
    socket.on('join', (request: JoinRequest, ack: (response: JoinAck) => void) => {
      joins.push(request);
      ack(answer(request));
    });
    socket.on('leave', (_: unknown, ack: (response: { ok: true }) => void) => ack({ ok: true }));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => io.close(() => resolve())));
  const { port } = http.address() as AddressInfo;
  // Closing the transports (not the sockets) looks like a server gone away: the client reconnects by itself.
  const crash = (): void => {
    for (const socket of io.sockets.sockets.values()) socket.conn.close();
  };
  /** Pushes `view` to every connection, as the server pushes a new view. */
  const push = (view: unknown): void => void io.emit('view', view);
  /** Relays `signal` to every connection, as the server relays a peer's. */
  const relay = (signal: unknown): void => void io.emit('signal', signal);
  return { url: `http://127.0.0.1:${port}`, joins, crash, push, relay };
}

function accepted(request: JoinRequest): JoinAck {
  return {
    ok: true,
    view: {
      cluster: request.cluster,
      epoch: 1,
      members: [{ id: request.nodeId, domain: request.domain, placement: '', state: 'alive', joinedAt: 1 }],
    },
    heartbeatInterval: 60_000,
    heartbeatTimeout: 180_000,
    partitions: 256,
    limits: {
      maxMembersPerCluster: 64,
      maxPayloadBytes: 1 << 20,
      maxSignalBytes: 1 << 16,
      maxFrameBytes: 16 * 1024,
      maxFramesPerSecond: 200,
      maxMetricsEntries: 64,
      maxEventsPerSecond: 50,
      maxEventBurst: 100,
    },
  };
}

/** A client of node n1 of cluster main, listening as `options` says and otherwise not at all. */
function connect(url: string, options: Partial<SignalingClientOptions> = {}) {
  return SignalingClient.connect({
    url,
    cluster: 'main',
    nodeId: 'n1',
    domain: 'd',
    onView: () => {},
    onSignal: () => {},
    joinTimeout: 5000,
    startHeartbeats: () => () => {},
    ...options,
  });
}

describe('signalling client: what the server sends', () => {
  it('fails to open with ERR_INVALID_ARGUMENT when the join is answered with a malformed view', async (t) => {
    const server = await scriptedServer(t, (request) => {
      const ack = accepted(request);
      return { ...ack, view: { ...(ack.ok ? ack.view : {}), epoch: 'soon' } } as unknown as JoinAck;
    });
    await assert.rejects(connect(server.url), { code: 'ERR_INVALID_ARGUMENT', message: /view: epoch/ });
  });

  it('ignores a pushed view that fails validation, says why, and takes the next valid one', async (t) => {
    const server = await scriptedServer(t, accepted);
    const epochs: number[] = [];
    const reasons: string[] = [];
    const client = await connect(server.url, {
      onView: (view) => epochs.push(view.epoch),
      onInvalidView: (reason) => reasons.push(reason),
    });
    t.after(() => client.close());
    const member = { id: 'n1', domain: 'd', placement: '', state: 'alive', joinedAt: 1 };
    server.push({ cluster: 'main', epoch: 2, members: [member, { ...member, id: 'n 2' }] });
    server.push({ cluster: 'main', epoch: 3, members: [member, { ...member, id: 'n2' }] });
    // Pushes arrive in order: once the valid one is in, the malformed one before it has been dealt with.
    for (let waited = 0; !epochs.includes(3) && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(epochs, [1, 3]);
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /members\[1\]\.id/);
    assert.equal(client.view?.epoch, 3);
  });

  it('drops a relayed signal that is not from a node id or carries no object', async (t) => {
    const server = await scriptedServer(t, accepted);
    const from: string[] = [];
    const client = await connect(server.url, { onSignal: (signal) => from.push(signal.from) });
    t.after(() => client.close());
    for (const bad of [
      'offer',
      null,
      { from: 'n 2', data: {} },
      { from: 'n2', data: null },
      { from: 'n2', data: [] },
    ]) {
      server.relay(bad);
    }
    server.relay({ from: 'n2', data: { conn: 'c', payload: {} } });
    for (let waited = 0; from.length === 0 && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(from, ['n2']);
  });
});

describe('signalling client: protocol versions', () => {
  it('joins with the protocol version of its release', async (t) => {
    const server = await scriptedServer(t, accepted);
    const client = await connect(server.url);
    t.after(() => client.close());
    assert.equal(server.joins[0]?.protocol, PROTOCOL_VERSION);
  });

  it('joins with the first counter its node signs, when it signs, and without one when not', async (t) => {
    const server = await scriptedServer(t, accepted);
    const signing = await connect(server.url, { signedFrom: 1025 });
    t.after(() => signing.close());
    const plain = await connect(server.url);
    t.after(() => plain.close());
    assert.equal(server.joins[0]?.signedFrom, 1025);
    assert.equal(server.joins[1] !== undefined && 'signedFrom' in server.joins[1], false);
  });

  it('fails to open with ERR_VERSION_MISMATCH when the server runs another release', async (t) => {
    const server = await scriptedServer(t, () => ({
      ok: false,
      error: { code: 'ERR_VERSION_MISMATCH', message: 'the server runs protocol 99' },
    }));
    await assert.rejects(connect(server.url), { code: 'ERR_VERSION_MISMATCH', message: /protocol 99/ });
  });

  it('stops joining and says it is outdated when the server it re-joins after a restart runs another release', async (t) => {
    let upgraded = false;
    const server = await scriptedServer(t, (request) =>
      upgraded
        ? { ok: false, error: { code: 'ERR_VERSION_MISMATCH', message: 'the server runs protocol 99' } }
        : accepted(request),
    );
    let outdated: (error: DynameshError) => void = () => {};
    const told = new Promise<DynameshError>((resolve) => (outdated = resolve));
    const client = await connect(server.url, { onOutdated: (error) => outdated(error) });
    t.after(() => client.close());
    upgraded = true;
    server.crash();
    const error = await Promise.race([
      told,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('never told it is outdated')), 10_000)),
    ]);
    assert.equal(error.code, 'ERR_VERSION_MISMATCH');
    assert.match(error.message, /protocol 99/);
    // It has stopped: no more joins, however long the server waits.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(server.joins.length, 2);
    assert.equal(client.connected, false);
  });
});
