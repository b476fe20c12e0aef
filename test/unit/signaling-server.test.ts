/**
 * The signalling server over real Socket.IO connections on 127.0.0.1: views, failure detection, relay, isolation,
 * validation, limits and access. Each test starts its own server on port 0 and closes it and its clients.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import {
  type ClientToServerEvents,
  type ClusterView,
  type JoinAck,
  PROTOCOL_VERSION,
  type RelayedFrame,
  type RelayedSignal,
  type ServerToClientEvents,
  type ViewDelta,
} from '../../signaling/events.ts';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { mintToken } from '../../signaling/token.ts';
import { applyViewDelta, validateView, validateViewDelta } from '../../signaling/validate.ts';
import { Ring } from '../../worker/ring/ring.ts';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;
/** A client that may send anything, to play a broken or hostile node. */
type RawClient = { emitWithAck(event: string, ...args: unknown[]): Promise<unknown> };

const WAIT_MS = 10_000;

/** The protocol field of a join of this release. */
const current = { protocol: PROTOCOL_VERSION } as const;

/** Starts a server for test `t` and closes it, with every client opened through the harness, when `t` ends. */
async function harness(t: TestContext, options: SignalingServerOptions = {}) {
  const server = await createSignalingServer({ port: 0, logLevel: 'silent', ...options });
  const clients: Client[] = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await server.close();
  });
  const open = async (): Promise<Client> => {
    const client: Client = connect(server.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    clients.push(client);
    await withTimeout(new Promise<void>((resolve) => client.once('connect', () => resolve())), 'connect');
    return client;
  };
  /** Opens a client, records every view it is pushed, joins it and waits for the view its join pushed. */
  const member = async (nodeId: string, cluster = 'main', token?: string) => {
    const client = await open();
    const views: ClusterView[] = [];
    onView(client, (view) => views.push(view));
    const ack = await client.emitWithAck('join', {
      cluster,
      nodeId,
      domain: `d-${nodeId}`,
      protocol: PROTOCOL_VERSION,
      ...(token ? { token } : {}),
    });
    assert.ok(ack.ok, `join of ${nodeId} refused: ${JSON.stringify(ack)}`);
    assert.deepEqual(validateView(ack.view), { ok: true, value: ack.view });
    followViews(client, ack.view);
    views.push(ack.view);
    return { client, views, ack };
  };
  // A server with a secret serves /metrics to the holder of the secret only.
  const authorization = options.secret === undefined ? {} : { Authorization: `Bearer ${options.secret}` };
  const metricsText = async () => (await fetch(`${server.url}/metrics`, { headers: authorization })).text();
  return { server, open, member, metricsText };
}

function withTimeout<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Who hears the views each client is pushed (rebuilt by {@link followViews}). */
const viewListeners = new WeakMap<Client, Set<(view: ClusterView) => void>>();

