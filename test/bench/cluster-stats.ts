/**
 * Latency summaries for the cluster benchmark: percentiles by the nearest-rank method over every sample (no
 * interpolation, so a p99 is always a latency that was actually observed), and ops/s from the wall time the
 * samples were taken in.
 */

/** One measured figure: latencies in ms, throughput in operations per second. */
export interface Summary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly max: number;
  /** Operations per second over the wall time of the run; for a closed loop of one caller, about 1000 / mean. */
  readonly opsPerSecond: number;
}

/** The nearest-rank percentile `q` (0..1) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Summarises `samples` (ms) taken over `wallMs` of wall time. */
export function summarize(samples: readonly number[], wallMs: number): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const total = sorted.reduce((sum, x) => sum + x, 0);
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    mean: sorted.length === 0 ? Number.NaN : total / sorted.length,
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    opsPerSecond: wallMs > 0 ? (sorted.length * 1000) / wallMs : Number.NaN,
  };
}

/** A number for a table cell: three significant digits, at least two decimals under 10. */
export function fmt(value: number, digits = 2): string {
  if (!Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(digits);
}

/** Renders rows as a plain-text table with right-aligned columns after the first. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
