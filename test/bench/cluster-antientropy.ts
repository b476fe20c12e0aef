/**
 * Put latency with anti-entropy running, against the same cluster without it: the budget is "in idle time,
 * with bounded bytes per second", so that sequential-put p99 with anti-entropy stays within 1.5× of the figure
 * without it.
 *
 * Each repetition opens two fresh clusters of the same size, one after the other, one with `antiEntropyInterval: 0`
 * and one with a short interval (aggressive on purpose: a round starts soon after the last ends, so anti-entropy is
 * running nearly all the time). Both go through the same steps, so that they differ in anti-entropy alone:
 *   1. warm up, then cut the last tab off with `store.faults.isolate` (its own id: from everyone);
 *   2. preload keys from the first tab (W=2 is met by the tabs still connected, so the isolated one misses every
 *      key: with N equal to the cluster size there is no fallback to hold a hint, so only anti-entropy (or a read)
 *      can repair it);
 *   3. heal, and at once time sequential puts from the first tab while the other cluster's anti-entropy compares
 *      trees and repairs the isolated tab. The anti-entropy counters of every tab over the measurement show that it
 *      really was working, and the browser's CPU over the phase (Linux) says what it cost.
 * The clusters alternate off, on, off, on… so that a drift of the machine's load touches both alike.
 */
import type { Page } from 'playwright-core';
import type { Store } from '../../client/store.ts';
import { type ChromiumCpu, perOperation, totalOf } from './cluster-cpu.ts';
import { type Summary, fmt, summarize, table } from './cluster-stats.ts';

/** The p99 ratio, anti-entropy on over off, that the issue allows. */
export const AE_TARGET_RATIO = 1.5;

/** Counters that show anti-entropy at work, summed over every tab of a cluster. */
export const AE_COUNTERS = [
  'antiEntropyRounds',
  'antiEntropyRepairs',
  'syncBytes',
  'keysRepaired',
  'syncKeysServed',
] as const;

/** What the comparison is run with. */
export interface AntiEntropyOptions {
  readonly tabs: number;
  /** Sequential puts timed per cluster. */
  readonly ops: number;
  readonly size: number;
  /** Keys preloaded while one tab is cut off. */
  readonly keys: number;
  /** Anti-entropy interval of the "on" clusters, ms. */
  readonly interval: number;
  /** Anti-entropy bytes per second of the "on" clusters; undefined keeps the store's default. */
  readonly bytesPerSecond: number | undefined;
  /** Off/on pairs of clusters. */
  readonly repeat: number;
  readonly warmup: number;
}

/** One timed cluster. */
export interface AntiEntropyRun {
  readonly antiEntropy: 'off' | 'on';
  readonly repetition: number;
  readonly summary: Summary;
  readonly errors: Record<string, number>;
  /** Counters summed over every tab, over the timed puts alone. */
  readonly counters: Record<string, number>;
  /** Keys the isolated tab stored when the timing started and when it ended (what anti-entropy had repaired). */
  readonly isolatedKeys: { readonly before: number; readonly after: number };
  /** Browser CPU per put (ms) and cores busy over the phase (Linux). */
  readonly cpu?: { readonly perPut: number; readonly coresBusy: number; readonly workers: number };
}

/** What {@link measureAntiEntropy} found. */
export interface AntiEntropyResult {
  readonly options: AntiEntropyOptions;
  readonly runs: AntiEntropyRun[];
  readonly off: Summary;
  readonly on: Summary;
  readonly p50Ratio: number;
  readonly p99Ratio: number;
  readonly met: boolean;
}

/** Opens `tabs` connected tabs of the demo in a new cluster, with extra query parameters. */
export type OpenCluster = (cluster: string, tabs: number, query: Record<string, string>) => Promise<Page[]>;

type StoreGlobal = { store?: Store };

async function nodeCounters(pages: readonly Page[]): Promise<Record<string, number>> {
  const all = await Promise.all(
    pages.map((page) =>
      page.evaluate(async () => {
        const { node } = await (globalThis as StoreGlobal).store!.metrics();
        return node as unknown as Record<string, number>;
      }),
    ),
  );
  const names = [...AE_COUNTERS, 'timeouts', 'fallbacksUsed'];
  return Object.fromEntries(names.map((name) => [name, all.reduce((s, c) => s + (c[name] ?? 0), 0)]));
}

function storedKeys(page: Page): Promise<number> {
  return page.evaluate(async () => (await (globalThis as StoreGlobal).store!.metrics()).storage.keys);
}

