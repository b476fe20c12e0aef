/**
 * The check of a put's context before its coordinator writes it: a context naming a version the cluster never issued
 * is refused (a forged or corrupted counter would make the new version supersede that node's later, concurrent
 * writes), and a conditional put's context must have seen every stored version.
 *
 * Clocks keep at most {@link MAX_CLOCK_ENTRIES} entries, dropping the oldest, so the cluster forgets old entries
 * that honest contexts still carry: a client that read a key before writes of more nodes than a clock can name holds
 * an entry that no stored clock keeps any longer, and the node it names may have left the cluster since, or may not
 * hold the key. Such an entry is left out of the written version rather than refused (see {@link prunedAway}).
 */
import { InvalidArgumentError, QuorumError, StaleContextError } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { Ring } from '../ring/ring.ts';
import type { DotHorizon } from '../versions/horizon.ts';
import {
  type ClockEntry,
  type VClock,
  EMPTY_CLOCK,
  MAX_CLOCK_ENTRIES,
  counterOf,
  merge,
  prune,
  setEntry,
} from '../versions/vclock.ts';
import { type Version, clockOf, contextCoversAll } from '../versions/version.ts';

/** What a put's context check reads; `P` is the coordinator's plan of the key (its owners and fallbacks). */
export interface ContextCheckDeps<P extends CheckedPlan> {
  readonly self: string;
  readonly metrics: Metrics;
  /** The highest dot counter of each node that this node has seen: counters up to it were issued. */
  readonly horizon: DotHorizon;
  /** The ring of the current view. */
  ring(): Ring;
  /** The key's siblings on this node. */
  readLocal(key: Uint8Array): Promise<readonly Version[]>;
  /** The key's siblings merged from `r` replicas; `ERR_QUORUM` when fewer answer. */
  readReplicas(key: Uint8Array, r: number, plan: P): Promise<readonly Version[]>;
  /** The key's siblings at every replica that answers, and how many of its owners did. */
  readAll(key: Uint8Array, plan: P): Promise<{ siblings: readonly Version[]; owners: number; complete: boolean }>;
  /** The key's siblings at member `node`, or null when it did not answer. */
  readAt(node: string, key: Uint8Array): Promise<readonly Version[] | null>;
  /**
   * Members that owned `partition` in a ring replaced moments ago and own it no longer: while a partition moves, a
   * version may live on only at them until they have released it.
   */
  formerOwners(partition: number): readonly string[];
  /**
   * Whether `node`, gone from the view, was a member of a ring this node had moments ago (its ring history): a node
   * that left may have taken versions with it that nobody can vouch for now, where one that never was a member
   * issued nothing.
   */
  wasMember(node: string): boolean;
}

/** What of the coordinator's plan the check needs. */
export interface CheckedPlan {
  readonly partition: number;
  readonly owners: readonly string[];
}

/** What of a put the check looks at. */
export interface CheckedPut {
  readonly key: Uint8Array;
  readonly context: VClock;
  readonly r: number;
  readonly ifMatch: boolean;
}

/** Checks the contexts of the puts one coordinator writes. */
export class ContextCheck<P extends CheckedPlan> {
  readonly #deps: ContextCheckDeps<P>;

  constructor(deps: ContextCheckDeps<P>) {
    this.#deps = deps;
  }

