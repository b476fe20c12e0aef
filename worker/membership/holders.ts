/**
 * Which members hold a whole copy of each partition, as this node last learnt by asking them: what an owner still
 * fetching a partition needs so that no request waits for its transfer. It completes its answers to reads from a
 * holder, and hands puts it may not coordinate yet to an owner that holds the partition (Cassandra routes requests
 * of pending ranges the same way: to the nodes that hold them until the new one does).
 *
 * What is learnt belongs to one ring: a new view starts afresh. A holder learnt here may have started to release
 * the partition since; it still answers with what it has not handed over yet, and what it handed over went to every
 * owner, this one included, so its answer merged with this node's copy is still whole.
 */
import type { Ring } from '../ring/ring.ts';

/** A member's answer to a probe of one partition. */
export interface ProbeAnswer {
  /** The member holds a whole copy. */
  readonly held: boolean;
  /** Its Merkle root of the partition. */
  readonly root: Uint8Array;
}

/** What this node knows of who holds one partition. */
export interface Holding {
  /** Members that answered that they hold a whole copy, in ring-walk order (so owners come first). */
  readonly holders: readonly string[];
  /**
   * Members that answered that they hold no whole copy but store keys of the partition (a root that is not empty),
   * in ring-walk order: owners still fetching it, old owners that never finished fetching it or have not released
   * it yet.
   */
  readonly storing: readonly string[];
  /** The root each holder, and each member of `storing`, answered with. */
  readonly roots: ReadonlyMap<string, Uint8Array>;
  /** Members that were not asked (suspected) or did not answer. */
  readonly unanswered: number;
}

/** What the holder directory needs from its node. */
export interface HoldersDeps {
  readonly self: string;
  /** The ring of the current view. */
  ring(): Ring;
  isSuspected(id: string): boolean;
  /** Asks `peer` whether it holds `partition`; null when it did not answer. */
  probe(peer: string, partition: number): Promise<ProbeAnswer | null>;
}

/** The holders of each partition under the current ring, learnt by probing every other member at once. */
export class Holders {
  readonly #deps: HoldersDeps;
  #ring: Ring | null = null;
  readonly #known = new Map<number, Holding>();
  readonly #asking = new Map<number, Promise<Holding>>();

  constructor(deps: HoldersDeps) {
    this.#deps = deps;
  }

  /** The holders of `partition` learnt so far under the current ring; empty when nothing is known. */
  known(partition: number): readonly string[] {
    this.#sameRing();
    return this.#known.get(partition)?.holders ?? [];
  }

  /**
   * Who holds `partition`: what was learnt under the current ring when that is conclusive (a holder was found, or
   * every member answered), else a fresh probe.
   */
  find(partition: number): Promise<Holding> {
    this.#sameRing();
    const known = this.#known.get(partition);
    if (known !== undefined && (known.holders.length > 0 || known.unanswered === 0)) return Promise.resolve(known);
    return this.probe(partition);
  }

  /** Asks every other member now (one round trip, all at once) and records the answer; joins a probe under way. */
  probe(partition: number): Promise<Holding> {
    this.#sameRing();
    let asking = this.#asking.get(partition);
    if (asking === undefined) {
      const ring = this.#ring!;
      asking = this.#ask(ring, partition).finally(() => {
        if (this.#asking.get(partition) === asking) this.#asking.delete(partition);
      });
      this.#asking.set(partition, asking);
    }
    return asking;
  }

  async #ask(ring: Ring, partition: number): Promise<Holding> {
    const { self, isSuspected, probe } = this.#deps;
    const others = ring.walk(partition).filter((id) => id !== self);
    const asked = others.filter((id) => !isSuspected(id));
    const answers = await Promise.all(asked.map((id) => probe(id, partition)));
    const holders: string[] = [];
    const storing: string[] = [];
    const roots = new Map<string, Uint8Array>();
    let unanswered = others.length - asked.length;
    asked.forEach((id, i) => {
      const answer = answers[i];
      if (answer === null || answer === undefined) unanswered++;
      else if (answer.held || !emptyRoot(answer.root)) {
        (answer.held ? holders : storing).push(id);
        roots.set(id, answer.root);
      }
    });
    const holding: Holding = { holders, storing, roots, unanswered };
    if (this.#deps.ring() === ring) this.#known.set(partition, holding);
    return holding;
  }

  /** Forgets what was learnt under an older ring. */
  #sameRing(): void {
    const ring = this.#deps.ring();
    if (ring === this.#ring) return;
    this.#ring = ring;
    this.#known.clear();
    this.#asking.clear();
  }
}

/** True when `root` is the root of a partition tree that holds no key: every key's digest is XORed in, none is. */
function emptyRoot(root: Uint8Array): boolean {
  return root.every((b) => b === 0);
}
