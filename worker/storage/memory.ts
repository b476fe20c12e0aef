/**
 * The in-memory storage engine: the reference engine of the contract and the one the deterministic simulation runs,
 * so it is synchronous underneath (every method settles in the microtask after the call) and cheap per operation.
 * It shares nothing a caller could mutate: stored versions are frozen copies, and byte arrays are copied on the way
 * in and on the way out (a Uint8Array cannot be frozen).
 */
import { type FreshRecord, FreshTops, freshTaken } from './fresh-tops.ts';
import { ClosedError, StaleContextError, StorageError } from '../errors.ts';
import type { VClock } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';
import { contextCoversAll, createVersion, resolve, resolveFresh } from '../versions/version.ts';
import {
  checkBounds,
  checkOwnEntry,
  issuedCounter,
  keyId,
  drawnCounter,
  writeCounter,
  ownBytes,
  removal,
  storedSize,
  takeCount,
  undelivered,
} from './records.ts';
import type {
  ApplyOptions,
  ApplyEntry,
  ApplyResult,
  Hint,
  LocalWrite,
  LocalWriteOptions,
  LocalWriteResult,
  Storage,
  StorageStats,
  StoredKey,
  WriteOptions,
} from './storage.ts';

/** Re-exported for callers that name keys as this engine does. */
export { keyId };

function freezeClock(clock: VClock): VClock {
  return Object.freeze(clock.map((e) => Object.freeze({ node: e.node, counter: e.counter, timestamp: e.timestamp })));
}

/** A frozen deep copy: the engine's own version, which no caller can reach. */
function ownVersion(v: Version): Version {
  const dot = Object.freeze({ node: v.dot.node, counter: v.dot.counter, timestamp: v.dot.timestamp });
  const value = v.value === null ? null : ownBytes(v.value);
  if (v.proof === undefined) return Object.freeze({ dot, context: freezeClock(v.context), value });
  return Object.freeze({ dot, context: freezeClock(v.context), value, proof: ownBytes(v.proof) });
}

/** What a caller gets: the frozen dot and context shared, the value copied since bytes cannot be frozen. */
function exportVersion(v: Version): Version {
  const value = v.value === null ? null : v.value.slice();
  return v.proof === undefined
    ? { dot: v.dot, context: v.context, value }
    : { dot: v.dot, context: v.context, value, proof: v.proof.slice() };
}

function exportAll(siblings: readonly Version[]): Version[] {
  const out: Version[] = [];
  for (let i = 0; i < siblings.length; i++) out.push(exportVersion(siblings[i]!));
  return out;
}

/**
 * What {@link MemoryStorage.apply} answers: the siblings are exported (their values copied) only when read, since
 * replicas apply far more often than anyone looks at the result. The stored array is never changed in place, so a
 * late read sees the siblings as they were after this merge.
 */
class Applied implements ApplyResult {
  readonly changed: boolean;
  readonly #stored: readonly Version[];
  #exported: Version[] | undefined;

  constructor(stored: readonly Version[], changed: boolean) {
    this.#stored = stored;
    this.changed = changed;
  }

