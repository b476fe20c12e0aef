/**
 * Which partitions this node holds, which it is still fetching, and which it must release: the bookkeeping of
 * membership change. A node coordinates puts of a partition only once it holds a complete copy of it.
 */

/** Where this node stands with one partition. */
export type PartitionState =
  /** An owner with a complete copy: serves reads, coordinates puts, answers as a transfer source. */
  | 'held'
  /** An owner still streaming its copy from a holder: stores writes, but neither reads nor coordinates for it. */
  | 'fetching'
  /** No longer an owner but still holding keys: pushes them to the owners, then deletes them. */
  | 'releasing';

/** One partition as this node sees it, for the demo, tests and operators. */
export interface PartitionInfo {
  readonly partition: number;
  /** The preference list under the current view. */
  readonly owners: readonly string[];
  readonly state: PartitionState;
  /** Of a transfer or release under way, the fraction done, 0..1; 1 when held. */
  readonly progress: number;
  /** Keys this node stores for the partition, tombstones included. */
  readonly keys: number;
  /** The Merkle root of what this node stores for the partition, 16 hex digits: equal roots, equal replicas. */
  readonly root: string;
}

import type { Timers } from '../env.ts';

/** The storage meta record of the held set: the held partitions, ascending. */
export const HELD_RECORD = 'partitions-held';

/** What ownership needs from its node. */
export interface OwnershipDeps {
  /** Where the held set is kept, so that a reloaded node keeps serving what it held. */
  getMeta(name: string): Promise<unknown>;
  putMeta(name: string, value: unknown): Promise<void>;
}

/**
 * The partitions this node holds (persisted), and the progress of those it is fetching or releasing. Which
 * partitions it owns comes from the ring; this class only remembers what the ring cannot tell.
 */
export class Ownership {
  readonly #deps: OwnershipDeps;
  readonly #held = new Set<number>();
  readonly #progress = new Map<number, number>();
  readonly #waiters = new Map<number, Set<(held: boolean) => void>>();
  /** The save under way, if any: one at a time, so that a later held set never lands before an earlier one. */
  #saving: Promise<void> | null = null;
  #dirty = false;
  #closed = false;

  constructor(deps: OwnershipDeps) {
    this.#deps = deps;
  }

  /**
   * Resolves true once `partition` is held, or false after `ms`: a request that finds its partition still being
   * fetched waits this long for the transfer (at a new cluster's start, one round trip) before going elsewhere.
   */
  whenHeld(partition: number, ms: number, timers: Timers): Promise<boolean> {
    if (this.#held.has(partition)) return Promise.resolve(true);
    if (this.#closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let waiters = this.#waiters.get(partition);
      if (waiters === undefined) this.#waiters.set(partition, (waiters = new Set()));
      const waiter = (held: boolean): void => {
        waiters.delete(waiter);
        timers.clearTimeout(timer);
        resolve(held);
      };
      const timer = timers.setTimeout(() => waiter(false), ms);
      waiters.add(waiter);
    });
  }

  /** Reads the held set a previous incarnation saved. */
  async load(): Promise<void> {
    const saved = await this.#deps.getMeta(HELD_RECORD);
    if (Array.isArray(saved)) {
      for (const p of saved) if (Number.isInteger(p) && p >= 0) this.#held.add(p as number);
    }
    for (const p of this.#held) this.#wake(p, true);
  }

  /** Ends every wait with false: the node is closing. */
  close(): void {
    this.#closed = true;
    for (const p of [...this.#waiters.keys()]) this.#wake(p, false);
  }

  #wake(partition: number, held: boolean): void {
    const waiters = this.#waiters.get(partition);
    if (waiters === undefined) return;
    this.#waiters.delete(partition);
    for (const waiter of waiters) waiter(held);
  }

  /** True when this node holds a complete copy of `partition`. */
  holds(partition: number): boolean {
    return this.#held.has(partition);
  }

  /** The held partitions, ascending. */
  held(): number[] {
    return [...this.#held].sort((a, b) => a - b);
  }

  /** Records that this node now holds `partition` completely. */
  async markHeld(partition: number): Promise<void> {
    this.#progress.delete(partition);
    if (this.#held.has(partition)) return;
    this.#held.add(partition);
    this.#wake(partition, true);
    await this.#save();
  }

  /** Records that this node no longer holds `partition` (it stopped owning it, or dropped its data). */
  async forget(partition: number): Promise<void> {
    if (!this.#held.delete(partition)) return;
    await this.#save();
  }

  /** Forgets, in one save, every held partition that `lapsed` picks. */
  async forgetWhere(lapsed: (partition: number) => boolean): Promise<void> {
    const gone = [...this.#held].filter(lapsed);
    if (gone.length === 0) return;
    for (const p of gone) this.#held.delete(p);
    await this.#save();
  }

  /** Forgets every held partition at once. */
  async forgetAll(): Promise<void> {
    this.#held.clear();
    this.#progress.clear();
    await this.#save();
  }

  /** Records how far a transfer or release of `partition` has come, 0..1. */
  setProgress(partition: number, fraction: number): void {
    this.#progress.set(partition, Math.min(1, Math.max(0, fraction)));
  }

  /** How far a transfer or release of `partition` has come; 1 when held, 0 when nothing is known. */
  progress(partition: number): number {
    if (this.#held.has(partition)) return 1;
    return this.#progress.get(partition) ?? 0;
  }

  /** Drops the progress record of a partition no longer in transfer. */
  clearProgress(partition: number): void {
    this.#progress.delete(partition);
  }

  /** Saves the held set; changes made while a save runs are saved together by the next one. */
  #save(): Promise<void> {
    this.#dirty = true;
    this.#saving ??= this.#flush();
    return this.#saving;
  }

  async #flush(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        // Frozen, so that an engine may keep it without a copy (memory.ts): an owner of thousands of partitions that
        // fetches them one by one saves a list of thousands after each.
        await this.#deps.putMeta(HELD_RECORD, Object.freeze(this.held()));
      }
    } finally {
      // In the same step as the last check of #dirty: a change made after it starts a new save.
      this.#saving = null;
    }
  }
}
