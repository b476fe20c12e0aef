/**
 * The replica side of the protocol: store what a coordinator ships (in the main store, or as a hint for an owner this
 * node stands in for) and answer reads with everything this node holds for the key.
 *
 * An owner still fetching a partition stores every write it is sent, but its copy lacks what the holders have not
 * streamed to it yet: it answers a read with its copy merged with a holder's, so that no read waits for a transfer
 * and none is refused for one (a cluster of N nodes has no fallback to ask instead).
 */
import { NotResponsibleError, OverloadedError, UnauthorizedError } from '../errors.ts';
import type { Clock } from '../env.ts';
import type { Holding } from '../membership/holders.ts';
import type { Metrics } from '../metrics.ts';
import type { Peers } from '../transport/peers.ts';
import type { ReadMessage, ReplicateMessage } from '../wire/protocol.ts';
import type { Storage } from '../storage/storage.ts';
import { type Version, resolve } from '../versions/version.ts';

/** What a replica needs from its node. */
export interface ReplicaDeps {
  readonly self: string;
  readonly storage: Storage;
  readonly metrics: Metrics;
  readonly peers: Peers;
  /** How long a holder may take to answer a read this node completes from it, ms. */
  readonly holderTimeout: number;
  /** The partition of a key under the current ring. */
  partitionOf(key: Uint8Array): number;
  /** True when this node is in the partition's preference list under the current ring. */
  owns(partition: number): boolean;
  /** True when `node` is in the partition's preference list (or was, in a view replaced moments ago). */
  isOwner(node: string, partition: number): boolean;
  /** Resolves at the next change of view, or after `ms`. */
  nextView(ms: number): Promise<void>;
  /** For the age of the hint count. */
  readonly clock: Clock;
  /** True when this node holds a whole copy of the partition. */
  holds(partition: number): boolean;
  /** Who holds the partition (learnt, or asked now). */
  findHolders(partition: number): Promise<Holding>;
  /** True when every member of the view but this node is `node`. */
  onlyOther(node: string): boolean;
}

/** Most hint records a node keeps for others; past it, a write it is asked to keep as a hint is refused. */
export const MAX_HINTS = 100_000;
/** Most hint records a node keeps for any one other node, so that writes for one owner cannot take every place. */
export const MAX_HINTS_PER_TARGET = 20_000;
/** How long a hint this node's view does not allow waits for a newer view, ms. */
const VIEW_WAIT_MS = 1000;
/** How long a count of the hints held is trusted, ms: counting costs a storage request. */
const HINT_COUNT_TTL_MS = 1000;

/** Serves replicate and read requests from this node's storage. */
export class Replica {
  readonly #deps: ReplicaDeps;
  /**
   * The hints held when last counted, and when: in all (under the empty name), and per target. The count is shared
   * by the writes that ask while it is taken, and each hint they keep adds to it.
   */
  readonly #hints = new Map<string, { at: number; counted: Promise<{ count: number }> }>();

  constructor(deps: ReplicaDeps) {
    this.#deps = deps;
  }

  /** The key's siblings here: the main store merged with every hint held for the key, tombstones included. */
  async readLocal(key: Uint8Array): Promise<Version[]> {
    const { storage } = this.#deps;
    // Both reads start at once, as under Promise.all, which costs more than the two reads of a memory engine.
    const reading = storage.get(key);
    const hinted = storage.hintsFor(key);
    let stored: Version[];
    try {
      stored = await reading;
    } catch (error) {
      hinted.catch(() => {});
      throw error;
    }
    const hints = await hinted;
    if (hints.length === 0) return stored;
    return resolve(
      stored,
      hints.flatMap((h) => h.siblings),
    ).siblings;
  }

