/**
 * Versions of one key, pure. A version is a dotted version vector: the `dot` names the write event (the
 * coordinator's entry and its counter) and `context` is the clock the writer had read. Version `a` supersedes `b`
 * when `a`'s context has seen `b`'s dot. Keeping the dot apart from the context is what lets one coordinator make
 * two concurrent writes of a key without the later one silently replacing the earlier (with one plain clock per
 * sibling, `{x:2}` would descend `{x:1}` although the writer of the second never saw the first).
 *
 * A replica always stores and ships a key's whole sibling set, so whatever holds a coordinator's dot `x:n` also holds
 * or supersedes that coordinator's earlier dots of the key: the merged clock of a read never claims a dot it did not
 * see.
 */
import { signsVersions } from './proof.ts';
import {
  type ClockEntry,
  type VClock,
  EMPTY_CLOCK,
  counterOf,
  merge,
  prune,
  setEntry,
  MAX_CLOCK_ENTRIES,
} from './vclock.ts';

/** One stored version of a key: a value, or a tombstone when `value` is null. */
export interface Version {
  /** The write event: coordinator node, its counter, wall-clock milliseconds. */
  readonly dot: ClockEntry;
  /** The clock the writer had read: every version whose dot it covers is superseded by this one. */
  readonly context: VClock;
  /** The encoded value, or null for a tombstone. */
  readonly value: Uint8Array | null;
  /**
   * Its author's public key and signature over the key and the version (proof.ts); absent from versions of nodes
   * that do not sign, and from those written before their node began to.
   */
  readonly proof?: Uint8Array;
}

/** The outcome of merging versions into a sibling set. */
export interface Resolution {
  /** The siblings after the merge, sorted by dot. */
  readonly siblings: Version[];
  /** True when the merge changed the set. */
  readonly changed: boolean;
}

/** The version's clock: its context with its own dot. */
export function clockOf(version: Version): VClock {
  // merge(context, [dot]), without the one-entry clock.
  const { context, dot } = version;
  const out: ClockEntry[] = [];
  let i = 0;
  while (i < context.length && context[i]!.node < dot.node) out.push(context[i++]!);
  const same = i < context.length && context[i]!.node === dot.node ? context[i++]! : undefined;
  if (same === undefined) out.push(dot);
  else if (same.counter > dot.counter || (same.counter === dot.counter && same.timestamp >= dot.timestamp))
    out.push(same);
  else out.push({ node: same.node, counter: dot.counter, timestamp: dot.timestamp });
  while (i < context.length) out.push(context[i++]!);
  return out;
}

/** True when `a` and `b` are the same write. */
export function sameDot(a: Version, b: Version): boolean {
  return a.dot.node === b.dot.node && a.dot.counter === b.dot.counter;
}

/** True when `clock` has seen `version`'s write. */
export function covers(clock: VClock, version: Version): boolean {
  return counterOf(clock, version.dot.node) >= version.dot.counter;
}

/** True when `a` is a later write than `b` that has seen it. */
export function supersedes(a: Version, b: Version): boolean {
  return !sameDot(a, b) && covers(a.context, b);
}

function byDot(a: Version, b: Version): number {
  if (a.dot.node !== b.dot.node) return a.dot.node < b.dot.node ? -1 : 1;
  return a.dot.counter - b.dot.counter;
}

/**
 * Merges `incoming` into `stored`: an incoming version already stored or superseded by a stored one is dropped
 * (unless it takes the place of the one stored under its dot, see {@link takesPlaceOf}), stored versions that an
 * incoming one supersedes are replaced, concurrent ones are kept.
 */
export function resolve(stored: readonly Version[], incoming: readonly Version[]): Resolution {
  // Plain loops and an insertion sort: sibling sets are a handful of versions, and this runs on every read and write.
  const siblings = stored.slice();
  let changed = false;
  next: for (let i = 0; i < incoming.length; i++) {
    const v = incoming[i]!;
    for (let j = 0; j < siblings.length; j++) {
      const s = siblings[j]!;
      if (sameDot(s, v)) {
        if (takesPlaceOf(v, s)) {
          siblings[j] = v;
          changed = true;
        }
        continue next;
      }
      if (supersedes(s, v)) continue next;
    }
    let kept = 0;
    for (let j = 0; j < siblings.length; j++) {
      const s = siblings[j]!;
      if (!supersedes(v, s)) siblings[kept++] = s;
    }
    siblings.length = kept;
    siblings.push(v);
    changed = true;
  }
  for (let i = 1; i < siblings.length; i++) {
    const v = siblings[i]!;
    let j = i - 1;
    while (j >= 0 && byDot(siblings[j]!, v) > 0) {
      siblings[j + 1] = siblings[j]!;
      j--;
    }
    siblings[j + 1] = v;
  }
  return { siblings, changed };
}

/**
 * Whether `v` takes the place of `s`, a stored version under the same dot. A signed version takes the place of an
 * unsigned one: a copy from before its proof came, or one someone made up (only a proof already checked reaches a
 * merge, see proof.ts). Of two signed ones, which only a writer that signed two values under one dot can make, the
 * lower proof stays, so that every replica keeps the same one.
 */