function onView(client: Client, listener: (view: ClusterView) => void): () => void {
  const listeners = viewListeners.get(client) ?? new Set();
  viewListeners.set(client, listeners);
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Rebuilds the views `client` is pushed, as a tab does: the server pushes deltas, each from the view before it, onto
 * the whole view the join answered with.
 */
function followViews(client: Client, joined: ClusterView): void {
  let current = joined;
  client.on('view-delta', (delta) => {
    // Every delta the server sends passes the validation its clients apply, and so does the view it leads to.
    assert.deepEqual(validateViewDelta(delta), { ok: true, value: delta });
    if (delta.epoch <= current.epoch) return;
    assert.equal(delta.prevEpoch, current.epoch, 'each delta follows the view before it');
    current = { cluster: current.cluster, epoch: delta.epoch, members: applyViewDelta(current.members, delta) };
    assert.deepEqual(validateView(current), { ok: true, value: current });
    for (const listener of viewListeners.get(client) ?? []) listener(current);
  });
}

/** The first view pushed to `client` from now on that satisfies `test`. */
function nextView(client: Client, test: (view: ClusterView) => boolean, what = 'a view'): Promise<ClusterView> {
  return withTimeout(
    new Promise((resolve) => {
      const stop = onView(client, (view) => {
        if (!test(view)) return;
        stop();
        resolve(view);
      });
    }),
    what,
  );
}

/** The first view `record` was pushed, since it joined, that satisfies `test`: already seen, or still to come. */
function seenView(
  record: { client: Client; views: ClusterView[] },
  test: (view: ClusterView) => boolean,
  what = 'a view',
): Promise<ClusterView> {
  const seen = record.views.find(test);
  return seen === undefined ? nextView(record.client, test, what) : Promise.resolve(seen);
}

/** Heartbeats from `client` every `ms` until `t` ends. */
function keepBeating(t: TestContext, client: Client, ms: number): void {
  const timer = setInterval(() => {
    // Heartbeats still in flight when the test closes its clients are refused; that is not a failure.
    client.emitWithAck('heartbeat', {}).catch(() => {});
  }, ms);
  t.after(() => clearInterval(timer));
}

function nextSignal(client: Client): Promise<RelayedSignal> {
  return withTimeout(new Promise((resolve) => client.once('signal', resolve)), 'a signal');
}

const ids = (view: ClusterView) => view.members.map((member) => member.id);
const member = (view: ClusterView, id: string) => view.members.find((entry) => entry.id === id);
const errorCode = (ack: unknown) => (ack as { ok: boolean; error?: { code: string } }).error?.code ?? 'ok';

/** The value of one Prometheus sample, 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('signalling server: membership', () => {
  it('answers a join with a view holding the new member and the heartbeat settings', async (t) => {
    const { member: join } = await harness(t, { heartbeatInterval: 400, heartbeatTimeout: 1500 });
    const { ack } = await join('alpha');
    assert.ok(ack.ok);
    assert.deepEqual(ids(ack.view), ['alpha']);
    assert.equal(ack.view.cluster, 'main');
    assert.deepEqual(member(ack.view, 'alpha')?.state, 'alive');
    assert.equal(ack.heartbeatInterval, 400);
    assert.equal(ack.heartbeatTimeout, 1500);
    assert.equal(ack.limits.maxMembersPerCluster, 1000);
  });

  it('pushes the view with a higher epoch to both members when a second one joins', async (t) => {
    const { member: join } = await harness(t);
    const first = await join('alpha');
    const firstEpoch = (first.ack as Extract<JoinAck, { ok: true }>).view.epoch;
    const toFirst = nextView(first.client, (view) => view.members.length === 2, 'the view of two at alpha');
    const second = await join('beta');
    const [seenByFirst, seenBySecond] = await Promise.all([
      toFirst,
      seenView(second, (view) => view.members.length === 2, 'the view of two at beta'),
    ]);
    assert.deepEqual(seenByFirst, seenBySecond);
    assert.deepEqual(ids(seenByFirst), ['alpha', 'beta']);
    assert.ok(seenByFirst.epoch > firstEpoch);
  });

  it('pushes a change to the members as a delta holding only what changed, not the whole view', async (t) => {
    const { member: join } = await harness(t);
    const members = [];
    for (const id of ['m1', 'm2', 'm3', 'm4']) members.push(await join(id));
    const first = members[0]!;
    const four = await seenView(first, (view) => ids(view).length === 4, 'the view of four at m1');
    const delta = withTimeout(
      new Promise<ViewDelta>((resolve) => first.client.once('view-delta', resolve)),
      'the delta of the fifth join',
    );
    await join('m5');
    const pushed = await delta;
    assert.equal(pushed.prevEpoch, four.epoch);
    assert.deepEqual(
      pushed.upserts.map((entry) => entry.id),
      ['m5'],
    );
    assert.deepEqual(pushed.removals, []);
  });

  it('drops a member that stops heartbeating within heartbeatTimeout and restores it when it heartbeats', async (t) => {
    const heartbeatTimeout = 400;
    const { member: join, metricsText } = await harness(t, {
      heartbeatInterval: 50,
      heartbeatTimeout,
      sweepInterval: 20,
    });
    const alive = await join('alive');
    keepBeating(t, alive.client, 50);
    const lastHeard = Date.now();
    const quiet = await join('quiet');
    const without = await nextView(alive.client, (view) => !ids(view).includes('quiet'), 'the view without quiet');
    const silence = Date.now() - lastHeard;
    assert.ok(silence >= heartbeatTimeout - 5, `left after ${silence} ms of silence`);
    assert.ok(silence < heartbeatTimeout + 1000, `left only after ${silence} ms of silence`);
    // At least: under heavy load the heartbeating member may miss its deadline too.
    assert.ok(sample(await metricsText(), 'dynamesh_signaling_failures_detected_total{reason="heartbeat"}') >= 1);
    const back = nextView(alive.client, (view) => ids(view).includes('quiet'), 'the view with quiet back');
    const beat = await quiet.client.emitWithAck('heartbeat', { epoch: without.epoch });
    assert.ok(beat.ok);
    const restored = await back;
    assert.ok(restored.epoch > without.epoch);
    assert.equal(member(restored, 'quiet')?.state, 'alive');
  });

  it('marks a member whose connection drops suspect at once and removes it after heartbeatTimeout', async (t) => {
    const { member: join } = await harness(t, { heartbeatInterval: 50, heartbeatTimeout: 300, sweepInterval: 20 });
    const stays = await join('stays');
    keepBeating(t, stays.client, 50);
    const drops = await join('drops');
    const suspect = nextView(stays.client, (view) => member(view, 'drops')?.state === 'suspect', 'drops suspect');
    const gone = nextView(stays.client, (view) => !ids(view).includes('drops'), 'the view without drops');
    drops.client.close();
    await suspect;
    await gone;
  });

  it('keeps a silent member that announced its tab frozen as suspect until suspectGrace runs out', async (t) => {
    const heartbeatTimeout = 300;
    const suspectGrace = 600;
    const {
      member: join,
      server,
      metricsText,
    } = await harness(t, {
      heartbeatInterval: 50,
      heartbeatTimeout,
      suspectGrace,
      sweepInterval: 20,
    });
    const awake = await join('awake');
    keepBeating(t, awake.client, 50);
    const frozen = await join('frozen');
    const suspect = nextView(awake.client, (view) => member(view, 'frozen')?.state === 'suspect', 'frozen suspect');
    const gone = nextView(awake.client, (view) => !ids(view).includes('frozen'), 'the view without frozen');
    // Taken before the event is sent: the server hears it later, so the silence it measures is never shorter.
    const lastHeard = Date.now();
    assert.deepEqual(await frozen.client.emitWithAck('lifecycle', { state: 'frozen' }), { ok: true });
    await suspect;
    const suspectAfter = Date.now() - lastHeard;
    assert.ok(suspectAfter >= heartbeatTimeout - 5, `suspect after ${suspectAfter} ms of silence`);
    assert.equal((await server.stats()).inGrace, 1);
    const text = await metricsText();
    assert.equal(sample(text, 'dynamesh_signaling_members_in_grace'), 1);
    assert.equal(sample(text, 'dynamesh_signaling_graces_started_total{state="frozen"}'), 1);
    await gone;
    const silence = Date.now() - lastHeard;
    assert.ok(silence >= heartbeatTimeout + suspectGrace - 5, `left after ${silence} ms of silence`);
    assert.ok(silence < heartbeatTimeout + suspectGrace + 1000, `left only after ${silence} ms of silence`);
    assert.equal(sample(await metricsText(), 'dynamesh_signaling_failures_detected_total{reason="grace"}'), 1);
  });

  it('removes a member that announced its tab hidden and then closed its connection at heartbeatTimeout', async (t) => {
    const heartbeatTimeout = 300;
    const { member: join } = await harness(t, {
      heartbeatInterval: 50,
      heartbeatTimeout,
      suspectGrace: 60_000,
      sweepInterval: 20,
    });
    const stays = await join('stays');
    keepBeating(t, stays.client, 50);
    const closes = await join('closes');
    assert.deepEqual(await closes.client.emitWithAck('lifecycle', { state: 'hidden' }), { ok: true });
    const lastHeard = Date.now();
    const gone = nextView(stays.client, (view) => !ids(view).includes('closes'), 'the view without closes');
    closes.client.close();
    await gone;
    const silence = Date.now() - lastHeard;
    assert.ok(silence < heartbeatTimeout + 1000, `left only after ${silence} ms of silence`);
  });

  it('refuses a lifecycle announcement from a connection that has not joined', async (t) => {
    const { open, metricsText } = await harness(t);
    const stranger = await open();
    assert.equal(errorCode(await stranger.emitWithAck('lifecycle', { state: 'hidden' })), 'ERR_NOT_JOINED');
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="lifecycle",reason="not_joined"}'),
      1,
    );
  });

  it('removes a leaving member at once and tells the others', async (t) => {
    const { member: join, server } = await harness(t);
    const stays = await join('stays');
    const leaves = await join('leaves');
    const without = nextView(stays.client, (view) => !ids(view).includes('leaves'), 'the view without leaves');
    assert.deepEqual(await leaves.client.emitWithAck('leave', {}), { ok: true });
    await without;
    assert.deepEqual(ids(server.view('main')!), ['stays']);
    assert.equal(errorCode(await leaves.client.emitWithAck('heartbeat', {})), 'ERR_NOT_JOINED');
  });

  it('hands the membership to a newer connection of the same node and tells the older one', async (t) => {
    const { member: join, open } = await harness(t);
    const old = await join('node');
    const superseded = withTimeout(new Promise((resolve) => old.client.once('superseded', resolve)), 'superseded');
    const fresh = await open();
    const ack = await fresh.emitWithAck('join', { cluster: 'main', nodeId: 'node', domain: 'd-node', ...current });
    assert.ok(ack.ok);
    assert.deepEqual(await superseded, { cluster: 'main', nodeId: 'node' });
    assert.equal(errorCode(await old.client.emitWithAck('heartbeat', {})), 'ERR_NOT_JOINED');
    assert.ok((await fresh.emitWithAck('heartbeat', {})).ok);
  });

  it('answers a heartbeat with the current view only when the node’s epoch is stale', async (t) => {
    const { member: join } = await harness(t);
    const one = await join('one');
    await join('two');
    const stale = await one.client.emitWithAck('heartbeat', { epoch: 1 });
    assert.ok(stale.ok);
    assert.deepEqual(ids(stale.view!), ['one', 'two']);
    const current = await one.client.emitWithAck('heartbeat', { epoch: stale.epoch });
    assert.deepEqual(current, { ok: true, epoch: stale.epoch, view: null });
  });

  it('makes a reported member suspect in everyone’s view and tells the reporter', async (t) => {
    // Members report from their join on here; the tenure rule is membership's to test.
    const { member: join } = await harness(t, { reporterTenure: 0 });
    const a = await join('a');
    await join('b');
    const c = await join('c');
    const suspect = nextView(c.client, (view) => member(view, 'b')?.state === 'suspect', 'b suspect');
    assert.deepEqual(await a.client.emitWithAck('report-unreachable', { nodeId: 'b' }), { ok: true, state: 'suspect' });
    await suspect;
  });

  it('keeps two clusters apart: views, pushes and counts', async (t) => {
    const { member: join, server } = await harness(t);
    const red = await join('r1', 'red');
    await join('b1', 'blue');
    await join('b2', 'blue');
    const redTwo = nextView(red.client, (view) => view.members.length === 2, 'the red view of two');
    await join('r2', 'red');
    await redTwo;
    assert.ok(red.views.every((view) => view.cluster === 'red' && ids(view).every((id) => id.startsWith('r'))));
    assert.deepEqual(ids(server.view('red')!), ['r1', 'r2']);
    assert.deepEqual(ids(server.view('blue')!), ['b1', 'b2']);
  });

  it('refuses a join over maxMembersPerCluster, and admits one again after a member leaves', async (t) => {
    const { member: join, open, metricsText } = await harness(t, { maxMembersPerCluster: 2 });
    const first = await join('one');
    await join('two');
    const third = await open();
    const refused = await third.emitWithAck('join', { cluster: 'main', nodeId: 'three', domain: 'd', ...current });
    assert.equal(errorCode(refused), 'ERR_CLUSTER_FULL');
    await join('elsewhere', 'other');
    await first.client.emitWithAck('leave', {});
    assert.ok((await third.emitWithAck('join', { cluster: 'main', nodeId: 'three', domain: 'd', ...current })).ok);
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="join",reason="cluster_full"}'),
      1,
    );
  });
});

describe('signalling server: relay', () => {
  it('relays a signal to the member named, stamped with the sender’s id', async (t) => {
    const { member: join, metricsText } = await harness(t);
    const a = await join('a');
    const b = await join('b');
    const received = nextSignal(b.client);
    const data = { type: 'offer', sdp: 'v=0\r\n' };
    assert.deepEqual(await a.client.emitWithAck('signal', { to: 'b', data }), { ok: true });
    assert.deepEqual(await received, { from: 'a', data });
    assert.equal(sample(await metricsText(), 'dynamesh_signaling_signals_relayed_total'), 1);
  });

  it('refuses a signal to a non-member or to a member of another cluster, and delivers nothing', async (t) => {
    const { member: join, open } = await harness(t);
    const a = await join('a', 'one');
    const x = await join('x', 'two');
    const y = await join('y', 'two');
    const stranger = await open();
    const received = nextSignal(x.client);
    assert.equal(errorCode(await a.client.emitWithAck('signal', { to: 'x', data: { leak: 1 } })), 'ERR_NOT_MEMBER');
    assert.equal(errorCode(await a.client.emitWithAck('signal', { to: 'ghost', data: {} })), 'ERR_NOT_MEMBER');
    assert.equal(errorCode(await stranger.emitWithAck('signal', { to: 'x', data: { leak: 2 } })), 'ERR_NOT_JOINED');
    await y.client.emitWithAck('signal', { to: 'x', data: { from: 'y' } });
    assert.deepEqual(await received, { from: 'y', data: { from: 'y' } });
  });

  it('keeps the metrics each node pushes, serves them to its cluster and exports them to Prometheus', async (t) => {
    const { member: join, metricsText, server } = await harness(t);
    const a = await join('a');
    const b = await join('b');
    assert.deepEqual(await a.client.emitWithAck('metrics', { puts_total: 12, put_p50_ms: 0.75 }), { ok: true });
    const read = await b.client.emitWithAck('get-metrics', {});
    assert.ok(read.ok);
    assert.deepEqual(read.metrics.a?.values, { puts_total: 12, put_p50_ms: 0.75 });
    assert.deepEqual(Object.keys(await server.nodeMetrics('main')), ['a']);
    const text = await metricsText();
    assert.equal(sample(text, 'dynamesh_node_metric{cluster="main",node="a",name="puts_total"}'), 12);
    assert.equal(sample(text, 'dynamesh_node_metric{cluster="main",node="a",name="put_p50_ms"}'), 0.75);
  });
});

function nextFrame(client: Client): Promise<RelayedFrame> {
  return withTimeout(new Promise((resolve) => client.once('frame', resolve)), 'a frame');
}

/** The bytes of a relayed frame, as the receiving client got them. */
const bytesOf = (frame: RelayedFrame): number[] => [...new Uint8Array(frame.data as ArrayBuffer)];

describe('signalling server: frame relay', () => {
  it('relays a binary frame to the member named, bytes intact, stamped with the sender’s id', async (t) => {
    const { member: join, metricsText } = await harness(t);
    const a = await join('a');
    const b = await join('b');
    const received = nextFrame(b.client);
    const data = new Uint8Array([0, 1, 2, 250, 255]);
    assert.deepEqual(await a.client.emitWithAck('frame', { to: 'b', data }), { ok: true });
    const frame = await received;
    assert.equal(frame.from, 'a');
    assert.deepEqual(bytesOf(frame), [0, 1, 2, 250, 255]);
    const text = await metricsText();
    assert.equal(sample(text, 'dynamesh_signaling_frames_relayed_total'), 1);
    assert.equal(sample(text, 'dynamesh_signaling_frame_bytes_relayed_total'), 5);
  });

  it('relays a frame sent without an acknowledgement', async (t) => {
    const { member: join } = await harness(t);
    const a = await join('a');
    const b = await join('b');
    const received = nextFrame(b.client);
    a.client.emit('frame', { to: 'b', data: new Uint8Array([7]) });
    assert.deepEqual(bytesOf(await received), [7]);
  });

  it('refuses a frame to a non-member, to a member of another cluster or from an unjoined connection', async (t) => {
    const { member: join, open } = await harness(t);
    const a = await join('a', 'one');
    const x = await join('x', 'two');
    const y = await join('y', 'two');
    const stranger = await open();
    const received = nextFrame(x.client);
    const data = new Uint8Array([1]);
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'x', data })), 'ERR_NOT_MEMBER');
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'ghost', data })), 'ERR_NOT_MEMBER');
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'a', data })), 'ERR_INVALID_ARGUMENT');
    assert.equal(errorCode(await stranger.emitWithAck('frame', { to: 'x', data })), 'ERR_NOT_JOINED');
    await y.client.emitWithAck('frame', { to: 'x', data: new Uint8Array([9]) });
    const first = await received;
    assert.equal(first.from, 'y');
    assert.deepEqual(bytesOf(first), [9]);
  });

  it('refuses a malformed frame with ERR_INVALID_ARGUMENT and relays nothing', async (t) => {
    const { member: join, metricsText } = await harness(t);
    const a = await join('a');
    const b = await join('b');
    const raw = a.client as unknown as RawClient;
    const frames: RelayedFrame[] = [];
    b.client.on('frame', (frame) => frames.push(frame));
    const cases: unknown[][] = [
      [{ to: 'b', data: 'text, not binary' }],
      [{ to: 'b', data: [1, 2, 3] }],
      [{ to: 'b', data: new Uint8Array(0) }],
      [{ to: 'bad id', data: new Uint8Array([1]) }],
      [{ to: 'b', data: new Uint8Array([1]), from: 'c' }],
      [{ to: 'b' }],
    ];
    for (const args of cases) assert.equal(errorCode(await raw.emitWithAck('frame', ...args)), 'ERR_INVALID_ARGUMENT');
    assert.deepEqual(frames, []);
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="frame",reason="invalid_argument"}'),
      cases.length,
    );
  });

  it('refuses a frame over maxFrameBytes with ERR_TOO_LARGE', async (t) => {
    const { member: join } = await harness(t, { maxFrameBytes: 1024 });
    const a = await join('a');
    await join('b');
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'b', data: new Uint8Array(1024) })), 'ok');
    assert.equal(
      errorCode(await a.client.emitWithAck('frame', { to: 'b', data: new Uint8Array(1025) })),
      'ERR_TOO_LARGE',
    );
  });

  it('drops frames beyond maxFramesPerSecond from a bucket of their own, leaving heartbeats theirs', async (t) => {
    const clock = { time: Date.now() };
    const { member: join } = await harness(t, { maxFramesPerSecond: 2, maxEventsPerSecond: 2, now: () => clock.time });
    const a = await join('a');
    await join('b');
    const data = new Uint8Array([1]);
    const acks = await Promise.all(Array.from({ length: 6 }, () => a.client.emitWithAck('frame', { to: 'b', data })));
    // A burst of twice the rate, then nothing until the bucket refills.
    assert.deepEqual(acks.map(errorCode), ['ok', 'ok', 'ok', 'ok', 'ERR_RATE_LIMITED', 'ERR_RATE_LIMITED']);
    assert.equal(errorCode(await a.client.emitWithAck('heartbeat', {})), 'ok');
    clock.time += 500;
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'b', data })), 'ok');
    assert.equal(errorCode(await a.client.emitWithAck('frame', { to: 'b', data })), 'ERR_RATE_LIMITED');
  });
});

