/**
 * Anti-entropy: on an interval, this node compares the Merkle tree of each partition it holds with another owner's
 * and repairs the leaves that differ both ways, within a byte budget whose every spending first waits for a pause in
 * foreground requests (see the node's `idle`). The
 * first owner of a partition compares with every other owner; when all of them agree with it, it also collects the
 * partition's tombstones that are past their grace period, on every owner at once (see `sync-drop`).
 *
 * Owners other than the first compare with the owner after them in the preference list, so that every pair of
 * owners is linked once per round at a cost of one root exchange per held partition when nothing differs.
 */
import type { ByteBudget } from '../transport/budget.ts';
import type { Clock, Logger, Timers, TimerHandle } from '../env.ts';
import type { Metrics } from '../metrics.ts';
import type { Ownership } from './ownership.ts';
import type { Peers } from '../transport/peers.ts';
import type { SyncEntry } from '../wire/protocol.ts';
import type { Ring } from '../ring/ring.ts';
import type { Storage } from '../storage/storage.ts';
import { type PartitionSync, REPAIR_PAGE_BYTES } from './sync.ts';

/** What anti-entropy needs from its node. */
export interface AntiEntropyDeps {
  readonly self: string;
  readonly n: number;
  readonly storage: Storage;
  readonly peers: Peers;
  readonly sync: PartitionSync;
  readonly ownership: Ownership;
  readonly budget: ByteBudget;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly timers: Timers;
  /** Ms between rounds. */
  readonly interval: number;
  /** Ms a tombstone must be old before it may be collected. */
  readonly tombstoneGrace: number;
  /** The ring of the current view, or null before the first view. */
  ring(): Ring | null;
  /** Called once per round, for bookkeeping that rides on it (the node's last-active time). */
  onRound?(): Promise<void>;
}

/** The anti-entropy rounds of one node. */
export class AntiEntropy {
  readonly #deps: AntiEntropyDeps;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(deps: AntiEntropyDeps) {
    this.#deps = deps;
  }

  /** Starts the rounds. */
  start(): void {
    this.#schedule();
  }

  /** Stops the rounds; one under way ends at its next step. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#deps.timers.clearTimeout(this.#timer);
  }

  /**
   * One round over every partition this node holds and owns. Resolves with the number of partitions repaired.
   * Exposed so that tests and the simulation can run a round at a chosen moment.
   */
  async round(): Promise<number> {
    const { self, n, ownership, peers, sync, budget, metrics } = this.#deps;
    const ring = this.#deps.ring();
    if (ring === null) return 0;
    metrics.count('antiEntropyRounds');
    let repaired = 0;
    for (const partition of ownership.held()) {
      if (this.#closed || this.#deps.ring() !== ring) break;
      const owners = ring.preferenceList(partition, n);
      const at = owners.indexOf(self);
      if (at < 0) continue;
      const others = owners.filter((id) => id !== self);
      const head = at === 0;
      const partners = head ? others : others.length > 0 ? [owners[(at + 1) % owners.length]!] : [];
      let agreed = 0;
      for (const peer of partners) {
        if (peers.isSuspected(peer)) continue;
        const comparison = await sync.compare(peer, partition, budget);
        if (comparison === null) continue;
        if (comparison.leaves.length === 0) {
          agreed++;
          continue;
        }
        repaired++;
        metrics.count('antiEntropyRepairs');
        const pulled = await sync.pull(peer, partition, comparison.leaves, budget, undefined, REPAIR_PAGE_BYTES);
        const mine: SyncEntry[] = [];
        for await (const page of sync.scan(partition, new Set(comparison.leaves))) {
          for (const k of page) mine.push({ key: k.key, versions: k.siblings });
        }
        const pushed = await sync.push(peer, partition, mine, budget, REPAIR_PAGE_BYTES);
        if (!pulled || !pushed) this.#deps.logger.debug({ peer, partition }, 'anti-entropy repair incomplete');
      }
      if (head && others.length > 0 && agreed === others.length) await this.#collect(partition, others);
    }
    await this.#deps.onRound?.();
    return repaired;
  }

  /**
   * Collects the partition's tombstones past their grace: every owner holds exactly what this node holds (their
   * trees agree), so none of them keeps an older version the tombstone would have to hide. Each owner removes a key
   * only if it still holds exactly these tombstones.
   */
  async #collect(partition: number, others: readonly string[]): Promise<void> {
    const { sync, storage, budget, clock, tombstoneGrace, metrics } = this.#deps;
    const horizon = clock.now() - tombstoneGrace;
    const due: SyncEntry[] = [];
    for await (const page of sync.scan(partition, null)) {
      for (const k of page) {
        if (k.siblings.length > 0 && k.siblings.every((v) => v.value === null && v.dot.timestamp < horizon)) {
          due.push({ key: k.key, versions: k.siblings });
        }
      }
    }
    if (due.length === 0) return;
    // Others first: should this node fail half way, its own copies still let the next round try again.
    const acks = await Promise.all(others.map((peer) => sync.drop(peer, partition, due, budget)));
    if (acks.includes(false)) return;
    let collected = 0;
    for (const entry of due) if (await storage.deleteIfUnchanged(entry.key, entry.versions)) collected++;
    if (collected > 0) metrics.count('tombstonesCollected', collected);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#deps.timers.setTimeout(() => {
      this.round()
        .catch((error: unknown) => this.#deps.logger.warn({ error: String(error) }, 'anti-entropy round failed'))
        .finally(() => this.#schedule());
    }, this.#deps.interval);
  }
}
