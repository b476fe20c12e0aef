/**
 * How evenly the ring spreads keys, and how many move when a node joins. Prints the figures the project reports:
 *
 *   node --import tsx test/bench/ring-balance.ts [--nodes 8,100,1000] [--partitions Q[,Q…]] [--tokens T] [--sets S]
 *     [--keys K] [--seed X] [--sweep]
 *
 * For each cluster size of `--nodes` (default 8, 100 and 1,000 members) and each Q of `--partitions` (default a live
 * cluster's, 4,096): the primary-owner and replica balance (largest share over mean), and what moves when one more node
 * joins, over `--sets` random clusters; beside them the quantization floor of Q partitions over that many nodes.
 * Past Q / 3 members some own no partition at all, which the balance shows.
 *
 * `--sweep` also prints the primary-owner and replica balance for a range of T and Q, which is how
 * DEFAULT_TOKENS_PER_NODE was chosen. The measuring functions are exported for `test/unit/ring.test.ts`, which
 * asserts bounds on the same figures with a smaller run.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import { DEFAULT_CLUSTER_PARTITIONS, DEFAULT_TOKENS_PER_NODE, Ring, type Member } from '../../worker/ring/ring.ts';

/** Replicas per key in the figures, as in DESIGN.md. */
export const REPLICAS = 3;

/** Random bytes from a seeded generator. */
export function randomBytes(rng: RandomGenerator, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const word = rng.next() >>> 0;
    for (let j = 0; j < 4 && i + j < length; j++) out[i + j] = (word >>> (8 * j)) & 0xff;
  }
  return out;
}

