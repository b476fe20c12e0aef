/** What one client, or a crowd of them, may take of the signalling server: joins, connections, clusters, ids. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { io as connect, type Socket } from 'socket.io-client';
import { JoinDamper } from '../../signaling/damping.ts';
import { joinProofText } from '../../signaling/events.ts';
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
  /** Takes a join for `key` when it may join now; answers the wait either way. */
  const admit = (damper: JoinDamper, key: string, now: number): number => {
    const wait = damper.wait(key, now);
    if (wait === 0) damper.take(key, now);
    return wait;
  };

  it('admits a burst of joins of one key, then one per refill, and says how long to wait', () => {
    const damper = new JoinDamper({ burst: 3, refillMs: 1000 });
    assert.deepEqual(
      [0, 0, 0, 0].map(() => admit(damper, 'k', 0)),
      [0, 0, 0, 1000],
    );
    assert.equal(admit(damper, 'other', 0), 0);
    assert.equal(admit(damper, 'k', 400), 600);
    assert.equal(admit(damper, 'k', 1000), 0);
    assert.equal(admit(damper, 'k', 1000), 1000);
  });

  it('takes nothing when it only says how long to wait', () => {
    const damper = new JoinDamper({ burst: 1, refillMs: 1000 });
    for (let i = 0; i < 5; i++) assert.equal(damper.wait('k', 0), 0);
    assert.equal(admit(damper, 'k', 0), 0);
  });

  it('remembers at most maxKeys keys, forgetting the one whose last join is oldest', () => {
    const damper = new JoinDamper({ burst: 1, refillMs: 1000, maxKeys: 2 });
    admit(damper, 'a', 0);
    admit(damper, 'b', 1);
    admit(damper, 'c', 2);
    // a was forgotten, b and c are still waiting for their refill.
    assert.equal(damper.wait('a', 3), 0);
    assert.ok(damper.wait('b', 3) > 0 && damper.wait('c', 3) > 0);
  });
});

describe('signalling server limits', () => {
  it('costs a node id nothing for a join its address was refused', async (t) => {
    let time = 1_000_000;
    const { open, join } = await start(t, { now: () => time });
    // The address's hundred joins at once, all of other ids (a connection holds one seat)...
    for (let i = 0; i < 100; i++) assert.equal(await join((await open())!, `cluster-${i % 4}`, `other-${i}`), 'ok');
    // ...then the address is out of joins: refused again and again, the id keeps its own allowance.
    const client = (await open())!;
    for (let i = 0; i < 20; i++) assert.equal(await join(client, 'main', 'patient'), 'ERR_RATE_LIMITED');
    time += 250;
    assert.equal(await join(client, 'main', 'patient'), 'ok');
    // Ten joins of the id at once: none of the twenty refused ones was taken from its allowance.
    for (let i = 0; i < 9; i++) {
      time += 250;
      assert.equal(await join(client, 'main', 'patient'), 'ok');
    }
  });

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

  it('counts toward the same caps a client that opens a transport and never joins the namespace', async (t) => {
    const { server, open } = await start(t, { maxConnectionsPerAddress: 1 });
    // An engine.io handshake alone, as a script could make it, without Socket.IO's namespace CONNECT.
    const handshake = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(handshake.status, 200);
    assert.equal(await open(), null);
  });

  it('takes connections to a loopback server only under a loopback Host name (no DNS rebinding)', async (t) => {
    const { server } = await start(t);
    const rebound = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { Host: `evil.example:${server.port}`, Origin: `http://evil.example:${server.port}` },
    });
    assert.equal(rebound.status, 403);
    const own = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { Origin: server.url },
    });
    assert.equal(own.status, 200);
  });

  it('refuses connections past its limit per address, and again takes one once another closes', async (t) => {
    const { server, open } = await start(t, { maxConnectionsPerAddress: 2 });
    const first = await open();
    assert.ok(first !== null && (await open()) !== null);
    assert.equal(await open(), null);
    first.close();
    // The place is free once the server has seen the close, which its /healthz tells.
    for (let polls = 0; ; polls++) {
      const health = (await (await fetch(`${server.url}/healthz`)).json()) as { connections: number };
      if (health.connections === 1) break;
      assert.ok(polls < 1000, 'the server never saw the connection close');
    }
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

describe('clusters per address', () => {
  it('refuses a join that would create one more cluster than an address may create, and admits joins to those', async (t) => {
    const { open, join } = await start(t, { maxClustersPerAddress: 2 });
    assert.equal(await join((await open())!, 'first', 'a'), 'ok');
    assert.equal(await join((await open())!, 'second', 'b'), 'ok');
    assert.equal(await join((await open())!, 'third', 'c'), 'ERR_CLUSTER_FULL');
    assert.equal(await join((await open())!, 'second', 'd'), 'ok');
  });
});

describe('node ids bound to keys', () => {
  /** A node's Ed25519 key, as client/node-key.ts makes it, proving joins on a connection. */
  function key() {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'jwk' }).x!;
    return (cluster: string, nodeId: string, connection: string) => ({
      publicKey: raw,
      signature: sign(null, Buffer.from(joinProofText(cluster, nodeId, connection)), privateKey).toString('base64url'),
    });
  }

  async function signedJoin(
    client: Socket,
    nodeId: string,
    proof: ReturnType<typeof key> | null,
    connection = client.id!,
  ): Promise<string> {
    const ack = (await client.emitWithAck('join', {
      cluster: 'main',
      nodeId,
      domain: 'd',
      ...(proof === null ? {} : { proof: proof('main', nodeId, connection) }),
    })) as { ok: boolean; error?: { code: string } };
    return ack.ok ? 'ok' : ack.error!.code;
  }

  it("binds a node id to its first signed join's key: a join of it with another key, or none, is refused", async (t) => {
    const { open } = await start(t);
    const mine = key();
    assert.equal(await signedJoin((await open())!, 'n1', mine), 'ok');
    assert.equal(await signedJoin((await open())!, 'n1', key()), 'ERR_UNAUTHORIZED');
    assert.equal(await signedJoin((await open())!, 'n1', null), 'ERR_UNAUTHORIZED');
  });

  it('lets the holder of the key take its id over from its old connection, which is told it was superseded', async (t) => {
    const { open } = await start(t);
    const mine = key();
    const first = (await open())!;
    assert.equal(await signedJoin(first, 'n1', mine), 'ok');
    const superseded = new Promise<void>((resolve) => first.once('superseded', () => resolve()));
    assert.equal(await signedJoin((await open())!, 'n1', mine), 'ok');
    await superseded;
  });

  it('refuses a signature made for another connection (a replayed join)', async (t) => {
    const { open } = await start(t);
    const mine = key();
    const first = (await open())!;
    assert.equal(await signedJoin((await open())!, 'n1', mine, first.id!), 'ERR_UNAUTHORIZED');
  });

  it('admits unsigned joins of an id that no signed join has bound', async (t) => {
    const { open } = await start(t);
    assert.equal(await signedJoin((await open())!, 'legacy', null), 'ok');
  });
});
