/**
 * `npm run bench`: every figure issue 9 sets a target for, each with its measured value, its ratio to the floor
 * measured in the same run (where a floor applies), the target and whether it is met, in one table and one final JSON
 * line. A script that prints figures, not a test: it exits 0 whatever the figures are, and 1 only when a part of it
 * could not be set up or run (a tab that does not open, a cluster that does not connect, a child that does not start);
 * the parts after a broken one still run and print.
 *
 *   node --import tsx test/bench/targets.ts [--tabs 3[,5]] [--ops 500] [--warmup 50] [--size 100]
 *     [--floor-samples 1000] [--count 5000] [--limit 64] [--floor-count 5000] [--plane auto|transfer|relay]
 *     [--storage disk|memory] [--contexts separate|shared] [--ae-interval 500] [--ae-bytes B/s] [--ae-keys 3000] [--ae-repeat 2] [--ae-only]
 *     [--only latency,burst,ae,sim]
 *
 * Everything in the browser runs on the minimal app that embeds the library as an app would (test/bench/app, built
 * by Vite at the start of the run) in one Chromium (playwright-core, `CHROMIUM_PATH` or /usr/bin/chromium), with
 * each tab in a browser context of its own, as three users' browsers are (`--contexts shared`: every tab in one, so
 * that their nodes share one IndexedDB backend), IndexedDB on disk in a temporary profile per context, each its own
 * Chromium (`--storage memory`: in-memory contexts of one Chromium), every page cross-origin
 * isolated so that `performance.now()` has 5 µs resolution (floor.ts, `isolate`). In order:
 *
 * - sim: `npm run -s sim -- --nodes 20 --ops 20000 --seed 7 --faults partition,crash,loss` as a child process, first,
 *   while the browser is not running yet; its final JSON line's `opsPerSecond` (target ≥ 20,000; a run that found a
 *   fault in the store's behaviour does not meet it).
 * - latency: the floor of floor.ts in blank pages of the same browser ((a) a data-channel round trip, (b) a main ⇄
 *   worker round trip, (c) a relaxed IndexedDB put, (d) an IndexedDB get; a put's floor is a + c + 2b, a get's
 *   a + d + 2b, percentile by percentile); then, for each `--tabs` (default 3 alone), a fresh cluster of the app
 *   (N=3, R=2, W=2), warmed up (`--warmup` puts and gets from every tab), and `--ops` sequential puts of `--size`
 *   random bytes then gets of the same keys from the first tab, each timed in the page around `store.put` /
 *   `store.get`. Targets: put p50 ≤ 1.3× the floor's, put p99 ≤ 3 ms, get p50 ≤ 1.3× the floor's. Then watch
 *   latency: the second tab watches a prefix (`store.watch({ prefix })`) and the first puts `--ops` new keys under it
 *   one after another; each key's time from the start of its put in the first tab to the listener in the second
 *   (`performance.timeOrigin + performance.now()` in both), p50 and p99, next to the put's. For comparison, a change
 *   reaches another tab in about 1.25 ms with Yjs and 0.85 ms with GUN on this machine. Reported, no target; every
 *   put must be told.
 * - burst (burst.ts), in the same cluster: the batched-IndexedDB floor (`--floor-count` puts, 100 to a relaxed
 *   transaction, in the first tab); `--count` puts issued at once from the first tab; the same with `--limit`
 *   outstanding; `--count` from every tab at once. Each read back. Targets: all acknowledged, ≥ 6,000 puts/s,
 *   ≥ 0.35× the floor.
 * - identity (identity.ts), with latency: what issue 10's identity checks cost per join, per peer connection, per
 *   put (its coordinator signs the version) and per version received from another than its writer, printed for scale
 *   (no target); the put and get latencies above are with them on.
 * - memory: the used JS heap, after a garbage collection, of the first tab's page and of its node worker, as soon as
 *   the first burst's puts have all settled (before they are read back); before the burst and a second after it too,
 *   for scale. Targets: page ≤ 3 MiB, node worker ≤ 5 MiB.
 * - ae (cluster-antientropy.ts): `--ae-repeat` off/on pairs of fresh 3-tab clusters of the app, anti-entropy every
 *   `--ae-interval` ms (at `--ae-bytes` per second, the store's default when not given) after `--ae-keys` keys were
 *   preloaded with one tab cut off; `--ops` sequential puts timed in each. Target: pooled put p99 with anti-entropy
 *   ≤ 1.5× the same without it.
 *
 * `--only` picks parts (the memory figures come with `burst`); `--ae-only` is `--only ae`. `npm run bench:burst` is
 * `--only burst`. Progress goes to stderr; stdout holds the detailed tables, the summary table and the JSON line.
 *
 * What changed from the earlier `npm run bench` (test/bench/cluster.ts, now `npm run bench:cluster`): the figures
 * are taken on the benchmark app instead of the demo, for 3 tabs by default instead of 3 and 5, sequential from one
 * tab only, without the per-segment trace and the breakdown of a put. `--plane` takes `auto` too (the default, as an
 * app would run; the plane the store ran is in the JSON), `--sizes` is `--size` (one size), and `--no-profile` is
 * accepted and does nothing. Everything else cluster.ts did (concurrent runs, several sizes, the browser's CPU per
 * operation, the trace, the breakdown) is still `npm run bench:cluster`.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Browser, type BrowserContext, type Page, chromium } from 'playwright-core';
import { pino } from 'pino';
import { createSignalingServer } from '../../signaling/server.ts';
import type { BenchApp, SequentialResult } from './app/main.ts';
import { type Heaps, buildApp, heapsAfterGc, nodeWorkerHeap, openAppCluster, sharesIsolate } from './app-cluster.ts';
import {
  type BurstFigure,
  TARGET_FLOOR_RATIO,
  TARGET_RATE,
  batchedFloor,
  measureBurst,
  readBackText,
  reportBursts,
} from './burst.ts';
import {
  AE_TARGET_RATIO,
  type AntiEntropyOptions,
  type AntiEntropyResult,
  measureAntiEntropy,
  reportAntiEntropy,
} from './cluster-antientropy.ts';
import { ChromiumCpu } from './cluster-cpu.ts';
import { type Summary, fmt, summarize } from './cluster-stats.ts';
import { FLOOR_INIT_SCRIPT, type FloorSamples, isolate, measureFloor } from './floor.ts';
import { measureIdentity, reportIdentity } from './identity.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A sequential put's or get's p50, at most, as a multiple of the floor's p50. */
const TARGET_LATENCY_RATIO = 1.3;
/** A sequential put's p99, at most, ms. */
const TARGET_PUT_P99_MS = 3;
/** The writing page's used JS heap after the burst, at most, bytes. */
const TARGET_PAGE_HEAP = 3 * 1024 * 1024;
/**
 * How long after the burst the heaps are weighed again, ms: the targets are weighed as the last put settles, while
 * the third replica's writes are still in flight; a second later shows what stays.
 */
