/** What one client, or a crowd of them, may take of the signalling server: joins, connections, clusters. */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import { JoinDamper } from '../../signaling/damping.ts';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';

async function start(t: TestContext, options: SignalingServerOptions = {}) {
  const server = await createSignalingServer({ port: 0, logLevel: 'silent', ...options });
  const clients: Socket[] = [];
  t.after(async () => {
    for (const client of clients) client.close();
    await server.close();
  });
  /** A client that connected, or null when the server refused the connection. */
  const open = async (): Promise<Socket | null> => {
    const client = connect(server.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    clients.push(client);
    const connected = await new Promise<boolean>((resolve) => {
      client.once('connect', () => resolve(true));
      client.once('connect_error', () => resolve(false));
    });
    return connected ? client : null;
  };
  const join = async (client: Socket, cluster: string, nodeId: string): Promise<string> => {
    const ack = (await client.emitWithAck('join', { cluster, nodeId, domain: 'd' })) as {
      ok: boolean;
      error?: { code: string };
    };
    return ack.ok ? 'ok' : ack.error!.code;
  };
  return { server, open, join };
}

describe('join damping', () => {
  it('admits a burst of joins of one key, then one per refill, and says how long to wait', () => {
    const damper = new JoinDamper({ burst: 3, refillMs: 1000 });
    assert.deepEqual(
      [0, 0, 0, 0].map(() => damper.admit('k', 0)),
      [0, 0, 0, 1000],
    );
    assert.equal(damper.admit('other', 0), 0);
    assert.equal(damper.admit('k', 400), 600);
    assert.equal(damper.admit('k', 1000), 0);
    assert.equal(damper.admit('k', 1000), 1000);
  });

  it('forgets keys whose joins are long past once it remembers too many', () => {
    const damper = new JoinDamper({ burst: 1, refillMs: 10, maxKeys: 2 });
    damper.admit('a', 0);
    damper.admit('b', 0);
    damper.admit('c', 100);
    // a's bucket had filled again and was forgotten: a fresh one admits it.
    assert.equal(damper.admit('a', 100), 0);
  });
});

describe('signalling server limits', () => {
  it('refuses a node id that joins more than ten times in a row, until its allowance refills', async (t) => {
    let time = 1_000_000;
    const { open, join } = await start(t, { now: () => time });
    const client = (await open())!;
    const answers: string[] = [];
    for (let i = 0; i < 11; i++) answers.push(await join(client, 'main', 'flapper'));
    assert.deepEqual(answers, [...Array<string>(10).fill('ok'), 'ERR_RATE_LIMITED']);
    // Another id is not held back by it.
    assert.equal(await join((await open())!, 'main', 'steady'), 'ok');
    time += 6000;
    assert.equal(await join(client, 'main', 'flapper'), 'ok');
  });

  it('refuses connections past its limit per address, and again takes one once another closes', async (t) => {
    const { open } = await start(t, { maxConnectionsPerAddress: 2 });
    const first = await open();
    assert.ok(first !== null && (await open()) !== null);
    assert.equal(await open(), null);
    first.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok((await open()) !== null);
  });

  it('refuses connections past its limit in all', async (t) => {
    const { open } = await start(t, { maxConnections: 2 });
    assert.ok((await open()) !== null && (await open()) !== null);
    assert.equal(await open(), null);
  });

  it('refuses a join that would create a cluster past its limit, and still admits joins to those it holds', async (t) => {
    const { open, join } = await start(t, { maxClusters: 1 });
    assert.equal(await join((await open())!, 'first', 'a'), 'ok');
    assert.equal(await join((await open())!, 'second', 'b'), 'ERR_CLUSTER_FULL');
    assert.equal(await join((await open())!, 'first', 'c'), 'ok');
  });
});
