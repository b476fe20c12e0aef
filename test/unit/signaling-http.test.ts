/** The signalling server's HTTP side: health, Prometheus metrics, the demo's files, and the command line. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it, type TestContext } from 'node:test';
import { io as connect } from 'socket.io-client';
import { createSignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { PROTOCOL_VERSION } from '../../signaling/events.ts';
import { MAX_VIEW_MEMBERS } from '../../signaling/validate.ts';

async function start(t: TestContext, options: SignalingServerOptions = {}) {
  const server = await createSignalingServer({ port: 0, logLevel: 'silent', ...options });
  t.after(() => server.close());
  return server;
}

async function demoDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dynamesh-demo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'assets'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>demo</title>');
  await writeFile(join(dir, 'assets', 'app-1234.js'), 'console.log("demo")');
  return dir;
}

/** Starts the server's command with `args`, killed when `t` ends; resolves once it has logged the URL it serves. */
async function startCli(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'signaling/cli.ts', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'info', DYNAMESH_SECRET: '', ...env },
  });
  t.after(() => child.kill('SIGKILL'));
  const exited = once(child, 'exit');
  for await (const line of createInterface({ input: child.stdout })) {
    const entry = JSON.parse(line) as { url?: string };
    if (entry.url !== undefined) return { child, exited, url: entry.url };
  }
  throw new Error('the server command ended without saying its URL');
}