const SETTLE_MS = 1000;
/** Its node worker's used JS heap after the burst, at most, bytes. */
const TARGET_WORKER_HEAP = 5 * 1024 * 1024;
/** The simulation's operations per second, at least. */
const TARGET_SIM_OPS = 20_000;
/** The simulation the issue names. */
const SIM_ARGS = ['--nodes', '20', '--ops', '20000', '--seed', '7', '--faults', 'partition,crash,loss'];

const PARTS = ['latency', 'burst', 'ae', 'sim'] as const;
type Part = (typeof PARTS)[number];

interface Options {
  readonly parts: ReadonlySet<Part>;
  readonly tabs: number[];
  readonly ops: number;
  readonly warmup: number;
  readonly size: number;
  readonly floorSamples: number;
  readonly count: number;
  readonly limit: number;
  readonly floorCount: number;
  readonly plane: 'auto' | 'transfer' | 'relay';
  readonly storage: 'disk' | 'memory';
  /** Each tab in a browser context of its own (on disk: a profile and a browser of its own), or all in one. */
  readonly contexts: 'separate' | 'shared';
  readonly antiEntropy: AntiEntropyOptions;
}

/** One row of the summary: a figure, what it is compared with, its target. */
interface Figure {
  readonly id: string;
  readonly name: string;
  /** The measured value in `unit`; null when it could not be measured. */
  readonly value: number | null;
  readonly unit: string;
  /** What the value is compared with (the floor, or for anti-entropy the same run without it), in `unit`. */
  readonly floor: number | null;
  readonly floorName: string | null;
  readonly ratio: number | null;
  readonly target: string;
  readonly met: boolean;
  /** Counts and side figures that qualify the value (failures, acknowledged puts…). */
  readonly notes: string;
}

