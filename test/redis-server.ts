/**
 * A real Redis for the tests of the signalling service on Redis: Debian's `redis-server` on a free loopback port,
 * persisting nothing, stopped (SIGKILL) when the test is done.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

/** A running redis-server. */
export interface RedisProcess {
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Kills it; resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

/** A TCP port free on 127.0.0.1 now (the OS's choice for port 0). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts `redis-server` (the binary in `REDIS_SERVER`, else on the PATH) and resolves once it accepts connections. */
export async function startRedis(): Promise<RedisProcess> {
  // Another process may take the free port between the look-up and the bind: try a few.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      process.env['REDIS_SERVER'] ?? 'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'notice'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const ready = await readiness(child);
    if (ready === true) {
      const exited = once(child, 'exit').then(() => undefined);
      let stopping: Promise<void> | undefined;
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        stop() {
          stopping ??= (async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await exited;
          })();
          return stopping;
        },
      };
    }
    if (attempt >= 3) throw new Error(`redis-server did not start: ${ready}`);
  }
}

/** True once redis-server says it accepts connections, else what it printed before it exited. */
async function readiness(child: ChildProcess): Promise<true | string> {
  let output = '';
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) resolve(true);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error) => resolve(`cannot run redis-server: ${String(error)}`));
    child.once('exit', () => resolve(output || 'redis-server exited'));
  });
}
