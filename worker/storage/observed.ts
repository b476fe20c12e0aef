/**
 * A storage decorator that reports every change of the main store as it completes, so that the node keeps its
 * Merkle trees in step with what is stored without each writer having to remember to tell them.
 */
import type { Version } from '../versions/version.ts';
import type {
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

/** Told the key's siblings after each change of the main store; an empty list means the key is gone. */
export type ChangeListener = (key: Uint8Array, siblings: readonly Version[]) => void;

/** The same storage, reporting changes of the main store to `onChange`. */
export class ObservedStorage implements Storage {
  readonly #inner: Storage;
  readonly #onChange: ChangeListener;

  constructor(inner: Storage, onChange: ChangeListener) {
    this.#inner = inner;
    this.#onChange = onChange;
  }

  get(key: Uint8Array): Promise<Version[]> {
    return this.#inner.get(key);
  }

  async apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: WriteOptions,
  ): Promise<ApplyResult> {
    const result = await this.#inner.apply(key, partition, versions, options);
    if (result.changed) this.#onChange(key, result.siblings);
    return result;
  }

  async applyMany(partition: number, entries: readonly ApplyEntry[], options?: WriteOptions): Promise<ApplyResult[]> {
    const results = await this.#inner.applyMany(partition, entries, options);
    for (let i = 0; i < results.length; i++) {
      if (results[i]!.changed) this.#onChange(entries[i]!.key, results[i]!.siblings);
    }
    return results;
  }

  async write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: LocalWriteOptions,
  ): Promise<LocalWriteResult> {
    const result = await this.#inner.write(key, partition, write, options);
    this.#onChange(key, result.siblings);
    return result;
  }

  async deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    const gone = await this.#inner.deleteIfUnchanged(key, siblings);
    if (gone) this.#onChange(key, []);
    return gone;
  }

  scanPartition(partition: number, options?: { after?: Uint8Array; limit?: number }): Promise<StoredKey[]> {
    return this.#inner.scanPartition(partition, options);
  }

  putHint(hint: Hint, options?: WriteOptions): Promise<void> {
    return this.#inner.putHint(hint, options);
  }

  hintsFor(key: Uint8Array): Promise<Hint[]> {
    return this.#inner.hintsFor(key);
  }

  listHints(options?: { target?: string; limit?: number }): Promise<Hint[]> {
    return this.#inner.listHints(options);
  }

  hintTargets(): Promise<string[]> {
    return this.#inner.hintTargets();
  }

  deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    return this.#inner.deleteHint(target, key, delivered);
  }

  partitionsWithData(): Promise<number[]> {
    return this.#inner.partitionsWithData();
  }

  getMeta(name: string): Promise<unknown> {
    return this.#inner.getMeta(name);
  }

  putMeta(name: string, value: unknown): Promise<void> {
    return this.#inner.putMeta(name, value);
  }

  stats(): Promise<StorageStats> {
    return this.#inner.stats();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