/** Preloads `keys` keys from `page`, `parallel` puts at a time. */
function preload(page: Page, keys: number, size: number): Promise<number> {
  return page.evaluate(
    async ({ keys, size }) => {
      const store = (globalThis as StoreGlobal).store!;
      const value = new Uint8Array(size);
      crypto.getRandomValues(value);
      let failed = 0;
      const parallel = 16;
      for (let i = 0; i < keys; i += parallel) {
        const batch = Array.from({ length: Math.min(parallel, keys - i) }, (_, j) =>
          store.put(`ae:pre:${i + j}`, value, { w: 2 }).then(
            () => 0,
            () => 1,
          ),
        );
        failed += (await Promise.all(batch)).reduce((a: number, b: number) => a + b, 0);
      }
      return failed;
    },
    { keys, size },
  );
}

function timePuts(
  page: Page,
  ops: number,
  size: number,
  prefix: string,
): Promise<{ latencies: number[]; wall: number; errors: Record<string, number> }> {
  return page.evaluate(
    async ({ ops, size, prefix }) => {
      const store = (globalThis as StoreGlobal).store!;
      const value = new Uint8Array(size);
      crypto.getRandomValues(value);
      const latencies: number[] = [];
      const errors: Record<string, number> = {};
      const began = performance.now();
      for (let i = 0; i < ops; i++) {
        const started = performance.now();
        try {
          await store.put(`${prefix}:${i}`, value, { w: 2 });
          latencies.push(performance.now() - started);
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          const name = typeof code === 'string' ? code : String(error);
          errors[name] = (errors[name] ?? 0) + 1;
        }
      }
      return { latencies, wall: performance.now() - began, errors };
    },
    { ops, size, prefix },
  );
}

async function warmUp(pages: readonly Page[], ops: number): Promise<void> {
  await Promise.all(
    pages.map((page, tab) =>
      page.evaluate(
        async ({ ops, prefix }) => {
          const store = (globalThis as StoreGlobal).store!;
          const deadline = performance.now() + 20_000;
          for (let i = 0; i < Math.max(1, ops); i++) {
            for (;;) {
              try {
                await store.put(`${prefix}:${i}`, new Uint8Array(100), { w: 2 });
                break;
              } catch (error) {
                if (performance.now() > deadline) throw error;
                await new Promise((resolve) => setTimeout(resolve, 100));
              }
            }
          }
        },
        { ops, prefix: `ae:warm:${tab}` },
      ),
    ),
  );
}

async function measureOne(
  open: OpenCluster,
  options: AntiEntropyOptions,
  antiEntropy: 'off' | 'on',
  repetition: number,
  cpu: ChromiumCpu | undefined,
  log: (message: string) => void,
): Promise<{ run: AntiEntropyRun; samples: number[]; wall: number }> {
  const query: Record<string, string> = {
    faults: '1',
    antiEntropyInterval: antiEntropy === 'on' ? String(options.interval) : '0',
  };
  if (antiEntropy === 'on' && options.bytesPerSecond !== undefined) {
    query['antiEntropyBytesPerSecond'] = String(options.bytesPerSecond);
  }
  const cluster = `bench-ae-${antiEntropy}-${Math.random().toString(36).slice(2, 8)}`;
  const pages = await open(cluster, options.tabs, query);
  try {
    const first = pages[0]!;
    const cut = pages[pages.length - 1]!;
    await warmUp(pages, options.warmup);
    await cut.evaluate(async () => {
      const store = (globalThis as StoreGlobal).store!;
      await store.faults!.isolate([store.nodeId]);
    });
    const loaded = performance.now();
    const failed = await preload(first, options.keys, options.size);
    log(
      `anti-entropy ${antiEntropy}: preloaded ${options.keys - failed} of ${options.keys} keys with one tab cut off ` +
        `in ${((performance.now() - loaded) / 1000).toFixed(1)} s`,
    );
    await cut.evaluate(async () => {
      await (globalThis as StoreGlobal).store!.faults!.heal();
    });
    const keysBefore = await storedKeys(cut);
    const before = await nodeCounters(pages);
    const cpuBefore = cpu?.sample();
    const timed = await timePuts(first, options.ops, options.size, `ae:${antiEntropy}:${repetition}`);
    const cpuAfter = cpu?.sample();
    const after = await nodeCounters(pages);
    const keysAfter = await storedKeys(cut);
    const summary = summarize(timed.latencies, timed.wall);
    const counters = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
    let cpuFigures: AntiEntropyRun['cpu'];
    if (cpuBefore !== undefined && cpuAfter !== undefined && timed.latencies.length > 0) {
      const perOp = perOperation(cpuBefore, cpuAfter, timed.latencies.length);
      const perPut = totalOf(perOp);
      cpuFigures = {
        perPut,
        coresBusy: (perPut * timed.latencies.length) / timed.wall,
        workers: perOp['node workers (dedicated worker threads)'],
      };
    }
    log(
      `anti-entropy ${antiEntropy} #${repetition + 1}: put p50 ${fmt(summary.p50)} ms, p99 ${fmt(summary.p99)} ms; ` +
        `${counters['antiEntropyRounds']} rounds, ${counters['antiEntropyRepairs']} repairs, ` +
        `${counters['syncBytes']} sync bytes; isolated tab ${keysBefore} → ${keysAfter} keys`,
    );
    const run: AntiEntropyRun = {
      antiEntropy,
      repetition,
      summary,
      errors: timed.errors,
      counters,
      isolatedKeys: { before: keysBefore, after: keysAfter },
      ...(cpuFigures !== undefined ? { cpu: cpuFigures } : {}),
    };
    return { run, samples: timed.latencies, wall: timed.wall };
  } finally {
    await Promise.all(pages.map((page) => page.close()));
  }
}

