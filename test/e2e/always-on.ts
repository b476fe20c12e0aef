/**
 * The always-on node as the end-to-end tests run it: `npm run node`'s entry (always-on/cli.ts) spawned as a real
 * child process, its JSON log lines read from its stdout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A running always-on node process. */
export interface NodeProcess {
  readonly nodeId: string;
  readonly child: ChildProcess;
  /** Every log line so far, parsed. */
  readonly lines: Record<string, unknown>[];
  /** Sends `signal` and resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns the always-on node of `directory` and resolves once it has joined `cluster` at `url`. */
export function startNodeProcess(url: string, cluster: string, directory: string): Promise<NodeProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'always-on/cli.ts', '--url', url, '--cluster', cluster, '--data', directory],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      lines.push(entry);
      if (entry['msg'] === 'always-on node joined') {
        resolve({ nodeId: String(entry['nodeId']), child, lines, stop });
      }
    });
    void exited.then((code) => reject(new Error(`the always-on node exited with ${code} before joining`)));
  });
}
