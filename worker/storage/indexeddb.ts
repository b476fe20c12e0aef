/**
 * The IndexedDB storage engine, for a node running in a browser (normally inside its dedicated worker). One
 * database per node, named by the caller after cluster and node id. Each write is one readwrite transaction that
 * reads, merges with {@link resolve} and writes, so that concurrent writes to a key never lose a version.
 *
 * Stores: `keys` (key path `key`, binary, so IndexedDB orders keys by their bytes; index `partition` on
 * [partition, key] for scans), `hints` (key path [target, key]; index `key`), `meta` (the engine's own record,
 * `state`: the node's dot counter and the running counts that {@link IndexedDbStorage.stats} reports, kept in the
 * same transactions as the writes they count so they never drift; beside it the caller's named records of
 * {@link IndexedDbStorage.putMeta}, under prefixed keys so that no name can overwrite `state`).
 */
import { openDB } from 'idb';
import type { DBSchema, IDBPDatabase, IDBPTransaction } from 'idb';
import { ClosedError, DynameshError, StaleContextError, StorageError } from '../errors.ts';
import type { VClock } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';
import { contextCoversAll, createVersion, resolve } from '../versions/version.ts';
import {
  checkBounds,
  checkOwnEntry,
  issuedCounter,
  keyId,
  nextCounter,
  ownBytes,
  recount,
  removal,
  storedSize,
  takeCount,
  undelivered,
} from './records.ts';
import type {
  ApplyEntry,
  ApplyResult,
  Durability,
  Hint,
  LocalWrite,
  LocalWriteResult,
  Storage,
  StorageStats,
  StoredKey,
  WriteOptions,
} from './storage.ts';

/** Bytes that own their buffer: what IndexedDB takes as a binary key. */
type Bytes = Uint8Array<ArrayBuffer>;

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
  /** The last dot counter drawn by {@link IndexedDbStorage.write}. */
  counter: number;
  keys: number;
  bytes: number;
}

interface Schema extends DBSchema {
  keys: { key: Bytes; value: KeyRecord; indexes: { partition: [number, Bytes] } };
  hints: { key: [string, Bytes]; value: HintRecord; indexes: { key: Bytes } };
  /** `state` holds a {@link MetaRecord}; keys under {@link NAMED} hold the caller's records, whatever they are. */
  meta: { key: string; value: unknown };
}

type StoreName = 'keys' | 'hints' | 'meta';
type WriteTx = IDBPTransaction<Schema, StoreName[], 'readwrite'>;

const SCHEMA_VERSION = 1;
const STATE = 'state';
const EMPTY_STATE: MetaRecord = { counter: 0, keys: 0, bytes: 0 };
/**
 * The prefix of the caller's named records in `meta`. The engine's own keys never start with it, so a name (even
 * "state") cannot reach them, and the names need no other rule.
 */
const NAMED = 'named:';
/** The largest count `getAll` accepts (an unsigned long); zero would mean "no limit" to IndexedDB. */
const MAX_COUNT = 2 ** 32 - 1;

/**
 * A plain copy that owns its bytes. Taken when a method is called, not when its transaction gets to the write:
 * the caller may change its arrays in between, and structured clone of a view would store its whole buffer.
 */
function plainVersion(v: Version): Version {
  return {
    dot: { node: v.dot.node, counter: v.dot.counter, timestamp: v.dot.timestamp },
    context: plainClock(v.context),
    value: v.value === null ? null : ownBytes(v.value),
  };
}

function plainClock(clock: VClock): VClock {
  return clock.map((e) => ({ node: e.node, counter: e.counter, timestamp: e.timestamp }));
}

/** Most updates committed in one transaction. */
const MAX_BATCH = 256;

/** How one update of a batch ended. */
type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error };

/** An update waiting for its transaction. */
interface PendingUpdate {
  readonly what: string;
  readonly stores: StoreName[];
  readonly durability: Durability;
  readonly body: (tx: WriteTx) => Promise<unknown>;
  readonly settle: (outcome: Outcome) => void;
}

