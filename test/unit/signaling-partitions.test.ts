/**
 * Q as a cluster setting: the signalling server tells every joining node the ring partitions of its cluster, and
 * refuses a node whose stored data is filed in another Q.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import {
  type ClientToServerEvents,
  type JoinAck,
  PROTOCOL_VERSION,
  type ServerToClientEvents,
} from '../../signaling/events.ts';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { DEFAULT_CLUSTER_PARTITIONS } from '../../worker/ring/ring.ts';

type Client = Socket<ServerToClientEvents, ClientToServerEvents>;

/** Starts a server for `t`; `join` opens a connection and joins it as `nodeId`, naming `partitions` when given. */
async function harness(t: TestContext, options: SignalingServerOptions = {}) {
  const server = await createSignalingServer({ port: 0, logLevel: 'silent', ...options });
  const clients: Client[] = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await server.close();
  });
  const join = async (nodeId: string, partitions?: number): Promise<JoinAck> => {
    const client: Client = connect(server.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    clients.push(client);
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    return client.emitWithAck('join', {
      cluster: 'main',
      nodeId,
      domain: `d-${nodeId}`,
      protocol: PROTOCOL_VERSION,
      ...(partitions !== undefined ? { partitions } : {}),
    });
  };
  return { join };
}

describe('signalling server: the ring partitions of a cluster', () => {
  it('tells a joining node the default Q, which serves 1,000 nodes', async (t) => {
    const { join } = await harness(t);
    const ack = await join('alpha');
    assert.ok(ack.ok);
    assert.equal(ack.partitions, DEFAULT_CLUSTER_PARTITIONS);
    assert.equal(DEFAULT_CLUSTER_PARTITIONS, 4096);
  });

  it('tells a joining node the Q the server runs with', async (t) => {
    const { join } = await harness(t, { partitions: 1024 });
    const ack = await join('alpha');
    assert.ok(ack.ok);
    assert.equal(ack.partitions, 1024);
  });

  it('admits a node whose data is filed in the cluster’s Q', async (t) => {
    const { join } = await harness(t, { partitions: 1024 });
    const ack = await join('alpha', 1024);
    assert.ok(ack.ok);
  });

  it('refuses a node whose data is filed in another Q, naming both, and leaves the view without it', async (t) => {
    const { join } = await harness(t, { partitions: 1024 });
    const refused = await join('alpha', 256);
    assert.equal(refused.ok, false);
    assert.ok(!refused.ok);
    assert.equal(refused.error.code, 'ERR_INVALID_ARGUMENT');
    assert.match(refused.error.message, /256 ring partitions and the cluster uses 1024/);
    const other = await join('beta');
    assert.ok(other.ok);
    assert.deepEqual(
      other.view.members.map((m) => m.id),
      ['beta'],
    );
  });

  it('refuses a join naming a Q that is not a power of two', async (t) => {
    const { join } = await harness(t);
    const ack = await join('alpha', 1000);
    assert.ok(!ack.ok);
    assert.equal(ack.error.code, 'ERR_INVALID_ARGUMENT');
  });

  it('will not start with a Q that is not a power of two', async () => {
    await assert.rejects(createSignalingServer({ port: 0, logLevel: 'silent', partitions: 3000 }), RangeError);
  });
});