const USAGE =
  'usage: node --import tsx test/bench/targets.ts [--tabs 3[,5]] [--ops 500] [--warmup 50] [--size 100]\n' +
  '         [--floor-samples 1000] [--count 5000] [--limit 64] [--floor-count 5000] [--plane auto|transfer|relay]\n' +
  '         [--storage disk|memory] [--ae-interval 500] [--ae-bytes B/s] [--ae-keys 3000] [--ae-repeat 2]\n' +
  '         [--ae-only] [--only latency,burst,ae,sim]';

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      tabs: { type: 'string', default: '3' },
      ops: { type: 'string', default: '500' },
      warmup: { type: 'string', default: '50' },
      size: { type: 'string', default: '100' },
      'floor-samples': { type: 'string', default: '1000' },
      count: { type: 'string', default: '5000' },
      limit: { type: 'string', default: '64' },
      'floor-count': { type: 'string', default: '5000' },
      plane: { type: 'string', default: 'auto' },
      storage: { type: 'string', default: 'disk' },
      contexts: { type: 'string', default: 'separate' },
      'ae-interval': { type: 'string', default: '500' },
      'ae-bytes': { type: 'string' },
      'ae-keys': { type: 'string', default: '3000' },
      'ae-repeat': { type: 'string', default: '2' },
      'ae-only': { type: 'boolean', default: false },
      only: { type: 'string' },
      'no-profile': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (name: string, min: number, text = values[name as keyof typeof values]): number => {
    const n = Number(text);
    if (typeof text !== 'string' || !Number.isInteger(n) || n < min) {
      throw new RangeError(`--${name} takes an integer ≥ ${min}, got "${String(text)}"`);
    }
    return n;
  };
  const tabs = values.tabs.split(',').map((t) => int('tabs', 2, t.trim()));
  for (const t of tabs) if (t < 3) console.error(`note: with ${t} tabs, N=3 leaves a replica slot empty`);
  const plane = values.plane;
  if (plane !== 'auto' && plane !== 'transfer' && plane !== 'relay')
    throw new RangeError('--plane: auto|transfer|relay');
  const storage = values.storage;
  if (storage !== 'disk' && storage !== 'memory') throw new RangeError('--storage takes disk or memory');
  const contexts = values.contexts;
  if (contexts !== 'separate' && contexts !== 'shared') throw new RangeError('--contexts takes separate or shared');
  let parts = new Set<Part>(PARTS);
  if (values.only !== undefined) {
    parts = new Set();
    for (const p of values.only.split(',').map((s) => s.trim())) {
      if (!(PARTS as readonly string[]).includes(p)) throw new RangeError(`--only: unknown part "${p}"`);
      parts.add(p as Part);
    }
  }
  if (values['ae-only']) parts = new Set(['ae']);
  const ops = int('ops', 1);
  const warmup = int('warmup', 0);
  const size = int('size', 1);
  const interval = int('ae-interval', 0);
  if (interval === 0) parts.delete('ae');
  return {
    parts,
    tabs,
    ops,
    warmup,
    size,
    floorSamples: int('floor-samples', 10),
    count: int('count', 1),
    limit: int('limit', 1),
    floorCount: int('floor-count', 100),
    plane,
    storage,
    contexts,
    antiEntropy: {
      tabs: 3,
      ops,
      size,
      keys: int('ae-keys', 0),
      interval,
      bytesPerSecond: values['ae-bytes'] === undefined ? undefined : int('ae-bytes', 1),
      repeat: int('ae-repeat', 1),
      warmup,
    },
  };
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function mib(bytes: number): number {
  return bytes / (1024 * 1024);
}

function failuresText(failures: Record<string, number>): string {
  const entries = Object.entries(failures);
  return entries.length === 0 ? '' : `, failed: ${entries.map(([code, n]) => `${code} ×${n}`).join(', ')}`;
}

/** The floor of a put (a + c + 2b) and of a get (a + d + 2b), percentile by percentile, and its parts. */
interface Floor {
  readonly parts: Record<'dataChannel' | 'workerHop' | 'idbPut' | 'idbGet', Summary>;
  readonly put: { readonly p50: number; readonly p99: number };
  readonly get: { readonly p50: number; readonly p99: number };
}

function floorOf(samples: FloorSamples, size: number): Floor {
  const part = (lat: number[]): Summary =>
    summarize(
      lat,
      lat.reduce((sum, x) => sum + x, 0),
    );
  const parts = {
    dataChannel: part(samples.dataChannel[size]!),
    workerHop: part(samples.workerHop[size]!),
    idbPut: part(samples.idbPut[size]!),
    idbGet: part(samples.idbGet[size]!),
  };
  const sum = (store: Summary, q: 'p50' | 'p99'): number => parts.dataChannel[q] + store[q] + 2 * parts.workerHop[q];
  return {
    parts,
    put: { p50: sum(parts.idbPut, 'p50'), p99: sum(parts.idbPut, 'p99') },
    get: { p50: sum(parts.idbGet, 'p50'), p99: sum(parts.idbGet, 'p99') },
  };
}

