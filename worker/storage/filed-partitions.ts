/**
 * Which Q a node's stored data is filed in. Records, hints and held sets name partitions by number, so a node's data
 * is only meaningful on a ring of the Q it was written with: the node records it on its first start in a cluster and
 * joins only a cluster of that Q (`JoinRequest.partitions`).
 */
import { isPartitionCount } from '../ring/ring.ts';
import type { Storage } from './storage.ts';

/** The meta record holding the Q a node's data is filed in. */
export const PARTITIONS_META = 'partitions';

/** Q of every release before Q became a cluster setting: data stored without the meta record was filed in it. */
export const LEGACY_PARTITIONS = 256;

/** The Q `storage`'s data is filed in; null when it stores nothing yet, so that any Q may be taken. */
export async function storedPartitions(storage: Storage): Promise<number | null> {
  const recorded = await storage.getMeta(PARTITIONS_META);
  if (isPartitionCount(recorded)) return recorded;
  const filed = (await storage.partitionsWithData()).length > 0 || (await storage.hintTargets()).length > 0;
  return filed ? LEGACY_PARTITIONS : null;
}
