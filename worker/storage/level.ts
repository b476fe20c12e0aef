/**
 * The disk storage engine of the always-on node (Node.js only): the node's data lives in memory, in a
 * {@link MemoryStorage} that answers every call, and every change it makes is written down in a LevelDB database
 * (classic-level) before the call that made it settles. Opening the database reads every record back into memory.
 *
 * Why memory first: the contract's every write is a read, a {@link resolve} and a write in one transaction, and
 * LevelDB has no transactions; one process owning the data in memory makes each call atomic by construction (as the
 * memory engine is), and LevelDB only has to make each call's changes durable, in order, all or none (a batch is
 * atomic). The cost is that the whole store must fit in the process's memory (see the README's limits).
 *
 * Group commit, as the IndexedDB engine: changes made while a batch is being written go into the next batch, and each
 * call settles once the batch holding its changes is written. A batch is synced to disk (`fsync`) when one of its
 * calls asked for strict durability, when it writes a meta record (they say things like "this partition is held",
 * which the node acts on after a restart), or when it raises the durable reservation of dot counters. Counters are
 * reserved {@link COUNTER_BLOCK} at a time ahead of use, so that a local write may show its new version before its
 * batch is written (`onComputed`) only when its counter is already durably reserved: a restart then skips the rest of
 * the block and never issues a counter twice.
 */
import { serialize, deserialize } from 'node:v8';
import { ClassicLevel } from 'classic-level';
import { ClosedError, DynameshError, StorageError } from '../errors.ts';
import type { FreshRecord } from './fresh-tops.ts';
import { type MemoryChange, MemoryStorage } from './memory.ts';
import { CounterTakenError } from './storage.ts';
import type {
  ApplyEntry,
  ApplyOptions,
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
import type { Version } from '../versions/version.ts';

/** Dot counters reserved durably at a time, ahead of use (as the IndexedDB engine's). */
const COUNTER_BLOCK = 1024;

/** The first byte of each record's LevelDB key: what kind of record it is. */
const KIND = { key: 0x6b, hint: 0x68, meta: 0x6d, counter: 0x63, fresh: 0x66 } as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Bytes = Uint8Array<ArrayBuffer>;

interface Put {
  readonly type: 'put';
  readonly key: Bytes;
  readonly value: Bytes;
}

interface Del {
  readonly type: 'del';
  readonly key: Bytes;
}

/** What a key's or a hint's record holds. */
interface SiblingsRecord {
  readonly partition: number;
  readonly siblings: readonly Version[];
}

function prefixed(kind: number, ...parts: readonly Uint8Array[]): Bytes {
  let length = 1;
  for (const part of parts) length += part.byteLength;
  const out = new Uint8Array(length);
  out[0] = kind;
  let at = 1;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/** A hint's record key: the target's length (2 bytes) and UTF-8 bytes, then the key's bytes. */
function hintKey(target: string, key: Uint8Array): Bytes {
  const name = encoder.encode(target);
  return prefixed(KIND.hint, Uint8Array.of(name.byteLength >> 8, name.byteLength & 0xff), name, key);
}

function encode(value: unknown): Bytes {
  const buffer = serialize(value);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength) as Bytes;
}

/** The LevelDB operation that writes `change` down. */
function operation(change: Exclude<MemoryChange, { kind: 'counter' }>): Put | Del {
  switch (change.kind) {
    case 'key': {
      const key = prefixed(KIND.key, change.key);
      if (change.siblings === null) return { type: 'del', key };
      return { type: 'put', key, value: encode({ partition: change.partition, siblings: change.siblings }) };
    }
    case 'hint': {
      const key = hintKey(change.target, change.key);
      if (change.siblings === null) return { type: 'del', key };
      return { type: 'put', key, value: encode({ partition: change.partition, siblings: change.siblings }) };
    }
    case 'meta':
      return { type: 'put', key: prefixed(KIND.meta, encoder.encode(change.name)), value: encode(change.value) };
    case 'fresh':
      return { type: 'put', key: prefixed(KIND.fresh, encoder.encode(change.node)), value: encode(change.record) };
  }
}

/** Latin-1 text of `bytes`, a map key that names exactly those bytes. */
function idOf(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096) as unknown as number[]);
  }
  return out;
}

function failure(error: unknown, what: string): Error {
  // A refusal the caller acts on, not a failure of the disk.
  if (error instanceof DynameshError || error instanceof CounterTakenError) return error;
  const e = error as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  if (e?.cause?.code === 'LEVEL_LOCKED') {
    return new StorageError(`${what} failed: the database is in use by another process`, { cause: error });
  }
  const detail = typeof e?.message === 'string' ? e.message : String(error);
  return new StorageError(`LevelDB ${what} failed (${detail})`, { cause: error });
}