/**
 * Runs the simulation the issue names as a child process, exactly as the README runs it (`npm run sim`, with the
 * Node flags of that script); its progress goes to stderr.
 */
function runSimulation(): Promise<{ status: number | null; result: Record<string, unknown> | undefined }> {
  return new Promise((resolve, reject) => {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const child = spawn(npm, ['run', '-s', 'sim', '--', ...SIM_ARGS], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.on('error', reject);
    child.on('close', (status) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      let result: Record<string, unknown> | undefined;
      try {
        result = JSON.parse(last) as Record<string, unknown>;
      } catch {
        result = undefined;
      }
      resolve({ status, result });
    });
  });
}

type BenchWindow = { bench: BenchApp };

function sequential(page: Page, op: 'put' | 'get', prefix: string, ops: number, size: number) {
  return page.evaluate(
    ({ op, prefix, ops, size }) => (window as unknown as BenchWindow).bench.sequential(op, prefix, ops, size),
    { op, prefix, ops, size },
  );
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const began = performance.now();
  const loadBefore = loadavg();
  const cores = cpus().length;
  log(`${cores} cores, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  if (loadBefore[0]! > cores)
    log(`warning: load ${loadBefore[0]!.toFixed(1)} on ${cores} cores; figures will be noisy`);
  const figures: Figure[] = [];
  const broken: string[] = [];
  const details: Record<string, unknown> = {};
  const attempt = async (part: string, run: () => Promise<void>): Promise<void> => {
    try {
      await run();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`${part} broke: ${message}`);
      broken.push(`${part}: ${message.split('\n')[0]}`);
    }
  };

  if (options.parts.has('sim')) {
    await attempt('sim', async () => {
      log(`sim: npm run -s sim -- ${SIM_ARGS.join(' ')}`);
      const { status, result } = await runSimulation();
      if (result === undefined || typeof result['opsPerSecond'] !== 'number') {
        throw new Error(`the simulation printed no JSON line with opsPerSecond (exit status ${String(status)})`);
      }
      const opsPerSecond = result['opsPerSecond'];
      const ok = result['ok'] === true;
      details['sim'] = result;
      figures.push({
        id: 'sim.opsPerSecond',
        name: `simulation: ${SIM_ARGS.join(' ')}`,
        value: opsPerSecond,
        unit: 'ops/s',
        floor: null,
        floorName: null,
        ratio: null,
        target: `≥ ${TARGET_SIM_OPS}`,
        met: ok && opsPerSecond >= TARGET_SIM_OPS,
        notes:
          `${String(result['ops'])} ops in ${String(result['wallMs'])} ms wall` +
          (ok ? '' : `; the run FAILED its checks (exit ${String(status)})`),
      });
    });
  }

  const browserParts = options.parts.has('latency') || options.parts.has('burst') || options.parts.has('ae');
  let chromiumVersion: string | undefined;
  let dataPlane: string | undefined;
  if (browserParts) {
    const appDir = mkdtempSync(join(tmpdir(), 'dynamesh-bench-app-'));
    const profile = options.storage === 'disk' ? mkdtempSync(join(tmpdir(), 'dynamesh-bench-profile-')) : undefined;
    let server: Awaited<ReturnType<typeof createSignalingServer>> | undefined;
    let browser: Browser | undefined;
    let context: BrowserContext | undefined;
    const extraContexts: BrowserContext[] = [];
    const extraProfiles: string[] = [];
    try {
      log('building the benchmark app (test/bench/app)…');
      await buildApp(appDir);
      server = await createSignalingServer({
        port: 0,
        host: '127.0.0.1',
        staticDir: appDir,
        // Warnings (a closed tab leaving its view) go to stderr, so stdout holds the figures alone.
        logger: pino({ name: 'dynamesh-signaling', level: 'warn' }, pino.destination(2)),
      });
      const origin = server.url;
      // Chromium ignores a switch it does not know; this one lets cluster-cpu.ts find the processes of this run.
      const marker = `--dynamesh-bench=${randomUUID()}`;
      const cpu = ChromiumCpu.available() ? new ChromiumCpu(marker) : undefined;
      const launch = {
        executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
        args: ['--disable-gpu', '--disable-dev-shm-usage', marker],
      };
      // A persistent context keeps IndexedDB on disk, as a user's profile does; a plain context keeps it in memory.
      if (profile === undefined) browser = await chromium.launch(launch);
      context =
        profile !== undefined ? await chromium.launchPersistentContext(profile, launch) : await browser!.newContext();
      const ctx = context;
      await ctx.addInitScript(FLOOR_INIT_SCRIPT);
      await isolate(ctx, origin);
      // Tab i of every cluster opens in context i: the first is `ctx`, the others are made on first use.
      const tabContext = async (tab: number): Promise<BrowserContext> => {
        if (tab === 0 || options.contexts === 'shared') return ctx;
        let extra = extraContexts[tab - 1];
        if (extra === undefined) {
          if (profile !== undefined) {
            const dir = mkdtempSync(join(tmpdir(), 'dynamesh-bench-profile-'));
            extraProfiles.push(dir);
            extra = await chromium.launchPersistentContext(dir, launch);
          } else extra = await browser!.newContext();
          await extra.addInitScript(FLOOR_INIT_SCRIPT);
          await isolate(extra, origin);
          extraContexts[tab - 1] = extra;
        }
        return extra;
      };
      const query: Record<string, string> = options.plane === 'auto' ? {} : { dataPlane: options.plane };

      let floor: Floor | undefined;
      if (options.parts.has('latency')) {
        await attempt('floor', async () => {
          log(`measuring the floor (${options.floorSamples} samples of each part)…`);
          const samples = await measureFloor(ctx, origin, {
            sizes: [options.size],
            samples: options.floorSamples,
            warmup: Math.min(100, options.floorSamples),
          });
          floor = floorOf(samples, options.size);
        });
        await attempt('identity', async () => {
          log('measuring the identity checks (200 samples each)…');
          const cost = await measureIdentity(ctx, origin, 200, 20);
          details['identity'] = cost;
          reportIdentity(cost);
        });
      }

      for (const tabs of options.parts.has('latency') || options.parts.has('burst') ? options.tabs : []) {
        const suffix = options.tabs.length > 1 ? `.${tabs}tabs` : '';
        await attempt(`${tabs}-tab cluster`, async () => {
          log(`opening a cluster of ${tabs} tabs of the app…`);
          const pages = await openAppCluster(tabContext, origin, `bench-${tabs}-${Date.now()}`, tabs, query, log);
          try {
            const first = pages[0]!;
            chromiumVersion ??= await first.evaluate(() => navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] ?? '?');
            dataPlane = await first.evaluate(() => (window as unknown as BenchWindow).bench.store.dataPlane);
            log(`${tabs} tabs connected (${dataPlane} data plane); warming up…`);
            await Promise.all(
              pages.map((page, i) =>
                page.evaluate(({ prefix, n }) => (window as unknown as BenchWindow).bench.warmUp(prefix, n), {
                  prefix: `warm:${i}`,
                  n: options.warmup,
                }),
              ),
            );
            if (options.parts.has('latency') && floor !== undefined) {
              const f = floor;
              const puts = await sequential(first, 'put', 'seq', options.ops, options.size);
              const gets = await sequential(first, 'get', 'seq', options.ops, options.size);
              const put = summarize(puts.latencies, puts.ms);
              const get = summarize(gets.latencies, gets.ms);
              log(`${tabs} tabs: put p50 ${fmt(put.p50)} ms, p99 ${fmt(put.p99)} ms; get p50 ${fmt(get.p50)} ms`);
              details[`latency${suffix}`] = { tabs, put, get, putFailures: puts.failures, getFailures: gets.failures };
              const notes = (r: SequentialResult, s: Summary): string =>
                `${s.count} of ${options.ops} sequential, ${options.size} B, from one tab` +
                failuresText(r.failures) +
                (r.wrongReads > 0 ? `, ${r.wrongReads} read wrongly` : '');
              const clean = (r: SequentialResult): boolean =>
                Object.keys(r.failures).length === 0 && r.wrongReads === 0;
              figures.push(
                {
                  id: `put.p50${suffix}`,
                  name: `one put, p50, ${tabs} tabs`,
                  value: put.p50,
                  unit: 'ms',
                  floor: f.put.p50,
                  floorName: 'a + c + 2b, p50',
                  ratio: put.p50 / f.put.p50,
                  target: `≤ ${TARGET_LATENCY_RATIO}× floor`,
                  met: clean(puts) && put.p50 <= TARGET_LATENCY_RATIO * f.put.p50,
                  notes: notes(puts, put),
                },
                {
                  id: `put.p99${suffix}`,
                  name: `one put, p99, ${tabs} tabs`,
                  value: put.p99,
                  unit: 'ms',
                  floor: f.put.p99,
                  floorName: 'a + c + 2b, p99',
                  ratio: put.p99 / f.put.p99,
                  target: `≤ ${TARGET_PUT_P99_MS} ms`,
                  met: clean(puts) && put.p99 <= TARGET_PUT_P99_MS,
                  notes: notes(puts, put),
                },
                {
                  id: `get.p50${suffix}`,
                  name: `one get, p50, ${tabs} tabs`,
                  value: get.p50,
                  unit: 'ms',
                  floor: f.get.p50,
                  floorName: 'a + d + 2b, p50',
                  ratio: get.p50 / f.get.p50,
                  target: `≤ ${TARGET_LATENCY_RATIO}× floor`,
                  met: clean(gets) && get.p50 <= TARGET_LATENCY_RATIO * f.get.p50,
                  notes: notes(gets, get),
                },
              );
            }
            if (options.parts.has('latency') && pages.length > 1) {
              const watcher = pages[1]!;
              const ops = options.ops;
              await watcher.evaluate((prefix) => (window as unknown as BenchWindow).bench.watch(prefix), 'watched');
              const starts = await first.evaluate(
                ({ ops, size }) => (window as unknown as BenchWindow).bench.stampedPuts('watched', ops, size),
                { ops, size: options.size },
              );
              // Every notice is on its way once the last put is acknowledged; a few seconds bound the stragglers.
              await watcher
                .waitForFunction(
                  (n) => Object.keys((window as unknown as BenchWindow).bench.arrivals()).length >= n,
                  ops,
                  { timeout: 5000 },
                )
                .catch(() => {});
              const arrivals = await watcher.evaluate(() => (window as unknown as BenchWindow).bench.arrivals());
              const latencies = starts
                .map((start, i) => (arrivals[`watched:${i}`] ?? Number.NaN) - start)
                .filter((ms) => !Number.isNaN(ms));
              const missed = ops - latencies.length;
              const watch = summarize(latencies, 0);
              const put = (details[`latency${suffix}`] as { put?: Summary } | undefined)?.put;
              log(`${tabs} tabs: watch p50 ${fmt(watch.p50)} ms, p99 ${fmt(watch.p99)} ms, ${missed} not told`);
              details[`watch${suffix}`] = { tabs, watch, missed };
              const notes =
                `${latencies.length} of ${ops} puts from one tab, told to a prefix watch in another` +
                (put !== undefined ? `; put p50 ${fmt(put.p50)} ms, p99 ${fmt(put.p99)} ms` : '') +
                '; Yjs ≈ 1.25 ms, GUN ≈ 0.85 ms here';
              for (const [p, value] of [
                ['p50', watch.p50],
                ['p99', watch.p99],
              ] as const) {
                figures.push({
                  id: `watch.${p}${suffix}`,
                  name: `watch: put in one tab to listener in another, ${p}, ${tabs} tabs`,
                  value,
                  unit: 'ms',
                  floor: put === undefined ? null : put[p],
                  floorName: put === undefined ? null : `put, ${p}`,
                  ratio: put === undefined ? null : value / put[p],
                  target: 'reported; every put told',
                  met: missed === 0,
                  notes,
                });
              }
            }
            if (options.parts.has('burst')) {
              log(`${tabs} tabs: measuring the batched-IndexedDB floor…`);
              const floorPerSecond = await batchedFloor(first, options.floorCount, options.size);
              const heapBefore = await heapsAfterGc(ctx, first);
              let heapAfter: Heaps | undefined;
              /** A second later: the third replica's writes done, the log compacted or on its way. */
              let heapSettled: Heaps | undefined;
              const bursts: BurstFigure[] = [];
              const spec = { count: options.count, size: options.size, floorPerSecond };
              const runs = [
                {
                  id: 'once',
                  run: `${options.count} puts at once from one tab`,
                  bursts: [{ page: first, prefix: 'once', limit: 0 }],
                },
                {
                  id: 'limited',
                  run: `${options.count} puts, ${options.limit} outstanding, from one tab`,
                  bursts: [{ page: first, prefix: 'limited', limit: options.limit }],
                },
                {
                  id: 'everyTab',
                  run: `${options.count} puts at once from each of ${tabs} tabs`,
                  bursts: pages.map((page, i) => ({ page, prefix: `all${i}`, limit: 0 })),
                },
              ];
              for (const { id, run, bursts: specs } of runs) {
                log(`${tabs} tabs: ${run}…`);
                const figure = await measureBurst(run, specs, spec, async () => {
                  if (id === 'once') {
                    heapAfter = await heapsAfterGc(ctx, first);
                    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
                    heapSettled = await heapsAfterGc(ctx, first);
                  }
                });
                log(
                  `${tabs} tabs: ${figure.acknowledged}/${figure.issued} acknowledged, ` +
                    `${figure.perSecond.toFixed(0)} puts/s (floor ${floorPerSecond.toFixed(0)})`,
                );
                bursts.push(figure);
                figures.push({
                  id: `burst.${id}${suffix}`,
                  name: `burst: ${run}, ${tabs} tabs`,
                  value: figure.perSecond,
                  unit: 'puts/s',
                  floor: floorPerSecond,
                  floorName: 'batched IndexedDB',
                  ratio: figure.floorRatio,
                  target: `all acked, ≥ ${TARGET_RATE}, ≥ ${TARGET_FLOOR_RATIO}× floor`,
                  met: figure.met,
                  notes:
                    `${figure.acknowledged}/${figure.issued} acknowledged` +
                    failuresText(figure.failures) +
                    (figure.unreadable > 0 ? `; read back: ${readBackText(figure)}` : ''),
                });
              }
              reportBursts(bursts);
              const shared = await sharesIsolate(first, pages);
              details[`burst${suffix}`] = {
                tabs,
                floorPerSecond,
                bursts,
                heapBefore,
                heapAfter,
                heapSettled,
                pageSharesIsolate: shared,
              };
              const pageBytes = heapAfter?.page;
              const workerBytes = heapAfter === undefined ? undefined : nodeWorkerHeap(heapAfter);
              const workerBefore = nodeWorkerHeap(heapBefore);
              const workerSettled = heapSettled === undefined ? undefined : nodeWorkerHeap(heapSettled);
              const later = (bytes: number | undefined): string =>
                bytes === undefined ? '' : `; ${mib(bytes).toFixed(2)} MiB ${SETTLE_MS / 1000} s later`;
              figures.push(
                {
                  id: `memory.page${suffix}`,
                  name: `writing page's JS heap after the burst, ${tabs} tabs`,
                  value: pageBytes === undefined ? null : mib(pageBytes),
                  unit: 'MiB',
                  floor: null,
                  floorName: null,
                  ratio: null,
                  target: `≤ ${mib(TARGET_PAGE_HEAP)} MiB`,
                  met: pageBytes !== undefined && pageBytes <= TARGET_PAGE_HEAP,
                  notes:
                    `used, after GC; ${mib(heapBefore.page).toFixed(2)} MiB before the burst` +
                    later(heapSettled?.page) +
                    (shared ? '; SHARED with another tab (one renderer process), so this overstates it' : ''),
                },
                {
                  id: `memory.worker${suffix}`,
                  name: `its node worker's JS heap after the burst, ${tabs} tabs`,
                  value: workerBytes === undefined ? null : mib(workerBytes),
                  unit: 'MiB',
                  floor: null,
                  floorName: null,
                  ratio: null,
                  target: `≤ ${mib(TARGET_WORKER_HEAP)} MiB`,
                  met: workerBytes !== undefined && workerBytes <= TARGET_WORKER_HEAP,
                  notes:
                    workerBefore === undefined
                      ? 'no worker found before the burst'
                      : `used, after GC; ${mib(workerBefore).toFixed(2)} MiB before the burst` + later(workerSettled),
                },
              );
            }
          } finally {
            await Promise.all(pages.map((page) => page.close()));
          }
        });
      }

      if (options.parts.has('ae')) {
        await attempt('anti-entropy', async () => {
          const ae = options.antiEntropy;
          log(`anti-entropy: ${ae.repeat} off/on pairs of ${ae.tabs}-tab clusters…`);
          const result: AntiEntropyResult = await measureAntiEntropy(
            (cluster, tabs, extra) => openAppCluster(tabContext, origin, cluster, tabs, { ...query, ...extra }, log),
            ae,
            cpu,
            log,
          );
          reportAntiEntropy(result);
          details['antiEntropy'] = result;
          const on = result.runs.filter((r) => r.antiEntropy === 'on');
          const sum = (name: string): number => on.reduce((s, r) => s + (r.counters[name] ?? 0), 0);
          const failed = result.runs.reduce((s, r) => s + Object.values(r.errors).reduce((a, b) => a + b, 0), 0);
          figures.push({
            id: 'antiEntropy.putP99',
            name: `put p99 with anti-entropy running (every ${ae.interval} ms), ${ae.tabs} tabs`,
            value: result.on.p99,
            unit: 'ms',
            floor: result.off.p99,
            floorName: 'the same without anti-entropy',
            ratio: result.p99Ratio,
            target: `≤ ${AE_TARGET_RATIO}× without`,
            met: result.met && failed === 0,
            notes:
              `${result.on.count}+${result.off.count} puts over ${ae.repeat} pairs; while timed: ` +
              `${sum('antiEntropyRounds')} rounds, ${sum('keysRepaired')} keys repaired` +
              (failed > 0 ? `, ${failed} puts failed` : ''),
          });
        });
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`setup broke: ${message}`);
      broken.push(`setup: ${message.split('\n')[0]}`);
    } finally {
      await context?.close().catch(() => {});
      for (const extra of extraContexts) await extra.close().catch(() => {});
      for (const dir of extraProfiles) rmSync(dir, { recursive: true, force: true });
      await browser?.close().catch(() => {});
      await server?.close().catch(() => {});
      rmSync(appDir, { recursive: true, force: true });
      if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
    }
  }

  const loadAfter = loadavg();
  const seconds = Math.round((performance.now() - began) / 1000);
  report(figures, broken, { cores, loadBefore, loadAfter, seconds, chromiumVersion, dataPlane, details, options });
  log(`done in ${seconds} s`);
  return broken.length === 0 ? 0 : 1;
}

