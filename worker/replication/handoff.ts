/**
 * Hinted handoff: a fallback node delivers the versions it holds for an owner once that owner answers again, and
 * forgets them only after the owner acknowledged them. A hint whose owner has left the view, or no longer owns the
 * partition, is delivered instead to the partition's current owners (all of them, this node included when it is
 * one), so that no acknowledged write waits for a node that is not coming back or would only have to pass it on.
 */
import type { Logger } from '../env.ts';
import type { Metrics } from '../metrics.ts';
import type { Peers } from '../transport/peers.ts';
import type { Ring } from '../ring/ring.ts';
import type { Hint, Storage } from '../storage/storage.ts';
import { carryingTimeout } from '../wire/fit.ts';

/** What handoff needs from its node. */
export interface HandoffDeps {
  readonly self: string;
  /** Replication factor N. */
  readonly n: number;
  readonly storage: Storage;
  readonly peers: Peers;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly requestTimeout: number;
  /** Hints read per round and target. */
  readonly batch: number;
  /** The ring of the current view. */
  ring(): Ring;
}

/** Delivers held hints to their owners, one bounded round at a time. */
export class Handoff {
  readonly #deps: HandoffDeps;

  constructor(deps: HandoffDeps) {
    this.#deps = deps;
  }

  /**
   * One round: for each member that is not suspected, up to a batch of the hints held for it are sent to it;
   * then up to a batch of hints for nodes outside the view go to their partitions' owners. Acknowledged hints are
   * deleted. Returns how many hints were delivered.
   */
  async deliverRound(): Promise<number> {
    const { storage, peers, self } = this.#deps;
    // Most rounds find no hint at all: one count spares a listing per member.
    if ((await storage.stats()).hints === 0) return 0;
    const ring = this.#deps.ring();
    const targets = ring.members.map((m) => m.id).filter((id) => id !== self && !peers.isSuspected(id));
    const lists = await Promise.all(targets.map((target) => storage.listHints({ target, limit: this.#deps.batch })));
    const results = await Promise.all(
      lists.flat().map((hint) => {
        // A target that no longer owns the partition would only have to release it again: its owners get it.
        const owners = ring.preferenceList(hint.partition, this.#deps.n);
        if (owners.includes(hint.target)) return this.#deliver(hint, [hint.target]);
        if (owners.some((id) => id !== self && peers.isSuspected(id))) return 0;
        return this.#reroute(hint, owners);
      }),
    );
    let delivered = results.reduce<number>((sum, x) => sum + x, 0);
    // The targets first, then a batch of hints of those outside the view: never every hint with its values.
    const orphans: Hint[] = [];
    for (const target of await storage.hintTargets()) {
      if (ring.has(target)) continue;
      orphans.push(...(await storage.listHints({ target, limit: this.#deps.batch - orphans.length })));
      if (orphans.length >= this.#deps.batch) break;
    }
    for (const hint of orphans) {
      const owners = ring.preferenceList(hint.partition, this.#deps.n);
      if (owners.some((id) => id !== self && peers.isSuspected(id))) continue;
      delivered += await this.#reroute(hint, owners);
    }
    return delivered;
  }

  /** Delivers a hint to the partition's owners instead of its target. */
  async #reroute(hint: Hint, owners: readonly string[]): Promise<number> {
    const taken = await this.#deliver(hint, owners);
    if (taken > 0) this.#deps.metrics.count('hintsRerouted');
    return taken;
  }

  /** Sends one hint to every node of `to` (storing it here for this node), deleting it once all acknowledged. */
  async #deliver(hint: Hint, to: readonly string[]): Promise<number> {
    const { storage, peers, self, metrics } = this.#deps;
    const acks = await Promise.all(
      to.map(async (target) => {
        if (target === self) {
          await storage.apply(hint.key, hint.partition, hint.siblings);
          return true;
        }
        const reply = await peers.request(
          target,
          { type: 'replicate', key: hint.key, versions: hint.siblings, hintFor: null, durable: false, fresh: null },
          carryingTimeout(this.#deps.requestTimeout, hint.siblings),
        );
        return reply?.type === 'replicate-ack';
      }),
    );
    if (acks.includes(false)) return 0;
    await storage.deleteHint(hint.target, hint.key, hint.siblings);
    metrics.count('hintsDelivered');
    return 1;
  }
}
