/**
 * The storage contract every engine keeps (memory, IndexedDB). Keys are bytes; each key belongs to one ring
 * partition, stored beside it so that a partition can be scanned for transfer and repair. Every method that writes
 * does its read, its {@link resolve} and its write in one transaction.
 */
import type { VClock } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';
import type { KeyBounds } from '../wire/protocol.ts';

/** How hard a write tries to reach the disk before it is acknowledged. */
export type Durability = 'relaxed' | 'strict';

/** Options of a write. */
export interface WriteOptions {
  /** `strict` waits for the write to reach the disk; `relaxed` lets the engine batch. @default 'relaxed' */
  readonly durability?: Durability;
}

/** Options of {@link Storage.apply}. */
export interface ApplyOptions extends WriteOptions {
  /**
   * The version among those applied that its own coordinator just issued and shipped itself (a `replicate` marked
   * `fresh` by the dot's node): a stored version under the same dot that is not this one was made up, and is replaced
   * (see `resolveFresh` in version.ts). Taken as fresh only when its counter is above that of every fresh version of
   * its node taken before; the highest is stored with the write, in the same transaction (fresh-tops.ts). Otherwise
   * the versions merge as they would without it.
   */
  readonly fresh?: Version;
}

/** Options of {@link Storage.write}. */
export interface LocalWriteOptions extends WriteOptions {
  /**
   * Called before the write commits, with what it will have written once it commits, so that the coordinator can
   * ship the new version to the other replicas meanwhile (pipelining). An engine calls it at most once, and only
   * when the new dot's counter is already durably drawn (a crash before the commit never lets the node issue it
   * again); it may not call it at all. Errors it throws are ignored.
   */
  readonly onComputed?: (result: LocalWriteResult) => void;
}

/** A key with its siblings, as stored. */
export interface StoredKey {
  readonly key: Uint8Array;
  readonly partition: number;
  readonly siblings: Version[];
}

/** The result of merging versions into a key. */
export interface ApplyResult {
  /** The key's siblings after the merge. */
  readonly siblings: Version[];
  /** True when the merge changed what is stored. */
  readonly changed: boolean;
}

/** One key of {@link Storage.applyMany}: the versions to merge into it. */
export interface ApplyEntry {
  readonly key: Uint8Array;
  readonly versions: readonly Version[];
}

/** A coordinator's local write: the engine draws the dot's counter in the same transaction. */
export interface LocalWrite {
  /** The coordinating node, owner of the new dot. */
  readonly node: string;
  /** Wall-clock milliseconds for the dot. */
  readonly timestamp: number;
  /** The clock the client read. */
  readonly context: VClock;
  /** The encoded value, or null for a delete. */
  readonly value: Uint8Array | null;
  /** When true the write fails with `ERR_STALE_CONTEXT` unless `context` covers every stored sibling. */
  readonly ifMatch: boolean;
  /**
   * What the write may leave of the key (see `checkBounds` in records.ts); absent, nothing is checked. A write that
   * would cross a bound fails with `ERR_TOO_MANY_SIBLINGS` or `ERR_TOO_LARGE`, unless it leaves no more siblings
   * and no more bytes than were stored.
   */
  readonly bounds?: KeyBounds;
  /**
   * The dot's counter, drawn before the write by {@link Storage.drawCounter} (a node that signs its versions signs
   * the version before it writes it); absent, the write draws it itself. When a stored sibling already names this
   * node's counter at or above it, the write fails with a {@link CounterTakenError} and stores nothing.
   */
  readonly counter?: number;
  /** The new version's proof (see proof.ts), over the version the write makes with `counter`. */
  readonly proof?: Uint8Array;
}

/**
 * A local write's drawn counter (`LocalWrite.counter`) is already named by a stored sibling (after a counter was
 * lost, or under versions others made up): the writer draws again above `highest`. Never reaches a client.
 */
export class CounterTakenError extends Error {
  readonly highest: number;

  constructor(highest: number) {
    super(`the key already names counter ${highest} of this node`);
    this.name = 'CounterTakenError';
    this.highest = highest;
  }
}

/** The result of a local write. */
export interface LocalWriteResult {
  /** The version the write created. */
  readonly version: Version;
  /** The key's siblings after the write, the new version among them. */
  readonly siblings: Version[];
}

/** Versions a fallback node holds for an owner it stood in for (sloppy quorum). */
export interface Hint {
  /** The node the versions are meant for. */
  readonly target: string;
  readonly key: Uint8Array;
  readonly partition: number;
  readonly siblings: Version[];
}

