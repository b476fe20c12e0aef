/**
 * Small simulated clusters of real nodes for the unit tests of partition sync (rebalancing, anti-entropy, handoff):
 * N = 3 over Q = 16 partitions of T = 16 tokens each, anti-entropy off unless a test turns it on, built settled.
 */
import assert from 'node:assert/strict';
import type { DynamoNode } from '../../worker/node.ts';
import { Cluster, type SimNodeOptions } from '../sim/cluster.ts';
import { Network } from '../sim/network.ts';
import { Rng } from '../sim/random.ts';
import { Scheduler } from '../sim/scheduler.ts';

const text = new TextEncoder();

/** Replication factor of the worlds. */
export const N = 3;
/** Ring partitions of the worlds. */
export const Q = 16;
/** Tokens per node of the worlds. */
export const T = 16;

/** A simulated cluster with virtual time. */
export interface World {
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly cluster: Cluster;
  settle<T>(promise: Promise<T>): Promise<T>;
  /** Runs virtual time until `done()` holds, failing after `cap` ms. */
  until(done: () => boolean | Promise<boolean>, what: string, cap?: number): Promise<void>;
  node(id: string): DynamoNode;
}

/** A settled cluster: every node holds what it owns. */
export async function world(size: number, node: Partial<SimNodeOptions> = {}, seed = 1): Promise<World> {
  const scheduler = new Scheduler();
  const rng = new Rng(seed);
  const network = new Network(scheduler, rng.fork('network'));
  const cluster = new Cluster({
    scheduler,
    network,
    rng,
    size,
    failureDetection: 3000,
    node: { n: N, r: 2, w: 2, partitions: Q, tokensPerNode: T, requestTimeout: 200, antiEntropyInterval: 0, ...node },
  });
  const w: World = {
    scheduler,
    network,
    cluster,
    async settle<T>(promise: Promise<T>): Promise<T> {
      let done = false;
      void promise.finally(() => (done = true)).catch(() => {});
      await scheduler.run(() => done);
      return promise;
    },
    async until(done, what, cap = 60_000) {
      const end = scheduler.now + cap;
      while (!(await done())) {
        assert.ok(scheduler.now < end, `${what}: not after ${cap} ms`);
        await scheduler.advance(100);
      }
    },
    node(id) {
      const n = cluster.node(id);
      assert.ok(n, `${id} is running`);
      return n;
    },
  };
  await w.until(() => cluster.alive().every((id) => w.node(id).fetchingCount() === 0), 'first fetch');
  return w;
}

/** Every version node `id` stores for `key`, as `node:counter` dots, straight from its data. */
export async function dots(cluster: Cluster, id: string, key: string): Promise<string[]> {
  const handle = cluster.slot(id).data.reopen();
  const stored = await handle.get(text.encode(key));
  return stored.map((v) => `${v.dot.node}:${v.dot.counter}${v.value === null ? '(tombstone)' : ''}`).sort();
}
