/**
 * The IndexedDB storage engine, for a node running in a browser (normally inside its dedicated worker). One
 * database per node, named by the caller after cluster and node id. Writes are group-committed: those made while a
 * transaction is in flight share the next one, which reads every record they need at once, merges each write with
 * {@link resolve} in order, and writes the result, so that concurrent writes to a key never lose a version and a
 * burst of writes costs one commit per batch rather than one per write.
 *
 * A batch's keys are not written to the `keys` store one request each but logged, all of them in one record of the
 * `log` store (write-ahead log): IndexedDB's cost is per request, not per byte, and a burst of writes then costs a
 * few requests per batch. What is logged stays in memory ({@link WalOverlay}) and answers reads and scans before the
 * `keys` store does, until compaction copies it into `keys`, a page per transaction, when writes of keys pause (or,
 * under a long run of writes, between batches while the log is over one of its bounds: {@link OVERLAY_LIMIT} keys,
 * {@link MAX_LOG_RECORDS} records, {@link MAX_LOG_BYTES} bytes), and deletes the log records it covered in the same
 * transaction. Opening the database replays the log.
 *
 * Stores: `keys` (key path `key`, binary, so IndexedDB orders keys by their bytes; index `partition` on
 * [partition, key] for scans), `log` (out-of-line integer keys, ascending, a record the bytes wal-codec.ts encodes),
 * `hints` (key path [target, key]; index `key`), `meta` (the engine's own record, `state`: the node's dot counter and
 * the running counts that {@link IndexedDbStorage.stats} reports, kept in the same transactions as the writes they
 * count so they never drift; beside it the caller's named records of {@link IndexedDbStorage.putMeta}, under
 * prefixed keys so that no name can overwrite `state`).
 */
import { openDB, unwrap } from 'idb';
import { type FreshRecord, FreshTops, freshTaken } from './fresh-tops.ts';
import { KeyFilter } from './key-filter.ts';
import { WalOverlay } from './wal-overlay.ts';
import type { LoggedKey } from './wal-overlay.ts';
import { WalWriter, decodeWalEntry, walStarts } from './wal-codec.ts';
import type { WalEntry } from './wal-codec.ts';
import type { DBSchema, IDBPDatabase, IDBPTransaction } from 'idb';
import { ClosedError, DynameshError, StaleContextError, StorageError } from '../errors.ts';
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
  recount,
  removal,
  storedSize,
  takeCount,
  undelivered,
} from './records.ts';
import type {
  ApplyOptions,
  ApplyEntry,
  ApplyResult,
  Durability,
  Hint,
  LocalWrite,
  LocalWriteOptions,
  LocalWriteResult,
  Storage,
  StorageStats,
  StoredKey,
  WriteOptions,
} from './storage.ts';
import { CounterTakenError } from './storage.ts';

/** Bytes that own their buffer: what IndexedDB takes as a binary key. */
type Bytes = Uint8Array<ArrayBuffer>;

/** A key cursor over `[first, binary key]` keys, as idb's are for the `hints` store and the partition index. */
interface CompoundKeyCursor<F> {
  readonly key: readonly [F, unknown];
  continue(key: [F, Bytes]): Promise<CompoundKeyCursor<F> | null>;
}

/**
 * The distinct first parts of the keys a cursor walks, ascending, one step each (a skip scan): from a first part's
 * first key it jumps to `[first, []]`, which sorts above every `[first, key]` since arrays sort above binary keys.
 */
async function firstParts<F>(opened: Promise<CompoundKeyCursor<F> | null>): Promise<F[]> {
  const out: F[] = [];
  for (let cursor = await opened; cursor !== null;) {
    const first = cursor.key[0];
    out.push(first);
    cursor = await cursor.continue([first, [] as unknown as Bytes]);
  }
  return out;
}

interface KeyRecord {
  key: Bytes;
  partition: number;
  siblings: Version[];
}

interface HintRecord {
  target: string;
  key: Bytes;
  partition: number;
  siblings: Version[];
}

interface MetaRecord {
  /**
   * The dot counters drawn durably: {@link IndexedDbStorage.write} issues counters up to it, in memory, and raises it
   * by {@link COUNTER_BLOCK} ahead of use; a node that restarts skips the rest of the block and never reuses one.
   */
  counter: number;
  keys: number;
  bytes: number;
}

/** Where a logged key's entry is: its log record's bytes, and the offset of the entry in them. */
interface WalSpan {
  readonly bytes: Uint8Array;
  readonly at: number;
}

interface Schema extends DBSchema {
  keys: { key: Bytes; value: KeyRecord; indexes: { partition: [number, Bytes] } };
  /** What one group commit wrote to the `keys` store, encoded by wal-codec.ts. */
  log: { key: number; value: Uint8Array<ArrayBuffer> };
  hints: { key: [string, Bytes]; value: HintRecord; indexes: { key: Bytes } };
  /**
   * `state` holds a {@link MetaRecord}; keys under {@link FRESH} a {@link FreshRecord} each; keys under {@link NAMED}
   * hold the caller's records, whatever they are.
   */
  meta: { key: string; value: unknown };
}

type StoreName = 'keys' | 'log' | 'hints' | 'meta';
/** The stores of an update of keys: read from `keys`, logged to `log`; `meta` holds the `state` that counts them. */
const KEY_STORES: readonly StoreName[] = ['keys', 'log', 'meta'];

const SCHEMA_VERSION = 2;
const STATE = 'state';
const EMPTY_STATE: MetaRecord = { counter: 0, keys: 0, bytes: 0 };
/**
 * The prefix of the caller's named records in `meta`. The engine's own keys never start with it, so a name (even
 * "state") cannot reach them, and the names need no other rule.
 */
const NAMED = 'named:';
/** The prefix of the records of the highest fresh counter taken from each node, by node id (see fresh-tops.ts). */
const FRESH = 'fresh:';
/** Every key under {@link FRESH} (made when used: the module also loads where IndexedDB is absent). */
function freshRange(): IDBKeyRange {
  return IDBKeyRange.bound(FRESH, `${FRESH}\uffff`);
}
/** The largest count `getAll` accepts (an unsigned long); zero would mean "no limit" to IndexedDB. */
const MAX_COUNT = 2 ** 32 - 1;