describe('signalling server: validation and limits', () => {
  it('answers a malformed payload of every event with ERR_INVALID_ARGUMENT, changes nothing, and counts it', async (t) => {
    const { member: join, open, server, metricsText } = await harness(t);
    const joined = await join('a');
    const other = await join('b');
    const before = server.view('main');
    const raw = joined.client as unknown as RawClient;
    const unjoined = (await open()) as unknown as RawClient;
    const cases: [RawClient, string, unknown[]][] = [
      [unjoined, 'join', [{ cluster: 'main', nodeId: 'bad id', domain: 'd' }]],
      [unjoined, 'join', [{ cluster: 'main', nodeId: 'c', domain: 'd', role: 'admin' }]],
      [unjoined, 'join', []],
      [raw, 'heartbeat', [{ epoch: 'latest' }]],
      [raw, 'lifecycle', [{ state: 'asleep' }]],
      [raw, 'lifecycle', [{ state: 'frozen', until: 5 }]],
      [raw, 'lifecycle', []],
      [raw, 'signal', [{ to: 'b', data: 'not an object' }]],
      [raw, 'signal', [{ to: 'b' }, { data: {} }]],
      [raw, 'report-unreachable', [{ nodeId: 42 }]],
      [raw, 'metrics', [{ puts: 'many' }]],
      [raw, 'get-metrics', [{ cluster: 'other' }]],
      [raw, 'leave', ['now']],
    ];
    const signals: RelayedSignal[] = [];
    other.client.on('signal', (signal) => signals.push(signal));
    for (const [client, event, args] of cases) {
      const ack = await client.emitWithAck(event, ...args);
      assert.equal(errorCode(ack), 'ERR_INVALID_ARGUMENT', `${event} ${JSON.stringify(args)}`);
    }
    assert.deepEqual(server.view('main'), before);
    assert.deepEqual(await server.nodeMetrics('main'), {});
    assert.deepEqual(signals, []);
    const text = await metricsText();
    const expected = new Map<string, number>();
    for (const [, event] of cases) expected.set(event, (expected.get(event) ?? 0) + 1);
    for (const [event, count] of expected) {
      assert.equal(
        sample(text, `dynamesh_signaling_events_rejected_total{event="${event}",reason="invalid_argument"}`),
        count,
        event,
      );
    }
  });

  it('answers an unknown event with ERR_INVALID_ARGUMENT and counts it', async (t) => {
    const { open, metricsText } = await harness(t);
    const raw = (await open()) as unknown as RawClient;
    assert.equal(errorCode(await raw.emitWithAck('become-admin', {})), 'ERR_INVALID_ARGUMENT');
    assert.equal(
      sample(
        await metricsText(),
        'dynamesh_signaling_events_rejected_total{event="unknown",reason="invalid_argument"}',
      ),
      1,
    );
  });

  it('refuses signal data over maxSignalBytes with ERR_TOO_LARGE', async (t) => {
    const { member: join } = await harness(t, { maxSignalBytes: 1024 });
    const a = await join('a');
    await join('b');
    const ack = await a.client.emitWithAck('signal', { to: 'b', data: { sdp: 'x'.repeat(2000) } });
    assert.equal(errorCode(ack), 'ERR_TOO_LARGE');
  });

  it('closes a connection that sends a message over maxPayloadBytes', async (t) => {
    const { member: join } = await harness(t, { maxPayloadBytes: 4096 });
    const a = await join('a');
    const closed = withTimeout(new Promise((resolve) => a.client.once('disconnect', resolve)), 'disconnect');
    a.client.emit('metrics', { huge: 1, padding_is_not_allowed: 2, ['x'.repeat(5000)]: 3 } as never, () => {});
    assert.equal(await closed, 'transport close');
  });

  it('drops events beyond the connection’s token bucket with ERR_RATE_LIMITED until it refills', async (t) => {
    const clock = { time: Date.now() };
    const { member: join, metricsText } = await harness(t, {
      maxEventsPerSecond: 2,
      maxEventBurst: 5,
      now: () => clock.time,
    });
    const { client } = await join('a'); // the join took one token
    const acks = await Promise.all(Array.from({ length: 6 }, () => client.emitWithAck('heartbeat', {})));
    assert.deepEqual(acks.map(errorCode), ['ok', 'ok', 'ok', 'ok', 'ERR_RATE_LIMITED', 'ERR_RATE_LIMITED']);
    clock.time += 500;
    assert.equal(errorCode(await client.emitWithAck('heartbeat', {})), 'ok');
    assert.equal(errorCode(await client.emitWithAck('heartbeat', {})), 'ERR_RATE_LIMITED');
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="heartbeat",reason="rate_limited"}'),
      3,
    );
  });
});

