/**
 * `npm start`: until the live cluster of tabs exists, a tour of a small simulated cluster of real nodes. It shows
 * the members, puts and gets with their receipts, concurrent writes turning into siblings and a put resolving them,
 * a partition that sends writes to fallback nodes with hints, a crash and restart, and finally a random workload
 * under faults with the checker's verdict.
 */
import { Cluster } from '../test/sim/cluster.ts';
import { Network } from '../test/sim/network.ts';
import { Rng } from '../test/sim/random.ts';
import { describeFailure } from '../test/sim/report.ts';
import { runSimulation } from '../test/sim/run.ts';
import { Scheduler } from '../test/sim/scheduler.ts';
import type { GetResult, PutResult } from '../worker/node.ts';

const utf8 = new TextEncoder();
const text = new TextDecoder();
const say = (line = ''): void => void process.stdout.write(`${line}\n`);

const scheduler = new Scheduler();
const network = new Network(scheduler, new Rng(1).fork('network'));
const cluster = new Cluster({ scheduler, network, rng: new Rng(1).fork('nodes'), size: 5, node: { n: 3, r: 2, w: 2 } });

/** Runs virtual time until `promise` settles. */
async function call<T>(promise: Promise<T>): Promise<T> {
  let settled = false;
  void promise.finally(() => (settled = true)).catch(() => {});
  await scheduler.run(() => settled);
  return promise;
}

function node(id: string) {
  const n = cluster.node(id);
  if (n === null) throw new Error(`${id} is down`);
  return n;
}

function showGet(who: string, key: string, result: GetResult): void {
  const values = result.values.map((v) => JSON.stringify(text.decode(v)));
  const shown =
    values.length === 0
      ? 'nothing'
      : values.length === 1
        ? values[0]
        : `${values.length} siblings: ${values.join(', ')}`;
  say(`  get ${key} at ${who} → ${shown}   (replied: ${result.receipt.replied.join(', ')})`);
}

function showPut(who: string, key: string, value: string, result: PutResult): void {
  const r = result.receipt;
  let line = `  put ${key}=${JSON.stringify(value)} at ${who} → coordinator ${r.coordinator}, acknowledged by ${r.acknowledged.join(', ')}`;
  if (r.fallbacks.length > 0) line += `; fallbacks ${r.fallbacks.join(', ')}`;
  if (r.hints.length > 0) line += `; hints ${r.hints.map((h) => `${h.holder} holds for ${h.target}`).join(', ')}`;
  say(line);
}

async function put(who: string, key: string, value: string, options: { context?: string; w?: number } = {}) {
  const result = await call(node(who).put(key, utf8.encode(value), options));
  showPut(who, key, value, result);
  return result;
}

async function get(who: string, key: string): Promise<GetResult> {
  const result = await call(node(who).get(key));
  showGet(who, key, result);
  return result;
}

function owners(key: string): readonly string[] {
  return cluster.preferenceList(utf8.encode(key), 3);
}

say('dynamesh — a simulated cluster of 5 real nodes (N=3, R=2, W=2) on a virtual network');
say(`members: ${cluster.members.map((m) => m.id).join(', ')}`);
for (const key of ['cart', 'profile']) say(`  ${key} is kept by ${owners(key).join(', ')} (its preference list)`);

say('\n1. Writes and reads through any node');
await put('n0', 'cart', 'milk');
await get('n3', 'cart');

say('\n2. Two clients write without reading first: concurrent versions become siblings');
const a = call(node('n1').put('cart', utf8.encode('milk, eggs')));
const b = call(node('n4').put('cart', utf8.encode('milk, bread')));
showPut('n1', 'cart', 'milk, eggs', await a);
showPut('n4', 'cart', 'milk, bread', await b);
const both = await get('n2', 'cart');
say('  a client merges them and writes back with the context it read:');
await put('n2', 'cart', 'milk, eggs, bread', { context: both.context });
await get('n0', 'cart');

say('\n3. A partition cuts off an owner of "profile": a W=3 write waits it out, then a fallback takes a hint');
const [first] = owners('profile');
network.partition(new Map([[first!, 'b']]));
say(`  partition: ${first} alone`);
const writer = cluster.ids.find((id) => id !== first)!;
await put(writer, 'profile', 'name=Ada', { w: 3 });
await get(writer, 'profile');
network.heal();
say('  partition healed; virtual time passes so that hinted handoff runs…');
await scheduler.advance(3000);
const delivered = cluster.metricTotals().hintsDelivered ?? 0;
say(`  hints delivered so far: ${delivered}`);
const own = await cluster.slot(first!).data.reopen().get(utf8.encode('profile'));
say(
  `  ${first} now stores profile: ${own.map((v) => JSON.stringify(v.value === null ? null : text.decode(v.value))).join(', ')}`,
);

say('\n4. A crash: the others time out on the dead node and carry on; it restarts with its data');
const victim = owners('cart')[0]!;
await cluster.crash(victim);
say(`  ${victim} crashed`);
const survivor = cluster.alive().find((id) => id !== victim)!;
const before = await get(survivor, 'cart');
await put(survivor, 'cart', 'milk, eggs, bread, tea', { context: before.context, w: 3 });
cluster.restart(victim);
say(`  ${victim} restarted over its stored data`);
await scheduler.advance(3000);
await get(victim, 'cart');
await cluster.close();

say('\n5. A random workload under faults, checked for lost writes and convergence');
const faults = ['partition', 'crash', 'loss'] as const;
const result = await runSimulation({
  seed: 7,
  nodes: 5,
  ops: 400,
  faults,
  clients: 6,
  thinkTime: 20,
  faultInterval: [100, 500],
  faultDuration: [300, 1500],
  onFault: (e) => say(`  t=${String(e.time).padStart(5)} ms  ${e.kind === 'heal' ? 'healed' : e.kind}: ${e.detail}`),
});
say(
  `  ${result.ops} operations (${result.succeeded} succeeded; failures ${JSON.stringify(result.failures)}), ` +
    `${(result.simulatedMs / 1000).toFixed(1)} s of virtual time`,
);
say(
  `  verdict: ${result.acknowledged} acknowledged puts, ${result.lost} lost, ${result.siblingsLost} siblings lost, ` +
    `${result.resurrected} resurrected, ${result.converged ? 'replicas converged' : 'replicas DIVERGED'}`,
);
if (!result.ok) {
  for (const line of describeFailure(result)) say(`  ${line}`);
  process.exitCode = 1;
}
say('\nMore: npm run sim -- --nodes 20 --ops 20000 --seed 7 --faults partition,crash,loss');
