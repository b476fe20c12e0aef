/**
 * The always-on node as the end-to-end tests run it: `npm run node`'s entry (always-on/cli.ts) spawned as a real
 * child process, its JSON log lines read from its stdout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One log line of the node, parsed. */
export type LogLine = Record<string, unknown>;

/** A spawned always-on node process. */
export interface NodeProcess {
  readonly child: ChildProcess;
  /** Every log line so far. */
  readonly lines: LogLine[];
  /** Resolves to its line `always-on node joined`; rejects if the process exits first. */
  readonly joined: Promise<LogLine>;
  /** Resolves to the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  /** Sends `signal` (unless it has exited) and resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns the always-on node of `directory`, joining `cluster` at `url`. */
export function spawnNode(url: string, cluster: string, directory: string): NodeProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'always-on/cli.ts', '--url', url, '--cluster', cluster, '--data', directory],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: LogLine[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const joined = new Promise<LogLine>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        return;
      }
      lines.push(entry);
      if (entry['msg'] === 'always-on node joined') resolve(entry);
    });
    void exited.then((code) => reject(new Error(`the always-on node exited with ${code} before joining`)));
  });
  joined.catch(() => {});
  return {
    child,
    lines,
    joined,
    exited,
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