describe('signalling server: access', () => {
  it('admits a join without a token when it has no secret', async (t) => {
    const { open } = await harness(t);
    const client = await open();
    assert.ok((await client.emitWithAck('join', { cluster: 'open', nodeId: 'n', domain: 'd', ...current })).ok);
  });

  it('refuses missing, forged, expired, other-cluster and other-node tokens with ERR_UNAUTHORIZED', async (t) => {
    const secret = 's3cret-for-tests';
    const { open, server, metricsText } = await harness(t, { secret });
    const client = await open();
    const now = Date.now();
    const tokens: (string | undefined)[] = [
      undefined,
      mintToken({ secret: 'not-the-secret', cluster: 'vault' }),
      mintToken({ secret, cluster: 'vault', ttlSeconds: 60, now: now - 3_600_000 }),
      mintToken({ secret, cluster: 'other' }),
      mintToken({ secret, cluster: 'vault', nodeId: 'someone-else' }),
    ];
    for (const token of tokens) {
      const ack = await client.emitWithAck('join', {
        cluster: 'vault',
        nodeId: 'n',
        domain: 'd',
        ...current,
        ...(token ? { token } : {}),
      });
      assert.equal(errorCode(ack), 'ERR_UNAUTHORIZED', token ?? 'no token');
    }
    assert.equal(server.view('vault'), undefined);
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="join",reason="unauthorized"}'),
      tokens.length,
    );
  });

  it('refuses a join of another protocol version, or of a release without one, with ERR_VERSION_MISMATCH naming both', async (t) => {
    const { open, server, metricsText } = await harness(t);
    const client = await open();
    const older = { cluster: 'main', nodeId: 'n', domain: 'd' };
    const refusals = [
      await client.emitWithAck('join', older),
      await client.emitWithAck('join', { ...older, protocol: PROTOCOL_VERSION + 1 }),
    ];
    assert.deepEqual(refusals.map(errorCode), ['ERR_VERSION_MISMATCH', 'ERR_VERSION_MISMATCH']);
    const messages = refusals.map((ack) => (ack as { error: { message: string } }).error.message);
    assert.match(messages[0]!, new RegExp(`without protocol versions.*server protocol ${PROTOCOL_VERSION}\\b`));
    assert.match(messages[1]!, new RegExp(`protocol ${PROTOCOL_VERSION + 1}.*server protocol ${PROTOCOL_VERSION}\\b`));
    assert.equal(server.view('main'), undefined);
    assert.equal(
      sample(await metricsText(), 'dynamesh_signaling_events_rejected_total{event="join",reason="version_mismatch"}'),
      2,
    );
    assert.ok((await client.emitWithAck('join', { ...older, protocol: PROTOCOL_VERSION })).ok);
  });

  it('admits a join with a valid token for its cluster', async (t) => {
    const secret = 's3cret-for-tests';
    const { member: join } = await harness(t, { secret });
    const { ack } = await join('n', 'vault', mintToken({ secret, cluster: 'vault', ttlSeconds: 60 }));
    assert.ok(ack.ok);
    const bound = await join('m', 'vault', mintToken({ secret, cluster: 'vault', nodeId: 'm' }));
    assert.ok(bound.ack.ok);
  });
});