/**
 * A plain copy that owns its bytes. Taken when a method is called, not when its transaction gets to the write:
 * the caller may change its arrays in between, and structured clone of a view would store its whole buffer.
 */
function plainVersion(v: Version): Version {
  const plain = {
    dot: { node: v.dot.node, counter: v.dot.counter, timestamp: v.dot.timestamp },
    context: plainClock(v.context),
    value: v.value === null ? null : ownBytes(v.value),
  };
  return v.proof === undefined ? plain : { ...plain, proof: ownBytes(v.proof) };
}

/** The record of a logged key, decoded (so its arrays and bytes are fresh); undefined when it was removed. */
function loggedRecord(logged: LoggedKey<WalSpan>): KeyRecord | undefined {
  if (logged.removed) return undefined;
  const entry = decodeWalEntry(logged.payload.bytes, logged.payload.at);
  return { key: entry.key as Bytes, partition: entry.partition, siblings: entry.siblings as Version[] };
}

function plainClock(clock: VClock): VClock {
  return clock.map((e) => ({ node: e.node, counter: e.counter, timestamp: e.timestamp }));
}

/** Keys read per transaction while the key filter is filled at open. */
const FILL_PAGE = 4096;

/** Dot counters drawn durably at a time, ahead of use (see {@link MetaRecord.counter}). */
const COUNTER_BLOCK = 1024;

/**
 * Whether drawing `counter` raises the durable reservation `reserved`: it runs a block ahead, raised half a block
 * early so that the next batches find theirs durable.
 */
function raisesReservation(counter: number, reserved: number): boolean {
  return counter + COUNTER_BLOCK / 2 > reserved;
}

/** Most updates committed in one transaction. */
const MAX_BATCH = 256;

/**
 * Logged keys past which compaction no longer waits for writes to pause but copies pages between batches until they
 * are back under it: bounds the JS heap the overlay holds (about 220 bytes a key), and lets a burst of a few
 * thousand writes a node be logged whole first.
 */
const OVERLAY_LIMIT = 16_384;
/**
 * Log records, and bytes of them, past which compaction runs between batches too: the overlay keeps each record's
 * bytes while any key of it is current, and the log is replayed whole at open. Without them, writes that keep
 * coming to a few hot keys (few logged keys, a record per commit) would grow the log for as long as they last.
 */
const MAX_LOG_RECORDS = 1024;
const MAX_LOG_BYTES = 32 * 1024 * 1024;
/** How long writes must pause before compaction starts, in ms: a burst is logged whole, then compacted. */
const COMPACT_IDLE_MS = 200;
/** Keys compacted per transaction while writes pause; between batches of a long run, {@link COMPACT_BUSY_PAGE}. */
const COMPACT_PAGE = 256;
const COMPACT_BUSY_PAGE = 256;

/** How one update of a batch ended. */
type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error };

/** The records an update reads: loaded for the whole batch at once, before any update runs. */
interface Reads {
  readonly keys?: readonly Bytes[];
  readonly hints?: readonly (readonly [string, Bytes])[];
}

/**
 * The records of a batch as the updates before this one left them. An update reads only what it declared in its
 * {@link Reads} (and `state`), and its writes take effect only when it returns: one that refuses (throws) has
 * written nothing.
 */
interface UpdateView {
  key(id: Bytes): KeyRecord | undefined;
  /** Writes the key's record; undefined deletes it. */
  setKey(id: Bytes, record: KeyRecord | undefined): void;
  hint(target: string, id: Bytes): HintRecord | undefined;
  /** Writes the hint; undefined deletes it. */
  setHint(target: string, id: Bytes, record: HintRecord | undefined): void;
  /** The engine's own record. */
  readonly state: MetaRecord;
  setState(state: MetaRecord): void;
  /** Writes a caller's named record. */
  setNamed(name: string, value: unknown): void;
  /** The highest fresh counter taken from `node` (see fresh-tops.ts). */
  freshTop(node: string): number;
  /** Raises the highest fresh counter taken from `node` to `counter`. */
  setFreshTop(node: string, counter: number): void;
  /** Runs `run` once the batch's writes are issued, before it commits (only if this update succeeds). */
  beforeCommit(run: () => void): void;
}

/** An update waiting for its transaction. */
interface PendingUpdate {
  readonly what: string;
  /** The stores it reads or writes: `keys` always with `meta`, whose `state` counts the keys. */
  readonly stores: readonly StoreName[];
  readonly durability: Durability;
  readonly reads: Reads;
  /** Runs synchronously once the batch's reads are in; throws to refuse. */
  readonly run: (view: UpdateView) => unknown;
  readonly settle: (outcome: Outcome) => void;
}

/** A read waiting for its transaction. */
interface PendingRead {
  /** A key's record, or the hints held for a key. */
  readonly kind: 'key' | 'hints';
  readonly id: Bytes;
  readonly resolve: (result: never) => void;
  readonly reject: (error: Error) => void;
}

/** A record of a batch: as loaded, then as the updates left it, and which update wrote it last. */
interface Slot<R> {
  readonly store: 'keys' | 'hints' | 'meta';
  /** The record's IndexedDB key. */
  readonly key: IDBValidKey;
  now: R | undefined;
  /** Index in the batch of the update that last wrote it; -1 while unwritten. */
  by: number;
  /** As loaded, before any update of the batch ran. */
  loaded?: R | undefined;
}

/** The records of one batch. */
class BatchRecords {
  readonly keys = new Map<string, Slot<KeyRecord>>();
  readonly hints = new Map<string, Map<string, Slot<HintRecord>>>();
  readonly named = new Map<string, Slot<unknown>>();
  /** The fresh records the batch raises, by node. */
  readonly fresh = new Map<string, Slot<FreshRecord>>();
  readonly state: Slot<MetaRecord> = { store: 'meta', key: STATE, now: undefined, by: -1 };
  /** What the updates asked to run before the commit. */
  readonly early: (() => void)[] = [];

  /**
   * `withState`: the batch writes keys, so it loads the engine's own record, which counts them. `freshTops`: the
   * fresh records as last committed (this connection is their only writer, so they need no reading).
   */
  constructor(
    readonly withState: boolean,
    readonly freshTops: FreshTops,
  ) {}

