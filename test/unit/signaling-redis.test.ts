/**
 * Two signalling server processes as one service on a real redis-server: what a tab on one sees of a tab on the
 * other, and what happens when one process is killed. One server runs in this process; the one a test kills runs in
 * a child process (signaling/cli.ts), killed with SIGKILL as a crash would.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import {
  type ClientToServerEvents,
  type ClusterView,
  joinProofText,
  PROTOCOL_VERSION,
  type RelayedSignal,
  type ServerToClientEvents,
} from '../../signaling/events.ts';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { applyViewDelta, validateView, validateViewDelta } from '../../signaling/validate.ts';
import { startRedis, type RedisProcess } from '../redis-server.ts';
import { startServerProcess } from '../signaling-process.ts';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;

const WAIT_MS = 10_000;
const TIMING = { heartbeatInterval: 200, heartbeatTimeout: 1000, sweepInterval: 100 } as const;

let redis: RedisProcess;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

/** A fresh prefix: a service of its own on the shared redis-server. */
const freshPrefix = () => `test-${randomBytes(4).toString('hex')}:`;

/** A server of the service `prefix`, in this process, closed when `t` ends. */
async function inProcess(t: TestContext, prefix: string, processId: string, options: SignalingServerOptions = {}) {
  const server = await createSignalingServer({
    port: 0,
    logLevel: 'silent',
    redis: redis.url,
    redisPrefix: prefix,
    processId,
    ...TIMING,
    ...options,
  });
  t.after(() => server.close());
  return server;
}

/** A server of the service `prefix` in a child process, killed when `t` ends (if the test did not kill it). */
async function childProcess(t: TestContext, prefix: string, processId: string) {
  const server = await startServerProcess([
    '--redis',
    redis.url,
    '--redis-prefix',
    prefix,
    '--process-id',
    processId,
    '--heartbeat-interval',
    String(TIMING.heartbeatInterval),
    '--heartbeat-timeout',
    String(TIMING.heartbeatTimeout),
  ]);
  t.after(() => server.kill());
  return server;
}

/**
 * A tab's signalling connection to `url`, joined as `nodeId` of cluster `main`: it follows its view as a tab does
 * (the join's view, then each delta) and heartbeats until `t` ends.
 */
