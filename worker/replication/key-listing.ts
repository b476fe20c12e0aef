/**
 * One replica's part of a coverage query: the live keys of one partition under a prefix, in key order, from its own
 * storage. A key is live when one of its siblings is not a tombstone; deleted keys are skipped, not counted.
 */
import type { Storage } from '../storage/storage.ts';
import { type PartitionKeys, compareKeys, hasPrefix, scanStart } from './coverage.ts';

/** Keys read from storage per scan step: tombstones are read and skipped, so a step reads more than it keeps. */
const SCAN_STEP = 256;

/** Bytes a partition's page of keys may hold at most: keys of a frame's worth, however many are asked for. */
export interface ListingBounds {
  readonly maxKeyBytes: number;
  /** Key bytes the answer may still hold; at least one key is always given when there is one. */
  readonly maxBytes: number;
}

/**
 * The first live keys of `partition` under `prefix` after `after` (or from the prefix's start), at most `limit` of
 * them and about `bounds.maxBytes` bytes; `more` is false once the partition holds no further key under the prefix.
 */
export async function listPartition(
  storage: Storage,
  partition: number,
  prefix: Uint8Array,
  after: Uint8Array | null,
  limit: number,
  bounds: ListingBounds,
): Promise<PartitionKeys & { bytes: number }> {
  const keys: Uint8Array[] = [];
  let bytes = 0;
  let from = scanStart(prefix, after, bounds.maxKeyBytes);
  for (;;) {
    const step = await storage.scanPartition(
      partition,
      from === undefined ? { limit: SCAN_STEP } : { after: from, limit: SCAN_STEP },
    );
    for (const stored of step) {
      const key = stored.key;
      if (!hasPrefix(key, prefix)) {
        // Keys before the prefix's start (longer than any stored key could be) are skipped; past its end, it is done.
        if (compareKeys(key, prefix) < 0) continue;
        return { keys, more: false, bytes };
      }
      if (!stored.siblings.some((v) => v.value !== null)) continue;
      if (keys.length >= limit || (keys.length > 0 && bytes + key.length > bounds.maxBytes)) {
        return { keys, more: true, bytes };
      }
      keys.push(key);
      bytes += key.length;
    }
    if (step.length < SCAN_STEP) return { keys, more: false, bytes };
    from = step[step.length - 1]!.key;
  }
}