/** A batch of changes being gathered, and the promise its callers wait on. */
interface Batch {
  readonly ops: Map<string, Put | Del>;
  sync: boolean;
  /** The counter reservation this batch makes durable; 0 when it raises none. */
  reserves: number;
  readonly done: Promise<void>;
  settle(error?: unknown): void;
}

function newBatch(): Batch {
  let settle!: (error?: unknown) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error === undefined ? resolve() : reject(error));
  });
  // A batch nobody waits on (its calls failed first) must not surface as an unhandled rejection.
  done.catch(() => {});
  return { ops: new Map(), sync: false, reserves: 0, done, settle };
}

/**
 * Opens (creating it when absent) the LevelDB database in `directory` and loads it. Rejects with `ERR_STORAGE` when
 * the directory is in use by another process (LevelDB's lock) or cannot be read.
 */
export async function openLevelStorage(directory: string): Promise<LevelStorage> {
  const db = new ClassicLevel<Bytes, Bytes>(directory, { keyEncoding: 'view', valueEncoding: 'view' });
  try {
    await db.open();
  } catch (error) {
    throw failure(error, `open of ${directory}`);
  }
  try {
    return await LevelStorage.load(db);
  } catch (error) {
    await db.close().catch(() => {});
    throw failure(error, `load of ${directory}`);
  }
}

/** {@link Storage} on one LevelDB database; open it with {@link openLevelStorage}. */
export class LevelStorage implements Storage {
  readonly #db: ClassicLevel<Bytes, Bytes>;
  #memory!: MemoryStorage;
  /** The batch gathering changes, written once the one being written is done. */
  #gathering: Batch | undefined;
  /** The batch last handed to LevelDB, or gathered: what a call that changed nothing waits for. */
  #last: Promise<void> = Promise.resolve();
  #writing = false;
  /** Changes journaled so far: a call that journaled none has nothing of its own to wait for. */
  #changes = 0;
  /** The counter reservation written, or gathered to be. */
  #reserved = 0;
  /** The counter reservation on disk: counters up to it may show before their write is written. */
  #durable = 0;
  /** Why the engine stopped: a batch failed, so memory is ahead of the disk and nothing more may be acknowledged. */
  #broken: Error | undefined;
  #closing: Promise<void> | undefined;

  private constructor(db: ClassicLevel<Bytes, Bytes>) {
    this.#db = db;
  }