async function member(t: TestContext, url: string, nodeId: string) {
  const client: Client = connect(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  t.after(() => void client.close());
  await within(new Promise<void>((resolve) => client.once('connect', () => resolve())), `${nodeId} connects`);
  const listeners = new Set<(view: ClusterView) => void>();
  const ack = await client.emitWithAck('join', {
    cluster: 'main',
    nodeId,
    domain: `d-${nodeId}`,
    protocol: PROTOCOL_VERSION,
  });
  assert.ok(ack.ok, `join of ${nodeId} refused: ${JSON.stringify(ack)}`);
  let view = ack.view;
  const epochs = [view.epoch];
  const take = (next: ClusterView): void => {
    assert.deepEqual(validateView(next), { ok: true, value: next });
    view = next;
    epochs.push(next.epoch);
    for (const listener of listeners) listener(next);
  };
  client.on('view-delta', (delta) => {
    assert.deepEqual(validateViewDelta(delta), { ok: true, value: delta });
    if (delta.epoch <= view.epoch) return;
    if (delta.prevEpoch === view.epoch) {
      take({ cluster: view.cluster, epoch: delta.epoch, members: applyViewDelta(view.members, delta) });
    } else {
      // A change this connection missed (made on another process before it joined): ask for the whole view.
      void client.emitWithAck('heartbeat', { epoch: view.epoch }).then((beat) => {
        if (beat.ok && beat.view !== null && beat.view.epoch > view.epoch) take(beat.view);
      });
    }
  });
  const timer = setInterval(() => {
    if (client.connected) client.emitWithAck('heartbeat', {}).catch(() => {});
  }, TIMING.heartbeatInterval);
  t.after(() => clearInterval(timer));
  /** Resolves with the first view, held now or to come, that satisfies `test`. */
  const until = (test: (view: ClusterView) => boolean, what: string): Promise<ClusterView> =>
    within(
      new Promise((resolve) => {
        if (test(view)) return resolve(view);
        const listener = (next: ClusterView): void => {
          if (!test(next)) return;
          listeners.delete(listener);
          resolve(next);
        };
        listeners.add(listener);
      }),
      what,
    );
  return { client, until, epochs, stop: () => clearInterval(timer) };
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting until ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const ids = (view: ClusterView) => view.members.map((entry) => entry.id);
const stateOf = (view: ClusterView, id: string) => view.members.find((entry) => entry.id === id)?.state;

describe('signalling service on Redis: two processes', () => {
  it('shows members joined on different processes one view, its epoch growing with each change', async (t) => {
    const prefix = freshPrefix();
    const [a, b] = [await inProcess(t, prefix, 'a'), await inProcess(t, prefix, 'b')];
    const one = await member(t, a.url, 'n1');
    const two = await member(t, b.url, 'n2');
    const three = await member(t, a.url, 'n3');
    for (const tab of [one, two, three]) await tab.until((view) => ids(view).length === 3, 'three members');
    assert.deepEqual(ids((await a.currentView('main'))!), ['n1', 'n2', 'n3']);
    assert.deepEqual(await b.currentView('main'), await a.currentView('main'));
    for (const tab of [one, two, three]) {
      assert.deepEqual(
        tab.epochs,
        [...tab.epochs].sort((x, y) => x - y),
      );
      assert.equal(new Set(tab.epochs).size, tab.epochs.length);
    }
  });

  it('relays a signal to a member joined on the other process', async (t) => {
    const prefix = freshPrefix();
    const [a, b] = [await inProcess(t, prefix, 'a'), await inProcess(t, prefix, 'b')];
    const sender = await member(t, a.url, 'sender');
    const receiver = await member(t, b.url, 'receiver');
    await sender.until((view) => ids(view).includes('receiver'), 'the sender sees the receiver');
    const received = within(
      new Promise<RelayedSignal>((resolve) => receiver.client.once('signal', resolve)),
      'the signal arrives',
    );
    const ack = await sender.client.emitWithAck('signal', { to: 'receiver', data: { type: 'offer', sdp: 'x' } });
    assert.deepEqual(ack, { ok: true });
    assert.deepEqual(await received, { from: 'sender', data: { type: 'offer', sdp: 'x' } });
  });

  it('labels every series of a process’s /metrics with its process id', async (t) => {
    const prefix = freshPrefix();
    const a = await inProcess(t, prefix, 'proc-a');
    await member(t, a.url, 'n1');
    const text = await (await fetch(`${a.url}/metrics`)).text();
    assert.match(text, /^dynamesh_signaling_joins_total\{process="proc-a"\} 1$/m);
    assert.match(text, /^dynamesh_signaling_connections\{process="proc-a"\} 1$/m);
  });

  it('refuses on one process a join of a node id that a signed join bound to a key through the other', async (t) => {
    const prefix = freshPrefix();
    const [a, b] = [await inProcess(t, prefix, 'a'), await inProcess(t, prefix, 'b')];
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'jwk' }).x!;
    const open = async (url: string): Promise<Client> => {
      const client: Client = connect(url, { transports: ['websocket'], forceNew: true, reconnection: false });
      t.after(() => void client.close());
      await within(new Promise<void>((resolve) => client.once('connect', () => resolve())), 'a connection');
      return client;
    };
    // A node with a random id (not derived from its key) signs its join: the id is bound to its key.
    const owner = await open(a.url);
    const signature = sign(null, Buffer.from(joinProofText('main', 'legacy-id', owner.id!)), privateKey);
    const signed = await owner.emitWithAck('join', {
      cluster: 'main',
      nodeId: 'legacy-id',
      domain: 'd',
      protocol: PROTOCOL_VERSION,
      proof: { publicKey: raw, signature: signature.toString('base64url') },
    });
    assert.ok(signed.ok);
    const impostor = await open(b.url);
    const unsigned = await impostor.emitWithAck('join', {
      cluster: 'main',
      nodeId: 'legacy-id',
      domain: 'd',
      protocol: PROTOCOL_VERSION,
    });
    assert.equal(unsigned.ok ? 'ok' : unsigned.error.code, 'ERR_UNAUTHORIZED');
    assert.deepEqual(ids((await b.currentView('main'))!), ['legacy-id']);
  });

  it('fails a member of a killed process from the other process', async (t) => {
    const prefix = freshPrefix();
    const doomed = await childProcess(t, prefix, 'doomed');
    const survivor = await inProcess(t, prefix, 'survivor');
    const gone = await member(t, doomed.url, 'gone');
    const stays = await member(t, survivor.url, 'stays');
    await stays.until((view) => ids(view).includes('gone'), 'both members are in the view');
    gone.stop();
    await doomed.kill('SIGKILL');
    await stays.until((view) => !ids(view).includes('gone'), 'the member of the killed process leaves the view');
    assert.deepEqual(ids((await survivor.currentView('main'))!), ['stays']);
  });

  it('takes back a member of a killed process that joins the other process with its node id', async (t) => {
    const prefix = freshPrefix();
    const doomed = await childProcess(t, prefix, 'doomed');
    const survivor = await inProcess(t, prefix, 'survivor');
    const moving = await member(t, doomed.url, 'moving');
    const stays = await member(t, survivor.url, 'stays');
    await stays.until((view) => ids(view).includes('moving'), 'both members are in the view');
    const joinedAt = (await survivor.currentView('main'))?.members.find((entry) => entry.id === 'moving')?.joinedAt;
    moving.stop();
    await doomed.kill('SIGKILL');
    const again = await member(t, survivor.url, 'moving');
    const view = await again.until((next) => ids(next).length === 2, 'the moved member sees both');
    assert.equal(stateOf(view, 'moving'), 'alive');
    await stays.until(
      (next) =>
        stateOf(next, 'moving') === 'alive' &&
        (next.members.find((entry) => entry.id === 'moving')?.joinedAt ?? 0) > (joinedAt ?? 0),
      'the other member sees it joined again',
    );
  });
});