  /** Stores a shipped sibling set: as a hint when it is meant for another node, else in the main store. */
  async replicate(message: ReplicateMessage): Promise<void> {
    const { self, storage, metrics } = this.#deps;
    const partition = this.#deps.partitionOf(message.key);
    const durability = message.durable ? 'strict' : 'relaxed';
    if (message.hintFor !== null && message.hintFor !== self) {
      // A write is kept for an owner only on an owner's (its coordinator's) word: a hint for any other node would
      // be a store anyone could fill.
      const { hintFor, from } = message;
      // The coordinator's view may be newer than this node's (a member joined): its word is weighed again under the
      // next view, if one comes in time.
      if (!this.#mayHint(hintFor, from, partition)) await this.#deps.nextView(VIEW_WAIT_MS);
      if (!this.#mayHint(hintFor, from, partition)) {
        metrics.count('unauthorizedMessages');
        throw new UnauthorizedError(`a hint for ${hintFor} from ${from}: both must own partition ${partition}`);
      }
      const [all, forTarget] = await Promise.all([this.#hintCount(null), this.#hintCount(hintFor)]);
      if (all.count >= MAX_HINTS) {
        throw new OverloadedError(`this node already keeps ${MAX_HINTS} hints for other nodes`);
      }
      if (forTarget.count >= MAX_HINTS_PER_TARGET) {
        throw new OverloadedError(`this node already keeps ${MAX_HINTS_PER_TARGET} hints for ${hintFor}`);
      }
      all.count++;
      forTarget.count++;
      await storage.putHint(
        { target: message.hintFor, key: message.key, partition, siblings: [...message.versions] },
        { durability },
      );
      metrics.count('hintsStored');
    } else {
      const fresh = freshVersion(message);
      await storage.apply(
        message.key,
        partition,
        message.versions,
        fresh === undefined ? { durability } : { durability, fresh },
      );
      metrics.count('replicasWritten');
    }
  }

  /**
   * Whether `from` may have this node keep a hint for `hintFor` of `partition`: both own it. A method rather than a
   * closure made per hint, which keepNames (under tsx) would rename with a costly `defineProperty`.
   */
  #mayHint(hintFor: string, from: string, partition: number): boolean {
    return this.#deps.isOwner(hintFor, partition) && this.#deps.isOwner(from, partition);
  }

  /**
   * The hints held for `target` (null: for all), counted at most once a {@link HINT_COUNT_TTL_MS} (the hints kept
   * since added to the count).
   */
  #hintCount(target: string | null): Promise<{ count: number }> {
    const now = this.#deps.clock.now();
    const name = target ?? '';
    const known = this.#hints.get(name);
    if (known !== undefined && now - known.at <= HINT_COUNT_TTL_MS) return known.counted;
    const { storage } = this.#deps;
    const counted = (async () => ({
      count: target === null ? (await storage.stats()).hints : await storage.hintCount(target),
    }))();
    this.#hints.set(name, { at: now, counted });
    return counted;
  }

  /**
   * The key's siblings as whole as a holder's copy: this node's own when it holds the partition or does not own it
   * (a fallback answers with what it has), else its copy merged with the first holder's to answer, or its own when
   * no holder answers. `asker`, the node whose read this answers, is not asked back: its own copy counts on its own.
   * So when the asker is the only other member, there is no one to complete the copy from, and nobody is asked who
   * holds the partition: the asker may be busy serving this very node's transfer, and the read must not wait for it.
   */
  async readWhole(key: Uint8Array, asker?: string): Promise<Version[]> {
    const deps = this.#deps;
    const partition = deps.partitionOf(key);
    if (deps.holds(partition) || !deps.owns(partition)) return this.readLocal(key);
    if (asker !== undefined && deps.onlyOther(asker)) return this.readLocal(key);
    const local = this.readLocal(key);
    local.catch(() => {});
    const { holders, unanswered } = await deps.findHolders(partition);
    // Nobody holds the partition (a new cluster): there is nothing this copy can be missing.
    if (holders.length === 0 && unanswered === 0) return local;
    const asked = holders.filter((id) => id !== asker && !deps.peers.isSuspected(id));
    const whole = await firstAnswer(deps.peers, asked, key, deps.holderTimeout);
    if (whole !== null) {
      deps.metrics.count('readsCompleted');
      return resolve(await local, whole).siblings;
    }
    // No holder is reachable (a browser restarted alone while its old peers are still in the view, a partition):
    // its copy holds every write it acknowledged as an owner, and it answers with it as a fallback would, rather
    // than fail the read.
    return local;
  }

  /**
   * Serves a peer's read. One that requires a whole copy is refused by an owner still fetching the partition; a
   * node that does not own it answers with what it has: what it held and released went to every owner already.
   */
  read(message: ReadMessage): Promise<Version[]> {
    const deps = this.#deps;
    deps.metrics.count('readsServed');
    if (!message.requireHeld) return this.readWhole(message.key, message.from);
    const partition = deps.partitionOf(message.key);
    if (deps.owns(partition) && !deps.holds(partition)) {
      return Promise.reject(new NotResponsibleError(`node ${deps.self} is still fetching partition ${partition}`));
    }
    return this.readLocal(message.key);
  }
}

/**
 * The versions of the first of `holders` to answer a read that requires a whole copy, all asked at once (a holder or
 * two: the owners and old owners of one partition), or null when none answers within `timeoutMs`.
 */
function firstAnswer(
  peers: Peers,
  holders: readonly string[],
  key: Uint8Array,
  timeoutMs: number,
): Promise<readonly Version[] | null> {
  if (holders.length === 0) return Promise.resolve(null);
  return new Promise((settle) => {
    let open = holders.length;
    for (const holder of holders) {
      void peers.request(holder, { type: 'read', key, requireHeld: true }, timeoutMs).then((reply) => {
        open--;
        if (reply?.type === 'read-reply') settle(reply.versions);
        else if (open === 0) settle(null);
      });
    }
  });
}

/**
 * The version a coordinator marked as the one it has just issued (`fresh`, under its own dot, as the codec checks):
 * it replaces another version stored under that dot, which someone else made up before the coordinator issued it.
 * The storage takes it as fresh only above every fresh write of that node it took before, and remembers the highest
 * with the write (fresh-tops.ts): a member may not rewrite what it wrote and acknowledged, before or after this
 * node restarts (nor a node whose counter went back on a crash take an older write's place).
 */
function freshVersion(message: ReplicateMessage): Version | undefined {
  const { fresh: counter, from } = message;
  if (counter === null) return undefined;
  return message.versions.find((v) => v.dot.node === from && v.dot.counter === counter);
}
