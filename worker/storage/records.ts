/**
 * Rules both storage engines apply to what they store: byte ownership, size accounting, the coordinator's next dot
 * counter, what of a hint survives a delivery, when an unchanged key may be removed, paging limits, and how a
 * key's bytes name it in a map. Kept apart from either engine so that memory and IndexedDB cannot drift apart on them.
 */
import { InvalidArgumentError, NotResponsibleError, TooLargeError, TooManySiblingsError } from '../errors.ts';
import type { VClock } from '../versions/vclock.ts';
import { MAX_COUNTER, counterOf } from '../versions/vclock.ts';
import type { KeyBounds } from '../wire/protocol.ts';
import type { Version } from '../versions/version.ts';
import { clockOf, resolve, sameDot, sameSiblings, sameValue, versionSize } from '../versions/version.ts';
import { CounterTakenError } from './storage.ts';

/** A copy of `bytes` that owns exactly its bytes (a view into a larger buffer would drag the buffer along). */
export function ownBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.slice();
}

/**
 * The key's bytes as a string of char codes 0–255. Comparing two such strings with `<` orders them exactly as
 * their bytes compare (UTF-16 code units of these chars are the byte values), which is also IndexedDB's order of
 * binary keys, so both engines scan in the same order.
 */
export function keyId(key: Uint8Array): string {
  // fromCharCode.apply has an argument-count ceiling; keys are small, but stay safe for large ones.
  if (key.length <= 4096) return String.fromCharCode.apply(null, key as unknown as number[]);
  let out = '';
  for (let i = 0; i < key.length; i += 4096) {
    out += String.fromCharCode.apply(null, key.subarray(i, i + 4096) as unknown as number[]);
  }
  return out;
}

/** Running counts of the main store, as an engine keeps them. */
export interface Counts {
  readonly keys: number;
  readonly bytes: number;
}

/**
 * `counts` (and whatever else the record holds) after the key's stored siblings `old`, undefined when the key is
 * absent, are replaced by `siblings`.
 */
export function recount<C extends Counts>(
  counts: C,
  key: Uint8Array,
  old: readonly Version[] | undefined,
  siblings: readonly Version[],
): C {
  return {
    ...counts,
    keys: counts.keys + (old === undefined ? 1 : 0),
    bytes: counts.bytes + storedSize(key, siblings) - (old === undefined ? 0 : storedSize(key, old)),
  };
}

/** Bytes a stored key takes, roughly: its key plus its versions (see {@link versionSize}). */
export function storedSize(key: Uint8Array, siblings: readonly Version[]): number {
  let size = key.byteLength;
  for (let i = 0; i < siblings.length; i++) size += versionSize(siblings[i]!);
  return size;
}

/**
 * The highest counter of `node` that the node knows it issued: its persistent counter, or above it what the key's
 * stored siblings (their dots and the clocks they were written over) hold for the node. The siblings matter only
 * when the counter was lost (a wiped database under a reused node id): a reused dot would be mistaken for an older
 * write, and a dot below a stored sibling's context would be dropped by {@link resolve} as already superseded.
 * A client's context never raises it: a context names versions, it does not issue them.
 */
export function issuedCounter(counter: number, node: string, stored: readonly Version[]): number {
  let top = counter;
  for (let i = 0; i < stored.length; i++) top = Math.max(top, counterOf(clockOf(stored[i]!), node));
  return top;
}

/**
 * The counter a coordinator's new dot takes: one above {@link issuedCounter}. Refuses (`ERR_NOT_RESPONSIBLE`,
 * nothing written, so that another owner coordinates the put) to draw {@link MAX_COUNTER}: only versions that peers
 * made up, or a counter poisoned by an older release, could bring a node's counter there.
 */
export function nextCounter(counter: number, node: string, stored: readonly Version[]): number {
  const next = issuedCounter(counter, node, stored) + 1;
  if (next >= MAX_COUNTER) {
    throw new NotResponsibleError(
      `node ${node} cannot draw dot counter ${next}: a stored version names a counter of this node near ` +
        `MAX_COUNTER (2^48) that it never issued`,
    );
  }
  return next;
}

