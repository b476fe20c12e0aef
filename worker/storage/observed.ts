/**
 * A storage decorator that reports every change of the main store as it completes, so that the node keeps its
 * Merkle trees in step with what is stored without each writer having to remember to tell them.
 */
import type { Version } from '../versions/version.ts';
import { ForwardingStorage } from './forwarding.ts';
import type {
  ApplyOptions,
  ApplyEntry,
  ApplyResult,
  LocalWrite,
  LocalWriteOptions,
  LocalWriteResult,
  Storage,
  WriteOptions,
} from './storage.ts';

/** Told the key's siblings after each change of the main store; an empty list means the key is gone. */
export type ChangeListener = (key: Uint8Array, siblings: readonly Version[]) => void;

/** The same storage, reporting changes of the main store to `onChange`. */
export class ObservedStorage extends ForwardingStorage {
  readonly #onChange: ChangeListener;

  constructor(inner: Storage, onChange: ChangeListener) {
    super(inner);
    this.#onChange = onChange;
  }

  override async apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    const result = await this.inner.apply(key, partition, versions, options);
    if (result.changed) this.#onChange(key, result.siblings);
    return result;
  }

  override async applyMany(
    partition: number,
    entries: readonly ApplyEntry[],
    options?: WriteOptions,
  ): Promise<ApplyResult[]> {
    const results = await this.inner.applyMany(partition, entries, options);
    for (let i = 0; i < results.length; i++) {
      if (results[i]!.changed) this.#onChange(entries[i]!.key, results[i]!.siblings);
    }
    return results;
  }

  override async write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: LocalWriteOptions,
  ): Promise<LocalWriteResult> {
    const result = await this.inner.write(key, partition, write, options);
    this.#onChange(key, result.siblings);
    return result;
  }

  override async deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    const gone = await this.inner.deleteIfUnchanged(key, siblings);
    if (gone) this.#onChange(key, []);
    return gone;
  }
}