/** GET with the path sent exactly as given (fetch would normalise `..` away). */
function rawGet(url: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(url);
    const req = request({ hostname, port, path, method: 'GET' }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('signalling server over HTTP', () => {
  it('answers /healthz with ok and its counts', async (t) => {
    const server = await start(t);
    const client = connect(server.url, { transports: ['websocket'], forceNew: true, reconnection: false });
    t.after(() => client.close());
    const ack = await client.emitWithAck('join', {
      cluster: 'main',
      nodeId: 'a',
      domain: 'd',
      protocol: PROTOCOL_VERSION,
    });
    assert.ok(ack.ok);
    const response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.ok, true);
    assert.equal(body.clusters, 1);
    assert.equal(body.members, 1);
    assert.equal(body.connections, 1);
    assert.equal(body.secured, false);
  });

  it('serves Prometheus text on /metrics with the server’s gauges and counters', async (t) => {
    const server = await start(t);
    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    for (const name of [
      'dynamesh_signaling_clusters',
      'dynamesh_signaling_members',
      'dynamesh_signaling_connections',
      'dynamesh_signaling_joins_total',
      'dynamesh_signaling_failures_detected_total',
      'dynamesh_signaling_signals_relayed_total',
      'dynamesh_signaling_events_rejected_total',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} (gauge|counter)$`, 'm'), name);
    }
  });

  it('says the demo is not built when it has no static directory', async (t) => {
    const server = await start(t);
    const response = await fetch(`${server.url}/`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /demo is not built/);
    assert.equal((await fetch(`${server.url}/app.js`)).status, 404);
  });

  it('serves the built demo and its assets with their content types', async (t) => {
    const server = await start(t, { staticDir: await demoDir(t) });
    const page = await fetch(`${server.url}/`);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(await page.text(), '<!doctype html><title>demo</title>');
    const script = await fetch(`${server.url}/assets/app-1234.js`);
    assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(script.headers.get('cache-control') ?? '', /immutable/);
    assert.equal(await script.text(), 'console.log("demo")');
    assert.equal((await fetch(`${server.url}/missing.js`)).status, 404);
    assert.equal((await fetch(`${server.url}/`, { method: 'POST' })).status, 405);
  });

  it('serves nothing outside its static directory', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'dynamesh-root-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'site'));
    await writeFile(join(root, 'site', 'index.html'), 'demo');
    await writeFile(join(root, 'secret.txt'), 'secret');
    const server = await start(t, { staticDir: join(root, 'site') });
    assert.equal(await rawGet(server.url, '/index.html'), 200);
    for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/x/..%2f..%2fsecret.txt']) {
      assert.equal(await rawGet(server.url, path), 404, path);
    }
    assert.equal(await rawGet(server.url, '/%E0%A4%A'), 400);
  });

  it('refuses nonsensical options', async () => {
    await assert.rejects(createSignalingServer({ port: 0, logLevel: 'silent', heartbeatInterval: 0 }), RangeError);
    await assert.rejects(
      createSignalingServer({ port: 0, logLevel: 'silent', heartbeatInterval: 3000, heartbeatTimeout: 3000 }),
      RangeError,
    );
    await assert.rejects(createSignalingServer({ port: 70000, logLevel: 'silent' }), RangeError);
  });

  it('takes 1,000 members per cluster by default, and no more than a tab takes in a view', async (t) => {
    const server = await createSignalingServer({ port: 0, logLevel: 'silent' });
    t.after(() => server.close());
    assert.equal(server.limits.maxMembersPerCluster, 1000);
    await assert.rejects(
      createSignalingServer({ port: 0, logLevel: 'silent', maxMembersPerCluster: MAX_VIEW_MEMBERS + 1 }),
      RangeError,
    );
  });

  // A generous deadline: starting tsx in a child process takes seconds on a loaded machine.
  it('starts from the command line, logs its URL, and exits cleanly on SIGTERM', { timeout: 60_000 }, async (t) => {
    const { child, exited, url } = await startCli(t, []);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const health = (await (await fetch(`${url}/healthz`)).json()) as { ok: boolean };
    assert.equal(health.ok, true);
    child.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
  });
});

describe('signalling server, hardened', () => {
  /** Whether a WebSocket connection sent with `origin` (none when undefined) gets through to a join. */
  async function connects(url: string, origin: string | undefined): Promise<boolean> {
    const client = connect(url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      ...(origin === undefined ? {} : { extraHeaders: { Origin: origin } }),
    });
    try {
      return await new Promise<boolean>((resolve) => {
        client.once('connect', () => resolve(true));
        client.once('connect_error', () => resolve(false));
      });
    } finally {
      client.close();
    }
  }

  it("refuses a connection from another site's page, and admits its own pages, loopback pages and non-browsers", async (t) => {
    const server = await start(t);
    const { port } = server;
    assert.equal(await connects(server.url, 'https://evil.example'), false);
    assert.equal(await connects(server.url, 'http://192.168.1.9:8787'), false);
    assert.equal(await connects(server.url, 'null'), false);
    assert.equal(await connects(server.url, server.url), true);
    assert.equal(await connects(server.url, `http://localhost:${port}`), true);
    assert.equal(await connects(server.url, 'http://127.0.0.1:5173'), true);
    assert.equal(await connects(server.url, undefined), true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /dynamesh_signaling_connections_refused_total\{reason="origin"\} 3/);
  });

  it('admits the pages of the origins it is told to allow', async (t) => {
    const server = await start(t, { allowedOrigins: ['https://app.example'] });
    assert.equal(await connects(server.url, 'https://app.example'), true);
    assert.equal(await connects(server.url, 'https://evil.example'), false);
  });

  it('serves /metrics only with the secret as a bearer token when it has one', async (t) => {
    const server = await start(t, { secret: 'metrics-secret' });
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    const wrong = await fetch(`${server.url}/metrics`, { headers: { Authorization: 'Bearer not-it' } });
    assert.equal(wrong.status, 401);
    const right = await fetch(`${server.url}/metrics`, { headers: { Authorization: 'Bearer metrics-secret' } });
    assert.equal(right.status, 200);
    assert.match(await right.text(), /dynamesh_signaling_connections_refused_total\{reason="metrics_unauthorized"\} 2/);
  });

  it('refuses to listen beyond loopback without a secret', async () => {
    for (const host of ['0.0.0.0', '::']) {
      await assert.rejects(createSignalingServer({ port: 0, host, logLevel: 'silent' }), RangeError);
    }
  });

  it('listens beyond loopback with a secret', async (t) => {
    const server = await start(t, { host: '0.0.0.0', secret: 'lan-secret' });
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status, 200);
  });

  it('takes its secret from a file, and refuses one on the command line', { timeout: 60_000 }, async (t) => {
    const refused = spawn(process.execPath, ['--import', 'tsx', 'signaling/cli.ts', '--port', '0', '--secret', 'x'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    refused.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(refused, 'exit');
    assert.equal(code, 2);
    assert.match(stderr, /--secret is not taken/);

    const dir = await mkdtemp(join(tmpdir(), 'dynamesh-secret-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'secret'), 'file-secret\n');
    const { url } = await startCli(t, ['--secret-file', join(dir, 'secret')]);
    const health = (await (await fetch(`${url}/healthz`)).json()) as { secured: boolean };
    assert.equal(health.secured, true);
    const metrics = await fetch(`${url}/metrics`, { headers: { Authorization: 'Bearer file-secret' } });
    assert.equal(metrics.status, 200);
  });
});