/**
 * The counter a local write's dot takes: `drawn` when the writer drew it before (see `LocalWrite.counter`), refused
 * with a {@link CounterTakenError} when the key's stored siblings already name it; else {@link nextCounter}.
 */
export function writeCounter(
  counter: number,
  node: string,
  stored: readonly Version[],
  drawn: number | undefined,
): number {
  if (drawn === undefined) return nextCounter(counter, node, stored);
  const named = issuedCounter(0, node, stored);
  if (named >= drawn) throw new CounterTakenError(named);
  return drawn;
}

/** The counter {@link Storage.drawCounter} draws after `issued`: above `above` too, and below {@link MAX_COUNTER}. */
export function drawnCounter(issued: number, node: string, above: number): number {
  return nextCounter(Math.max(issued, above), node, []);
}

/**
 * Refuses a local write whose context names a version of the writing node itself that the node never issued
 * (above {@link issuedCounter}): a forged or corrupted context, which would let the new version supersede the
 * node's own later writes.
 */
export function checkOwnEntry(context: VClock, node: string, issued: number): void {
  const claimed = counterOf(context, node);
  if (claimed > issued) {
    throw new InvalidArgumentError(
      `invalid context: it names version ${claimed} of node ${node}, which has issued only ${issued}; ` +
        'use the context of a read of this key',
    );
  }
}

/**
 * Refuses a local write that would leave the key over one of `bounds`: `siblings` is what the write leaves
 * (`resolve(stored, [version])`). A write that leaves no more siblings and no more bytes than were stored is
 * always accepted, so that a put with a context can shrink a set that merges of concurrent writes took past a bound.
 */
export function checkBounds(
  key: Uint8Array,
  stored: readonly Version[],
  siblings: readonly Version[],
  bounds: KeyBounds | undefined,
): void {
  if (bounds === undefined) return;
  if (siblings.length > bounds.maxSiblings && siblings.length > stored.length) {
    throw new TooManySiblingsError(siblings.length, bounds.maxSiblings);
  }
  const size = storedSize(key, siblings);
  if (size > bounds.maxSiblingSetBytes && size > storedSize(key, stored)) {
    throw new TooLargeError(
      "the key's sibling set after this put",
      size,
      bounds.maxSiblingSetBytes,
      '(maxSiblingSetBytes); nothing was stored: read the key and put with the context of that read, which ' +
        'resolves its siblings',
    );
  }
}

/**
 * The versions of a hint that survive delivery of `delivered`: those that {@link resolve} would still add to the
 * delivered set, that is, neither delivered nor superseded by a delivered version.
 */
export function undelivered(stored: readonly Version[], delivered: readonly Version[]): Version[] {
  return stored.filter((s) => resolve(delivered, [s]).changed);
}

/**
 * What `Storage.deleteIfUnchanged` does with a key: `absent` when nothing is stored (reported as gone, since
 * nothing is left to release), `remove` when the stored siblings are the same writes as `expected` with the same
 * contents, `keep` when any version was added or superseded since `expected` was read, or when a sibling's value is
 * not the one named. Honest nodes never give one dot two values; the contents are compared all the same, so that a
 * peer naming a live version's dot with a tombstone (or any other value) cannot have it removed.
 */
export function removal(
  stored: readonly Version[] | undefined,
  expected: readonly Version[],
): 'absent' | 'remove' | 'keep' {
  if (stored === undefined) return 'absent';
  if (!sameSiblings(stored, expected)) return 'keep';
  for (const v of stored) {
    const named = expected.find((e) => sameDot(e, v))!;
    if (!sameValue(v.value, named.value)) return 'keep';
  }
  return 'remove';
}

/** A limit as a count to take: absent means all; zero or less means none. */
export function takeCount(limit: number | undefined): number {
  if (limit === undefined) return Infinity;
  return limit > 0 ? Math.floor(limit) : 0;
}
