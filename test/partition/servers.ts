/**
 * The two servers of the partition test. The signalling server runs as a child process on a fixed port, so the
 * nemesis can kill it and start a new one where the tabs expect it.
 * The page comes from a separate static server in the test process, so that a tab can load while signalling is down.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { serveStatic } from '../../signaling/static.ts';
import type { ChildMessage, ListenMessage } from './server-child.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Options of a {@link SignalingProcess}. */
export interface SignalingProcessOptions {
  readonly port: number;
  /** Ms between members' heartbeats. */
  readonly heartbeatInterval: number;
  /** Ms of silence after which a member leaves its view. */
  readonly heartbeatTimeout: number;
  /** File the server's output is appended to. */
  readonly logFile: string;
  /** How long a process may take to load or to listen, ms. @default 60000 */
  readonly startTimeout?: number;
}

/** A loaded server process waiting for the order to listen. */
interface Spare {
  readonly child: ChildProcess;
  readonly loaded: Promise<void>;
}

/**
 * The signalling server as a process (`server-child.ts`) that can be stopped, cleanly or by SIGKILL, and started
 * again on the same port, with a fresh process and so a fresh state. A loaded process is kept in reserve, so that
 * starting is a matter of milliseconds whatever the machine's load.
 */
export class SignalingProcess {
  readonly url: string;
  readonly #options: SignalingProcessOptions;
  readonly #log: WriteStream;
  #child: ChildProcess | null = null;
  #spare: Spare | null = null;
  #closed = false;
  /** How many times it was started. */
  starts = 0;

  constructor(options: SignalingProcessOptions) {
    this.#options = options;
    this.url = `http://127.0.0.1:${options.port}`;
    this.#log = createWriteStream(options.logFile, { flags: 'a' });
  }

  /** True while a server process listens (or is about to). */
  get running(): boolean {
    return this.#child !== null;
  }

  /** Starts a server process and resolves once it listens; then loads the next one in reserve. */
  async start(): Promise<void> {
    if (this.#child !== null) throw new Error('the signalling server is already running');
    const spare = this.#spare ?? this.#load();
    this.#spare = null;
    await spare.loaded;
    const { child } = spare;
    this.#child = child;
    child.once('exit', () => {
      if (this.#child === child) this.#child = null;
    });
    this.starts++;
    const { port, heartbeatInterval, heartbeatTimeout } = this.#options;
    const listening = this.#waitFor(child, 'listening');
    child.send({
      type: 'listen',
      options: {
        port,
        host: '127.0.0.1',
        heartbeatInterval,
        heartbeatTimeout,
        logLevel: process.env['LOG_LEVEL'] ?? 'info',
      },
    } satisfies ListenMessage);
    this.#log.write(`--- listen ${this.starts} at ${new Date().toISOString()} (pid ${child.pid})\n`);
    await listening;
    if (!this.#closed) this.#spare = this.#load();
  }

  /** Stops the server: `SIGTERM` closes it cleanly, `SIGKILL` is a crash. Resolves once the process has exited. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (child === null) return;
    await kill(child, signal);
  }

  /** Stops the server and its reserve for good, and closes the log. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.stop('SIGKILL');
    const spare = this.#spare;
    this.#spare = null;
    if (spare !== null) await kill(spare.child, 'SIGKILL');
    this.#log.end();
  }

  #load(): Spare {
    const child = fork(resolve(import.meta.dirname, 'server-child.ts'), [], {
      cwd: ROOT,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout?.pipe(this.#log, { end: false });
    child.stderr?.pipe(this.#log, { end: false });
    child.once('exit', (code, signal) => {
      this.#log.write(`--- pid ${child.pid} exited (${code ?? signal}) at ${new Date().toISOString()}\n`);
    });
    const loaded = this.#waitFor(child, 'loaded');
    // Observed here so that a reserve that fails while nobody waits for it is no unhandled rejection.
    loaded.catch(() => {});
    return { child, loaded };
  }

  /** Resolves when `child` sends a message of `type`; rejects if it fails, exits or takes too long. */
  #waitFor(child: ChildProcess, type: 'loaded' | 'listening'): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => finish(new Error(`the signalling server was not ${type} in time`)),
        this.#options.startTimeout ?? 60_000,
      );
      const onMessage = (message: ChildMessage): void => {
        if (message.type === type) finish();
        else if (message.type === 'failed') finish(new Error(`the signalling server failed: ${message.message}`));
      };
      const onExit = (): void => finish(new Error(`the signalling server exited before it was ${type}`));
      function finish(error?: Error): void {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (error === undefined) resolve();
        else reject(error);
      }
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  }
}

/** Sends `signal` to `child` and resolves once it has exited. */
async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** Serves the built page from `dir` on a free port of 127.0.0.1. */
export async function startPageServer(dir: string): Promise<{ readonly url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    void serveStatic(request, response, dir);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
