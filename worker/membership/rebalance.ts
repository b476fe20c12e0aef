/**
 * Rebalancing on membership change, run in passes after every new view:
 * - fetch: each partition this node now owns but does not hold is streamed from a node that holds it, in pages
 *   within the transfer budget; it becomes held once a whole copy arrived. A restarted pass resumes where the last
 *   stopped, because the trees of both sides already agree on the leaves that arrived.
 * - release: each partition this node stores keys of but no longer owns is pushed, page by page, to every current
 *   owner, and each key is deleted only after every owner acknowledged it (and only if it did not change since), so
 *   that at no moment do fewer nodes hold a write than before.
 * Joins and failures need nothing else: the ring of the new view says who owns what.
 */
import type { ByteBudget } from '../transport/budget.ts';
import type { Logger, Timers, TimerHandle } from '../env.ts';
import type { Metrics } from '../metrics.ts';
import type { Holders } from './holders.ts';
import { differing } from './merkle.ts';
import type { Ownership } from './ownership.ts';
import type { Peers } from '../transport/peers.ts';
import type { Ring } from '../ring/ring.ts';
import type { Storage, StoredKey } from '../storage/storage.ts';
import type { PartitionSync } from './sync.ts';

/** Partitions fetched at once. */
const FETCH_CONCURRENCY = 32;

/** What rebalancing needs from its node. */
export interface RebalanceDeps {
  readonly self: string;
  /** Replication factor N. */
  readonly n: number;
  readonly storage: Storage;
  readonly peers: Peers;
  readonly sync: PartitionSync;
  readonly ownership: Ownership;
  /** Who holds each partition, asked afresh by every fetch. */
  readonly holders: Holders;
  readonly budget: ByteBudget;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly timers: Timers;
  /** Ms before a pass that left work undone is tried again. */
  readonly retryMs: number;
  /** Ms between passes when the last one finished everything. */
  readonly periodMs: number;
  /** The ring of the current view, or null before the first view arrived. */
  ring(): Ring | null;
  /**
   * Resolves when no foreground request is running, or after a short wait: releases yield to requests. Fetches do
   * not wait (requests may be waiting for them), they only keep to the byte budget.
   */
  idle(): Promise<void>;
}

/** Runs rebalancing passes, one at a time. */
export class Rebalancer {
  readonly #deps: RebalanceDeps;
  #running = false;
  #again = false;
  #retry: TimerHandle | undefined;
  #closed = false;
  /** Partitions being fetched now, by a pass or for a request (see {@link Rebalancer.prioritize}). */
  readonly #fetching = new Set<number>();

  constructor(deps: RebalanceDeps) {
    this.#deps = deps;
  }