/** Counts of what an engine holds. */
export interface StorageStats {
  /** Keys in the main store, tombstones included. */
  readonly keys: number;
  /** Bytes of keys and versions in the main store, approximately. */
  readonly bytes: number;
  /** Hint records held for other nodes. */
  readonly hints: number;
}

/** The storage contract. Engines: {@link MemoryStorage}, {@link IndexedDbStorage}. */
export interface Storage {
  /** The key's siblings in the main store, tombstones included; empty when absent. */
  get(key: Uint8Array): Promise<Version[]>;
  /** Merges `versions` into the key in one transaction (see {@link resolve}, and `resolveFresh` for `fresh`). */
  apply(key: Uint8Array, partition: number, versions: readonly Version[], options?: ApplyOptions): Promise<ApplyResult>;
  /**
   * Merges each entry into its key of `partition` exactly as {@link Storage.apply} would, in entry order (a key
   * listed twice sees its earlier entry's merge), all in one transaction: a page of partition sync then holds up
   * foreground writes once rather than once per key. Answers one result per entry, in entry order; no entries, no
   * results.
   */
  applyMany(partition: number, entries: readonly ApplyEntry[], options?: WriteOptions): Promise<ApplyResult[]>;
  /**
   * Writes a new version as coordinator: checks `ifMatch`, checks that the context names no version of this node
   * above the counter it issued, draws the next value of this node's counter (persistent, never reused, raised only
   * by this node's own writes), merges the version into the key and checks `bounds`, all in one transaction. Writes
   * nothing and draws no counter when a check fails: `ERR_STALE_CONTEXT` (ifMatch), `ERR_INVALID_ARGUMENT` (the
   * context names a future version of this node), `ERR_TOO_MANY_SIBLINGS` or `ERR_TOO_LARGE` (bounds).
   */
  write(key: Uint8Array, partition: number, write: LocalWrite, options?: LocalWriteOptions): Promise<LocalWriteResult>;
  /**
   * Draws this node's next dot counter, above `above` too, for a {@link LocalWrite.counter} (persistent and never
   * reused, as a counter {@link Storage.write} draws: its reservation is made durable by the write that uses it). A
   * counter drawn for a write that then fails is skipped.
   */
  drawCounter(above?: number): Promise<number>;
  /** Keys of `partition` in key order, after `after` when given, at most `limit`. */
  scanPartition(partition: number, options?: { after?: Uint8Array; limit?: number }): Promise<StoredKey[]>;
  /** Merges `siblings` into the hint for (`target`, `key`) in one transaction. */
  putHint(hint: Hint, options?: WriteOptions): Promise<void>;
  /** Every hint held for `key`, whatever its target. */
  hintsFor(key: Uint8Array): Promise<Hint[]>;
  /** Hints in (target, key) order, only `target`'s when given, at most `limit`. */
  listHints(options?: { target?: string; limit?: number }): Promise<Hint[]>;
  /** Every node some hint is held for, ascending, without reading a hint. */
  hintTargets(): Promise<string[]>;
  /** How many hints are held for `target`, without reading them. */
  hintCount(target: string): Promise<number>;
  /**
   * Removes the hint for (`target`, `key`) when `delivered` holds or supersedes every version in it. A hint that
   * gained versions since delivery began is kept whole, never trimmed: reads merge hints in, and a hint holding a
   * coordinator's later dot without its earlier one would let a read's context claim a write it never saw.
   * Returns true when the hint is gone.
   */
  deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean>;
  /**
   * Removes `key` from the main store when its stored siblings are exactly `siblings` (the same dots), in one
   * transaction; a key that changed since `siblings` was read is kept. Used to release a partition after its new
   * owners confirmed it, and to collect tombstones. Returns true when the key is gone, including when it was not stored.
   */
  deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean>;
  /** The partitions with at least one key in the main store, ascending. */
  partitionsWithData(): Promise<number[]>;
  /**
   * A small named record of the node's own bookkeeping (partitions held, last time active), or undefined. Values
   * are structured-clone data (numbers, strings, arrays, plain objects).
   */
  getMeta(name: string): Promise<unknown>;
  /** Stores a named bookkeeping record durably (see {@link Storage.getMeta}). */
  putMeta(name: string, value: unknown): Promise<void>;
  /** Counts of keys, bytes and hints. */
  stats(): Promise<StorageStats>;
  /** Releases the engine; later calls fail with `ERR_CLOSED`. Idempotent. */
  close(): Promise<void>;
}
