/**
 * Tombstone ages as a partition's first owner measures them: when this node first saw each set of tombstones its
 * collection pass found, keyed by a fingerprint of the key and the tombstones' dots. A dot's timestamp is its
 * writer's word, and anyone may stamp a delete 0; so the grace before a collection runs from this node's own first
 * sight (antientropy.ts believes a writer's stamp only once that sight is an hour old).
 *
 * Bounded: a partition keeps only the fingerprints its last pass found, and all partitions together at most
 * {@link MAX_TRACKED_TOMBSTONES}. Whatever is left out is seen afresh on a later pass, which only delays its
 * collection; nothing here ever makes a tombstone older than this node saw it. Pure: the caller persists each
 * partition's {@link TombstoneAges.record} and hands it back to {@link TombstoneAges.load} after a restart.
 */
import { toBase64url } from '../../signaling/base64url.ts';
import { md5 } from '../ring/md5.ts';
import type { Version } from '../versions/version.ts';

/** Most tombstone sets tracked at once, over every partition. */
export const MAX_TRACKED_TOMBSTONES = 200_000;

/** A partition's ages as stored: `[fingerprint, first seen]` pairs, structured-clone data. */
export type TombstoneRecord = [string, number][];

/**
 * The fingerprint of a key's tombstones: the md5 of its bytes and their dots. A set replaced by another (new dots) is
 * a new fingerprint, whose age starts over. A hash of the key keeps an entry small whatever the key's length.
 */
export function tombstoneFingerprint(key: Uint8Array, siblings: readonly Version[]): string {
  const dots = siblings
    .map((v): [string, number] => [v.dot.node, v.dot.counter])
    .sort(([a, i], [b, j]) => (a < b ? -1 : a > b ? 1 : i - j));
  return `${toBase64url(md5(key))}${JSON.stringify(dots)}`;
}

/** When this node first saw each tombstone set, per partition. */
export class TombstoneAges {
  readonly #cap: number;
  /** Per partition, first-seen time by fingerprint. */
  readonly #partitions = new Map<number, Map<string, number>>();
  /** Partitions whose record has been loaded (or found absent). */
  readonly #loaded = new Set<number>();
  /** Entries over every partition. */
  #size = 0;

  constructor(cap: number = MAX_TRACKED_TOMBSTONES) {
    this.#cap = cap;
  }

  /** Entries tracked over every partition. */
  get size(): number {
    return this.#size;
  }

  /** True once the partition's stored record has been loaded (see {@link load}). */
  loaded(partition: number): boolean {
    return this.#loaded.has(partition);
  }

  /**
   * Takes a partition's stored record: its entries keep their stored times. Malformed entries are skipped, and
   * past the cap the most recently seen are left out (they are seen afresh later).
   */
  load(partition: number, record: unknown): void {
    this.#loaded.add(partition);
    const entries = parseRecord(record).sort((a, b) => a[1] - b[1]);
    const ages = this.#ages(partition);
    for (const [fingerprint, seen] of entries) {
      if (this.#size >= this.#cap) break;
      if (ages.has(fingerprint)) continue;
      ages.set(fingerprint, seen);
      this.#size++;
    }
    this.#prune(partition);
  }

  /** When this node first saw the tombstone set `fingerprint` of `partition`, or undefined when it is not tracked. */
  firstSeen(partition: number, fingerprint: string): number | undefined {
    return this.#partitions.get(partition)?.get(fingerprint);
  }

  /**
   * Records a whole pass over `partition`, which found the tombstone sets `fingerprints`: those already tracked keep
   * their time, new ones are first seen `now` while the cap leaves room, and those not found are forgotten. Tracked
   * sets are kept before new ones are taken, so that a full table still lets its oldest entries come of age and
   * make room. True when anything changed.
   */
  observe(partition: number, fingerprints: Iterable<string>, now: number): boolean {
    const before = this.#partitions.get(partition) ?? new Map<string, number>();
    const after = new Map<string, number>();
    const fresh: string[] = [];
    for (const fingerprint of fingerprints) {
      const seen = before.get(fingerprint);
      if (seen !== undefined) after.set(fingerprint, seen);
      else fresh.push(fingerprint);
    }
    const kept = after.size;
    let room = this.#cap - (this.#size - before.size) - kept;
    for (const fingerprint of fresh) {
      if (room <= 0) break;
      if (after.has(fingerprint)) continue;
      after.set(fingerprint, now);
      room--;
    }
    this.#size += after.size - before.size;
    this.#partitions.set(partition, after);
    this.#prune(partition);
    return after.size !== kept || before.size !== kept;
  }

  /** Partitions with tracked entries. */
  partitions(): number[] {
    return [...this.#partitions.keys()];
  }

  /** Forgets what is tracked of `partition`; true when anything was. */
  forget(partition: number): boolean {
    const ages = this.#partitions.get(partition);
    if (ages === undefined) return false;
    this.#size -= ages.size;
    this.#partitions.delete(partition);
    return true;
  }

  /** The partition's entries as a record to store. */
  record(partition: number): TombstoneRecord {
    return [...(this.#partitions.get(partition) ?? [])];
  }

  #ages(partition: number): Map<string, number> {
    let ages = this.#partitions.get(partition);
    if (ages === undefined) this.#partitions.set(partition, (ages = new Map()));
    return ages;
  }

  /** Drops an empty partition's table, so that {@link partitions} lists only those holding entries. */
  #prune(partition: number): void {
    if (this.#partitions.get(partition)?.size === 0) this.#partitions.delete(partition);
  }
}

/** The well-formed entries of a stored record; anything else reads as no entry. */
function parseRecord(record: unknown): TombstoneRecord {
  if (!Array.isArray(record)) return [];
  const out: TombstoneRecord = [];
  for (const entry of record as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 2) continue;
    const [fingerprint, seen] = entry as unknown[];
    if (typeof fingerprint === 'string' && typeof seen === 'number' && Number.isFinite(seen))
      out.push([fingerprint, seen]);
  }
  return out;
}
