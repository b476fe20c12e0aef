/**
 * Small simulated clusters of real nodes in virtual time, shared by the unit tests that drive `DynamoNode`s as their
 * clients and peers would: the world (scheduler, network, cluster), running virtual time until a call settles, and
 * the helpers those tests read their outcomes with. Every default is the simulation's own; a test file states its
 * own (a seed, a request timeout, network conditions) by passing options, so the world it builds is visible there.
 */
import assert from 'node:assert/strict';
import type { DynamoNode } from '../../worker/node.ts';
import { Cluster, type SimNodeOptions } from '../sim/cluster.ts';
import { Network, type NetworkConditions } from '../sim/network.ts';
import { Rng } from '../sim/random.ts';
import { Scheduler } from '../sim/scheduler.ts';
import { settle } from '../sim/settle.ts';

/** Encodes keys and values the tests write. */
export const text = new TextEncoder();
/** Decodes values the tests read. */
export const utf8 = new TextDecoder();

/** How to build a world; each option left out is the simulation's own default. */
export interface WorldOptions {
  /**
   * Seed of the world's randomness: network delays, views, node keys.
   * @default 1
   */
  readonly seed?: number;
  /**
   * Options every node starts with.
   * @default {} (the nodes' own defaults)
   */
  readonly node?: Partial<SimNodeOptions>;
  /**
   * Conditions of the simulated network.
   * @default {} (a quiet network: 1 ms plus a 2 ms mean tail of delay, no loss, duplicates or reordering)
   */
  readonly conditions?: Partial<NetworkConditions>;
  /**
   * Failure domains the nodes are spread over (as the tabs of one browser profile share one).
   * @default one domain per node, as the cluster gives them
   */
  readonly domains?: number | undefined;
  /**
   * Virtual milliseconds after which the simulated server drops a crashed node from the view.
   * @default the cluster's own
   */
  readonly failureDetection?: number;
  /**
   * Whether node ids derive from Ed25519 keys and versions carry their author's proof, as tabs' do.
   * @default false
   */
  readonly keys?: boolean;
}

/** A simulated cluster with virtual time. */
export interface World {
  readonly scheduler: Scheduler;
  readonly network: Network;
  readonly cluster: Cluster;
  /** Runs virtual time until `promise` settles, and returns its outcome. */
  settle<T>(promise: Promise<T>): Promise<T>;
  /** Runs virtual time in steps of 100 ms until `done()` holds, failing after `cap` ms (default 60 s). */
  until(done: () => boolean | Promise<boolean>, what: string, cap?: number): Promise<void>;
  /** The running node `id`; fails when it is not running. */
  node(id: string): DynamoNode;
  /** True when every running node holds every partition it owns: none is fetching one. */
  holding(): boolean;
}

/**
 * A world as it starts: the view is formed, and the nodes have only begun to learn that nobody holds anything yet.
 */
export function unsettledWorld(size: number, options: WorldOptions = {}): World {
  const scheduler = new Scheduler();
  const rng = new Rng(options.seed ?? 1);
  // A stream of its own for the network: the frames a test sends do not move what the cluster draws.
  const network = new Network(scheduler, rng.fork('network'), options.conditions);
  const cluster = new Cluster({
    scheduler,
    network,
    rng,
    size,
    ...(options.domains === undefined ? {} : { domains: options.domains }),
    ...(options.failureDetection === undefined ? {} : { failureDetection: options.failureDetection }),
    ...(options.keys === undefined ? {} : { keys: options.keys }),
    node: options.node ?? {},
  });
  const node = (id: string): DynamoNode => {
    const n = cluster.node(id);
    assert.ok(n, `node ${id} is running`);
    return n;
  };
  return {
    scheduler,
    network,
    cluster,
    node,
    settle: (promise) => settle(scheduler, promise),
    async until(done, what, cap = 60_000) {
      const end = scheduler.now + cap;
      while (!(await done())) {
        assert.ok(scheduler.now < end, `${what}: not after ${cap} ms`);
        await scheduler.advance(100);
      }
    },
    holding: () => cluster.alive().every((id) => node(id).fetchingCount() === 0),
  };
}

/** A world whose nodes all hold their partitions: virtual time has run until no node fetches one any more. */
export async function world(size: number, options: WorldOptions = {}): Promise<World> {
  const w = unsettledWorld(size, options);
  await w.scheduler.run(() => w.holding());
  return w;
}

/** The values of a read, decoded and sorted. */
export function values(result: { readonly values: readonly Uint8Array[] }): string[] {
  return result.values.map((v) => utf8.decode(v)).sort();
}

/** What `promise` rejects with, to read its fields (`code`, `message`, …); fails when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Readonly<Record<string, unknown>>> {
  try {
    await promise;
  } catch (error) {
    assert.ok(typeof error === 'object' && error !== null, `rejected with an error object, not ${String(error)}`);
    return error as Readonly<Record<string, unknown>>;
  }
  assert.fail('expected a rejection');
}

/** The `n` owners of `key` (its preference list), and a node that holds no copy of it. */
export function placement(w: World, key: string, n = 3): { owners: readonly string[]; outsider: string } {
  const owners = w.cluster.preferenceList(text.encode(key), n);
  const outsider = w.cluster.ids.find((id) => !owners.includes(id));
  assert.ok(outsider !== undefined, `a node outside the owners of ${key}`);
  return { owners, outsider };
}
