/**
 * Small simulated clusters of real nodes for the unit tests of partition sync (rebalancing, anti-entropy, handoff):
 * N = 3 over Q = 16 partitions of T = 16 tokens each, anti-entropy off unless a test turns it on, built settled.
 */
import type { Cluster, SimNodeOptions } from '../sim/cluster.ts';
import { type World, text, unsettledWorld } from './cluster-world.ts';

export type { World } from './cluster-world.ts';

/** Replication factor of the worlds. */
export const N = 3;
/** Ring partitions of the worlds. */
export const Q = 16;
/** Tokens per node of the worlds. */
export const T = 16;

/**
 * A settled cluster: every node holds what it owns. A crashed node leaves the view after 3 s, requests time out
 * after 200 ms, and virtual time runs in steps of 100 ms until the first fetches are done.
 */
export async function world(size: number, node: Partial<SimNodeOptions> = {}, seed = 1): Promise<World> {
  const w = unsettledWorld(size, {
    seed,
    failureDetection: 3000,
    node: { n: N, r: 2, w: 2, partitions: Q, tokensPerNode: T, requestTimeout: 200, antiEntropyInterval: 0, ...node },
  });
  await w.until(() => w.holding(), 'first fetch');
  return w;
}

/** Every version node `id` stores for `key`, as `node:counter` dots, straight from its data. */
export async function dots(cluster: Cluster, id: string, key: string): Promise<string[]> {
  const handle = cluster.slot(id).data.reopen();
  const stored = await handle.get(text.encode(key));
  return stored.map((v) => `${v.dot.node}:${v.dot.counter}${v.value === null ? '(tombstone)' : ''}`).sort();
}
