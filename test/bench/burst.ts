/**
 * Many puts at once, as a web app importing a list or syncing an offline queue issues them, measured on the minimal
 * app that embeds the library (test/bench/app), not on the demo; each burst against the batched-IndexedDB floor of
 * the same run (`idbFloor`: puts of the same size, 100 to a relaxed transaction, in the tab that bursts).
 *
 * A module of `npm run bench` (targets.ts), which opens the tabs. `npm run bench:burst` runs targets.ts with
 * `--only burst`: the floor, the three bursts (`--count` puts issued at once from one tab; the same with `--limit`
 * outstanding; `--count` from every tab at once) and the memory of the writing tab after the first, with the options
 * this script had on its own (`--tabs 3 --count 5000 --limit 64 --size 100 --floor-count 5000`). Every acknowledged
 * put is read back. Targets (issue 9): every put acknowledged, at ≥ 6,000 per second and ≥ 0.35× the floor.
 */
import type { Page } from 'playwright-core';
import type { BenchApp, BurstResult, VerifyResult } from './app/main.ts';

/** Target rate of a burst, puts per second. */
export const TARGET_RATE = 6000;
/** Target ratio of that rate to the batched-IndexedDB floor. */
export const TARGET_FLOOR_RATIO = 0.35;

/** One measured burst. */
export interface BurstFigure {
  readonly run: string;
  readonly tabs: number;
  readonly issued: number;
  readonly acknowledged: number;
  /** Failed puts by error code. */
  readonly failures: Record<string, number>;
  /** Keys that did not read back as written (acknowledged or not), and why. */
  readonly unreadable: number;
  readonly readBack: Omit<VerifyResult, 'unreadable'>;
  /** Acknowledged puts per second, over the longest of the bursts run at once. */
  readonly perSecond: number;
  readonly floorPerSecond: number;
  readonly floorRatio: number;
  readonly met: boolean;
}

/** One tab's share of a burst. */
export interface BurstSpec {
  readonly page: Page;
  /** Key prefix, unique in the run. */
  readonly prefix: string;
  /** Most puts outstanding at once; 0 issues them all at once. */
  readonly limit: number;
}

type BenchWindow = { bench: BenchApp };

/** Puts per second of bare IndexedDB in `page`: `count` records of `size` bytes, 100 to a relaxed transaction. */
export function batchedFloor(page: Page, count: number, size: number): Promise<number> {
  return page.evaluate(({ n, s }) => (window as unknown as BenchWindow).bench.idbFloor(n, 100, s), {
    n: count,
    s: size,
  });
}

/**
 * Runs `bursts` at once (each `count` puts of `size` bytes), calls `afterPuts` once every put has settled, then reads
 * every key back; the figure is against `floorPerSecond`.
 */
export async function measureBurst(
  run: string,
  bursts: readonly BurstSpec[],
  options: { readonly count: number; readonly size: number; readonly floorPerSecond: number },
  afterPuts: () => Promise<void> = async () => {},
): Promise<BurstFigure> {
  const { count, size, floorPerSecond } = options;
  const results: BurstResult[] = await Promise.all(
    bursts.map(({ page, prefix, limit }) =>
      page.evaluate(
        ({ prefix, count, limit, size }) => (window as unknown as BenchWindow).bench.burst(prefix, count, limit, size),
        { prefix, count, limit, size },
      ),
    ),
  );
  await afterPuts();
  const ms = Math.max(...results.map((r) => r.ms), 1);
  const readBack = { failures: {} as Record<string, number>, missing: 0, siblings: 0, wrong: 0 };
  let unreadable = 0;
  for (const { page, prefix } of bursts) {
    const verified = await page.evaluate(
      ({ prefix, count, size }) => (window as unknown as BenchWindow).bench.verify(prefix, count, size),
      { prefix, count, size },
    );
    unreadable += verified.unreadable;
    readBack.missing += verified.missing;
    readBack.siblings += verified.siblings;
    readBack.wrong += verified.wrong;
    for (const [code, n] of Object.entries(verified.failures)) {
      readBack.failures[code] = (readBack.failures[code] ?? 0) + n;
    }
  }
  const issued = results.reduce((n, r) => n + r.issued, 0);
  const acknowledged = results.reduce((n, r) => n + r.acknowledged, 0);
  const failures: Record<string, number> = {};
  for (const r of results) {
    for (const [code, n] of Object.entries(r.failures)) failures[code] = (failures[code] ?? 0) + n;
  }
  const perSecond = (acknowledged / ms) * 1000;
  const floorRatio = perSecond / floorPerSecond;
  return {
    run,
    tabs: bursts.length,
    issued,
    acknowledged,
    failures,
    unreadable,
    readBack,
    perSecond,
    floorPerSecond,
    floorRatio,
    met: acknowledged === issued && unreadable === 0 && perSecond >= TARGET_RATE && floorRatio >= TARGET_FLOOR_RATIO,
  };
}

/** Why keys did not read back, e.g. `12 missing, 3 failed (ERR_QUORUM ×3)`; empty when every key did. */
export function readBackText(figure: BurstFigure): string {
  const { missing, siblings, wrong, failures } = figure.readBack;
  const failed = Object.values(failures).reduce((a, b) => a + b, 0);
  return [
    missing > 0 ? `${missing} missing` : '',
    siblings > 0 ? `${siblings} with siblings` : '',
    wrong > 0 ? `${wrong} with another value` : '',
    failed > 0
      ? `${failed} failed (${Object.entries(failures)
          .map(([code, n]) => `${code} ×${n}`)
          .join(', ')})`
      : '',
  ]
    .filter((part) => part !== '')
    .join(', ');
}

/** Prints the bursts as a table: acknowledged, failures by code, unreadable keys, rate, ratio to the floor. */
export function reportBursts(figures: readonly BurstFigure[]): void {
  const rows = figures.map((f) => [
    f.run,
    `${f.acknowledged}/${f.issued}`,
    Object.keys(f.failures).length === 0 ? '-' : JSON.stringify(f.failures),
    f.unreadable === 0 ? '0' : `${f.unreadable}: ${readBackText(f)}`,
    f.perSecond.toFixed(0),
    f.floorPerSecond.toFixed(0),
    `${f.floorRatio.toFixed(2)}×`,
    f.met ? 'met' : 'NOT met',
  ]);
  const header = ['burst', 'acknowledged', 'failures', 'unreadable', 'puts/s', 'floor/s', '×floor', 'target'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`\nBursts of puts on the benchmark app (N=3, W=2), against batched IndexedDB (100 per transaction)`);
  console.log(`${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}`);
  for (const row of rows) console.log(line(row));
  console.log(
    `(targets: every put acknowledged and read back, ≥ ${TARGET_RATE} puts/s and ≥ ${TARGET_FLOOR_RATIO}× the floor)`,
  );
}