  /**
   * Refuses a context that names a version the cluster never issued, as far as this node can know, with
   * `ERR_INVALID_ARGUMENT`; and, for a conditional put, a context that has not seen a stored version, with
   * `ERR_STALE_CONTEXT`. A context naming a counter far ahead (forged, or corrupted) would make the new version
   * supersede that node's later, concurrent writes. An entry is known to name an issued version when it is at most
   * a dot of its node that this node has seen (the horizon), or when the clocks of the key's versions cover it: this
   * node's own siblings first (no request needed), else those of R replicas, since this node may just lag behind,
   * else those of every replica that answers (a write acknowledged by one replica, and read from it alone, makes an
   * honest context too), else those of the partition's former owners while it moves, else those of the named member
   * itself. An entry still unknown once every owner of the key, every former owner and the named member answered
   * names a version never issued. When one that might know did not answer, the put fails with `ERR_QUORUM`, as a
   * conditional put does, and so it does when the entry of a node gone from the view predates what this node has
   * watched (see {@link unseenBefore}). This node's own entry is also checked exactly, and atomically,
   * by the storage write, against the counter it issued.
   *
   * An entry that the clocks of the key's versions have pruned away (see {@link prunedAway}) is neither asked about
   * nor refused: no stored clock names it any longer, and its node may have left the cluster, so nothing may be able
   * to vouch for it. It is left out of the context the put writes (clamped to what those clocks know of its node):
   * the new version supersedes no more of that node's writes than the key's versions already do, so a forged entry
   * old enough to pass does no harm either.
   *
   * @returns The context to write: `request.context`, less the entries pruned away.
   */
  async check(request: CheckedPut, plan: P): Promise<VClock> {
    const { self, metrics, horizon } = this.#deps;
    const context = request.context;
    // The entries not known at once to name issued versions. This node's own is checked exactly by the write, but
    // a conditional put must hear of a forged one before it hears of a stale context.
    let claimed: VClock = context.filter(
      (e) => (request.ifMatch || e.node !== self) && e.counter > horizon.counter(e.node),
    );
    let known: VClock = EMPTY_CLOCK;
    if (!request.ifMatch) {
      if (claimed.length === 0) return context;
      known = clockOfAll(known, await this.#deps.readLocal(request.key));
      claimed = uncovered(claimed, known);
      if (claimed.length === 0) return context;
    }
    const read = await this.#deps.readReplicas(request.key, request.r, plan);
    known = clockOfAll(known, read);
    claimed = uncovered(claimed, known);
    let written = context;
    if (claimed.length > 0) {
      const all = await this.#deps.readAll(request.key, plan);
      known = clockOfAll(known, all.siblings);
      claimed = uncovered(claimed, known);
      // What the key's clocks pruned away is left out of the context, not asked about (see above).
      const pruned = claimed.filter((e) => prunedAway(e, known));
      if (pruned.length > 0) {
        written = clamped(context, pruned, known);
        claimed = claimed.filter((e) => !pruned.includes(e));
      }
      // Then the partition's former owners, while it moves, and last each named member itself: it stored its own write
      // of the key (the version may live on only there and in hints while partitions move), and anything that
      // superseded it there covers it. A node that has left the view cannot be asked; when this node has seen it, the
      // version may have left with it, and so it may when this node cannot know (see unseenBefore).
      let silent = 0;
      const former = claimed.length > 0 ? this.#deps.formerOwners(plan.partition) : [];
      for (const versions of await Promise.all(former.map((node) => this.#deps.readAt(node, request.key)))) {
        if (versions === null) silent++;
        else known = clockOfAll(known, versions);
      }
      claimed = uncovered(claimed, known);
      for (const node of new Set(claimed.map((e) => e.node))) {
        if (former.includes(node)) continue;
        if (node === self || plan.owners.includes(node)) continue;
        if (!this.#deps.ring().has(node)) {
          if (
            horizon.counter(node) > 0 ||
            counterOf(known, node) > 0 ||
            this.#deps.wasMember(node) ||
            unseenBefore(claimed, node, horizon)
          ) {
            silent++;
          }
          continue;
        }
        const versions = await this.#deps.readAt(node, request.key);
        if (versions === null) silent++;
        else known = clockOfAll(known, versions);
      }
      claimed = uncovered(claimed, known);
      if (claimed.length > 0) {
        if (!all.complete || silent > 0) {
          // Nodes that would know did not answer: as for a conditional put, the put waits for them.
          metrics.count('quorumFailures');
          throw new QuorumError(
            'could not reach every node that might hold the versions the context names (one did not answer or ' +
              'has left the view)',
            plan.owners.length,
            all.owners,
          );
        }
        metrics.count('contextsRefused');
        const unknown = claimed[0]!;
        throw new InvalidArgumentError(
          `invalid context: it names version ${unknown.counter} of node ${unknown.node}, which this node and ` +
            'every replica of this key know nothing of; put with the context of a read of this key',
        );
      }
    }
    if (request.ifMatch && !contextCoversAll(written, read)) {
      metrics.count('staleContexts');
      throw new StaleContextError('the key holds a version that the given context has not seen');
    }
    return written;
  }
}

/**
 * True when `claimed`'s entry of `node`, a node gone from the view that this node never saw a dot of, dates from
 * before this node began to watch dots: the node may have written it and left before this one came (a node that
 * joined moments ago knows neither the members that left before it nor their dots, and the versions they wrote may
 * live on only where it does not look, in hints or at old owners that never held the partition whole). This node
 * cannot judge such an entry: as when a node that would know does not answer, the put fails with `ERR_QUORUM` rather
 * than being refused as invalid. A forged entry gains nothing by an old timestamp: it is refused all the same and
 * stores nothing, and a node that has watched since then refuses it as invalid.
 */
function unseenBefore(claimed: VClock, node: string, horizon: DotHorizon): boolean {
  return claimed.some((e) => e.node === node && e.timestamp < horizon.since);
}

/** `known` merged with the clocks of `versions`. */
function clockOfAll(known: VClock, versions: readonly Version[]): VClock {
  let out = known;
  for (const v of versions) out = merge(out, clockOf(v));
  return out;
}

/** The entries of `claimed` that `known` does not cover. */
function uncovered(claimed: VClock, known: VClock): VClock {
  return claimed.filter((e) => e.counter > counterOf(known, e.node));
}

/**
 * True when `entry`, which `known` (the merged clocks of the key's versions) does not cover, is one that pruning
 * dropped from those clocks: `known` holds a read context's worth ({@link MAX_CLOCK_ENTRIES} - 1 entries, what
 * `contextOf` keeps) of other nodes' entries that {@link prune} keeps before it, so that a clock of them and `entry`
 * leaves `entry` out, as the clocks the cluster stored did. Nothing need vouch for such an entry: left out of the
 * written context, it supersedes nothing. A forged entry passes only with an old timestamp, and is left out too.
 */
function prunedAway(entry: ClockEntry, known: VClock): boolean {
  const others = known.filter((e) => e.node !== entry.node);
  if (others.length < MAX_CLOCK_ENTRIES - 1) return false;
  return !prune(setEntry(others, entry), MAX_CLOCK_ENTRIES - 1).includes(entry);
}

/** `context` with each of the `pruned` entries replaced by `known`'s entry of its node, or left out when it has none. */
function clamped(context: VClock, pruned: VClock, known: VClock): VClock {
  const out: ClockEntry[] = [];
  for (const e of context) {
    if (!pruned.includes(e)) out.push(e);
    else if (counterOf(known, e.node) > 0) out.push(known.find((k) => k.node === e.node)!);
  }
  return out;
}
