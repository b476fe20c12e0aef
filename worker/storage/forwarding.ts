/**
 * A storage that hands every call to another as it is, answering with that storage's own promise: the base of the
 * decorators that watch some calls and pass the rest on (ObservedStorage in the node, the simulation's witness).
 * A subclass overrides what it watches and calls `this.inner` for the rest of the work.
 */
import type { Version } from '../versions/version.ts';
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

/** `inner`, call for call. */
export class ForwardingStorage implements Storage {
  protected readonly inner: Storage;

  constructor(inner: Storage) {
    this.inner = inner;
  }

  get(key: Uint8Array): Promise<Version[]> {
    return this.inner.get(key);
  }

  apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: ApplyOptions,
  ): Promise<ApplyResult> {
    return this.inner.apply(key, partition, versions, options);
  }

  applyMany(partition: number, entries: readonly ApplyEntry[], options?: WriteOptions): Promise<ApplyResult[]> {
    return this.inner.applyMany(partition, entries, options);
  }

  write(key: Uint8Array, partition: number, write: LocalWrite, options?: LocalWriteOptions): Promise<LocalWriteResult> {
    return this.inner.write(key, partition, write, options);
  }

  drawCounter(above?: number): Promise<number> {
    return this.inner.drawCounter(above);
  }

  scanPartition(partition: number, options?: { after?: Uint8Array; limit?: number }): Promise<StoredKey[]> {
    return this.inner.scanPartition(partition, options);
  }

  putHint(hint: Hint, options?: WriteOptions): Promise<void> {
    return this.inner.putHint(hint, options);
  }

  hintsFor(key: Uint8Array): Promise<Hint[]> {
    return this.inner.hintsFor(key);
  }

  listHints(options?: { target?: string; limit?: number }): Promise<Hint[]> {
    return this.inner.listHints(options);
  }

  hintTargets(): Promise<string[]> {
    return this.inner.hintTargets();
  }

  hintCount(target: string): Promise<number> {
    return this.inner.hintCount(target);
  }

  deleteHint(target: string, key: Uint8Array, delivered: readonly Version[]): Promise<boolean> {
    return this.inner.deleteHint(target, key, delivered);
  }

  deleteIfUnchanged(key: Uint8Array, siblings: readonly Version[]): Promise<boolean> {
    return this.inner.deleteIfUnchanged(key, siblings);
  }

  partitionsWithData(): Promise<number[]> {
    return this.inner.partitionsWithData();
  }

  getMeta(name: string): Promise<unknown> {
    return this.inner.getMeta(name);
  }

  putMeta(name: string, value: unknown): Promise<void> {
    return this.inner.putMeta(name, value);
  }

  stats(): Promise<StorageStats> {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