  /** Reads every record of `db` into a new engine. */
  static async load(db: ClassicLevel<Bytes, Bytes>): Promise<LevelStorage> {
    const keys: StoredKey[] = [];
    const hints: Hint[] = [];
    const meta: [string, unknown][] = [];
    const fresh: [string, FreshRecord][] = [];
    let counter = 0;
    for await (const [key, value] of db.iterator()) {
      const body = key.subarray(1);
      switch (key[0]) {
        case KIND.key: {
          const record = deserialize(value) as SiblingsRecord;
          keys.push({ key: body.slice(), partition: record.partition, siblings: [...record.siblings] });
          break;
        }
        case KIND.hint: {
          const length = (body[0]! << 8) | body[1]!;
          const target = decoder.decode(body.subarray(2, 2 + length));
          const record = deserialize(value) as SiblingsRecord;
          const { partition, siblings } = record;
          hints.push({ target, key: body.slice(2 + length), partition, siblings: [...siblings] });
          break;
        }
        case KIND.meta:
          meta.push([decoder.decode(body), deserialize(value)]);
          break;
        case KIND.fresh:
          fresh.push([decoder.decode(body), deserialize(value) as FreshRecord]);
          break;
        case KIND.counter:
          counter = deserialize(value) as number;
          break;
        default:
          throw new StorageError(`unknown record kind ${String(key[0])} in the database`);
      }
    }
    const storage = new LevelStorage(db);
    storage.#reserved = storage.#durable = counter;
    // Every counter up to the reservation may have been issued before the restart: none of them is drawn again.
    storage.#memory = MemoryStorage.restore({ keys, hints, meta, counter, fresh }, (change) =>
      storage.#journal(change),
    );
    return storage;
  }

  get(key: Uint8Array): Promise<Version[]> {
    return this.#read(() => this.#memory.get(key));
  }

  apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    return this.#change('apply', options?.durability, () => this.#memory.apply(key, partition, versions, options));
  }

  applyMany(partition: number, entries: readonly ApplyEntry[], options?: WriteOptions): Promise<ApplyResult[]> {
    return this.#change('applyMany', options?.durability, () => this.#memory.applyMany(partition, entries));
  }

  write(key: Uint8Array, partition: number, write: LocalWrite, options?: LocalWriteOptions): Promise<LocalWriteResult> {
    const onComputed = options?.onComputed;
    const shown: LocalWriteOptions =
      onComputed === undefined
        ? {}
        : {
            // Only a counter reserved on disk may leave before its write is written (see the module comment).
            onComputed: (result) => {
              if (result.version.dot.counter <= this.#durable) onComputed(result);
            },
          };
    return this.#change('write', options?.durability, () => this.#memory.write(key, partition, write, shown));
  }

  drawCounter(above?: number): Promise<number> {
    return this.#change('drawCounter', undefined, () => this.#memory.drawCounter(above));
  }

  scanPartition(partition: number, options?: { after?: Uint8Array; limit?: number }): Promise<StoredKey[]> {
    return this.#read(() => this.#memory.scanPartition(partition, options));
  }

  putHint(hint: Hint, options?: WriteOptions): Promise<void> {
    return this.#change('putHint', options?.durability, () => this.#memory.putHint(hint));
  }

  hintsFor(key: Uint8Array): Promise<Hint[]> {
    return this.#read(() => this.#memory.hintsFor(key));
  }

  listHints(options?: { target?: string; limit?: number }): Promise<Hint[]> {
    return this.#read(() => this.#memory.listHints(options));
  }

  hintTargets(): Promise<string[]> {
    return this.#read(() => this.#memory.hintTargets());
  }

  hintCount(target: string): Promise<number> {
    return this.#read(() => this.#memory.hintCount(target));
  }

  deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    return this.#change('deleteHint', undefined, () => this.#memory.deleteHint(target, key, delivered));
  }

  deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    return this.#change('deleteIfUnchanged', undefined, () => this.#memory.deleteIfUnchanged(key, siblings));
  }

  partitionsWithData(): Promise<number[]> {
    return this.#read(() => this.#memory.partitionsWithData());
  }

  getMeta(name: string): Promise<unknown> {
    return this.#read(() => this.#memory.getMeta(name));
  }

  /** Synced to disk: see the module comment. */
  putMeta(name: string, value: unknown): Promise<void> {
    return this.#change('putMeta', 'strict', () => this.#memory.putMeta(name, value));
  }

  stats(): Promise<StorageStats> {
    return this.#read(() => this.#memory.stats());
  }

  /** Waits for the batches under way, then closes the database. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#last.catch(() => {});
      await this.#memory.close();
      await this.#db.close();
    })();
    return this.#closing;
  }

  #live(): void {
    if (this.#closing !== undefined) throw new ClosedError('the storage is closed');
    if (this.#broken !== undefined) throw this.#broken;
  }

  async #read<T>(run: () => Promise<T>): Promise<T> {
    this.#live();
    return run();
  }

  /**
   * Runs a call of the memory engine, which journals its changes synchronously (its methods do not await), and
   * settles once the batch holding them is on disk; a call that changed nothing waits for the batch last handed on,
   * which holds whatever earlier change it may have seen.
   */
  async #change<T>(what: string, durability: Durability | undefined, run: () => Promise<T>): Promise<T> {
    this.#live();
    const before = this.#changes;
    const result = run();
    let durable: Promise<void>;
    if (this.#changes === before) durable = this.#last;
    else {
      const batch = this.#gathering!;
      if (durability === 'strict') batch.sync = true;
      durable = batch.done;
    }
    const [value] = await Promise.all([
      result,
      durable.catch((error: unknown) => Promise.reject(failure(error, what))),
    ]);
    return value;
  }

  #journal(change: MemoryChange): void {
    this.#changes++;
    const batch = this.#gather();
    if (change.kind === 'counter') {
      if (change.counter + COUNTER_BLOCK / 2 <= this.#reserved) return;
      this.#reserved = change.counter + COUNTER_BLOCK;
      batch.reserves = this.#reserved;
      // A reservation lost to a crash of the machine would let counters that already left be issued again.
      batch.sync = true;
      batch.ops.set('c', { type: 'put', key: Uint8Array.of(KIND.counter), value: encode(this.#reserved) });
      return;
    }
    const op = operation(change);
    if (change.kind === 'meta') batch.sync = true;
    batch.ops.set(idOf(op.key), op);
  }

  /** The batch gathering changes, started (and its writing scheduled) when there is none. */
  #gather(): Batch {
    if (this.#gathering !== undefined) return this.#gathering;
    const batch = newBatch();
    this.#gathering = batch;
    this.#last = batch.done;
    // After the current task's microtasks, so that the changes of one task share a batch.
    if (!this.#writing) setImmediate(() => void this.#drain());
    return batch;
  }

  async #drain(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      for (let batch = this.#gathering; batch !== undefined; batch = this.#gathering) {
        this.#gathering = undefined;
        try {
          if (this.#broken !== undefined) throw this.#broken;
          await this.#db.batch([...batch.ops.values()], { sync: batch.sync });
          if (batch.reserves > this.#durable) this.#durable = batch.reserves;
          batch.settle();
        } catch (error) {
          this.#broken ??= failure(error, 'batch write');
          batch.settle(this.#broken);
        }
      }
    } finally {
      this.#writing = false;
    }
  }
}