  get siblings(): Version[] {
    return (this.#exported ??= exportAll(this.#stored));
  }
}

/** Merges `incoming` into `stored` with {@link resolve}, owning a copy of only the incoming versions it keeps. */
function merged(
  stored: readonly Version[],
  incoming: readonly Version[],
  fresh?: Version,
): { siblings: Version[]; changed: boolean } {
  const { siblings, changed } = resolveFresh(stored, incoming, fresh);
  if (!changed) return { siblings, changed };
  return { siblings: siblings.map((v) => (stored.includes(v) ? v : ownVersion(v))), changed };
}

interface KeySlot {
  readonly key: Uint8Array;
  readonly partition: number;
  readonly siblings: readonly Version[];
  readonly size: number;
}

interface HintSlot {
  readonly key: Uint8Array;
  readonly partition: number;
  readonly siblings: readonly Version[];
}

interface PartitionIndex {
  readonly ids: Set<string>;
  /** The ids in key order; null until a scan needs it, and again whenever a key joins. */
  sorted: string[] | null;
}

/**
 * One change to what a memory storage holds, reported as it is made (see {@link MemoryStorage.restore}): an engine
 * that keeps its data in memory and on disk (level.ts) writes these records down. `siblings` null means removed.
 * What a change carries is the engine's own frozen data: read it, never change it.
 */
export type MemoryChange =
  | {
      readonly kind: 'key';
      readonly key: Uint8Array;
      readonly partition: number;
      readonly siblings: readonly Version[] | null;
    }
  | {
      readonly kind: 'hint';
      readonly target: string;
      readonly key: Uint8Array;
      readonly partition: number;
      readonly siblings: readonly Version[] | null;
    }
  | { readonly kind: 'meta'; readonly name: string; readonly value: unknown }
  | { readonly kind: 'counter'; readonly counter: number }
  | { readonly kind: 'fresh'; readonly node: string; readonly record: FreshRecord };

/** What {@link MemoryStorage.restore} starts from: the records a journal of {@link MemoryChange}s wrote down. */
export interface MemorySnapshot {
  readonly keys: Iterable<StoredKey>;
  readonly hints: Iterable<Hint>;
  readonly meta: Iterable<readonly [name: string, value: unknown]>;
  /** The highest dot counter this node may have issued. */
  readonly counter: number;
  readonly fresh: Iterable<readonly [node: string, record: FreshRecord]>;
}

/** The data behind every handle on one memory storage: what a database is to its connections. */
class MemoryData {
  readonly keys = new Map<string, KeySlot>();
  readonly partitions = new Map<number, PartitionIndex>();
  /** target → key id → hint. */
  readonly hints = new Map<string, Map<string, HintSlot>>();
  /**
   * key id → target → hint: the same hints by key, for reads, each of which asks for its key's hints. While nodes are
   * down a store holds hints for most of them, and a walk over every target per read cost more than the read.
   */
  readonly hintsByKey = new Map<string, Map<string, HintSlot>>();
  /**
   * The targets in order, and each target's key ids in order, for listings; null until a listing needs them, and
   * again whenever one joins or leaves. Handoff lists every target's hints every round, mostly unchanged since.
   */
  hintTargets: string[] | null = null;
  readonly hintIds = new Map<string, string[]>();
  /** Named bookkeeping records, each a structured clone no caller holds. */
  readonly meta = new Map<string, unknown>();
  /** The highest fresh counter taken from each node. */
  fresh = new FreshTops();
  /** Told every change, as it is made (see {@link MemoryChange}). */
  journal: ((change: MemoryChange) => void) | undefined;
  hintCount = 0;
  bytes = 0;
  counter = 0;

  place(id: string, partition: number): void {
    let index = this.partitions.get(partition);
    if (index === undefined) {
      index = { ids: new Set(), sorted: null };
      this.partitions.set(partition, index);
    }
    index.ids.add(id);
    index.sorted = null;
  }

  unplace(id: string, partition: number): void {
    const index = this.partitions.get(partition);
    if (index === undefined) return;
    index.ids.delete(id);
    index.sorted = null;
    if (index.ids.size === 0) this.partitions.delete(partition);
  }

  store(id: string, key: Uint8Array, partition: number, siblings: readonly Version[]): void {
    const old = this.keys.get(id);
    const size = storedSize(key, siblings);
    if (old === undefined) this.place(id, partition);
    else if (old.partition !== partition) {
      this.unplace(id, old.partition);
      this.place(id, partition);
    }
    this.bytes += size - (old?.size ?? 0);
    const slot = { key: old?.key ?? ownBytes(key), partition, siblings, size };
    this.keys.set(id, slot);
    this.journal?.({ kind: 'key', key: slot.key, partition, siblings });
  }

  remove(id: string, slot: KeySlot): void {
    this.keys.delete(id);
    this.unplace(id, slot.partition);
    this.bytes -= slot.size;
    this.journal?.({ kind: 'key', key: slot.key, partition: slot.partition, siblings: null });
  }

  setCounter(counter: number): void {
    if (counter === this.counter) return;
    this.counter = counter;
    this.journal?.({ kind: 'counter', counter });
  }

  setFresh(node: string, record: FreshRecord): void {
    this.fresh.set(node, record);
    this.journal?.({ kind: 'fresh', node, record });
  }

