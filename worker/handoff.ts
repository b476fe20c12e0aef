/**
 * Hinted handoff: a fallback node delivers the versions it holds for an owner once that owner answers again, and
 * forgets them only after the owner acknowledged them.
 */
import type { Logger } from './env.ts';
import type { Metrics } from './metrics.ts';
import type { Peers } from './peers.ts';
import type { Storage } from './storage/storage.ts';

/** What handoff needs from its node. */
export interface HandoffDeps {
  readonly storage: Storage;
  readonly peers: Peers;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly requestTimeout: number;
  /** Hints read per round. */
  readonly batch: number;
  /** The other members of the current view. */
  peersInView(): readonly string[];
}

/** Delivers held hints to their owners, one bounded round at a time. */
export class Handoff {
  readonly #deps: HandoffDeps;

  constructor(deps: HandoffDeps) {
    this.#deps = deps;
  }

  /**
   * One round: for each member that is not suspected, up to a batch of the hints held for it are sent to it;
   * acknowledged ones are deleted. Returns how many hints were delivered.
   */
  async deliverRound(): Promise<number> {
    const { storage, peers, metrics } = this.#deps;
    const targets = this.#deps.peersInView().filter((id) => !peers.isSuspected(id));
    const lists = await Promise.all(targets.map((target) => storage.listHints({ target, limit: this.#deps.batch })));
    const due = lists.flat();
    const results = await Promise.all(
      due.map(async (hint) => {
        const reply = await peers.request(
          hint.target,
          { type: 'replicate', key: hint.key, versions: hint.siblings, hintFor: null, durable: false },
          this.#deps.requestTimeout,
        );
        if (reply?.type !== 'replicate-ack') return 0;
        await storage.deleteHint(hint.target, hint.key, hint.siblings);
        metrics.count('hintsDelivered');
        return 1;
      }),
    );
    return results.reduce<number>((sum, x) => sum + x, 0);
  }
}
