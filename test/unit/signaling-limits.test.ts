/** What one client, or a crowd of them, may take of the signalling server: joins, connections, clusters, ids. */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import { io as connect, type Socket } from 'socket.io-client';
import { JoinDamper } from '../../signaling/damping.ts';
import { joinProofText } from '../../signaling/events.ts';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { mintToken } from '../../signaling/token.ts';
import { PROTOCOL_VERSION } from '../../signaling/events.ts';

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
  const join = async (client: Socket, cluster: string, nodeId: string, token?: string): Promise<string> => {
    const ack = (await client.emitWithAck('join', {
      cluster,
      nodeId,
      domain: 'd',
      protocol: PROTOCOL_VERSION,
      ...(token === undefined ? {} : { token }),
    })) as { ok: boolean; error?: { code: string; message: string } };
    if (!ack.ok && ack.error!.code === 'ERR_CLUSTER_FULL') refusals.push(ack.error!.message);
    return ack.ok ? 'ok' : ack.error!.code;
  };
  /** The messages of the joins refused with ERR_CLUSTER_FULL, in order. */
  const refusals: string[] = [];
  /** Resolves once the server counts `count` open connections, as its /healthz tells: it has seen the others close. */
  const connections = async (count: number): Promise<void> => {
    for (let polls = 0; ; polls++) {
      const health = (await (await fetch(`${server.url}/healthz`)).json()) as { connections: number };
      if (health.connections === count) return;
      assert.ok(polls < 1000, `the server never counted ${count} connections (it counts ${health.connections})`);
    }
  };
  return { server, open, join, refusals, connections };
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
    const { open, connections } = await start(t, { maxConnectionsPerAddress: 2 });
    const first = await open();
    assert.ok(first !== null && (await open()) !== null);
    assert.equal(await open(), null);
    first.close();
    // The place is free once the server has seen the close.
    await connections(1);
    assert.ok((await open()) !== null);
  });

  it('refuses connections past its limit in all, and again takes one once another closes', async (t) => {
    const { open, connections } = await start(t, { maxConnections: 2 });
    const first = await open();
    assert.ok(first !== null && (await open()) !== null);
    assert.equal(await open(), null);
    first.close();
    await connections(1);
    assert.ok((await open()) !== null);
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

describe('node ids per address and per token', () => {
  const secret = 'quota-test-secret';

  it('refuses a join of one more node id than an address may hold, counting a closed tab until it leaves its view', async (t) => {
    let time = 1_000_000;
    const { server, open, join, refusals, connections } = await start(t, { maxIdsPerAddress: 2, now: () => time });
    const first = (await open())!;
    assert.equal(await join(first, 'one', 'a'), 'ok');
    assert.equal(await join((await open())!, 'two', 'b'), 'ok');
    const third = (await open())!;
    assert.equal(await join(third, 'one', 'c'), 'ERR_CLUSTER_FULL');
    assert.match(refusals.at(-1)!, /this address holds 2 node ids as members/);
    // A closed tab's member stays in its view (suspect) until its silence removes it, and counts until then.
    first.close();
    await connections(2);
    assert.equal(server.view('one')?.members[0]?.state, 'suspect');
    assert.equal(await join(third, 'one', 'c'), 'ERR_CLUSTER_FULL');
    time += 3000;
    server.sweep();
    assert.equal(server.view('one'), undefined);
    assert.equal(await join(third, 'one', 'c'), 'ok');
  });

  it('refuses a join with one more node id than a token may hold, and admits one once a member leaves', async (t) => {
    const { open, join, refusals } = await start(t, { secret, maxIdsPerToken: 2 });
    const token = mintToken({ secret, cluster: 'main' });
    const first = (await open())!;
    assert.equal(await join(first, 'main', 'a', token), 'ok');
    assert.equal(await join((await open())!, 'main', 'b', token), 'ok');
    const third = (await open())!;
    assert.equal(await join(third, 'main', 'c', token), 'ERR_CLUSTER_FULL');
    assert.match(refusals.at(-1)!, /this token holds 2 node ids as members/);
    // Another token of the same cluster has places of its own.
    assert.equal(await join((await open())!, 'main', 'd', mintToken({ secret, cluster: 'main', nodeId: 'd' })), 'ok');
    assert.deepEqual(await first.emitWithAck('leave', {}), { ok: true });
    assert.equal(await join(third, 'main', 'c', token), 'ok');
  });

  it('refuses a join with a token on one more connection than it may hold, and admits one once another closes', async (t) => {
    const { open, join, refusals, connections } = await start(t, { secret, maxConnectionsPerToken: 2 });
    const token = mintToken({ secret, cluster: 'main' });
    const first = (await open())!;
    assert.equal(await join(first, 'main', 'a', token), 'ok');
    const second = (await open())!;
    assert.equal(await join(second, 'main', 'b', token), 'ok');
    // A connection that holds the token already joins again with it.
    assert.equal(await join(second, 'main', 'b', token), 'ok');
    const third = (await open())!;
    assert.equal(await join(third, 'main', 'c', token), 'ERR_CLUSTER_FULL');
    assert.match(refusals.at(-1)!, /2 connections joined with this token/);
    first.close();
    await connections(2);
    assert.equal(await join(third, 'main', 'c', token), 'ok');
  });

  it("logs a refusal by a token's bound with neither the token nor its signature", async (t) => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const { open, join } = await start(t, { secret, maxIdsPerToken: 1, logger });
    const token = mintToken({ secret, cluster: 'main' });
    assert.equal(await join((await open())!, 'main', 'a', token), 'ok');
    assert.equal(await join((await open())!, 'main', 'b', token), 'ERR_CLUSTER_FULL');
    const signature = token.split('.')[1]!;
    assert.ok(lines.some((line) => line.includes('this token holds 1 node ids')));
    assert.ok(lines.every((line) => !line.includes(signature)));
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
      protocol: PROTOCOL_VERSION,
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
