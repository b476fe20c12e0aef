/**
 * `npm run bench:burst`: many puts at once, as a web app importing a list or syncing an offline queue issues them,
 * measured on a minimal app that embeds the library (test/bench/app, built by Vite here), not on the demo.
 *
 *   node --import tsx test/bench/burst.ts [--tabs 3] [--count 5000] [--limit 64] [--size 100] [--floor-count 5000]
 *
 * Opens `--tabs` tabs of the app in one Chromium profile on disk (N=3, W=2), waits until every tab reaches every
 * other, then measures, each against the batched-IndexedDB floor of the same run (`--floor-count` puts of `--size`
 * bytes, 100 to a relaxed transaction, in the first tab): `--count` puts issued at once from one tab; the same with
 * `--limit` outstanding; and `--count` from every tab at once. Every acknowledged put is read back. Prints a table and
 * one JSON line with each figure, its ratio to the floor, and whether issue targets are met (all acknowledged, at
 * ≥ 6,000 per second and ≥ 0.35× the floor). A script that prints figures, not a test: it exits 0 unless setup fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Page, chromium } from 'playwright-core';
import { pino } from 'pino';
import { build } from 'vite';
import { createSignalingServer } from '../../signaling/server.ts';
import type { BenchApp, BurstResult } from './app/main.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Target rate of an issued-at-once burst, puts per second. */
const TARGET_RATE = 6000;
/** Target ratio of that rate to the batched-IndexedDB floor. */
const TARGET_FLOOR_RATIO = 0.35;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    tabs: { type: 'string', default: '3' },
    count: { type: 'string', default: '5000' },
    limit: { type: 'string', default: '64' },
    size: { type: 'string', default: '100' },
    'floor-count': { type: 'string', default: '5000' },
  },
});
const tabs = Number(values.tabs);
const count = Number(values.count);
const limit = Number(values.limit);
const size = Number(values.size);
const floorCount = Number(values['floor-count']);
for (const [name, n] of Object.entries({ tabs, count, limit, size, floorCount })) {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} takes an integer ≥ 1`);
}

/** One measured figure. */
interface Figure {
  readonly run: string;
  readonly issued: number;
  readonly acknowledged: number;
  readonly failures: Record<string, number>;
  readonly unreadable: number;
  readonly perSecond: number;
  readonly floorRatio: number;
  readonly met: boolean;
}

async function main(): Promise<void> {
  const out = mkdtempSync(join(tmpdir(), 'dynamesh-bench-app-'));
  const profile = mkdtempSync(join(tmpdir(), 'dynamesh-bench-profile-'));
  process.stderr.write('burst: building the benchmark app\n');
  await build({
    configFile: false,
    root: join(HERE, 'app'),
    base: './',
    logLevel: 'warn',
    build: { outDir: out, emptyOutDir: true, target: 'es2022' },
    worker: { format: 'es' },
  });
  const server = await createSignalingServer({
    port: 0,
    host: '127.0.0.1',
    staticDir: out,
    logger: pino({ name: 'dynamesh-signaling', level: 'warn' }, pino.destination(2)),
  });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
    args: ['--disable-gpu', '--disable-dev-shm-usage'],
  });
  const loadBefore = loadavg()[0]!;
  try {
    const cluster = `burst-${Date.now()}`;
    const pages: Page[] = [];
    for (let i = 0; i < tabs; i++) {
      const page = await context.newPage();
      await page.goto(`${server.url}/?cluster=${cluster}`);
      await page.waitForFunction(() => 'bench' in window || 'benchError' in window, null, { timeout: 30_000 });
      pages.push(page);
    }
    for (const page of pages) {
      await page.waitForFunction(
        (others) =>
          Object.values((window as unknown as { bench: BenchApp }).bench.store.peers()).filter((s) => s === 'connected')
            .length === others,
        tabs - 1,
        { timeout: 30_000 },
      );
    }
    process.stderr.write('burst: measuring the batched-IndexedDB floor\n');
    const floor = await pages[0]!.evaluate(
      ({ n, s }) => (window as unknown as { bench: BenchApp }).bench.idbFloor(n, 100, s),
      { n: floorCount, s: size },
    );
    const figures: Figure[] = [];
    const measure = async (run: string, bursts: { page: Page; prefix: string; limit: number }[]): Promise<void> => {
      process.stderr.write(`burst: ${run}\n`);
      const results: BurstResult[] = await Promise.all(
        bursts.map(({ page, prefix, limit }) =>
          page.evaluate(
            ({ prefix, count, limit, size }) =>
              (window as unknown as { bench: BenchApp }).bench.burst(prefix, count, limit, size),
            { prefix, count, limit, size },
          ),
        ),
      );
      const ms = Math.max(...results.map((r) => r.ms), 1);
      let unreadable = 0;
      for (const { page, prefix } of bursts) {
        unreadable += await page.evaluate(
          ({ prefix, count, size }) => (window as unknown as { bench: BenchApp }).bench.verify(prefix, count, size),
          { prefix, count, size },
        );
      }
      const issued = results.reduce((n, r) => n + r.issued, 0);
      const acknowledged = results.reduce((n, r) => n + r.acknowledged, 0);
      const failures: Record<string, number> = {};
      for (const r of results)
        for (const [code, n] of Object.entries(r.failures)) failures[code] = (failures[code] ?? 0) + n;
      const perSecond = (acknowledged / ms) * 1000;
      figures.push({
        run,
        issued,
        acknowledged,
        failures,
        unreadable,
        perSecond,
        floorRatio: perSecond / floor,
        met: acknowledged === issued && perSecond >= TARGET_RATE && perSecond / floor >= TARGET_FLOOR_RATIO,
      });
    };
    await measure(`${count} puts at once from one tab`, [{ page: pages[0]!, prefix: 'once', limit: 0 }]);
    await measure(`${count} puts, ${limit} outstanding, from one tab`, [{ page: pages[0]!, prefix: 'limited', limit }]);
    await measure(
      `${count} puts at once from each of ${tabs} tabs`,
      pages.map((page, i) => ({ page, prefix: `all${i}`, limit: 0 })),
    );

    const rows = figures.map((f) => [
      f.run,
      `${f.acknowledged}/${f.issued}`,
      Object.keys(f.failures).length === 0 ? '-' : JSON.stringify(f.failures),
      String(f.unreadable),
      f.perSecond.toFixed(0),
      `${f.floorRatio.toFixed(2)}×`,
      f.met ? 'met' : 'NOT met',
    ]);
    const header = ['run', 'acknowledged', 'failures', 'unreadable', 'puts/s', '×floor', 'target'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
    process.stdout.write(`Batched IndexedDB floor: ${floor.toFixed(0)} puts/s (${size} B, 100 per transaction)\n`);
    process.stdout.write(`${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
    for (const row of rows) process.stdout.write(`${line(row)}\n`);
    process.stdout.write(
      `(targets: every put acknowledged, ≥ ${TARGET_RATE} puts/s and ≥ ${TARGET_FLOOR_RATIO}× the floor; N=3, W=2)\n`,
    );
    process.stdout.write(
      `${JSON.stringify({
        bench: 'burst',
        tabs,
        count,
        limit,
        size,
        loadBefore: Number(loadBefore.toFixed(2)),
        loadAfter: Number(loadavg()[0]!.toFixed(2)),
        floorPerSecond: floor,
        figures,
      })}\n`,
    );
  } finally {
    await context.close();
    await server.close();
    rmSync(out, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
