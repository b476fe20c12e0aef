/**
 * CPU time the browser spends on the cluster, by where it runs, read from Linux's `/proc` for the Chromium launched
 * by this run (found by a marker switch on its command line, every browser that carries it, then their descendants). Unlike latency, CPU time does
 * not depend on what else the machine runs, so it says what an operation costs even on a busy machine; and when
 * CPU per operation approaches cores × latency, the cluster is CPU-bound.
 *
 * Threads are grouped by process type and thread name (Linux keeps the first 15 characters of a thread's name).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';

/** The groups CPU time is reported in, most interesting first. */
export const CPU_GROUPS = [
  'node workers (dedicated worker threads)',
  'page main threads',
  'browser thread pool (IndexedDB backend)',
  'IPC (IO threads)',
  'WebRTC and network threads',
  'other threads',
] as const;

/** One CPU group's name. */
export type CpuGroup = (typeof CPU_GROUPS)[number];

/** CPU milliseconds by group. */
export type CpuTimes = Record<CpuGroup, number>;

/** Linux's clock ticks per second for `/proc/<pid>/stat` (USER_HZ, 100 on every mainstream kernel). */
const TICKS_PER_SECOND = 100;

function groupOf(processType: string, thread: string): CpuGroup {
  if (processType === 'renderer' && thread.startsWith('DedicatedWorker'))
    return 'node workers (dedicated worker threads)';
  if (processType === 'renderer' && (thread === 'chromium' || thread.startsWith('CrRendererMain'))) {
    return 'page main threads';
  }
  if (processType === 'browser' && thread.startsWith('ThreadPool')) return 'browser thread pool (IndexedDB backend)';
  if (thread.includes('IOThread') || thread.startsWith('Chrome_ChildIOT')) return 'IPC (IO threads)';
  if (thread.startsWith('WebRTC') || processType === 'network') return 'WebRTC and network threads';
  return 'other threads';
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The fields after the command name in a `stat` line (the name may hold spaces and parentheses). */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
}

/** Samples the CPU time of one Chromium and its descendants. */
export class ChromiumCpu {
  readonly #marker: string;

  /** `marker` is a switch passed to that Chromium alone, e.g. `--dynamesh-bench=<random>`. */
  constructor(marker: string) {
    this.#marker = marker;
  }

  /** Whether `/proc` can be read here (Linux). */
  static available(): boolean {
    return existsSync('/proc/self/stat');
  }

  /** The CPU milliseconds each group has used so far. */
  sample(): CpuTimes {
    const out = Object.fromEntries(CPU_GROUPS.map((g) => [g, 0])) as CpuTimes;
    this.#walk((processType, thread, ms) => (out[groupOf(processType, thread)] += ms));
    return out;
  }

  /**
   * The CPU milliseconds each thread has used so far, summed by `processType/thread name` (the digits that end a
   * pool thread's name dropped, so that a pool counts as one).
   */
  threads(): Map<string, number> {
    const out = new Map<string, number>();
    this.#walk((processType, thread, ms) => {
      const key = `${processType}/${thread.replace(/\d+$/, '')}`;
      out.set(key, (out.get(key) ?? 0) + ms);
    });
    return out;
  }

  /** Visits every thread of the Chromiums of this run (each launched with the marker) and their descendants. */
  #walk(visit: (processType: string, thread: string, ms: number) => void): void {
    const pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
    const parent = new Map<string, string>();
    const roots = new Set<string>();
    for (const pid of pids) {
      const stat = read(`/proc/${pid}/stat`);
      if (stat === undefined) continue;
      parent.set(pid, statFields(stat)[1]!);
      if (read(`/proc/${pid}/cmdline`)?.includes(this.#marker)) roots.add(pid);
    }
    if (roots.size === 0) return;
    const ours = (pid: string): boolean => {
      for (let p: string | undefined = pid, depth = 0; p !== undefined && depth < 8; p = parent.get(p), depth++) {
        if (roots.has(p)) return true;
      }
      return false;
    };
    for (const pid of pids) {
      if (!ours(pid)) continue;
      const cmdline = read(`/proc/${pid}/cmdline`) ?? '';
      const type = /--type=([a-z-]+)/.exec(cmdline)?.[1] ?? 'browser';
      const processType = type === 'utility' && cmdline.includes('network.mojom.NetworkService') ? 'network' : type;
      let tids: string[];
      try {
        tids = readdirSync(`/proc/${pid}/task`);
      } catch {
        continue;
      }
      for (const tid of tids) {
        const stat = read(`/proc/${pid}/task/${tid}/stat`);
        if (stat === undefined) continue;
        const thread = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const fields = statFields(stat);
        visit(processType, thread, ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND);
      }
    }
  }
}

/** CPU milliseconds per operation, by group, between two samples; threads that ended in between are not counted. */
export function perOperation(before: CpuTimes, after: CpuTimes, operations: number): CpuTimes {
  return Object.fromEntries(
    CPU_GROUPS.map((g) => [g, Math.max(0, after[g] - before[g]) / Math.max(1, operations)]),
  ) as CpuTimes;
}

/** The sum over groups. */
export function totalOf(times: CpuTimes): number {
  return CPU_GROUPS.reduce((sum, g) => sum + times[g], 0);
}