  freshSlot(node: string): Slot<FreshRecord> {
    let slot = this.fresh.get(node);
    if (slot === undefined) this.fresh.set(node, (slot = { store: 'meta', key: FRESH + node, now: undefined, by: -1 }));
    return slot;
  }

  keySlot(id: Bytes): Slot<KeyRecord> {
    const slot = this.keys.get(keyId(id));
    if (slot === undefined) throw new Error('an update read a key it did not declare');
    return slot;
  }

  hintSlot(target: string, id: Bytes): Slot<HintRecord> {
    const slot = this.hints.get(target)?.get(keyId(id));
    if (slot === undefined) throw new Error('an update read a hint it did not declare');
    return slot;
  }

  /** Every slot an update wrote. */
  *written(): Generator<Slot<unknown>> {
    for (const slot of this.keys.values()) if (slot.by >= 0) yield slot;
    for (const slots of this.hints.values()) for (const slot of slots.values()) if (slot.by >= 0) yield slot;
    for (const slot of this.named.values()) if (slot.by >= 0) yield slot;
    for (const slot of this.fresh.values()) if (slot.by >= 0) yield slot;
    if (this.state.by >= 0) yield this.state;
  }
}

/** One update's view of a batch: reads through to it, keeps its writes aside until {@link Staged.apply}. */
class Staged implements UpdateView {
  readonly #records: BatchRecords;
  readonly #writes = new Map<Slot<unknown>, unknown>();
  readonly #early: (() => void)[] = [];
  #state: MetaRecord | undefined;

  constructor(records: BatchRecords) {
    this.#records = records;
  }

  #read<R>(slot: Slot<R>): R | undefined {
    return this.#writes.has(slot) ? (this.#writes.get(slot) as R | undefined) : slot.now;
  }

  key(id: Bytes): KeyRecord | undefined {
    return this.#read(this.#records.keySlot(id));
  }

  setKey(id: Bytes, record: KeyRecord | undefined): void {
    this.#writes.set(this.#records.keySlot(id), record);
  }

  hint(target: string, id: Bytes): HintRecord | undefined {
    return this.#read(this.#records.hintSlot(target, id));
  }

  setHint(target: string, id: Bytes, record: HintRecord | undefined): void {
    this.#writes.set(this.#records.hintSlot(target, id), record);
  }

  get state(): MetaRecord {
    if (!this.#records.withState) throw new Error('an update read the state in a batch that did not load it');
    return this.#state ?? this.#records.state.now ?? EMPTY_STATE;
  }

  setState(state: MetaRecord): void {
    this.#state = state;
  }

  setNamed(name: string, value: unknown): void {
    let slot = this.#records.named.get(name);
    if (slot === undefined) {
      this.#records.named.set(name, (slot = { store: 'meta', key: NAMED + name, now: undefined, by: -1 }));
    }
    this.#writes.set(slot, value);
  }

  freshTop(node: string): number {
    const slot = this.#records.fresh.get(node);
    const staged = slot === undefined ? undefined : this.#read(slot);
    return staged?.counter ?? this.#records.freshTops.top(node);
  }

  setFreshTop(node: string, counter: number): void {
    this.#writes.set(this.#records.freshSlot(node), this.#records.freshTops.next(counter));
  }

  beforeCommit(run: () => void): void {
    this.#early.push(run);
  }

  /** Makes this update's writes part of the batch, as written by update `index`. */
  apply(index: number): void {
    this.#records.early.push(...this.#early);
    for (const [slot, value] of this.#writes) {
      slot.now = value;
      slot.by = index;
    }
    if (this.#state !== undefined) {
      this.#records.state.now = this.#state;
      this.#records.state.by = index;
    }
  }
}

/**
 * Loads into `records` what every update of `batch` declared it reads, all requests at once; a key that `filter`
 * says is certainly absent is not read.
 */
function load(
  tx: IDBTransaction,
  batch: readonly PendingUpdate[],
  records: BatchRecords,
  overlay: WalOverlay<WalSpan>,
  filter: KeyFilter | null,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let waiting = 1;
    const loaded = (): void => {
      if (--waiting === 0) resolve();
    };
    const get = (slot: Slot<unknown>): void => {
      waiting++;
      const request = tx.objectStore(slot.store).get(slot.key);
      request.onsuccess = () => {
        slot.now = slot.loaded = request.result;
        loaded();
      };
      request.onerror = () => reject(request.error ?? new Error('an IndexedDB read failed'));
    };
    try {
      if (records.withState && records.state.now === undefined) get(records.state);
      for (const { reads } of batch) {
        for (const id of reads.keys ?? []) {
          const name = keyId(id);
          if (records.keys.has(name)) continue;
          const slot: Slot<KeyRecord> = { store: 'keys', key: id, now: undefined, by: -1 };
          records.keys.set(name, slot);
          // What the log holds of a key is newer than what the `keys` store holds.
          const logged = overlay.get(name);
          if (logged !== undefined) slot.now = slot.loaded = loggedRecord(logged);
          else if (filter === null || filter.mayHave(id)) get(slot);
        }
        for (const [target, id] of reads.hints ?? []) {
          let slots = records.hints.get(target);
          if (slots === undefined) records.hints.set(target, (slots = new Map()));
          const name = keyId(id);
          if (slots.has(name)) continue;
          const slot: Slot<HintRecord> = { store: 'hints', key: [target, id], now: undefined, by: -1 };
          slots.set(name, slot);
          get(slot);
        }
      }
    } catch (error) {
      reject(error);
      return;
    }
    loaded();
  });
}

/** Aborts `tx` unless it has already ended. */
function abort(tx: IDBTransaction): void {
  try {
    tx.abort();
  } catch {
    // Already committed or aborted.
  }
}

function failure(error: unknown, what: string): Error {
  // A refusal the caller acts on (see LocalWrite.counter), not a failure of IndexedDB.
  if (error instanceof DynameshError || error instanceof CounterTakenError) return error;
  const e = error as { name?: unknown; message?: unknown } | null;
  const detail = typeof e?.message === 'string' ? `${String(e.name)}: ${e.message}` : String(error);
  return new StorageError(`IndexedDB ${what} failed (${detail})`, { cause: error });
}

