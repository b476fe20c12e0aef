/**
 * Convergence judged from the nodes' own state, with no client read to repair anything: every node has the current
 * view; every partition's owners under it hold the partition (state `held`) and store the same sibling set for every
 * key; no running node that is not an owner still stores keys of it (releases are done); and no hint is left
 * anywhere. {@link awaitConvergence} lets virtual time run until that holds, so that what brings the replicas
 * together is partition transfer, anti-entropy and hinted handoff alone.
 */
import type { PartitionInfo } from '../../worker/membership/ownership.ts';
import { keyId } from '../../worker/storage/memory.ts';
import type { MemoryStorage } from '../../worker/storage/memory.ts';
import { type Version, resolve } from '../../worker/versions/version.ts';
import type { FinalKey, ReplicaState } from './checker.ts';
import type { Cluster, SimNode } from './cluster.ts';
import type { Scheduler } from './scheduler.ts';
import { valueId } from './values.ts';

const utf8 = new TextEncoder();

/** Where convergence stands. */
export interface ConvergenceState {
  readonly converged: boolean;
  /** How many things stand in the way. */
  readonly problems: number;
  /** The first few of them, in words. */
  readonly details: readonly string[];
}

/** How long {@link awaitConvergence} took. */
export interface ConvergenceOutcome extends ConvergenceState {
  /** Virtual ms from the call to the first check that found the cluster converged, or to the cap. */
  readonly ms: number;
  /** Checks made. */
  readonly checks: number;
}

/** Options of {@link awaitConvergence}. */
export interface AwaitOptions {
  /** Virtual ms between checks. @default 1000 */
  readonly step?: number;
  /** Virtual ms after which the cluster is declared not converged. @default 600000 */
  readonly cap?: number;
  /** Problems listed in the outcome. @default 5 */
  readonly shown?: number;
}

/** Runs `fn` over a fresh handle on a node's data, whether or not the node runs. */
export async function withData<T>(slot: SimNode, fn: (storage: MemoryStorage) => Promise<T>): Promise<T> {
  const handle = slot.data.reopen();
  try {
    return await fn(handle);
  } finally {
    await handle.close();
  }
}

/** Checks once whether the cluster has converged (see the module comment); `n` is the replication factor. */
export async function convergenceState(cluster: Cluster, n: number, shown = 5): Promise<ConvergenceState> {
  const details: string[] = [];
  let problems = 0;
  const problem = (line: string): void => {
    problems++;
    if (details.length < shown) details.push(line);
  };
  const ring = cluster.ring;
  const view = cluster.memberIds().sort().join(',');
  const running = cluster.live();
  const infos = new Map<string, Map<number, PartitionInfo>>();
  /** Per running node, the partitions it stores keys of: one listing each rather than Q scans each. */
  const storing = new Map<string, ReadonlySet<number>>();
  for (const id of running) {
    storing.set(id, new Set(await withData(cluster.slot(id), (s) => s.partitionsWithData())));
  }
  for (const id of running) {
    const node = cluster.node(id)!;
    const seen = node.members.map((m) => m.id).join(',');
    if (seen !== view) problem(`${id} has not got the current view (epoch ${cluster.epoch})`);
    infos.set(id, new Map((await node.partitions()).map((info) => [info.partition, info])));
  }
  for (const id of cluster.memberIds()) {
    if (cluster.node(id) === null) problem(`${id} is a member of the view but down`);
  }

  for (let p = 0; p < ring.partitions; p++) {
    const owners = ring.preferenceList(p, n);
    const stored = new Map<string, Map<string, string>>();
    for (const owner of owners) {
      const info = infos.get(owner)?.get(p);
      if (infos.has(owner) && info?.state !== 'held')
        problem(`partition ${p}: owner ${owner} is ${info === undefined ? 'not reporting it' : info.state}`);
      stored.set(owner, await partitionDots(cluster.slot(owner), p));
    }
    const keys = new Set([...stored.values()].flatMap((m) => [...m.keys()]));
    for (const key of keys) {
      const sets = owners.map((o) => stored.get(o)!.get(key) ?? '');
      if (sets.some((s) => s !== sets[0]))
        problem(
          `partition ${p}: key ${JSON.stringify(key)} differs: ${owners.map((o, i) => `${o}=[${sets[i]}]`).join(' ')}`,
        );
    }
    for (const id of running) {
      if (!owners.includes(id) && storing.get(id)!.has(p))
        problem(`partition ${p}: ${id} is no owner but still stores keys of it`);
    }
  }

  for (const id of cluster.ids) {
    const slot = cluster.slot(id);
    if (slot.left) continue;
    const hints = await withData(slot, async (s) => (await s.stats()).hints);
    if (hints > 0) problem(`${id} still holds ${hints} hints`);
  }
  return { converged: problems === 0, problems, details };
}

/**
 * Lets virtual time run in steps until {@link convergenceState} finds the cluster converged, or until the cap.
 */
export async function awaitConvergence(
  cluster: Cluster,
  scheduler: Scheduler,
  n: number,
  options: AwaitOptions = {},
): Promise<ConvergenceOutcome> {
  const step = options.step ?? 1000;
  const cap = options.cap ?? 600_000;
  const start = scheduler.now;
  for (let checks = 1; ; checks++) {
    const state = await convergenceState(cluster, n, options.shown);
    if (state.converged || scheduler.now - start >= cap) return { ...state, ms: scheduler.now - start, checks };
    await scheduler.advance(step);
  }
}

/**
 * The final state of `key` from storage alone: what each owner under the current view stores, and as the values a
 * read would return the live siblings of everything they store, merged.
 */
export async function storedFinal(cluster: Cluster, key: string, n: number): Promise<FinalKey> {
  const bytes = utf8.encode(key);
  const replicas: ReplicaState[] = [];
  let merged: Version[] = [];
  for (const id of cluster.preferenceList(bytes, n)) {
    const siblings = await withData(cluster.slot(id), (s) => s.get(bytes));
    merged = resolve(merged, siblings).siblings;
    replicas.push({ node: id, versions: siblings.map(storedVersion) });
  }
  const values = merged.flatMap((s) => (s.value === null ? [] : [valueId(s.value)])).sort();
  return { key, values, replicas };
}

/** A stored version as the checker sees it. */
export function storedVersion(version: Version): ReplicaState['versions'][number] {
  return {
    node: version.dot.node,
    counter: version.dot.counter,
    value: version.value === null ? null : valueId(version.value),
  };
}

/** Key id → the sorted dots of its siblings, for every key a node stores in partition `p`. */
async function partitionDots(slot: SimNode, p: number): Promise<Map<string, string>> {
  const keys = await withData(slot, (s) => s.scanPartition(p));
  return new Map(
    keys.map((k) => [
      keyId(k.key),
      k.siblings
        .map((v) => `${v.dot.node}:${v.dot.counter}`)
        .sort()
        .join(' '),
    ]),
  );
}