  /** Asks for a pass soon (after a view change, or when the held set was loaded). */
  kick(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#retry !== undefined) {
      this.#deps.timers.clearTimeout(this.#retry);
      this.#retry = undefined;
    }
    this.#running = true;
    void this.#loop();
  }

  /**
   * Fetches `partition` at once, beside the pass, unless it is held or being fetched: a put waits for it (an owner
   * still fetching a partition that no other owner holds coordinates its puts only once it holds it), and a pass at
   * Q = 4,096 takes seconds to come to it.
   */
  prioritize(partition: number): void {
    const ring = this.#deps.ring();
    const { self, n, ownership } = this.#deps;
    if (this.#closed || ring === null || ownership.holds(partition) || this.#fetching.has(partition)) return;
    if (!ring.preferenceList(partition, n).includes(self)) return;
    void this.#fetchOnce(ring, partition).catch((error: unknown) =>
      this.#deps.logger.warn({ error: String(error), partition }, 'fetch for a waiting request failed'),
    );
  }

  /** Fetches `partition` unless another fetch of it is under way; true when it is held after. */
  async #fetchOnce(ring: Ring, partition: number): Promise<boolean> {
    if (this.#fetching.has(partition)) return false;
    this.#fetching.add(partition);
    try {
      return await this.#fetch(ring, partition);
    } finally {
      this.#fetching.delete(partition);
    }
  }

  /** Stops passes; one under way ends at its next step. */
  close(): void {
    this.#closed = true;
    if (this.#retry !== undefined) this.#deps.timers.clearTimeout(this.#retry);
  }

  async #loop(): Promise<void> {
    let done = true;
    try {
      do {
        this.#again = false;
        done = await this.#pass();
      } while (this.#again && !this.#closed);
    } catch (error) {
      done = false;
      this.#deps.logger.warn({ error: String(error) }, 'rebalancing pass failed');
    } finally {
      this.#running = false;
    }
    if (this.#again) this.kick();
    else if (!this.#closed) {
      // Passes also recur when all is done: keys of a partition this node no longer owns can still arrive from a
      // peer on an older view, and must be handed on like the rest.
      this.#retry = this.#deps.timers.setTimeout(
        () => {
          this.#retry = undefined;
          this.kick();
        },
        done ? this.#deps.periodMs : this.#deps.retryMs,
      );
    }
  }

  /** One pass over every partition; true when nothing was left undone. */
  async #pass(): Promise<boolean> {
    const { self, n, ownership, storage } = this.#deps;
    const ring = this.#deps.ring();
    if (ring === null) return true;
    let done = true;
    const wanted = ring.partitionsOf(self, n).filter((p) => !ownership.holds(p));
    // A few partitions at a time: a new node of a new cluster learns in one round trip that nobody holds anything.
    const workers = Array.from({ length: Math.min(FETCH_CONCURRENCY, wanted.length) }, async () => {
      for (let p = wanted.shift(); p !== undefined; p = wanted.shift()) {
        if (this.#again || this.#closed) return;
        if (ownership.holds(p)) continue;
        if (!(await this.#fetchOnce(ring, p))) done = false;
      }
    });
    await Promise.all(workers);
    const stored = await storage.partitionsWithData();
    for (const p of stored) {
      if (this.#again || this.#closed) break;
      if (ring.preferenceList(p, n).includes(self)) continue;
      if (!(await this.#release(ring, p))) done = false;
    }
    // A held partition this node no longer owns and has no keys of is simply forgotten.
    const storedSet = new Set(stored);
    for (const p of ownership.held()) {
      if (!ring.preferenceList(p, n).includes(self) && !storedSet.has(p)) await ownership.forget(p);
    }
    return done && !this.#again;
  }

  /**
   * Streams `partition` from every member that holds it. When every other member answers that it holds nothing of
   * it, there is nothing to copy and this node holds it at once; a holder whose root equals this node's has nothing
   * to send (the empty partitions of a new cluster), so it costs one round trip for all of them.
   */
  async #fetch(ring: Ring, partition: number): Promise<boolean> {
    const { sync, ownership, budget, metrics, logger } = this.#deps;
    const { holders, storing, roots, unanswered } = await this.#deps.holders.probe(partition);
    // No member holds a whole copy, but some store keys of it (after churn, owners that never finished fetching it
    // and old owners not done releasing it): together their copies are all the cluster has of it, so this node
    // pulls from each before it holds the partition. Held with less, it would answer reads without those keys, and
    // its puts' context checks would find nothing of versions that only they store.
    const sources = holders.length === 0 && unanswered === 0 ? storing : holders;
    // From every holder that answered: a holder may lack a version another one has, and this node must have
    // every version of its own dots before it coordinates again (see coordinator.ts).
    let pulledFrom = 0;
    for (const source of sources) {
      if (this.#deps.ring() !== ring || this.#closed) return false;
      ownership.setProgress(partition, pulledFrom / sources.length);
      const mine = (await sync.tree(partition)).hashes(0, [0]);
      if (differing(mine, roots.get(source)!).length > 0) {
        const comparison = await sync.compare(source, partition, budget);
        if (comparison === null) return false;
        const pulled =
          comparison.leaves.length === 0 ||
          (await sync.pull(source, partition, comparison.leaves, budget, (f) =>
            ownership.setProgress(partition, (pulledFrom + f) / sources.length),
          ));
        if (!pulled) return false;
      }
      pulledFrom++;
    }
    if (this.#deps.ring() !== ring || this.#closed) return false;
    if (pulledFrom > 0) {
      await ownership.markHeld(partition);
      metrics.count('partitionsFetched');
      logger.debug({ partition, sources }, 'partition fetched');
      return true;
    }
    if (unanswered > 0) return false;
    await ownership.markHeld(partition);
    return true;
  }

  /**
   * Pushes every key of `partition` to every current owner, page by page, deleting each page's keys once all
   * owners acknowledged them. A key that changed meanwhile is kept for the next pass. A page an owner refused (it
   * holds a key the owner would not take from this node: corroborate.ts) is pushed again a key at a time, so that
   * only the refused keys stay; the pages after it go on. An owner that stopped answering stops the pass.
   */
  async #release(ring: Ring, partition: number): Promise<boolean> {
    const { self, n, peers, sync, ownership, budget, storage, metrics } = this.#deps;
    const owners = ring.preferenceList(partition, n).filter((id) => id !== self);
    if (owners.length === 0 || owners.some((id) => peers.isSuspected(id))) return false;
    const total = Math.max(1, (await sync.tree(partition)).keyCount);
    const pushed = async (keys: readonly StoredKey[]): Promise<boolean> => {
      const entries = keys.map((k) => ({ key: k.key, versions: k.siblings }));
      const acks = await Promise.all(owners.map((owner) => sync.push(owner, partition, entries, budget)));
      return !acks.includes(false);
    };
    let released = 0;
    let forgotten = false;
    let kept = false;
    const drop = async (keys: readonly StoredKey[]): Promise<void> => {
      if (!forgotten) {
        // From the first deletion on, this node no longer has a complete copy to offer as a transfer source.
        await ownership.forget(partition);
        forgotten = true;
      }
      for (const key of keys) {
        if (await storage.deleteIfUnchanged(key.key, key.siblings)) released++;
      }
      ownership.setProgress(partition, released / total);
    };
    for await (const page of sync.scan(partition, null)) {
      if (this.#deps.ring() !== ring || this.#closed) return false;
      await this.#deps.idle();
      if (await pushed(page)) {
        await drop(page);
        continue;
      }
      if (owners.some((id) => peers.isSuspected(id))) return false;
      for (const key of page) {
        if (await pushed([key])) await drop([key]);
        else if (owners.some((id) => peers.isSuspected(id))) return false;
        else kept = true;
      }
    }
    metrics.count('keysReleased', released);
    if (kept || (await storage.scanPartition(partition, { limit: 1 })).length > 0) return false;
    ownership.clearProgress(partition);
    metrics.count('partitionsReleased');
    return true;
  }
}
