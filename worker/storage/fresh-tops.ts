/**
 * The highest counter of each node's fresh writes a storage took (see `ApplyOptions.fresh`), kept by the engines
 * with the writes themselves so that a restart does not forget them. A node's say over what its dot holds is for the
 * write it has just issued, and it issues and ships its writes in order: a `fresh` at or below one already taken
 * names an older write, which no node may rewrite, and merges as any other version does.
 */

import type { Version } from '../versions/version.ts';

/** Most nodes whose highest fresh counter a storage remembers; past it, the one heard from longest ago is forgotten. */
export const FRESH_NODES = 4096;

/** A node's highest fresh counter as an engine stores it: `seq` orders the records by when they were last raised. */
export interface FreshRecord {
  readonly counter: number;
  readonly seq: number;
}

/** The highest fresh counter of each node, most recently raised last, at most {@link FRESH_NODES} of them. */
export class FreshTops {
  readonly #tops = new Map<string, FreshRecord>();
  #seq = 0;

  /** Loads stored records: the {@link FRESH_NODES} raised last are kept, in the order they were raised. */
  static from(records: Iterable<readonly [node: string, record: FreshRecord]>): FreshTops {
    const tops = new FreshTops();
    const sorted = [...records].sort((a, b) => a[1].seq - b[1].seq).slice(-FRESH_NODES);
    for (const [node, record] of sorted) tops.#tops.set(node, record);
    tops.#seq = sorted.length === 0 ? 0 : sorted[sorted.length - 1]![1].seq + 1;
    return tops;
  }

  /** Whether a fresh counter of `node` is remembered. */
  has(node: string): boolean {
    return this.#tops.has(node);
  }

  /** The highest fresh counter taken from `node`; 0 when none is remembered. */
  top(node: string): number {
    return this.#tops.get(node)?.counter ?? 0;
  }

  /** The record that raising `node`'s top to `counter` stores (call only when {@link freshTaken} takes it). */
  next(counter: number): FreshRecord {
    return { counter, seq: this.#seq++ };
  }

  /** Notes a record as stored; forgets the node raised longest ago when there are too many. */
  set(node: string, record: FreshRecord): void {
    this.#tops.delete(node);
    this.#tops.set(node, record);
    if (record.seq >= this.#seq) this.#seq = record.seq + 1;
    if (this.#tops.size > FRESH_NODES) this.#tops.delete(this.#tops.keys().next().value!);
  }
}

/**
 * `fresh` when it may be taken as fresh: its counter is above `topOf(its node)`, the highest fresh counter of that
 * node taken before; else undefined, and the versions merge as if none were marked.
 */
export function freshTaken(fresh: Version | undefined, topOf: (node: string) => number): Version | undefined {
  return fresh !== undefined && fresh.dot.counter > topOf(fresh.dot.node) ? fresh : undefined;
}