describe('signalling server: ring placement', () => {
  const secret = 's3cret-for-tests';
  const honest = ['alder', 'birch', 'cedar', 'dogwood'];
  const target = 0;
  const ringOf = (view: ClusterView) => new Ring(view.members);

  /**
   * What a rogue does offline against a ring whose tokens come from ids alone: tries ids until three of them each
   * have a token between the target partition's bound and the first honest token, so that together they are its
   * whole preference list.
   */
  function groundIds(): string[] {
    const members = honest.map((id) => ({ id, domain: `d-${id}` }));
    const found: string[] = [];
    for (let k = 0; found.length < 3; k++) {
      const id = `rogue-${k}`;
      if (new Ring([...members, { id, domain: `d-${id}` }]).walk(target)[0] === id) found.push(id);
    }
    return found;
  }

  async function joinAll(t: TestContext, options: SignalingServerOptions, ids: readonly string[]) {
    const { member } = await harness(t, options);
    const token =
      options.secret === undefined ? undefined : mintToken({ secret: options.secret, cluster: 'main', ttlSeconds: 60 });
    let last: ClusterView | undefined;
    for (const id of ids) last = (await member(id, 'main', token)).ack.view;
    return last!;
  }

  it('lets ids chosen offline own a partition whole on a server without a secret (the attack)', async (t) => {
    const rogues = groundIds();
    const view = await joinAll(t, {}, [...honest, ...rogues]);
    assert.ok(view.members.every((m) => m.placement === ''));
    assert.deepEqual([...ringOf(view).preferenceList(target, 3)].sort(), rogues);
  });

  it('places members by its secret, so that ids chosen offline do not own the partition they were chosen for', async (t) => {
    const rogues = groundIds();
    const view = await joinAll(t, { secret }, [...honest, ...rogues]);
    assert.ok(view.members.every((m) => m.placement.length > 0));
    const owners = ringOf(view).preferenceList(target, 3);
    assert.ok(
      owners.some((id) => honest.includes(id)),
      `the ids chosen offline still own partition ${target}: ${owners.join(', ')}`,
    );
  });

  it('gives a member the same placement after a restart with the same secret, and another with another', async (t) => {
    const placementOf = async (options: SignalingServerOptions) =>
      (await joinAll(t, options, ['alder'])).members[0]!.placement;
    const first = await placementOf({ secret });
    assert.equal(await placementOf({ secret }), first);
    assert.notEqual(await placementOf({ secret: 'another-secret' }), first);
    assert.equal(await placementOf({}), '');
  });
});
