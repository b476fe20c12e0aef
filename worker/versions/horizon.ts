/**
 * What a node knows of other nodes' dot counters. A node draws its counters in order and never skips one for good,
 * so once a dot `m:c` has been seen, every counter of `m` up to `c` names a version that `m` issued. A coordinator
 * asks this first when it checks a client's context (see coordinator.ts): an entry at or below the horizon is a
 * version the cluster issued, whatever became of it since (superseded, collected, pruned from newer clocks).
 */
import type { Version } from './version.ts';

/** The highest dot counter seen of each node. */
export class DotHorizon {
  /**
   * When this node began to watch dots (its start, wall-clock ms). Of a node that left the cluster before then it may
   * have seen nothing at all: a node that joins an existing cluster knows only the dots of what it comes to store.
   */
  readonly since: number;
  readonly #top = new Map<string, number>();

  constructor(since = 0) {
    this.since = since;
  }

  /** Takes note of the dots of `versions`. */
  observe(versions: readonly Version[]): void {
    for (let i = 0; i < versions.length; i++) {
      const { node, counter } = versions[i]!.dot;
      if (counter > (this.#top.get(node) ?? 0)) this.#top.set(node, counter);
    }
  }

  /** The highest counter of `node` seen in a dot; 0 when none was. */
  counter(node: string): number {
    return this.#top.get(node) ?? 0;
  }
}
