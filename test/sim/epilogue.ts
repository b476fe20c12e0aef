/**
 * The clients' epilogue: after a run with misbehaving clients has healed and its final state has been judged, the
 * cluster must still serve every key they hammered, in a phase with no fault at all. For each key:
 *
 * 1. a get with the default R answers (a key past its bounds, or poisoned by a forged context, is not wedged);
 * 2. a put over that read's context succeeds and resolves the key to one value, which the next get returns alone
 *    (when the siblings' coordinators are more than a context can name, a few such rounds);
 *
 * then the partitions holding the watched keys converge (every owner holds them, with equal Merkle roots), and a
 * node joining afterwards finishes fetching its partitions, after which they converge again with it among the owners
 * and it serves the watched keys' one value itself.
 */
import type { DynamoNode } from '../../worker/node.ts';
import { decodeContext } from '../../worker/wire/context.ts';
import { MAX_CLOCK_ENTRIES } from '../../worker/versions/vclock.ts';
import type { Cluster } from './cluster.ts';
import type { Rng } from './random.ts';
import type { Scheduler } from './scheduler.ts';
import { valueId, writeValue } from './values.ts';

const utf8 = new TextEncoder();

/** Options of {@link epilogue}. */
export interface EpilogueOptions {
  readonly cluster: Cluster;
  readonly scheduler: Scheduler;
  readonly rng: Rng;
  /** Replication factor N. */
  readonly n: number;
  /** The keys to read and resolve. */
  readonly keys: readonly string[];
  /** The keys whose partitions must converge and reach a node that joins afterwards. */
  readonly watched: readonly string[];
  /** Virtual ms the watched partitions have to converge, each time. @default 120000 */
  readonly convergenceCap?: number;
  /** Virtual ms the joining node has to finish fetching. @default 300000 */
  readonly joinCap?: number;
}

/** What the epilogue found. */
export interface EpilogueFindings {
  /** Keys that could not be read or resolved, partitions that did not converge, a joiner that did not finish. */
  readonly wedged: string[];
  /** The node that joined, or null when the epilogue stopped before. */
  joiner: string | null;
  /** Virtual ms the joiner took to fetch its partitions, or null. */
  joinMs: number | null;
}

/** Virtual ms after which a node no longer suspects peers that timed out on it: the default 4 × 500 ms, and more. */
const SUSPICION_LAPSE = 3000;

/** Most rounds of put-over-the-read-context a key gets to resolve to one value. */
const ROUNDS = 4;