/** Runs the off/on pairs and pools each side's latencies: the pooled p99 of 2×500 puts is steadier than either's. */
export async function measureAntiEntropy(
  open: OpenCluster,
  options: AntiEntropyOptions,
  cpu: ChromiumCpu | undefined,
  log: (message: string) => void,
): Promise<AntiEntropyResult> {
  const runs: AntiEntropyRun[] = [];
  const latencies: Record<'off' | 'on', number[]> = { off: [], on: [] };
  const walls: Record<'off' | 'on', number> = { off: 0, on: 0 };
  for (let r = 0; r < options.repeat; r++) {
    for (const mode of ['off', 'on'] as const) {
      const { run, samples, wall } = await measureOne(open, options, mode, r, cpu, log);
      runs.push(run);
      latencies[mode].push(...samples);
      walls[mode] += wall;
    }
  }
  const off = summarize(latencies.off, walls.off);
  const on = summarize(latencies.on, walls.on);
  const p99Ratio = on.p99 / off.p99;
  return { options, runs, off, on, p50Ratio: on.p50 / off.p50, p99Ratio, met: p99Ratio <= AE_TARGET_RATIO };
}

/** Prints the comparison: one row per cluster, the pooled figures, their ratio and whether the target is met. */
export function reportAntiEntropy(result: AntiEntropyResult): void {
  const { options } = result;
  console.log(
    `\nPut latency with anti-entropy running (ms): ${options.tabs} tabs, sequential puts of ${options.size} B ` +
      `from one tab, after ${options.keys} keys preloaded with one tab cut off and then healed; anti-entropy ` +
      `every ${options.interval} ms` +
      (options.bytesPerSecond !== undefined ? ` at ${options.bytesPerSecond} B/s` : ' at the default byte rate') +
      ' against antiEntropyInterval 0. Counters summed over every tab during the timed puts.',
  );
  const rows = result.runs.map((run) => [
    `anti-entropy ${run.antiEntropy} #${run.repetition + 1}`,
    String(run.summary.count),
    fmt(run.summary.p50),
    fmt(run.summary.p99),
    fmt(run.summary.max),
    String(Object.values(run.errors).reduce((a, b) => a + b, 0)),
    String(run.counters['antiEntropyRounds'] ?? 0),
    String(run.counters['antiEntropyRepairs'] ?? 0),
    String(run.counters['keysRepaired'] ?? 0),
    String(run.counters['syncBytes'] ?? 0),
    `${run.isolatedKeys.before}→${run.isolatedKeys.after}`,
    run.cpu === undefined ? '—' : fmt(run.cpu.perPut),
    run.cpu === undefined ? '—' : fmt(run.cpu.coresBusy),
  ]);
  for (const mode of ['off', 'on'] as const) {
    const s = result[mode];
    rows.push([`pooled, anti-entropy ${mode}`, String(s.count), fmt(s.p50), fmt(s.p99), fmt(s.max)]);
  }
  console.log(
    table(
      [
        'cluster',
        'puts',
        'p50',
        'p99',
        'max',
        'failed',
        'AE rounds',
        'AE repairs',
        'keys repaired',
        'sync bytes',
        'cut tab keys',
        'CPU ms/put',
        'cores busy',
      ],
      rows,
    ),
  );
  console.log(
    `Target: put p99 with anti-entropy within ${AE_TARGET_RATIO}× of without: ` +
      `${result.p99Ratio.toFixed(2)}× (p50 ${result.p50Ratio.toFixed(2)}×) — ${result.met ? 'met' : 'NOT met'}`,
  );
}