function countOf(limit: number | undefined): number | undefined {
  const take = takeCount(limit);
  return take === Infinity ? undefined : Math.min(take, MAX_COUNT);
}

/** The engine's own record, read in the transaction of `store`. */
async function readState(store: { get(key: string): Promise<unknown> }): Promise<MetaRecord> {
  return ((await store.get(STATE)) as MetaRecord | undefined) ?? EMPTY_STATE;
}

/**
 * Opens (creating when absent) the database `name` as a {@link Storage}. The caller names it after cluster and
 * node id so that tabs never share one. Fails with `ERR_STORAGE` when IndexedDB cannot open it.
 */
export async function openIndexedDbStorage(name: string): Promise<IndexedDbStorage> {
  return IndexedDbStorage.open(name);
}

/** {@link Storage} on one IndexedDB database; open it with {@link openIndexedDbStorage}. */
export class IndexedDbStorage implements Storage {
  #db: IDBPDatabase<Schema> | undefined;
  #closed = false;
  /** Updates waiting for the next transaction, in the order they were made. */
  readonly #pending: PendingUpdate[] = [];
  /** True while a batch of updates is being committed. */
  #committing = false;
  /** The keys stored, or maybe stored: a write to a key it has never seen skips reading it. */
  readonly #filter = new KeyFilter();
  /** The keys hints were stored for, maybe. */
  readonly #hinted = new KeyFilter(1 << 16);
  /** True once every key stored at open is in {@link IndexedDbStorage.#filter}, and every hinted key in `#hinted`. */
  #filterReady = false;
  /** The filling of the filters started at open. */
  #filling: Promise<void> = Promise.resolve();
  /** Reads waiting for the next read transaction, and whether one is in flight. */
  readonly #reads: PendingRead[] = [];
  #reading = false;
  /**
   * The engine's own record as last committed, once read; its counter is the highest reserved by a committed
   * transaction (reservations only grow).
   */
  #state: MetaRecord | undefined;
  /** The highest dot counter issued since the storage opened (see {@link MetaRecord.counter}). */
  #issued = -1;
  /** The highest fresh counter taken from each node, as committed; loaded at open. */
  #freshTops = new FreshTops();
  /** The keys logged and not yet compacted into the `keys` store. */
  readonly #overlay = new WalOverlay<WalSpan>();
  /** The key of the next log record. */
  #seq = 0;
  /** The size in bytes of each log record not yet deleted, oldest first, and their sum. */
  readonly #records = new Map<number, number>();
  #recordBytes = 0;
  /** Set once writes have paused for {@link COMPACT_IDLE_MS}; cleared by the next write. */
  #idle = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Compactions failed in a row. */
  #compactFailures = 0;

  private constructor() {}