function takesPlaceOf(v: Version, s: Version): boolean {
  const a = v.proof;
  // Only a node whose id derives from its key signs: a proof under another's dot proves nothing (the codec and the
  // checks on arrival refuse one; this keeps a merge from trusting it should one get here).
  if (a === undefined || !signsVersions(v.dot.node)) return false;
  const b = s.proof;
  if (b === undefined) return true;
  for (let i = 0; i < a.length && i < b.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return a.length < b.length;
}

/**
 * Merges `incoming` into `stored` as {@link resolve} does, after taking out of `stored` every version under the dot
 * of `fresh` that is not `fresh` itself: `fresh` is what the dot's own node just issued under it and ships itself,
 * and dots are never reused, so another version under that dot was made up by someone else. Without `fresh`, the
 * stored version under a dot is kept whatever else comes under it.
 */
export function resolveFresh(
  stored: readonly Version[],
  incoming: readonly Version[],
  fresh: Version | undefined,
): Resolution {
  if (fresh === undefined) return resolve(stored, incoming);
  const kept = stored.filter((s) => !sameDot(s, fresh) || sameVersion(s, fresh));
  const merged = resolve(kept, incoming);
  return kept.length === stored.length ? merged : { siblings: merged.siblings, changed: true };
}

/** True when `a` and `b` are the same write with the same context and value, byte for byte. */
export function sameVersion(a: Version, b: Version): boolean {
  if (!sameDot(a, b) || a.dot.timestamp !== b.dot.timestamp) return false;
  if (a.context.length !== b.context.length) return false;
  for (let i = 0; i < a.context.length; i++) {
    const x = a.context[i]!;
    const y = b.context[i]!;
    if (x.node !== y.node || x.counter !== y.counter || x.timestamp !== y.timestamp) return false;
  }
  return sameValue(a.value, b.value);
}

/** Whether two values (null for a tombstone) hold the same bytes. */
export function sameValue(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when both sets hold the same writes. */
export function sameSiblings(a: readonly Version[], b: readonly Version[]): boolean {
  if (a.length !== b.length) return false;
  outer: for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < b.length; j++) if (sameDot(a[i]!, b[j]!)) continue outer;
    return false;
  }
  return true;
}

/**
 * The context a read returns for `siblings`: their merged clocks, pruned to `max` entries so that a put over it can
 * add its coordinator's entry without pruning again. Entries naming a sibling's dot are kept whatever their age:
 * without them no put over this read could ever supersede that sibling.
 */
export function contextOf(siblings: readonly Version[], max: number = MAX_CLOCK_ENTRIES - 1): VClock {
  let merged = EMPTY_CLOCK;
  for (let i = 0; i < siblings.length; i++) merged = merge(merged, clockOf(siblings[i]!));
  if (merged.length <= max) return merged;
  const dotNodes = new Set(siblings.map((s) => s.dot.node));
  const dotEntries = merged.filter((e) => dotNodes.has(e.node));
  // More coordinators than a context can name: the siblings left out stay siblings after a put over this read,
  // which costs a merge later but loses nothing.
  if (dotEntries.length >= max) return prune(dotEntries, max);
  const others = merged.filter((e) => !dotNodes.has(e.node));
  return merge(dotEntries, prune(others, Math.max(0, max - dotEntries.length)));
}

/**
 * A new version written by `node` with counter `counter` at `timestamp` over the read `context`. The context is
 * pruned so that the version's clock keeps at most {@link MAX_CLOCK_ENTRIES} entries; pruning only makes the new
 * version supersede less, never more.
 */
export function createVersion(
  node: string,
  counter: number,
  timestamp: number,
  context: VClock,
  value: Uint8Array | null,
): Version {
  // The dot is the clock's own entry, so the context keeps that node's entry and at most MAX - 1 others.
  const own = context.find((e) => e.node === node);
  const others = prune(
    context.filter((e) => e.node !== node),
    MAX_CLOCK_ENTRIES - 1,
  );
  return { dot: { node, counter, timestamp }, context: own === undefined ? others : setEntry(others, own), value };
}

/** True when every version in `siblings` is covered by `context`: a conditional put over it is not stale. */
export function contextCoversAll(context: VClock, siblings: readonly Version[]): boolean {
  for (let i = 0; i < siblings.length; i++) if (!covers(context, siblings[i]!)) return false;
  return true;
}

/** The siblings that are not tombstones. */
export function liveSiblings(siblings: readonly Version[]): Version[] {
  return siblings.filter((s) => s.value !== null);
}

/** Bytes a version takes, roughly: its value plus its clock entries (and its proof, when signed). */
export function versionSize(version: Version): number {
  let size = (version.value?.byteLength ?? 0) + (version.proof?.byteLength ?? 0) + 24 + version.dot.node.length;
  const context = version.context;
  for (let i = 0; i < context.length; i++) size += 16 + context[i]!.node.length;
  return size;
}
