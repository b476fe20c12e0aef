/**
 * What a write-ahead log holds that its main store does not yet: the newest logged state of each key (its record or
 * its removal) until compaction copies it into the main store. The IndexedDB engine logs a group commit's records as
 * one log record (IndexedDB's cost is per request, not per byte) and answers reads from here first; compaction later
 * writes them into the `keys` store a page at a time, off the writes' path, and drops the log records it covered.
 *
 * Pure bookkeeping, no I/O: which logged state is current, which log records a compaction may drop, and how a scan
 * of the main store is merged with what is logged. Where a key's record is found is the engine's business
 * (`payload`, e.g. an offset into its log record's bytes).
 */
import type { StoredKey } from './storage.ts';
import { keyId } from './records.ts';

/** One key's newest logged state. */
export interface LoggedKey<P> {
  /** The key's bytes as `keyId` (records.ts) names them: their order is the keys' order. */
  readonly id: string;
  readonly partition: number;
  /** The log record that holds it. */
  readonly seq: number;
  /** True when the key was removed. */
  readonly removed: boolean;
  /** Where the engine finds what was logged. */
  readonly payload: P;
}

/** A compaction's share: the oldest keys, whole log records of them, and the last log record they cover. */
export interface Compaction<P> {
  readonly keys: readonly LoggedKey<P>[];
  /** Every log record up to this one holds nothing that is not in `keys` or in a later log record. */
  readonly upTo: number;
}

/** The logged, not yet compacted, keys of one engine. */
export class WalOverlay<P> {
  /** Every logged key, oldest log record first (a key logged again moves to the end). */
  readonly #keys = new Map<string, LoggedKey<P>>();
  /** The same keys by partition, for scans. */
  readonly #byPartition = new Map<number, Map<string, LoggedKey<P>>>();

  /** Keys logged and not yet compacted. */
  get size(): number {
    return this.#keys.size;
  }

  /** The key's newest logged state, or undefined when the main store has the key's current record (or none). */
  get(id: string): LoggedKey<P> | undefined {
    return this.#keys.get(id);
  }

  /** Records that log record `seq` wrote the key `id` (or removed it). Seqs only grow. */
  set(id: string, partition: number, seq: number, removed: boolean, payload: P): void {
    this.#forget(id);
    const logged: LoggedKey<P> = { id, partition, seq, removed, payload };
    this.#keys.set(id, logged);
    let keys = this.#byPartition.get(partition);
    if (keys === undefined) this.#byPartition.set(partition, (keys = new Map()));
    keys.set(id, logged);
  }

  /**
   * The oldest logged keys, at least `max` of them when there are so many, extended to the end of the last log
   * record they reach, so that every log record up to `upTo` may be dropped once they are in the main store.
   * Null when nothing is logged.
   */
  oldest(max: number): Compaction<P> | null {
    const keys: LoggedKey<P>[] = [];
    let upTo = -1;
    for (const logged of this.#keys.values()) {
      if (keys.length >= max && logged.seq > upTo) break;
      keys.push(logged);
      upTo = logged.seq;
    }
    return keys.length === 0 ? null : { keys, upTo };
  }

  /** Forgets the keys a compaction copied into the main store, except those logged again since. */
  release(keys: readonly LoggedKey<P>[]): void {
    for (const logged of keys) if (this.#keys.get(logged.id) === logged) this.#forget(logged.id);
  }

  /** The partitions with a live logged key, and those with a logged removal. */
  partitions(): { readonly live: Set<number>; readonly removed: Set<number> } {
    const live = new Set<number>();
    const removed = new Set<number>();
    for (const [partition, keys] of this.#byPartition) {
      for (const logged of keys.values()) (logged.removed ? removed : live).add(partition);
    }
    return { live, removed };
  }

  /** The logged keys of `partition` after `afterId`, in key order. */
  #of(partition: number, afterId: string | undefined): LoggedKey<P>[] {
    const keys = this.#byPartition.get(partition);
    if (keys === undefined) return [];
    const out: LoggedKey<P>[] = [];
    for (const logged of keys.values()) if (afterId === undefined || logged.id > afterId) out.push(logged);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  #forget(id: string): void {
    const old = this.#keys.get(id);
    if (old === undefined) return;
    this.#keys.delete(id);
    const keys = this.#byPartition.get(old.partition)!;
    keys.delete(id);
    if (keys.size === 0) this.#byPartition.delete(old.partition);
  }

  /**
   * A page of `partition` in key order after `after`, at most `limit` keys, as the main store and this log together
   * hold it: a logged record replaces the stored one and a logged removal hides it. `scan` reads the main store
   * (same arguments as `Storage.scanPartition`); `record` reads a logged key's record. What is logged is taken when
   * the scan starts, so a compaction running meanwhile neither hides a key nor shows it twice.
   */
  async scan(
    partition: number,
    after: Uint8Array | undefined,
    limit: number,
    scan: (after: Uint8Array | undefined, limit: number) => Promise<StoredKey[]>,
    record: (logged: LoggedKey<P>) => StoredKey,
  ): Promise<StoredKey[]> {
    const push = (out: StoredKey[], logged: LoggedKey<P>): void => {
      if (!logged.removed) out.push(record(logged));
    };
    const logged = this.#of(partition, after === undefined ? undefined : keyId(after));
    if (logged.length === 0) return scan(after, limit);
    const out: StoredKey[] = [];
    let next = 0;
    let cursor = after;
    while (out.length < limit) {
      const want = limit - out.length;
      const page = await scan(cursor, want);
      for (const stored of page) {
        const id = keyId(stored.key);
        while (next < logged.length && logged[next]!.id < id) push(out, logged[next++]!);
        if (next < logged.length && logged[next]!.id === id) push(out, logged[next++]!);
        else out.push(stored);
      }
      // A short page is the end of the partition in the main store.
      if (page.length < want) {
        while (next < logged.length) push(out, logged[next++]!);
        break;
      }
      cursor = page[page.length - 1]!.key;
    }
    return out.length > limit ? out.slice(0, limit) : out;
  }
}
