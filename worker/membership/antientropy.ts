/**
 * Anti-entropy: on an interval, this node compares the Merkle tree of each partition it holds with another owner's
 * and repairs the leaves that differ both ways, within a byte budget whose every spending first waits for a pause in
 * foreground requests (see the node's `idle`). The
 * first owner of a partition compares with every other owner; when all of them agree with it, it also collects the
 * partition's tombstones that are past their grace period, on every owner at once (see `sync-drop`). A tombstone's
 * age runs from when the first owner first found it in such a pass (see tombstone-ages.ts), not from its dot's
 * timestamp, which whoever wrote it chose: that is believed only once the first owner has held the tombstone an hour
 * (see {@link STAMP_TRUSTED_AFTER_MS}).
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
import { TombstoneAges, tombstoneFingerprint } from './tombstone-ages.ts';

/**
 * How long the first owner must have seen a tombstone itself before it believes the tombstone's timestamp, ms (or the
 * grace, when shorter). The grace runs from the first owner's own first sight; but the first owner changes as tabs
 * come and go, and each new one would start the grace again, so that in a cluster of tabs a tombstone might never be
 * collected. So a tombstone its writer stamped older than the grace is collected once the first owner has held it
 * this long: a writer who stamps a delete 0 gains an hour's wait, not the grace's.
 */
const STAMP_TRUSTED_AFTER_MS = 60 * 60_000;

/** The storage meta record of a partition's tombstone ages. */
function agesRecord(partition: number): string {
  return `tombstones:${partition}`;
}

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
  /** Ms since this node, as first owner, first found a tombstone before it may be collected. */
  readonly tombstoneGrace: number;
  /** The ring of the current view, or null before the first view. */
  ring(): Ring | null;
  /** Called once per round, for bookkeeping that rides on it (the node's last-active time). */
  onRound?(): Promise<void>;
}

/** The anti-entropy rounds of one node. */
export class AntiEntropy {
  readonly #deps: AntiEntropyDeps;
  /** When this node first found each tombstone set of the partitions it is first owner of. */
  readonly #ages = new TombstoneAges();
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
    if (!this.#closed && this.#deps.ring() === ring) await this.#forgetAges(ring);
    await this.#deps.onRound?.();
    return repaired;
  }

  /**
   * Collects the partition's tombstones past their grace: every owner holds exactly what this node holds (their
   * trees agree), so none of them keeps an older version the tombstone would have to hide. Each owner removes a key
   * only if it still holds exactly these tombstones. The grace runs from this node's first sight of each set.
   */
  async #collect(partition: number, others: readonly string[]): Promise<void> {
    const { sync, storage, budget, clock, tombstoneGrace, metrics } = this.#deps;
    if (!this.#ages.loaded(partition)) this.#ages.load(partition, await storage.getMeta(agesRecord(partition)));
    const now = clock.now();
    const horizon = now - tombstoneGrace;
    // Seen here for the whole grace; or stamped older than the grace by its writer, and seen here a while already.
    const stampedHorizon = now - Math.min(tombstoneGrace, STAMP_TRUSTED_AFTER_MS);
    const candidates: { fingerprint: string; stampedOld: boolean; entry: SyncEntry }[] = [];
    for await (const page of sync.scan(partition, null)) {
      for (const k of page) {
        if (k.siblings.length === 0 || k.siblings.some((v) => v.value !== null)) continue;
        const fingerprint = tombstoneFingerprint(k.key, k.siblings);
        const stampedOld = k.siblings.every((v) => v.dot.timestamp < horizon);
        candidates.push({ fingerprint, stampedOld, entry: { key: k.key, versions: k.siblings } });
      }
    }
    const found = candidates.map((c) => c.fingerprint);
    if (this.#ages.observe(partition, found, now)) await this.#saveAges(partition);
    const due = candidates
      .filter((c) => {
        // A set not tracked (no room for it) is not due.
        const seen = this.#ages.firstSeen(partition, c.fingerprint) ?? Infinity;
        return seen <= horizon || (c.stampedOld && seen <= stampedHorizon);
      })
      .map((c) => c.entry);
    if (due.length === 0) return;
    // Others first: should this node fail half way, its own copies still let the next round try again.
    const acks = await Promise.all(others.map((peer) => sync.drop(peer, partition, due, budget)));
    if (acks.includes(false)) return;
    let collected = 0;
    for (const entry of due) if (await storage.deleteIfUnchanged(entry.key, entry.versions)) collected++;
    if (collected > 0) metrics.count('tombstonesCollected', collected);
  }

  /**
   * Forgets the tombstone ages of partitions this node is no longer first owner of in `ring`: another node decides
   * their collections now, and should this node become first owner again, it measures their ages afresh.
   */
  async #forgetAges(ring: Ring): Promise<void> {
    const { self, n } = this.#deps;
    for (const partition of this.#ages.partitions()) {
      if (ring.preferenceList(partition, n)[0] === self) continue;
      if (this.#ages.forget(partition)) await this.#saveAges(partition);
    }
  }

  /**
   * Stores the partition's tombstone ages, so that a restart neither restarts them nor loses them. Failing, it only
   * logs: a restart would then see those tombstones afresh, which delays their collection and never hastens it.
   */
  async #saveAges(partition: number): Promise<void> {
    try {
      await this.#deps.storage.putMeta(agesRecord(partition), this.#ages.record(partition));
    } catch (error) {
      this.#deps.logger.warn({ partition, error: String(error) }, 'could not store tombstone ages');
    }
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