  setHint(target: string, id: string, slot: HintSlot): void {
    let byKey = this.hints.get(target);
    if (byKey === undefined) {
      byKey = new Map();
      this.hints.set(target, byKey);
      this.hintTargets = null;
    }
    if (!byKey.has(id)) {
      this.hintCount++;
      this.hintIds.delete(target);
    }
    byKey.set(id, slot);
    let targets = this.hintsByKey.get(id);
    if (targets === undefined) this.hintsByKey.set(id, (targets = new Map()));
    targets.set(target, slot);
    this.journal?.({ kind: 'hint', target, key: slot.key, partition: slot.partition, siblings: slot.siblings });
  }
}

/** What `Storage.apply` does to one key of `data`. */
function applyTo(
  data: MemoryData,
  key: Uint8Array,
  partition: number,
  versions: readonly Version[],
  fresh?: Version,
): Applied {
  const id = keyId(key);
  const taken = freshTaken(fresh, (node) => data.fresh.top(node));
  const { siblings, changed } = merged(data.keys.get(id)?.siblings ?? NONE, versions, taken);
  if (changed) data.store(id, key, partition, siblings);
  if (taken !== undefined) data.setFresh(taken.dot.node, data.fresh.next(taken.dot.counter));
  return new Applied(siblings, changed);
}

/** A structured clone of `value`; a value that cannot be cloned fails as IndexedDB would, with `ERR_STORAGE`. */
function cloneMeta(value: unknown, what: string, keepFrozen: boolean): unknown {
  // A primitive that structured clone accepts is its own clone; a call of structuredClone costs microseconds.
  if (isPlainPrimitive(value)) return value;
  try {
    const copy = plainCopy(value, new Set(), 0, keepFrozen);
    return copy !== NOT_PLAIN ? copy : structuredClone(value);
  } catch (error) {
    const e = error as { name?: unknown; message?: unknown } | null;
    throw new StorageError(`${what} failed (${String(e?.name)}: ${String(e?.message)})`, { cause: error });
  }
}

/** What {@link plainCopy} answers for a value that is not plain data. */
const NOT_PLAIN: unique symbol = Symbol('not plain data');

/** Most levels of arrays and objects {@link plainCopy} copies by hand before it leaves the value to structuredClone. */
const PLAIN_DEPTH = 64;

/**
 * The structured clone of `value` made by hand when it is plain data: primitives, and arrays (dense, with no other
 * properties) and objects (of the plain `Object` prototype) holding plain data, each reached once. Anything else (a
 * class instance, a Map, bytes, a hole, a reference met twice) is NOT_PLAIN, for structuredClone to copy or refuse.
 * Bookkeeping records are plain data, and in Node 20 a call of structuredClone passes the value through a
 * MessageChannel: some 50 µs, where copying a record by hand takes a few.
 */
function plainCopy(value: unknown, seen: Set<object>, depth: number, keepFrozen: boolean): unknown {
  if (isPlainPrimitive(value)) return value;
  if (typeof value !== 'object' || value === null || depth === PLAIN_DEPTH || seen.has(value)) return NOT_PLAIN;
  if (keepFrozen && Object.isFrozen(value) && frozenPlain(value, depth)) return value;
  seen.add(value);
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype === Array.prototype && Array.isArray(value)) {
    const items = value as unknown[];
    if (Object.keys(items).length !== items.length) return NOT_PLAIN;
    const out: unknown[] = [];
    for (let i = 0; i < items.length; i++) {
      if (!Object.hasOwn(items, i)) return NOT_PLAIN;
      const item = plainCopy(items[i], seen, depth + 1, keepFrozen);
      if (item === NOT_PLAIN) return NOT_PLAIN;
      out.push(item);
    }
    return out;
  }
  if (prototype !== Object.prototype) return NOT_PLAIN;
  const fields = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(fields)) {
    // Assigned, `__proto__` would set the copy's prototype instead of making a field.
    if (name === '__proto__') return NOT_PLAIN;
    const field = plainCopy(fields[name], seen, depth + 1, keepFrozen);
    if (field === NOT_PLAIN) return NOT_PLAIN;
    out[name] = field;
  }
  return out;
}

/**
 * True when `value` is plain data (as {@link plainCopy} takes it) frozen all the way down, within the depth
 * {@link plainCopy} copies: a ring's members, stored with the ring history after every view change.
 */
function frozenPlain(value: unknown, depth: number): boolean {
  if (isPlainPrimitive(value)) return true;
  if (typeof value !== 'object' || value === null || depth === PLAIN_DEPTH || !Object.isFrozen(value)) return false;
  if (frozenSeen.has(value)) return true;
  if (!frozenParts(value, depth)) return false;
  // Frozen for good, and so is all it holds: one check serves every later store (each node of a simulation stores
  // the same ring's members after a view change).
  frozenSeen.add(value);
  return true;
}

/** Values found plain and frozen all the way down: nothing can change that afterwards. */
const frozenSeen = new WeakSet<object>();

/** True when what the frozen `value` holds is plain and frozen all the way down. */
function frozenParts(value: object, depth: number): boolean {
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype === Array.prototype && Array.isArray(value)) {
    const items = value as unknown[];
    for (let i = 0; i < items.length; i++) {
      if (!Object.hasOwn(items, i) || !frozenPlain(items[i], depth + 1)) return false;
    }
    return true;
  }
  if (prototype !== Object.prototype) return false;
  const fields = value as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (name === '__proto__' || !frozenPlain(fields[name], depth + 1)) return false;
  }
  return true;
}