function valueText(figure: Figure): string {
  if (figure.value === null) return '—';
  if (figure.unit === 'puts/s' || figure.unit === 'ops/s') return `${figure.value.toFixed(0)} ${figure.unit}`;
  return `${fmt(figure.value)} ${figure.unit}`;
}

function report(
  figures: readonly Figure[],
  broken: readonly string[],
  meta: {
    cores: number;
    loadBefore: number[];
    loadAfter: number[];
    seconds: number;
    chromiumVersion: string | undefined;
    dataPlane: string | undefined;
    details: Record<string, unknown>;
    options: Options;
  },
): void {
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  console.log(
    `\nIssue 9 targets — ${meta.cores} cores, load average (1, 5, 15 min) ${load(meta.loadBefore)} before, ` +
      `${load(meta.loadAfter)} after; ${meta.seconds} s; Chromium ${meta.chromiumVersion ?? '—'}, ` +
      `${meta.dataPlane ?? '—'} data plane, IndexedDB ${meta.options.storage === 'disk' ? 'on disk' : 'in memory'}, ` +
      `${meta.options.contexts === 'separate' ? 'a browser context per tab' : 'every tab in one browser context'}`,
  );
  const header = ['figure', 'value', 'floor', '×floor', 'target', 'met', 'notes'];
  const rows = figures.map((f) => [
    f.name,
    valueText(f),
    f.floor === null ? '—' : valueText({ ...f, value: f.floor }),
    f.ratio === null ? '—' : `${f.ratio.toFixed(2)}×`,
    f.target,
    f.met ? 'met' : 'NOT met',
    (f.floorName === null ? '' : `floor = ${f.floorName}; `) + f.notes,
  ]);
  // Numbers right-aligned, words left-aligned.
  const right = new Set([1, 2, 3]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log([line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  const met = figures.filter((f) => f.met).length;
  console.log(
    `${met} of ${figures.length} targets met.` +
      (broken.length > 0 ? ` Broken, so not measured: ${broken.join('; ')}` : ''),
  );
  console.log(
    JSON.stringify({
      bench: 'targets',
      cores: meta.cores,
      loadBefore: meta.loadBefore.map((x) => Number(x.toFixed(2))),
      loadAfter: meta.loadAfter.map((x) => Number(x.toFixed(2))),
      seconds: meta.seconds,
      chromium: meta.chromiumVersion ?? null,
      node: process.version,
      dataPlane: meta.dataPlane ?? null,
      options: { ...meta.options, parts: [...meta.options.parts] },
      met,
      of: figures.length,
      broken,
      figures,
      details: meta.details,
    }),
  );
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