/** A random node id (a UUID's shape: tabs use 12 or 17 characters, which place tokens alike), from a seeded generator. */
export function randomNodeId(rng: RandomGenerator): string {
  const hex = Array.from(randomBytes(rng, 16), (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** `count` members with random ids, each in its own domain (one browser profile per tab). */
export function randomMembers(rng: RandomGenerator, count: number): Member[] {
  return Array.from({ length: count }, () => {
    const id = randomNodeId(rng);
    return { id, domain: `profile-${id}` };
  });
}

/** How many of `keys` random keys fall into each partition of a ring with `partitions` partitions. */
export function keysPerPartition(rng: RandomGenerator, keys: number, partitions: number): Uint32Array {
  const ring = new Ring([], { partitions });
  const counts = new Uint32Array(partitions);
  for (let i = 0; i < keys; i++) counts[ring.partitionOf(randomBytes(rng, 16))]!++;
  return counts;
}

/** The keys each member holds: as primary owner, and as any of the first `replicas` of the preference list. */
export function keyShares(
  ring: Ring,
  counts: Uint32Array,
  replicas: number,
): { primary: Map<string, number>; replica: Map<string, number> } {
  const primary = new Map<string, number>(ring.members.map((m) => [m.id, 0]));
  const replica = new Map<string, number>(ring.members.map((m) => [m.id, 0]));
  for (let p = 0; p < ring.partitions; p++) {
    const keys = counts[p]!;
    const list = ring.preferenceList(p, replicas);
    primary.set(list[0]!, primary.get(list[0]!)! + keys);
    for (const id of list) replica.set(id, replica.get(id)! + keys);
  }
  return { primary, replica };
}

/** The largest value over the mean value. */
export function maxOverMean(values: Iterable<number>): number {
  const all = [...values];
  const mean = all.reduce((a, b) => a + b, 0) / all.length;
  return Math.max(...all) / mean;
}

/** The share of keys whose primary owner changes, and whose replica set changes, from ring `a` to ring `b`. */
export function movedShares(a: Ring, b: Ring, counts: Uint32Array, replicas: number): { primary: number; set: number } {
  let total = 0;
  let primary = 0;
  let set = 0;
  for (let p = 0; p < a.partitions; p++) {
    const keys = counts[p]!;
    total += keys;
    const before = a.preferenceList(p, replicas);
    const after = b.preferenceList(p, replicas);
    if (before[0] !== after[0]) primary += keys;
    if (before.length !== after.length || before.some((id) => !after.includes(id))) set += keys;
  }
  return { primary: primary / total, set: set / total };
}

/** Figures of one random cluster: balance of `nodes` members, then what moves when one more joins. */
export interface ClusterFigures {
  /** Largest member's primary-owner share over the mean share. */
  readonly primary: number;
  /** Largest member's any-replica share over the mean share. */
  readonly replica: number;
  /** Share of keys whose primary owner changed when a node joined, over the ideal 1/(nodes+1). */
  readonly movedPrimary: number;
  /** Share of keys whose preference list, as a set, changed when a node joined. */
  readonly movedSet: number;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  readonly seed: number;
  readonly sets: number;
  readonly keys: number;
  readonly nodes: number;
  readonly partitions: number;
  readonly tokensPerNode: number;
}

/** Measures {@link ClusterFigures} for `sets` random clusters over one set of random keys. */
export function measure(options: MeasureOptions): ClusterFigures[] {
  const rng = xoroshiro128plus(options.seed);
  const counts = keysPerPartition(rng, options.keys, options.partitions);
  const ringOptions = { partitions: options.partitions, tokensPerNode: options.tokensPerNode };
  const out: ClusterFigures[] = [];
  for (let s = 0; s < options.sets; s++) {
    const members = randomMembers(rng, options.nodes + 1);
    const before = new Ring(members.slice(0, options.nodes), ringOptions);
    const after = new Ring(members, ringOptions);
    const shares = keyShares(before, counts, REPLICAS);
    const moved = movedShares(before, after, counts, REPLICAS);
    out.push({
      primary: maxOverMean(shares.primary.values()),
      replica: maxOverMean(shares.replica.values()),
      movedPrimary: moved.primary * (options.nodes + 1),
      movedSet: moved.set,
    });
  }
  return out;
}

/**
 * The primary-owner balance no token placement of random tokens can beat on average: each of `partitions` partitions
 * owned by an independent uniform draw among `nodes`, largest count over mean, once per set.
 */
export function quantizationFloor(rng: RandomGenerator, sets: number, nodes: number, partitions: number): number[] {
  return Array.from({ length: sets }, () => {
    const owned = new Array<number>(nodes).fill(0);
    for (let p = 0; p < partitions; p++) owned[(rng.next() >>> 0) % nodes]!++;
    return maxOverMean(owned);
  });
}

/** Mean and worst (largest) of a figure over clusters. */
export function summarize(values: readonly number[]): { mean: number; worst: number } {
  return { mean: values.reduce((a, b) => a + b, 0) / values.length, worst: Math.max(...values) };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      partitions: { type: 'string', default: String(DEFAULT_CLUSTER_PARTITIONS) },
      tokens: { type: 'string', default: String(DEFAULT_TOKENS_PER_NODE) },
      sets: { type: 'string', default: '10' },
      keys: { type: 'string', default: '100000' },
      nodes: { type: 'string', default: '8,100,1000' },
      seed: { type: 'string', default: '1' },
      sweep: { type: 'boolean', default: false },
    },
  });
  const list = (text: string): number[] => text.split(',').map((x) => Number(x.trim()));
  const sizes = list(values.nodes);
  const qs = list(values.partitions);
  const base = { seed: Number(values.seed), sets: Number(values.sets), keys: Number(values.keys) };
  const tokensPerNode = Number(values.tokens);
  const f = (x: number): string => x.toFixed(3);
  const cell = (xs: readonly number[]): string => {
    const s = summarize(xs);
    return `${f(s.mean)} / ${f(s.worst)}`;
  };
  console.log(
    `ring balance: ${base.keys} random keys, ${base.sets} random sets of node ids per row (seed ${base.seed}), ` +
      `N=${REPLICAS}, T=${tokensPerNode}; figures are mean / worst over the sets`,
  );
  console.log(
    `${'nodes'.padStart(5)}  ${'Q'.padStart(6)}  ${'primary max/mean'.padEnd(17)}  ${'floor'.padEnd(17)}  ` +
      `${'replica max/mean'.padEnd(17)}  ${'joiner: moved/ideal'.padEnd(19)}  set moved (ideal)`,
  );
  const start = performance.now();
  for (const nodes of sizes) {
    for (const partitions of qs) {
      const figures = measure({ ...base, nodes, partitions, tokensPerNode });
      // The floor's worst is averaged over 100 runs of as many sets, so that it compares with the worst beside it.
      const floorRng = xoroshiro128plus(base.seed);
      const floorRuns = Array.from({ length: 100 }, () =>
        summarize(quantizationFloor(floorRng, base.sets, nodes, partitions)),
      );
      const floor = `${f(summarize(floorRuns.map((r) => r.mean)).mean)} / ${f(summarize(floorRuns.map((r) => r.worst)).mean)}`;
      console.log(
        `${String(nodes).padStart(5)}  ${String(partitions).padStart(6)}  ${cell(figures.map((x) => x.primary)).padEnd(17)}  ` +
          `${floor.padEnd(17)}  ${cell(figures.map((x) => x.replica)).padEnd(17)}  ` +
          `${cell(figures.map((x) => x.movedPrimary)).padEnd(19)}  ${cell(figures.map((x) => x.movedSet))} (${f(REPLICAS / (nodes + 1))})`,
      );
    }
  }
  const elapsed = performance.now() - start;
  // Rebuild times for a 64-member cluster with every walk computed, at the first Q: from fresh ids (every token
  // hashed), and after one member joins an existing ring (its tokens alone hashed). Median of 5, fresh ids each time.
  const ringOptions = { partitions: qs[0]!, tokensPerNode };
  const timingRng = xoroshiro128plus(base.seed + 1);
  const cold: number[] = [];
  const warm: number[] = [];
  let rebuilt = new Ring([], ringOptions);
  for (let rep = 0; rep < 5; rep++) {
    const members = randomMembers(timingRng, 65);
    let t0 = performance.now();
    const ring = new Ring(members.slice(0, 64), ringOptions);
    for (let p = 0; p < ring.partitions; p++) ring.walk(p);
    cold.push(performance.now() - t0);
    t0 = performance.now();
    rebuilt = new Ring(members, ringOptions);
    for (let p = 0; p < rebuilt.partitions; p++) rebuilt.walk(p);
    warm.push(performance.now() - t0);
  }
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  const key = new Uint8Array(16);
  const lookups = 100_000;
  const lookupStart = performance.now();
  for (let i = 0; i < lookups; i++) {
    key[0] = i;
    key[1] = i >>> 8;
    rebuilt.preferenceList(rebuilt.partitionOf(key), REPLICAS);
  }
  const lookup = ((performance.now() - lookupStart) / lookups) * 1000;
  console.log(
    `timing: rows ${elapsed.toFixed(0)} ms; at Q=${qs[0]}, a 64-member ring with every walk: ${median(cold).toFixed(1)} ms ` +
      `from fresh ids, ${median(warm).toFixed(1)} ms when one joins; partitionOf + preferenceList ${lookup.toFixed(2)} µs`,
  );
  if (values.sweep) sweep({ ...base, nodes: sizes[0]! });
}

/** Balance over a range of T and Q for one cluster size: how DEFAULT_TOKENS_PER_NODE was chosen. */
function sweep(base: { seed: number; sets: number; keys: number; nodes: number }): void {
  console.log(`\nsweep: ${base.nodes} nodes, primary and replica max/mean, mean / worst over ${base.sets} sets`);
  for (const partitions of [256, 1024, 4096]) {
    for (const tokensPerNode of [16, 32, 64, 128, 256]) {
      const figures = measure({ ...base, partitions, tokensPerNode });
      const cell = (xs: number[]): string => {
        const s = summarize(xs);
        return `${s.mean.toFixed(3)} / ${s.worst.toFixed(3)}`;
      };
      console.log(
        `Q=${String(partitions).padEnd(5)} T=${String(tokensPerNode).padEnd(4)} ` +
          `${cell(figures.map((x) => x.primary))}   ${cell(figures.map((x) => x.replica))}`,
      );
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