function failure(error: unknown, what: string): Error {
  if (error instanceof DynameshError) return error;
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
      return storage;
    } catch (error) {
      throw failure(error, `open of "${name}"`);
    }
  }

  #open(): IDBPDatabase<Schema> {
    if (this.#closed || this.#db === undefined) throw new ClosedError('the storage is closed');
    return this.#db;
  }

  /**
   * Runs `body` in a readwrite transaction and resolves once that transaction has committed (group commit). Updates
   * made while a transaction is in flight wait and run together, in the order they were made, in the next one: one
   * commit for many writes, where a transaction each would queue behind the others on the `meta` record they all
   * touch. Each body reads what the bodies before it wrote. A body refusing with a `DynameshError` has written
   * nothing (every body checks before it writes) and fails alone; any other error abandons the transaction, fails
   * that update and runs the others again in the next one; a transaction that aborts on its own fails every update
   * in it, none written.
   * The transaction is strict when any of its updates asked for strict durability.
   */
  #update<T>(
    what: string,
    stores: StoreName[],
    durability: Durability | undefined,
    body: (tx: WriteTx) => Promise<T>,
  ): Promise<T> {
    this.#open();
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        what,
        stores,
        durability: durability ?? 'relaxed',
        body,
        settle: (outcome) => (outcome.ok ? resolve(outcome.value as T) : reject(outcome.error)),
      });
      if (!this.#committing) void this.#drain();
    });
  }

  /** Commits the waiting updates, a batch per transaction, until none is left. */
  async #drain(): Promise<void> {
    this.#committing = true;
    try {
      while (this.#pending.length > 0) await this.#commit(this.#pending.splice(0, MAX_BATCH));
    } finally {
      this.#committing = false;
    }
  }

  async #commit(batch: readonly PendingUpdate[]): Promise<void> {
    let tx: WriteTx;
    try {
      const stores = [...new Set(batch.flatMap((u) => u.stores))];
      const durability = batch.some((u) => u.durability === 'strict') ? 'strict' : 'relaxed';
      tx = this.#open().transaction(stores, 'readwrite', { durability });
    } catch (error) {
      for (const u of batch) u.settle({ ok: false, error: failure(error, u.what) });
      return;
    }
    // Observed here so that an abort never surfaces as an unhandled rejection; awaited below.
    tx.done.catch(() => {});
    const outcomes: Outcome[] = [];
    for (const [i, u] of batch.entries()) {
      try {
        outcomes.push({ ok: true, value: await u.body(tx) });
      } catch (error) {
        if (error instanceof DynameshError) {
          // A refusal, made before its body wrote anything: it fails alone.
          outcomes.push({ ok: false, error });
          continue;
        }
        // Anything else may have come after some of its writes: the transaction is abandoned, that update fails,
        // and the others of the batch, undone with it, run again in the next transaction.
        try {
          tx.abort();
        } catch {
          // Already committed or aborted.
        }
        u.settle({ ok: false, error: failure(error, u.what) });
        this.#pending.unshift(...batch.filter((_, j) => j !== i));
        return;
      }
    }
    try {
      await tx.done;
    } catch (error) {
      // Nothing of the batch was written: every update fails, with its own error where it had one.
      batch.forEach((u, i) => {
        const outcome = outcomes[i];
        u.settle(outcome?.ok === false ? outcome : { ok: false, error: failure(error, u.what) });
      });
      return;
    }
    batch.forEach((u, i) => u.settle(outcomes[i]!));
  }

  async get(key: Uint8Array): Promise<Version[]> {
    const db = this.#open();
    try {
      return (await db.get('keys', ownBytes(key)))?.siblings ?? [];
    } catch (error) {
      throw failure(error, 'get');
    }
  }

  async apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: WriteOptions,
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
    options: WriteOptions | undefined,
  ): Promise<ApplyResult[]> {
    const batch = entries.map((e) => ({ id: ownBytes(e.key), incoming: e.versions.map(plainVersion) }));
    return this.#update(what, ['keys', 'meta'], options?.durability, async (tx) => {
      const keys = tx.objectStore('keys');
      const meta = tx.objectStore('meta');
      const slots = new Map<string, { now: KeyRecord | undefined; changed: boolean }>();
      const reads: Promise<void>[] = [];
      const slotOf = batch.map(({ id }) => {
        const name = keyId(id);
        let slot = slots.get(name);
        if (slot === undefined) {
          const fresh: { now: KeyRecord | undefined; changed: boolean } = { now: undefined, changed: false };
          reads.push(keys.get(id).then((record) => void (fresh.now = record)));
          slots.set(name, (slot = fresh));
        }
        return slot;
      });
      const [state] = await Promise.all([readState(meta), ...reads]);
      let counts = state;
      const results = batch.map(({ id, incoming }, i): ApplyResult => {
        const slot = slotOf[i]!;
        const { siblings, changed } = resolve(slot.now?.siblings ?? [], incoming);
        if (changed) {
          counts = recount(counts, id, slot.now?.siblings, siblings);
          slot.now = { key: id, partition, siblings };
          slot.changed = true;
        }
        return { siblings, changed };
      });
      if (counts !== state) {
        const writes: Promise<unknown>[] = [];
        try {
          for (const slot of slots.values()) if (slot.changed) writes.push(keys.put(slot.now!));
          writes.push(meta.put(counts, STATE));
        } finally {
          // A put can throw as it is issued (a value that cannot be cloned); the ones issued before it then fail
          // with the abort, observed here rather than left unhandled.
          for (const w of writes) w.catch(() => {});
        }
        await Promise.all(writes);
      }
      return results;
    });
  }

  async write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: WriteOptions,
  ): Promise<LocalWriteResult> {
    const id = ownBytes(key);
    const context = plainClock(write.context);
    const value = write.value === null ? null : ownBytes(write.value);
    const { node, timestamp, ifMatch, bounds } = write;
    return this.#update('write', ['keys', 'meta'], options?.durability, async (tx) => {
      const keys = tx.objectStore('keys');
      const meta = tx.objectStore('meta');
      const [old, state] = await Promise.all([keys.get(id), readState(meta)]);
      const stored = old?.siblings ?? [];
      if (ifMatch && !contextCoversAll(context, stored)) {
        throw new StaleContextError('the context does not cover every stored version of the key');
      }
      checkOwnEntry(context, node, issuedCounter(state.counter, node, stored));
      const counter = nextCounter(state.counter, node, stored);
      const version = createVersion(node, counter, timestamp, context, value);
      const { siblings } = resolve(stored, [version]);
      checkBounds(id, stored, siblings, bounds);
      await Promise.all([
        keys.put({ key: id, partition, siblings }),
        meta.put({ ...recount(state, id, old?.siblings, siblings), counter }, STATE),
      ]);
      return { version, siblings };
    });
  }

  async scanPartition(partition: number, options: { after?: Uint8Array; limit?: number } = {}): Promise<StoredKey[]> {
    const db = this.#open();
    const count = countOf(options.limit);
    if (count === 0) return [];
    const after = options.after;
    // Arrays sort above binary keys, so [partition, []] bounds every [partition, key] from above.
    const range = IDBKeyRange.bound(
      after === undefined ? [partition] : [partition, ownBytes(after)],
      [partition, []],
      after !== undefined,
      true,
    );
    try {
      return await db.getAllFromIndex('keys', 'partition', range, count);
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
    await this.#update('putHint', ['hints'], options?.durability, async (tx) => {
      const hints = tx.objectStore('hints');
      const old = await hints.get([record.target, record.key]);
      const { siblings, changed } = resolve(old?.siblings ?? [], record.siblings);
      if (changed) await hints.put({ ...record, siblings });
    });
  }

  async hintsFor(key: Uint8Array): Promise<Hint[]> {
    const db = this.#open();
    try {
      return await db.getAllFromIndex('hints', 'key', ownBytes(key));
    } catch (error) {
      throw failure(error, 'hintsFor');
    }
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

  async deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    const id = ownBytes(key);
    const done = delivered.map(plainVersion);
    return this.#update('deleteHint', ['hints'], 'relaxed', async (tx) => {
      const hints = tx.objectStore('hints');
      const old = await hints.get([target, id]);
      if (old === undefined) return true;
      if (undelivered(old.siblings, done).length > 0) return false;
      await hints.delete([target, id]);
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
    return this.#update('deleteIfUnchanged', ['keys', 'meta'], 'relaxed', async (tx) => {
      const keys = tx.objectStore('keys');
      const meta = tx.objectStore('meta');
      const [old, state] = await Promise.all([keys.get(id), readState(meta)]);
      const outcome = removal(old?.siblings, expected);
      if (outcome === 'keep') return false;
      if (outcome === 'remove') {
        const counts: MetaRecord = {
          counter: state.counter,
          keys: state.keys - 1,
          bytes: state.bytes - storedSize(old!.key, old!.siblings),
        };
        await Promise.all([keys.delete(id), meta.put(counts, STATE)]);
      }
      return true;
    });
  }

  async partitionsWithData(): Promise<number[]> {
    const db = this.#open();
    const out: number[] = [];
    try {
      // Keys only, one step per partition: from a partition's first key, jump to [partition, []], which sorts
      // above every [partition, key] since arrays sort above binary keys.
      let cursor = await db.transaction('keys').store.index('partition').openKeyCursor();
      while (cursor !== null) {
        const partition = cursor.key[0];
        out.push(partition);
        cursor = await cursor.continue([partition, [] as unknown as Bytes]);
      }
      return out;
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
    try {
      // Refused before the transaction: a value IndexedDB cannot clone must not cost the updates it would share it with.
      structuredClone(value);
    } catch (error) {
      throw failure(error, 'putMeta');
    }
    await this.#update('putMeta', ['meta'], 'strict', async (tx) => {
      await tx.objectStore('meta').put(value, NAMED + name);
    });
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
    // Transactions already started run to their end; IndexedDB closes the connection after them.
    this.#db?.close();
  }
}