  /** Same as {@link openIndexedDbStorage}. */
  static async open(name: string): Promise<IndexedDbStorage> {
    const storage = new IndexedDbStorage();
    try {
      storage.#db = await openDB<Schema>(name, SCHEMA_VERSION, {
        upgrade(database, oldVersion) {
          if (oldVersion < 1) {
            database.createObjectStore('keys', { keyPath: 'key' }).createIndex('partition', ['partition', 'key']);
            database.createObjectStore('hints', { keyPath: ['target', 'key'] }).createIndex('key', 'key');
            database.createObjectStore('meta');
          }
          if (oldVersion < 2) database.createObjectStore('log');
        },
        // Another connection wants a newer schema or to delete the database: give way rather than block it.
        blocking() {
          void storage.close();
        },
        // The browser closed the connection (storage cleared, disk error): nothing more can be done on it.
        terminated() {
          storage.#closed = true;
        },
      });
      await storage.#replay();
      await storage.#loadFreshTops();
    } catch (error) {
      storage.#db?.close();
      throw failure(error, `open of "${name}"`);
    }
    storage.#filling = storage.#fillFilter();
    storage.#scheduleCompaction();
    return storage;
  }

  /**
   * Loads the fresh records (see fresh-tops.ts), and deletes those of the nodes raised longest ago past the most it
   * keeps (forgotten in memory meanwhile, they stayed stored).
   */
  async #loadFreshTops(): Promise<void> {
    const range = freshRange();
    const read = this.#open().transaction('meta').store;
    const [records, keys] = await Promise.all([read.getAll(range), read.getAllKeys(range)]);
    const nodes = keys.map((key) => key.slice(FRESH.length));
    this.#freshTops = FreshTops.from(nodes.map((node, i) => [node, records[i] as FreshRecord] as const));
    const forgotten = nodes.filter((node) => !this.#freshTops.has(node));
    if (forgotten.length === 0) return;
    const tx = this.#open().transaction('meta', 'readwrite', { durability: 'relaxed' });
    await Promise.all([...forgotten.map((node) => tx.store.delete(FRESH + node)), tx.done]);
  }

  /** Rebuilds the overlay from the log: what was logged and not compacted before the last close or crash. */
  async #replay(): Promise<void> {
    const tx = this.#open().transaction('log');
    const [records, seqs] = await Promise.all([tx.store.getAll(), tx.store.getAllKeys()]);
    records.forEach((bytes, i) => {
      const starts = walStarts(bytes);
      this.#logged(
        starts.map((at) => decodeWalEntry(bytes, at)),
        { bytes, starts },
        seqs[i]!,
      );
    });
    this.#seq = seqs.length === 0 ? 0 : seqs[seqs.length - 1]! + 1;
    records.forEach((bytes, i) => this.#recorded(seqs[i]!, bytes.byteLength));
  }

  /** Counts log record `seq`, of `bytes` bytes, as held until compaction deletes it. */
  #recorded(seq: number, bytes: number): void {
    this.#records.set(seq, bytes);
    this.#recordBytes += bytes;
  }

  /** True when the log is over a bound at which compaction stops waiting for a pause. */
  #overLogBounds(): boolean {
    return (
      this.#overlay.size > OVERLAY_LIMIT || this.#records.size > MAX_LOG_RECORDS || this.#recordBytes > MAX_LOG_BYTES
    );
  }

  /** Makes the entries of log record `seq` current in the overlay (it has committed); `log` is its encoding. */
  #logged(entries: readonly WalEntry[], log: { bytes: Uint8Array; starts: readonly number[] }, seq: number): void {
    entries.forEach(({ key, partition, siblings }, i) => {
      this.#overlay.set(keyId(key), partition, seq, siblings === null, { bytes: log.bytes, at: log.starts[i]! });
      if (siblings !== null) this.#filter.add(key);
    });
  }

  /**
   * Resolves once the key filters are filled (true), or their filling failed or the storage closed first (false):
   * until then every write reads its key, after it a write of a key never stored reads nothing. Writes need not wait
   * for it; it tells when the faster path has begun.
   */
  async filterFilled(): Promise<boolean> {
    await this.#filling;
    return this.#filterReady;
  }

  /**
   * Puts every stored key into the filter, a page of keys per short transaction (writes go on meanwhile, and add
   * their keys themselves); until it is done, every write reads its key. A failure leaves it so.
   */
  async #fillFilter(): Promise<void> {
    try {
      // Binary keys come back as ArrayBuffers, whatever view they were stored from.
      await this.#eachKey('keys', (key) => this.#filter.add(new Uint8Array(key as ArrayBuffer)));
      await this.#eachKey('hints', (key) => this.#hinted.add(new Uint8Array((key as [string, ArrayBuffer])[1])));
      this.#filterReady = true;
    } catch {
      // Closed, or IndexedDB failed: writes keep reading their keys.
    }
  }

  /** Visits every primary key of `store` in order, a page of them per short transaction. */
  async #eachKey(store: 'keys' | 'hints', visit: (key: IDBValidKey) => void): Promise<void> {
    let after: IDBValidKey | undefined;
    for (;;) {
      const range = after === undefined ? undefined : IDBKeyRange.lowerBound(after, true);
      const keys: IDBValidKey[] = await this.#open().getAllKeys(store, range, FILL_PAGE);
      keys.forEach(visit);
      if (keys.length < FILL_PAGE) return;
      after = keys[keys.length - 1];
    }
  }

  #open(): IDBPDatabase<Schema> {
    if (this.#closed || this.#db === undefined) throw new ClosedError('the storage is closed');
    return this.#db;
  }

  /**
   * Runs `run` in a readwrite transaction and resolves once that transaction has committed (group commit). Updates
   * made while a transaction is in flight wait and run together, in the order they were made, in the next one: one
   * commit for many writes, where a transaction each would queue behind the others on the `meta` record they all
   * touch. The records every update of a batch declared in `reads` are loaded at once; then each update runs
   * synchronously on them as the updates before it left them, and its writes count only when it returns, so one
   * that throws (a refusal, or anything else) fails alone with nothing written; then everything written goes out and
   * the transaction commits. A transaction that aborts fails every update in it, none written.
   * The transaction is strict when any of its updates asked for strict durability.
   */
  #update<T>(
    what: string,
    stores: readonly StoreName[],
    durability: Durability | undefined,
    reads: Reads,
    run: (view: UpdateView) => T,
  ): Promise<T> {
    this.#open();
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        what,
        stores,
        durability: durability ?? 'relaxed',
        reads,
        run,
        settle: (outcome) => (outcome.ok ? resolve(outcome.value as T) : reject(outcome.error)),
      });
      // Writes of keys have not paused: compaction waits for the next pause (hints and records of the caller's own
      // do not hold it off).
      if (stores.includes('keys')) {
        clearTimeout(this.#idleTimer);
        this.#idle = false;
      }
      if (!this.#committing) void this.#drain();
    });
  }

  /**
   * Commits the waiting updates, a batch per transaction, until none is left; compacts the log between batches while
   * it is over a bound, and a page at a time once writes of keys have paused, as long as they stay paused.
   */
  async #drain(): Promise<void> {
    this.#committing = true;
    try {
      for (;;) {
        if (this.#pending.length > 0) {
          await this.#commit(this.#pending.splice(0, MAX_BATCH));
          // Failed, compaction leaves the log over its bound rather than hold up the writes.
          while (this.#overLogBounds() && (await this.#compact(COMPACT_BUSY_PAGE)));
        } else if (this.#idle && this.#overlay.size > 0) {
          // Failed, it clears `#idle`: the next pause tries again.
          await this.#compact(COMPACT_PAGE);
        } else break;
      }
    } finally {
      this.#committing = false;
      this.#scheduleCompaction();
    }
  }

  /**
   * Compacts once writes have paused for {@link COMPACT_IDLE_MS}, if anything is logged; after failed compactions,
   * once they have paused for twice as long per failure in a row (up to 64 times as long).
   */
  #scheduleCompaction(): void {
    clearTimeout(this.#idleTimer);
    if (this.#closed || this.#overlay.size === 0) return;
    const delay = COMPACT_IDLE_MS * 2 ** Math.min(this.#compactFailures, 6);
    this.#idleTimer = setTimeout(() => {
      if (this.#closed || this.#committing) return;
      this.#idle = true;
      void this.#drain();
    }, delay);
  }

  /**
   * Copies the oldest `page` logged keys (whole log records of them) into the `keys` store and deletes the log
   * records they cover, in one transaction; the overlay forgets them once it commits. Relaxed durability: a
   * compaction lost in a crash loses its deletion of the log records too, which still hold the keys. False when it
   * failed, or found nothing to compact.
   */
  async #compact(page: number): Promise<boolean> {
    const share = this.#overlay.oldest(page);
    // Nothing logged is current, so no log record is left either (each holds a current key or was deleted).
    if (share === null) return false;
    let tx: IDBPTransaction<Schema, ('keys' | 'log')[], 'readwrite'> | undefined;
    try {
      tx = this.#open().transaction(['keys', 'log'], 'readwrite', { durability: 'relaxed' });
      const keys = tx.objectStore('keys');
      const writes: Promise<unknown>[] = share.keys.map((logged) => {
        const entry = decodeWalEntry(logged.payload.bytes, logged.payload.at);
        return entry.siblings === null
          ? keys.delete(entry.key as Bytes)
          : keys.put({ key: entry.key as Bytes, partition: entry.partition, siblings: entry.siblings as Version[] });
      });
      writes.push(tx.objectStore('log').delete(IDBKeyRange.upperBound(share.upTo)), tx.done);
      await Promise.all(writes);
    } catch {
      // Closed, IndexedDB failed, or a logged entry would not decode: nothing of it commits, the log still holds
      // every key, and reads still find them in the overlay.
      if (tx !== undefined) abort(unwrap(tx));
      this.#idle = false;
      this.#compactFailures++;
      return false;
    }
    this.#compactFailures = 0;
    this.#overlay.release(share.keys);
    for (const [seq, bytes] of this.#records) {
      if (seq > share.upTo) break;
      this.#records.delete(seq);
      this.#recordBytes -= bytes;
    }
    return true;
  }

  /**
   * Whether the local writes of `batch` may raise the counter's durable reservation (see write). A transaction that
   * does is strict whatever its writes asked for: versions under counters below the reservation leave before their
   * own transaction commits, so a reservation that a crash of the machine took back (relaxed durability lets the
   * system lose a committed transaction) would let the node issue those counters again, two writes under one dot.
   * Counted as if every write drew the next counter; a write whose stored siblings make it jump further (only after
   * a counter was lost, or under versions others made up) may still raise it in a relaxed one.
   */
  #mayReserve(batch: readonly PendingUpdate[]): boolean {
    let writes = 0;
    for (const u of batch) if (u.what === 'write') writes++;
    if (writes === 0) return false;
    const reserved = this.#state?.counter;
    if (reserved === undefined || this.#issued < 0) return true;
    return raisesReservation(this.#issued + writes, reserved);
  }

  async #commit(batch: readonly PendingUpdate[]): Promise<void> {
    const failAll = (error: unknown): void => {
      for (const u of batch) u.settle({ ok: false, error: failure(error, u.what) });
    };
    const stores = [...new Set(batch.flatMap((u) => u.stores))];
    let tx: IDBTransaction;
    try {
      const strict = batch.some((u) => u.durability === 'strict') || this.#mayReserve(batch);
      tx = unwrap(this.#open()).transaction(stores, 'readwrite', { durability: strict ? 'strict' : 'relaxed' });
    } catch (error) {
      failAll(error);
      return;
    }
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(tx.error ?? new DOMException('the transaction was aborted', 'AbortError'));
    });
    // Observed here so that an abort never surfaces as an unhandled rejection; awaited below.
    done.catch(() => {});
    const records = new BatchRecords(stores.includes('keys'), this.#freshTops);
    // This connection is the only writer of its database (one tab runs a node): the state it last committed is the
    // state, and need not be read again.
    if (records.withState) records.state.now = this.#state;
    try {
      await load(tx, batch, records, this.#overlay, this.#filterReady ? this.#filter : null);
    } catch (error) {
      abort(tx);
      failAll(error);
      return;
    }
    this.#state ??= records.state.now;
    const outcomes: Outcome[] = batch.map((u, i) => {
      const view = new Staged(records);
      try {
        const value = u.run(view);
        view.apply(i);
        return { ok: true, value };
      } catch (error) {
        return { ok: false, error: failure(error, u.what) };
      }
    });
    let writer = -1;
    const logged: WalEntry[] = [];
    const logWriter = new WalWriter();
    let log: { bytes: Uint8Array<ArrayBuffer>; starts: readonly number[] } | undefined;
    const seq = this.#seq;
    try {
      for (const slot of records.written()) {
        writer = slot.by;
        if (slot.store === 'keys') {
          const record = slot.now as KeyRecord | undefined;
          const was = slot.loaded as KeyRecord | undefined;
          const entry =
            record ?? (was === undefined ? undefined : { key: was.key, partition: was.partition, siblings: null });
          if (entry !== undefined) {
            logWriter.add(entry);
            logged.push(entry);
          }
          continue;
        }
        const store = tx.objectStore(slot.store);
        if (slot.store === 'meta') store.put(slot.now, slot.key);
        else if (slot.now === undefined) store.delete(slot.key);
        else {
          store.put(slot.now);
          this.#hinted.add((slot.key as [string, Bytes])[1]);
        }
      }
      writer = -1;
      if (!logWriter.empty) {
        log = logWriter.finish();
        tx.objectStore('log').put(log.bytes, seq);
        this.#seq = seq + 1;
      }
    } catch (error) {
      // A record IndexedDB refused as it was issued (one it cannot clone), or a key the log cannot encode: the update
      // that wrote it last fails, and the others, undone with the transaction, run again in the next one.
      abort(tx);
      if (writer < 0) {
        // The log record, which every update that wrote a key shares: they all fail.
        failAll(error);
        return;
      }
      const culprit = batch[writer];
      culprit?.settle({ ok: false, error: failure(error, culprit.what) });
      this.#pending.unshift(...batch.filter((u) => u !== culprit));
      return;
    }
    for (const run of records.early) {
      try {
        run();
      } catch {
        // The caller's own business (see LocalWriteOptions.onComputed).
      }
    }
    try {
      await done;
    } catch (error) {
      // Nothing of the batch was written: every update fails, with its own error where it had one.
      batch.forEach((u, i) => {
        const outcome = outcomes[i]!;
        u.settle(outcome.ok ? { ok: false, error: failure(error, u.what) } : outcome);
      });
      return;
    }
    if (records.state.by >= 0) this.#state = records.state.now!;
    for (const [node, slot] of records.fresh) if (slot.by >= 0) this.#freshTops.set(node, slot.now!);
    if (log !== undefined) {
      this.#logged(logged, log, seq);
      this.#recorded(seq, log.bytes.byteLength);
    }
    batch.forEach((u, i) => u.settle(outcomes[i]!));
  }

  /**
   * Reads are grouped as writes are: those made while a read transaction is in flight share the next one, all their
   * requests issued at once; a key the filter has never seen is absent without a request.
   */
  async get(key: Uint8Array): Promise<Version[]> {
    this.#open();
    const id = ownBytes(key);
    const logged = this.#overlay.get(keyId(id));
    // What the log holds is newer than what the `keys` store holds; decoded, it is the caller's own copy.
    if (logged !== undefined) return loggedRecord(logged)?.siblings ?? [];
    if (this.#filterReady && !this.#filter.mayHave(id)) return [];
    return this.#read<Version[]>('key', id);
  }

  #read<T>(kind: PendingRead['kind'], id: Bytes): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#reads.push({ kind, id, resolve: resolve as (result: never) => void, reject });
      if (!this.#reading) void this.#drainReads();
    });
  }

  async #drainReads(): Promise<void> {
    this.#reading = true;
    try {
      while (this.#reads.length > 0) await this.#readBatch(this.#reads.splice(0, MAX_BATCH));
    } finally {
      this.#reading = false;
    }
  }

  #readBatch(batch: readonly PendingRead[]): Promise<void> {
    return new Promise<void>((done) => {
      let left = batch.length;
      const settled = (): void => {
        if (--left === 0) done();
      };
      try {
        const tx = unwrap(this.#open()).transaction(['keys', 'hints'], 'readonly');
        const keys = tx.objectStore('keys');
        const hints = tx.objectStore('hints').index('key');
        for (const read of batch) {
          const request = read.kind === 'key' ? keys.get(read.id) : hints.getAll(read.id);
          request.onsuccess = () => {
            const result = request.result as unknown;
            read.resolve((read.kind === 'key' ? ((result as KeyRecord | undefined)?.siblings ?? []) : result) as never);
            settled();
          };
          request.onerror = () => {
            read.reject(failure(request.error, 'get'));
            settled();
          };
        }
      } catch (error) {
        // Closed, or IndexedDB refused the transaction: the reads not issued fail with it.
        for (const read of batch) read.reject(failure(error, 'get'));
        done();
      }
    });
  }

  async apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    const [result] = await this.#applyAll('apply', partition, [{ key, versions }], options);
    return result!;
  }

  /** One readwrite transaction over `keys` and `meta`: every key read first, then the changed ones written. */
  async applyMany(partition: number, entries: readonly ApplyEntry[], options?: WriteOptions): Promise<ApplyResult[]> {
    this.#open();
    if (entries.length === 0) return [];
    return this.#applyAll('applyMany', partition, entries, options);
  }

  /**
   * Merges each entry as {@link IndexedDbStorage.apply} does, in one transaction. Each key is read once, however
   * often it is listed, and written once with its last merge; a later entry of a key merges into what the earlier
   * one left, as it would have in a transaction of its own.
   */
  async #applyAll(
    what: string,
    partition: number,
    entries: readonly ApplyEntry[],
    options: ApplyOptions | undefined,
  ): Promise<ApplyResult[]> {
    const batch = entries.map((e) => ({ id: ownBytes(e.key), incoming: e.versions.map(plainVersion) }));
    const reads = { keys: batch.map((e) => e.id) };
    const fresh = options?.fresh;
    return this.#update(what, KEY_STORES, options?.durability, reads, (view) => {
      let counts = view.state;
      const taken = freshTaken(fresh, (node) => view.freshTop(node));
      if (taken !== undefined) view.setFreshTop(taken.dot.node, taken.dot.counter);
      const results = batch.map(({ id, incoming }): ApplyResult => {
        const now = view.key(id)?.siblings;
        const { siblings, changed } = resolveFresh(now ?? [], incoming, taken);
        if (changed) {
          counts = recount(counts, id, now, siblings);
          view.setKey(id, { key: id, partition, siblings });
        }
        return { siblings, changed };
      });
      if (counts !== view.state) view.setState(counts);
      return results;
    });
  }

  async write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: LocalWriteOptions,
  ): Promise<LocalWriteResult> {
    const id = ownBytes(key);
    const context = plainClock(write.context);
    const value = write.value === null ? null : ownBytes(write.value);
    const { node, timestamp, ifMatch, bounds, counter: drawn } = write;
    const proof = write.proof === undefined ? undefined : ownBytes(write.proof);
    const onComputed = options?.onComputed;
    return this.#update('write', KEY_STORES, options?.durability, { keys: [id] }, (view) => {
      const old = view.key(id)?.siblings;
      const state = view.state;
      const stored = old ?? [];
      if (ifMatch && !contextCoversAll(context, stored)) {
        throw new StaleContextError('the context does not cover every stored version of the key');
      }
      // Counters are issued in memory below the durable reservation; after a restart, from the reservation up.
      const issued = this.#issued >= 0 ? this.#issued : state.counter;
      checkOwnEntry(context, node, issuedCounter(issued, node, stored));
      const counter = writeCounter(issued, node, stored, drawn);
      const made = createVersion(node, counter, timestamp, context, value);
      const version = proof === undefined ? made : { ...made, proof };
      const { siblings } = resolve(stored, [version]);
      checkBounds(id, stored, siblings, bounds);
      view.setKey(id, { key: id, partition, siblings });
      const reserved = raisesReservation(counter, state.counter) ? counter + COUNTER_BLOCK : state.counter;
      view.setState({ ...recount(state, id, old, siblings), counter: reserved });
      // Issued from now on, whether the transaction commits or not: a version may leave before it does.
      this.#issued = Math.max(this.#issued, counter);
      const result = { version, siblings };
      // Shown before the commit only when a transaction already committed the counter's reservation.
      if (onComputed !== undefined && counter <= (this.#state?.counter ?? -1)) {
        view.beforeCommit(() => onComputed(result));
      }
      return result;
    });
  }

  async drawCounter(above = 0): Promise<number> {
    if (this.#issued < 0) {
      // Counters are issued from the durable reservation up after a restart, as a write would.
      const reserved = this.#state?.counter ?? (await this.#committedState()).counter;
      if (this.#issued < 0) this.#issued = reserved;
    }
    this.#issued = drawnCounter(this.#issued, '', above);
    return this.#issued;
  }

  /** The engine's own record as committed. */
  async #committedState(): Promise<MetaRecord> {
    try {
      return await readState(this.#open().transaction('meta').store);
    } catch (error) {
      throw failure(error, 'drawCounter');
    }
  }

  /** The `keys` store's page merged with what is logged (see {@link WalOverlay.scan}). */
  async scanPartition(partition: number, options: { after?: Uint8Array; limit?: number } = {}): Promise<StoredKey[]> {
    this.#open();
    const take = takeCount(options.limit);
    if (take === 0) return [];
    return this.#overlay.scan(
      partition,
      options.after,
      take,
      (after, limit) => this.#scanStored(partition, after, limit),
      (logged) => loggedRecord(logged)!,
    );
  }

  /** A page of `partition` in the `keys` store alone. */
  async #scanStored(partition: number, after: Uint8Array | undefined, limit: number): Promise<StoredKey[]> {
    const db = this.#open();
    // Arrays sort above binary keys, so [partition, []] bounds every [partition, key] from above.
    const range = IDBKeyRange.bound(
      after === undefined ? [partition] : [partition, ownBytes(after)],
      [partition, []],
      after !== undefined,
      true,
    );
    try {
      return await db.getAllFromIndex('keys', 'partition', range, countOf(limit));
    } catch (error) {
      throw failure(error, 'scanPartition');
    }
  }

  async putHint(hint: Hint, options?: WriteOptions): Promise<void> {
    const record: HintRecord = {
      target: hint.target,
      key: ownBytes(hint.key),
      partition: hint.partition,
      siblings: hint.siblings.map(plainVersion),
    };
    const reads = { hints: [[record.target, record.key]] as const };
    await this.#update('putHint', ['hints'], options?.durability, reads, (view) => {
      const old = view.hint(record.target, record.key);
      const { siblings, changed } = resolve(old?.siblings ?? [], record.siblings);
      if (changed) view.setHint(record.target, record.key, { ...record, siblings });
    });
  }

  /** Batched with {@link IndexedDbStorage.get}; a key never hinted here has none, without a request. */
  async hintsFor(key: Uint8Array): Promise<Hint[]> {
    this.#open();
    const id = ownBytes(key);
    if (this.#filterReady && !this.#hinted.mayHave(id)) return [];
    return this.#read<Hint[]>('hints', id);
  }

  async listHints(options: { target?: string; limit?: number } = {}): Promise<Hint[]> {
    const db = this.#open();
    const count = countOf(options.limit);
    if (count === 0) return [];
    const target = options.target;
    const range = target === undefined ? undefined : IDBKeyRange.bound([target], [target, []], false, true);
    try {
      return await db.getAll('hints', range, count);
    } catch (error) {
      throw failure(error, 'listHints');
    }
  }

  async hintCount(target: string): Promise<number> {
    const db = this.#open();
    try {
      // Arrays sort above binary keys, so [target, []] bounds every [target, key] from above.
      return await db.count('hints', IDBKeyRange.bound([target], [target, []], false, true));
    } catch (error) {
      throw failure(error, 'hintCount');
    }
  }

  /** Keys only, one step per target (see {@link firstParts}). */
  async hintTargets(): Promise<string[]> {
    const db = this.#open();
    try {
      return await firstParts(db.transaction('hints').store.openKeyCursor());
    } catch (error) {
      throw failure(error, 'hintTargets');
    }
  }

  async deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    const id = ownBytes(key);
    const done = delivered.map(plainVersion);
    return this.#update('deleteHint', ['hints'], 'relaxed', { hints: [[target, id]] }, (view) => {
      const old = view.hint(target, id);
      if (old === undefined) return true;
      if (undelivered(old.siblings, done).length > 0) return false;
      view.setHint(target, id, undefined);
      return true;
    });
  }

  /**
   * Reports an absent key as gone (true): nothing of it is left to release. Relaxed durability: a removal lost in
   * a crash leaves a copy that the next release removes again, and loses nothing.
   */
  async deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    const id = ownBytes(key);
    const expected = siblings.map(plainVersion);
    return this.#update('deleteIfUnchanged', KEY_STORES, 'relaxed', { keys: [id] }, (view) => {
      const old = view.key(id);
      const outcome = removal(old?.siblings, expected);
      if (outcome === 'keep') return false;
      if (outcome === 'remove') {
        const state = view.state;
        view.setKey(id, undefined);
        view.setState({
          counter: state.counter,
          keys: state.keys - 1,
          bytes: state.bytes - storedSize(old!.key, old!.siblings),
        });
      }
      return true;
    });
  }

  /**
   * The `keys` store's partitions and those with a logged key; a partition of the store where keys were removed since
   * is listed only when a scan still finds a key in it.
   */
  async partitionsWithData(): Promise<number[]> {
    const { live, removed } = this.#overlay.partitions();
    const stored = await this.#partitionsStored();
    const out = new Set(live);
    for (const partition of stored) {
      if (live.has(partition)) continue;
      if (!removed.has(partition) || (await this.scanPartition(partition, { limit: 1 })).length > 0) out.add(partition);
    }
    return [...out].sort((a, b) => a - b);
  }

  /** Keys only, one step per partition of the partition index (see {@link firstParts}). */
  async #partitionsStored(): Promise<number[]> {
    const db = this.#open();
    try {
      return await firstParts(db.transaction('keys').store.index('partition').openKeyCursor());
    } catch (error) {
      throw failure(error, 'partitionsWithData');
    }
  }

  async getMeta(name: string): Promise<unknown> {
    const db = this.#open();
    try {
      return await db.get('meta', NAMED + name);
    } catch (error) {
      throw failure(error, 'getMeta');
    }
  }

  /**
   * Strict durability: these records say things like "this partition is held", which a node acts on after a
   * restart; one lost in a crash could make it drop or forget data it still owns.
   */
  async putMeta(name: string, value: unknown): Promise<void> {
    let copy: unknown;
    try {
      // A copy taken now (the caller may change the value before the transaction gets to it), which also refuses
      // before the transaction a value IndexedDB cannot clone, so it does not cost the updates it would share it with.
      copy = structuredClone(value);
    } catch (error) {
      throw failure(error, 'putMeta');
    }
    await this.#update('putMeta', ['meta'], 'strict', {}, (view) => view.setNamed(name, copy));
  }

  async stats(): Promise<StorageStats> {
    const db = this.#open();
    try {
      const tx = db.transaction(['meta', 'hints'], 'readonly');
      const [state, hints] = await Promise.all([readState(tx.objectStore('meta')), tx.objectStore('hints').count()]);
      return { keys: state.keys, bytes: state.bytes, hints };
    } catch (error) {
      throw failure(error, 'stats');
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // What is logged and not compacted stays in the log, replayed at the next open.
    clearTimeout(this.#idleTimer);
    // Transactions already started run to their end; IndexedDB closes the connection after them.
    this.#db?.close();
  }
}