/** Runs the epilogue; see the module comment. */
export async function epilogue(options: EpilogueOptions): Promise<EpilogueFindings> {
  const { cluster, scheduler, rng, n } = options;
  const found: EpilogueFindings = { wedged: [], joiner: null, joinMs: null };
  const wedged = (line: string): void => void found.wedged.push(line);
  const resolved = new Map<string, string>();
  // Suspicions earned during the faults lapse first: this phase has none.
  await scheduler.advance(SUSPICION_LAPSE);
  for (const key of options.keys) {
    const value = await resolveKey(key);
    if (value !== null) resolved.set(key, value);
  }

  const partitions = [...new Set(options.watched.map((key) => cluster.ring.partitionOf(utf8.encode(key))))];
  const cap = options.convergenceCap ?? 120_000;
  const before = await settle(cluster, scheduler, partitions, n, cap);
  for (const problem of before) wedged(`before any join: ${problem}`);

  const joiner = cluster.join();
  found.joiner = joiner;
  const start = scheduler.now;
  const joinCap = options.joinCap ?? 300_000;
  for (;;) {
    const fetching = cluster.node(joiner)!.fetchingCount();
    if (fetching === 0) {
      found.joinMs = scheduler.now - start;
      break;
    }
    if (scheduler.now - start >= joinCap) {
      wedged(`${joiner}, joining after the run, still fetched ${fetching} partitions after ${joinCap} ms`);
      break;
    }
    await scheduler.advance(1000);
  }
  const after = await settle(cluster, scheduler, partitions, n, cap);
  for (const problem of after) wedged(`after ${joiner} joined: ${problem}`);

  // The joiner serves what it fetched: a read through it returns each watched key's one value. It first lets lapse
  // the suspicion its first requests may have earned from peers that did not know it yet (their frames are dropped
  // until the view reaches them), which would send its reads to fallbacks: a known limit of sloppy quorums.
  await scheduler.advance(SUSPICION_LAPSE);
  for (const key of options.watched) {
    const expected = resolved.get(key);
    if (expected === undefined) continue;
    const outcome = await call(scheduler, cluster.node(joiner)!.get(key));
    if (!outcome.ok) wedged(`a read of ${key} through ${joiner} failed: ${errorText(outcome.error)}`);
    else {
      const values = outcome.value.values.map(valueId);
      if (values.length !== 1 || values[0] !== expected)
        wedged(
          `a read of ${key} through ${joiner} returned [${values.join(', ')}], not [${expected}] ` +
            `(replies from ${outcome.value.receipt.replied.join(', ')}; owners ` +
            `${cluster.preferenceList(utf8.encode(key), n).join(', ')}; ${joiner} sees ` +
            `${((r) => r.preferenceList(r.partitionOf(utf8.encode(key)), n).join(', '))(cluster.node(joiner)!.ring)})`,
        );
    }
  }
  return found;

  /** Reads `key` and puts over the read, until it holds one value; that value's write id, or null. */
  async function resolveKey(key: string): Promise<string | null> {
    for (let round = 1; round <= ROUNDS; round++) {
      const reader = pick(cluster, rng);
      const read = await call(scheduler, reader.get(key));
      if (!read.ok) {
        wedged(`a read of ${key} through ${reader.id} failed: ${errorText(read.error)}`);
        return null;
      }
      const id = `z:${key}:${round}`;
      const writer = pick(cluster, rng);
      const put = await call(scheduler, writer.put(key, writeValue(id), { context: read.value.context }));
      if (!put.ok) {
        wedged(`a put over the read context of ${key} through ${writer.id} failed: ${errorText(put.error)}`);
        return null;
      }
      const check = await call(scheduler, pick(cluster, rng).get(key));
      if (!check.ok) {
        wedged(`a read of ${key} after resolving it failed: ${errorText(check.error)}`);
        return null;
      }
      const values = check.value.values.map(valueId);
      if (values.length === 1 && values[0] === id) return id;
      // Only a context that had to leave some coordinators out may leave their siblings standing.
      const named = decodeContext(read.value.context).length;
      if (named < MAX_CLOCK_ENTRIES - 1 || round === ROUNDS) {
        wedged(
          `after a put over the context of a read of its ${read.value.values.length} values (naming ${named} ` +
            `nodes), ${key} holds [${values.join(', ')}], not [${id}]`,
        );
        return null;
      }
    }
    return null;
  }
}

/**
 * Lets virtual time run until every owner of each of `partitions` holds it and all report the same Merkle root, up
 * to `cap` ms; the problems left then.
 */
async function settle(
  cluster: Cluster,
  scheduler: Scheduler,
  partitions: readonly number[],
  n: number,
  cap: number,
): Promise<string[]> {
  const start = scheduler.now;
  for (;;) {
    const problems = await disagreements(cluster, partitions, n);
    if (problems.length === 0 || scheduler.now - start >= cap)
      return problems.map((p) => `${p} (${scheduler.now - start} ms after the check began)`);
    await scheduler.advance(1000);
  }
}

/** What keeps `partitions` from agreeing: an owner down, not holding one, or with another Merkle root. */
async function disagreements(cluster: Cluster, partitions: readonly number[], n: number): Promise<string[]> {
  const problems: string[] = [];
  const infos = new Map<string, Awaited<ReturnType<DynamoNode['partitions']>>>();
  for (const p of partitions) {
    const owners = cluster.ring.preferenceList(p, n);
    const roots: string[] = [];
    for (const owner of owners) {
      const node = cluster.node(owner);
      if (node === null) {
        problems.push(`partition ${p}: owner ${owner} is down`);
        continue;
      }
      let info = infos.get(owner);
      if (info === undefined) infos.set(owner, (info = await node.partitions()));
      const mine = info.find((i) => i.partition === p);
      if (mine?.state !== 'held')
        problems.push(`partition ${p}: owner ${owner} is ${mine?.state ?? 'not reporting it'}`);
      roots.push(`${owner}=${mine?.root ?? '?'}`);
    }
    if (new Set(roots.map((r) => r.slice(r.indexOf('=') + 1))).size > 1)
      problems.push(`partition ${p}: Merkle roots differ: ${roots.join(' ')}`);
  }
  return problems;
}

/** A random running, unpaused member. */
function pick(cluster: Cluster, rng: Rng): DynamoNode {
  return cluster.node(rng.pick(cluster.available()))!;
}

/** Runs the scheduler until `promise` settles. */
async function call<T>(
  scheduler: Scheduler,
  promise: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let done = false;
  const outcome = promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  void outcome.finally(() => (done = true));
  await scheduler.run(() => done);
  return outcome;
}

function errorText(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? `${code}: ${message}` : message;
}
