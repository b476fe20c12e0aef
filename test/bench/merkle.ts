/**
 * How fast partition trees take writes: digest plus insert of new keys (a tree build), digest plus replace of
 * stored keys (the update after every write), and the digest alone. Keys are 16 to 48 random bytes with 1 to 3
 * siblings of UUID-shaped node ids, as a cluster of tabs writes them.
 *
 *   node --import tsx test/bench/merkle.ts [--keys N] [--runs R] [--seed X]
 *
 * Prints keys per second for each, the best of R runs.
 */
import { parseArgs } from 'node:util';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { keyDigest, PartitionTree } from '../../worker/membership/merkle.ts';
import { DEFAULT_PARTITIONS } from '../../worker/ring/ring.ts';
import type { Version } from '../../worker/versions/version.ts';
import { randomBytes, randomNodeId } from './ring-balance.ts';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
  },
});
const count = Number(values.keys);
const runs = Number(values.runs);
const rng = xoroshiro128plus(Number(values.seed));

const nodes = Array.from({ length: 8 }, () => randomNodeId(rng));
const pick = (n: number): number => (rng.next() >>> 0) % n;
const siblings = (): Version[] =>
  Array.from({ length: 1 + pick(3) }, (_, i) => ({
    dot: { node: nodes[(i + pick(8)) % 8]!, counter: 1 + pick(1_000_000) + i, timestamp: 1.7e12 + pick(1e6) },
    context: [],
    value: randomBytes(rng, 32),
  }));
const entries = Array.from({ length: count }, () => ({ key: randomBytes(rng, 16 + pick(33)), versions: siblings() }));
const rewrites = entries.map((e) => siblings().map((v, i) => (i === 0 ? v : { ...v, dot: e.versions[0]!.dot })));
const averageSiblings = entries.reduce((n, e) => n + e.versions.length, 0) / count;

function best(run: () => void): number {
  let fastest = Infinity;
  for (let r = 0; r < runs; r++) {
    const started = performance.now();
    run();
    fastest = Math.min(fastest, performance.now() - started);
  }
  return fastest;
}

let sink = 0;
const digestMs = best(() => {
  for (const { key, versions } of entries) sink ^= keyDigest(key, versions)[0];
});
let tree = new PartitionTree(DEFAULT_PARTITIONS);
const insertMs = best(() => {
  tree = new PartitionTree(DEFAULT_PARTITIONS);
  for (const { key, versions } of entries) tree.set(key, versions);
});
const updateMs = best(() => {
  for (let i = 0; i < count; i++) tree.set(entries[i]!.key, rewrites[i]!);
  for (const { key, versions } of entries) tree.set(key, versions);
});

const rate = (ms: number, n: number): string => `${Math.round((n / ms) * 1000).toLocaleString('en-US')} keys/s`;
console.log(
  `${count} keys, ${averageSiblings.toFixed(2)} siblings on average, best of ${runs} runs (root ${tree.rootHex()})`,
);
console.log(`digest only:                 ${rate(digestMs, count)}  (${digestMs.toFixed(0)} ms)`);
console.log(`digest + set, new keys:      ${rate(insertMs, count)}  (${insertMs.toFixed(0)} ms)`);
console.log(`digest + set, replacing:     ${rate(updateMs, 2 * count)}  (${updateMs.toFixed(0)} ms for ${2 * count})`);
if (sink === 0.5) console.log('');