/** True for null, undefined, a boolean, a number or a string: values structuredClone returns as they are. */
function isPlainPrimitive(value: unknown): boolean {
  const type = typeof value;
  return value === null || type === 'undefined' || type === 'boolean' || type === 'number' || type === 'string';
}

function upperBound(sorted: readonly string[], id: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const NONE: readonly Version[] = Object.freeze([]);

/**
 * Storage in plain maps, for the simulation and for tests. `durability` is accepted and has no effect: nothing
 * here outlives the process. {@link MemoryStorage.reopen} gives a fresh handle on the same data, as reopening a
 * database by name would, so that a simulated node can restart with what it stored.
 */
export class MemoryStorage implements Storage {
  #data = new MemoryData();
  #closed = false;

  /**
   * A storage holding what `snapshot` holds, which then tells `journal` every change it makes, synchronously and
   * before the call that makes it settles: an engine that persists what a memory storage holds (level.ts) loads its
   * records back with this, and writes down each change.
   */
  static restore(snapshot: MemorySnapshot, journal: (change: MemoryChange) => void): MemoryStorage {
    const handle = new MemoryStorage();
    const data = handle.#data;
    for (const { key, partition, siblings } of snapshot.keys) {
      data.store(keyId(key), key, partition, siblings.map(ownVersion));
    }
    for (const { target, key, partition, siblings } of snapshot.hints) {
      data.setHint(target, keyId(key), { key: ownBytes(key), partition, siblings: siblings.map(ownVersion) });
    }
    for (const [name, value] of snapshot.meta) data.meta.set(name, cloneMeta(value, 'restore', false));
    data.counter = snapshot.counter;
    data.fresh = FreshTops.from(snapshot.fresh);
    data.journal = journal;
    return handle;
  }

  /** A new open handle on this storage's data, whether or not this handle is closed. */
  reopen(): MemoryStorage {
    const handle = new MemoryStorage();
    handle.#data = this.#data;
    return handle;
  }

  #open(): MemoryData {
    if (this.#closed) throw new ClosedError('the storage is closed');
    return this.#data;
  }

  async get(key: Uint8Array): Promise<Version[]> {
    const slot = this.#open().keys.get(keyId(key));
    return slot === undefined ? [] : exportAll(slot.siblings);
  }

  async apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    return applyTo(this.#open(), key, partition, versions, options?.fresh);
  }

  /** One transaction by construction: nothing else runs between the entries of a synchronous loop. */
  async applyMany(partition: number, entries: readonly ApplyEntry[], _options?: WriteOptions): Promise<ApplyResult[]> {
    const data = this.#open();
    const out: ApplyResult[] = [];
    for (let i = 0; i < entries.length; i++) out.push(applyTo(data, entries[i]!.key, partition, entries[i]!.versions));
    return out;
  }

  async write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: LocalWriteOptions,
  ): Promise<LocalWriteResult> {
    const data = this.#open();
    const id = keyId(key);
    const stored = data.keys.get(id)?.siblings ?? NONE;
    if (write.ifMatch && !contextCoversAll(write.context, stored)) {
      throw new StaleContextError('the context does not cover every stored version of the key');
    }
    checkOwnEntry(write.context, write.node, issuedCounter(data.counter, write.node, stored));
    const counter = writeCounter(data.counter, write.node, stored, write.counter);
    const made = createVersion(write.node, counter, write.timestamp, write.context, write.value);
    const version = ownVersion(write.proof === undefined ? made : { ...made, proof: write.proof });
    const { siblings } = resolve(stored, [version]);
    checkBounds(key, stored, siblings, write.bounds);
    data.setCounter(Math.max(data.counter, counter));
    data.store(id, key, partition, siblings);
    const result = { version: exportVersion(version), siblings: exportAll(siblings) };
    // Shown before it resolves, as the IndexedDB engine shows a write before its commit, so that the coordinator's
    // pipelined path runs here too (in the simulation).
    try {
      options?.onComputed?.({ version: exportVersion(version), siblings: exportAll(siblings) });
    } catch {
      // The caller's own business (see LocalWriteOptions.onComputed).
    }
    return result;
  }

  async drawCounter(above = 0): Promise<number> {
    const data = this.#open();
    data.setCounter(drawnCounter(data.counter, '', above));
    return data.counter;
  }

  async scanPartition(partition: number, options: { after?: Uint8Array; limit?: number } = {}): Promise<StoredKey[]> {
    const data = this.#open();
    const take = takeCount(options.limit);
    const index = data.partitions.get(partition);
    if (index === undefined || take === 0) return [];
    const sorted = (index.sorted ??= [...index.ids].sort());
    const start = options.after === undefined ? 0 : upperBound(sorted, keyId(options.after));
    const out: StoredKey[] = [];
    for (let i = start; i < sorted.length && out.length < take; i++) {
      const slot = data.keys.get(sorted[i]!)!;
      out.push({ key: slot.key.slice(), partition: slot.partition, siblings: exportAll(slot.siblings) });
    }
    return out;
  }

  async putHint(hint: Hint, _options?: WriteOptions): Promise<void> {
    const data = this.#open();
    const id = keyId(hint.key);
    const old = data.hints.get(hint.target)?.get(id);
    const { siblings, changed } = merged(old?.siblings ?? NONE, hint.siblings);
    if (!changed) return;
    data.setHint(hint.target, id, { key: old?.key ?? ownBytes(hint.key), partition: hint.partition, siblings });
  }

  async hintsFor(key: Uint8Array): Promise<Hint[]> {
    const data = this.#open();
    // Every read asks, and hints are rare: no key id unless some are held.
    if (data.hintCount === 0) return [];
    const targets = data.hintsByKey.get(keyId(key));
    if (targets === undefined) return [];
    const out: Hint[] = [];
    for (const [target, slot] of targets) out.push(exportHint(target, slot));
    return out.length < 2 ? out : out.sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  }

  async listHints(options: { target?: string; limit?: number } = {}): Promise<Hint[]> {
    const data = this.#open();
    const take = takeCount(options.limit);
    if (data.hintCount === 0) return [];
    const targets =
      options.target === undefined ? (data.hintTargets ??= [...data.hints.keys()].sort()) : [options.target];
    const out: Hint[] = [];
    for (const target of targets) {
      const byKey = data.hints.get(target);
      if (byKey === undefined) continue;
      let ids = data.hintIds.get(target);
      if (ids === undefined) data.hintIds.set(target, (ids = [...byKey.keys()].sort()));
      for (const id of ids) {
        if (out.length >= take) return out;
        out.push(exportHint(target, byKey.get(id)!));
      }
    }
    return out;
  }

  async hintCount(target: string): Promise<number> {
    return this.#open().hints.get(target)?.size ?? 0;
  }

  async hintTargets(): Promise<string[]> {
    const data = this.#open();
    return [...(data.hintTargets ??= [...data.hints.keys()].sort())];
  }

  async deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    const data = this.#open();
    const id = keyId(key);
    const byKey = data.hints.get(target);
    const slot = byKey?.get(id);
    if (byKey === undefined || slot === undefined) return true;
    if (undelivered(slot.siblings, delivered).length > 0) return false;
    byKey.delete(id);
    const targets = data.hintsByKey.get(id)!;
    targets.delete(target);
    if (targets.size === 0) data.hintsByKey.delete(id);
    data.hintIds.delete(target);
    if (byKey.size === 0) {
      data.hints.delete(target);
      data.hintTargets = null;
    }
    data.hintCount--;
    data.journal?.({ kind: 'hint', target, key: slot.key, partition: slot.partition, siblings: null });
    return true;
  }

  /** Reports an absent key as gone (true): nothing of it is left to release. */
  async deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    const data = this.#open();
    const id = keyId(key);
    const slot = data.keys.get(id);
    const outcome = removal(slot?.siblings, siblings);
    if (outcome === 'keep') return false;
    if (outcome === 'remove') data.remove(id, slot!);
    return true;
  }

  async partitionsWithData(): Promise<number[]> {
    // A partition leaves the index with its last key, so every one listed holds data.
    return [...this.#open().partitions.keys()].sort((a, b) => a - b);
  }

  async getMeta(name: string): Promise<unknown> {
    const data = this.#open();
    // Cloned on the way out too, so that a caller changing what it read cannot change what is stored.
    return data.meta.has(name) ? cloneMeta(data.meta.get(name), 'getMeta', false) : undefined;
  }

  async putMeta(name: string, value: unknown): Promise<void> {
    const data = this.#open();
    // What is frozen all the way down nobody can change: it is kept as it is, a copy only on the way out.
    const copy = cloneMeta(value, 'putMeta', true);
    data.meta.set(name, copy);
    data.journal?.({ kind: 'meta', name, value: copy });
  }

  async stats(): Promise<StorageStats> {
    const data = this.#open();
    return { keys: data.keys.size, bytes: data.bytes, hints: data.hintCount };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

function exportHint(target: string, slot: HintSlot): Hint {
  return { target, key: slot.key.slice(), partition: slot.partition, siblings: exportAll(slot.siblings) };
}
