/**
 * Vector clocks, pure. Riak's vocabulary: `increment`, `merge`, `descends`, `prune`. A clock is a list of entries
 * kept sorted by node id, so that equal clocks have equal encodings. Timestamps are wall-clock milliseconds used
 * only to choose which entries `prune` drops; they never decide order.
 */

/** One node's entry in a vector clock. */
export interface ClockEntry {
  readonly node: string;
  readonly counter: number;
  /** Wall-clock milliseconds of the entry's last increment; used only for pruning. */
  readonly timestamp: number;
}

/** A vector clock: entries sorted by `node`, at most one per node. */
export type VClock = readonly ClockEntry[];

/** How clock `a` relates to clock `b`. */
export type Ordering = 'before' | 'after' | 'equal' | 'concurrent';

/** The most entries a clock keeps after {@link prune}. @default 10 */
export const MAX_CLOCK_ENTRIES = 10;

/**
 * The largest counter a clock entry or dot may hold, far below 2^53 where `counter + 1 === counter`. Contexts come
 * from clients and versions from peers; a counter near 2^53 in either would make a coordinator's later dots repeat.
 * Decoders refuse anything above it, and a coordinator never draws a dot at or above it.
 */
export const MAX_COUNTER = 2 ** 48;

/** The empty clock, descended by every clock. */
export const EMPTY_CLOCK: VClock = Object.freeze([]);

/** The counter `clock` holds for `node`, 0 when absent. */
export function counterOf(clock: VClock, node: string): number {
  for (let i = 0; i < clock.length; i++) {
    const entry = clock[i]!;
    if (entry.node === node) return entry.counter;
  }
  return 0;
}

/** `clock` with `node`'s counter raised by one and stamped `timestamp`. */
export function increment(clock: VClock, node: string, timestamp: number): VClock {
  return setEntry(clock, { node, counter: counterOf(clock, node) + 1, timestamp });
}

/** `clock` with `entry` replacing any entry of the same node. */
export function setEntry(clock: VClock, entry: ClockEntry): VClock {
  const out: ClockEntry[] = [];
  let placed = false;
  for (const e of clock) {
    if (!placed && e.node >= entry.node) {
      out.push(entry);
      placed = true;
      if (e.node === entry.node) continue;
    }
    out.push(e);
  }
  if (!placed) out.push(entry);
  return out;
}

/** The least clock that descends both: the larger counter of each node (its timestamp with it). */
export function merge(a: VClock, b: VClock): VClock {
  const out: ClockEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.node < y.node)) {
      out.push(x!);
      i++;
    } else if (x === undefined || y.node < x.node) {
      out.push(y);
      j++;
    } else {
      out.push(
        x.counter > y.counter || (x.counter === y.counter && x.timestamp >= y.timestamp)
          ? x
          : { node: x.node, counter: y.counter, timestamp: y.timestamp },
      );
      i++;
      j++;
    }
  }
  return out;
}

/** Merges every clock in `clocks`. */
export function mergeAll(clocks: Iterable<VClock>): VClock {
  let out = EMPTY_CLOCK;
  if (Array.isArray(clocks)) {
    for (let i = 0; i < clocks.length; i++) out = merge(out, clocks[i] as VClock);
    return out;
  }
  for (const c of clocks) out = merge(out, c);
  return out;
}

/** True when `a` has seen everything `b` has: every counter of `b` is at most `a`'s. */
export function descends(a: VClock, b: VClock): boolean {
  let i = 0;
  for (let j = 0; j < b.length; j++) {
    const y = b[j]!;
    while (i < a.length && a[i]!.node < y.node) i++;
    const x = a[i];
    if (x === undefined || x.node !== y.node) {
      if (y.counter > 0) return false;
      continue;
    }
    if (x.counter < y.counter) return false;
  }
  return true;
}

/** `before` when `a` happened before `b`, `after` when after, `equal`, or `concurrent`. */
export function compare(a: VClock, b: VClock): Ordering {
  const ab = descends(a, b);
  const ba = descends(b, a);
  if (ab && ba) return 'equal';
  if (ab) return 'after';
  if (ba) return 'before';
  return 'concurrent';
}

/**
 * `clock` cut to at most `max` entries by dropping those with the oldest timestamps (ties broken by node id, so
 * every replica prunes alike). Dropping entries only makes a clock descend less: against a clock of at most `max`
 * entries, a pruned clock can turn `after` into `concurrent`, never `before` into `after`.
 */
export function prune(clock: VClock, max: number = MAX_CLOCK_ENTRIES): VClock {
  if (clock.length <= max) return clock;
  const keep = [...clock]
    .sort((x, y) => y.timestamp - x.timestamp || (x.node < y.node ? -1 : x.node > y.node ? 1 : 0))
    .slice(0, max);
  return keep.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
}

/** True when `clock` is sorted by node with no repeats and every counter is an integer from 1 to {@link MAX_COUNTER}. */
export function isWellFormed(clock: VClock): boolean {
  for (let i = 0; i < clock.length; i++) {
    const e = clock[i]!;
    if (!isCounter(e.counter)) return false;
    if (!Number.isFinite(e.timestamp)) return false;
    if (i > 0 && clock[i - 1]!.node >= e.node) return false;
  }
  return true;
}

/** True when `value` is a counter a clock may hold: an integer from 1 to {@link MAX_COUNTER}. */
export function isCounter(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_COUNTER;
}
