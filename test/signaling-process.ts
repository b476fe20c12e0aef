/**
 * A signalling server in a process of its own (`signaling/cli.ts`), as `npm run server` runs it, so that a test can
 * kill it outright (SIGKILL: no goodbye to Redis or to its tabs) as a crash would.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

/** A running server process. */
export interface ServerProcess {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly child: ChildProcess;
  /** Kills it with `signal` (SIGKILL by default); resolves once it exited. Idempotent. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `signaling/cli.ts` with `args` on a free loopback port; resolves once it listens. */
export async function startServerProcess(args: readonly string[]): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'signaling/cli.ts', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit').then(() => undefined);
  let output = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const found = /signalling server listening on (http:\/\/[0-9.]+:\d+)/.exec(output);
      if (found === null) return;
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      resolveUrl(found[1]!);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`the server exited (${String(code)}) before it listened:\n${output}`)),
    );
  });
  // Keep reading, so a full pipe never stalls the server.
  child.stdout?.resume();
  child.stderr?.resume();
  let killing: Promise<void> | undefined;
  return {
    url,
    child,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      killing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
      })();
      return killing;
    },
  };
}
