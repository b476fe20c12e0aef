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
import {
  type ClusterView,
  type HeartbeatAck,
  type HeartbeatRequest,
  type JoinAck,
  type JoinRequest,
  PROTOCOL_VERSION,
} from '../../signaling/events.ts';
import type { DynameshError } from '../../worker/errors.ts';

/** A server that answers joins with `answer`, the joins it got, and a way to cut every connection as a crash would. */
async function scriptedServer(t: TestContext, answer: (request: JoinRequest) => JoinAck) {
  const http = createServer();
  const io = new Server(http);
  const joins: JoinRequest[] = [];
  /** The epochs heartbeats named, and the view their acknowledgement carries when it is another. */
  const heartbeats: (number | undefined)[] = [];
  let current: ClusterView | null = null;
  io.on('connection', (socket) => {
    socket.on('join', (request: JoinRequest, ack: (response: JoinAck) => void) => {
      joins.push(request);
      ack(answer(request));
    });
    socket.on('heartbeat', (request: HeartbeatRequest, ack: (response: HeartbeatAck) => void) => {
      heartbeats.push(request.epoch);
      if (current === null) return ack({ ok: false, error: { code: 'ERR_NOT_JOINED', message: 'scripted' } });
      ack({ ok: true, epoch: current.epoch, view: request.epoch === current.epoch ? null : current });
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
  /** Pushes `delta` to every connection, as the server pushes a change of the view. */
  const pushDelta = (delta: unknown): void => void io.emit('view-delta', delta);
  /** Relays `signal` to every connection, as the server relays a peer's. */
  const relay = (signal: unknown): void => void io.emit('signal', signal);
  /** Sets the view a heartbeat naming another epoch is answered with. */
  const answerHeartbeats = (view: ClusterView): void => void (current = view);
  /** Stops the server for good, as a killed process: connections cut, nothing listening. */
  const stop = (): Promise<void> => new Promise<void>((resolve) => io.close(() => resolve()));
  return { url: `http://127.0.0.1:${port}`, joins, heartbeats, crash, push, pushDelta, relay, answerHeartbeats, stop };
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
function connect(url: string | readonly string[], options: Partial<SignalingClientOptions> = {}) {
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

describe('signalling client: views pushed as deltas', () => {
  const n1 = { id: 'n1', domain: 'd', placement: '', state: 'alive', joinedAt: 1 } as const;
  const n2 = { ...n1, id: 'n2', domain: 'e' } as const;

  it('applies a delta that follows the view it holds and hands on the whole view', async (t) => {
    const server = await scriptedServer(t, accepted);
    const views: ClusterView[] = [];
    const client = await connect(server.url, { onView: (view) => views.push(view) });
    t.after(() => client.close());
    server.pushDelta({ cluster: 'main', epoch: 2, prevEpoch: 1, upserts: [n2], removals: [] });
    server.pushDelta({ cluster: 'main', epoch: 3, prevEpoch: 2, upserts: [], removals: ['n1'] });
    await until(() => views.length === 3, 'both deltas are applied');
    assert.deepEqual(views.slice(1), [
      { cluster: 'main', epoch: 2, members: [n1, n2] },
      { cluster: 'main', epoch: 3, members: [n2] },
    ]);
  });

  it('asks for the whole view when a delta does not follow the view it holds', async (t) => {
    const server = await scriptedServer(t, accepted);
    const views: ClusterView[] = [];
    const client = await connect(server.url, { onView: (view) => views.push(view) });
    t.after(() => client.close());
    const whole: ClusterView = { cluster: 'main', epoch: 5, members: [n1, n2] };
    server.answerHeartbeats(whole);
    // The change from epoch 1 to 4 never reached this client.
    server.pushDelta({ cluster: 'main', epoch: 5, prevEpoch: 4, upserts: [n2], removals: [] });
    await until(() => views.length === 2, 'the whole view arrives');
    assert.deepEqual(server.heartbeats, [1]);
    assert.deepEqual(views[1], whole);
  });

  it('ignores a delta that fails validation and says why', async (t) => {
    const server = await scriptedServer(t, accepted);
    const reasons: string[] = [];
    const epochs: number[] = [];
    const client = await connect(server.url, {
      onView: (view) => epochs.push(view.epoch),
      onInvalidView: (reason) => reasons.push(reason),
    });
    t.after(() => client.close());
    server.pushDelta({ cluster: 'main', epoch: 2, prevEpoch: 1, upserts: [{ ...n2, id: 'n 2' }], removals: [] });
    server.pushDelta({ cluster: 'main', epoch: 2, prevEpoch: 1, upserts: [n2], removals: [] });
    await until(() => epochs.includes(2), 'the valid delta is applied');
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /view-delta: members\[0\]\.id/);
  });
});

describe('signalling client: a list of servers', () => {
  it('joins the next server of its list with the same node id when its server goes away', async (t) => {
    const first = await scriptedServer(t, accepted);
    const second = await scriptedServer(t, accepted);
    const connected: boolean[] = [];
    const client = await connect([first.url, second.url], { onConnection: (up) => connected.push(up) });
    t.after(() => client.close());
    assert.equal(client.url, first.url);
    await first.stop();
    await until(() => second.joins.length === 1, 'the client joins the second server');
    assert.equal(second.joins[0]?.nodeId, 'n1');
    assert.equal(client.url, second.url);
    await until(() => client.connected, 'the client is connected');
    assert.deepEqual(connected, [false, true]);
  });

  it('opens through the next server when the first of its list cannot be reached', async (t) => {
    const gone = await scriptedServer(t, accepted);
    await gone.stop();
    const server = await scriptedServer(t, accepted);
    const client = await connect([gone.url, server.url]);
    t.after(() => client.close());
    assert.equal(client.url, server.url);
    assert.equal(server.joins.length, 1);
  });
});

/** Resolves once `test` holds, checked as the event loop turns; rejects after 5 s. */
async function until(test: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !test(); waited += 10) {
    if (waited > 5000) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

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
