/**
 * One seeded simulation run: a cluster of real nodes on a simulated network, random clients (honest ones and, when
 * asked, misbehaving ones), injected faults, then healing and a convergence check, and the checker's verdict. The
 * check is either a final full read of every key (which also repairs) or, with `convergence: 'anti-entropy'`, no
 * read at all: virtual time runs until the nodes' stored state has converged through partition transfer,
 * anti-entropy and hinted handoff alone, and the checker judges the replicas' storage. A storage witness watches
 * every dot drawn and every version stored, for repeated dots, refused writes that stored something, and versions
 * naming what was never issued; after a run with misbehaving clients, an epilogue checks that every key they
 * hammered can still be read, resolved, converged and fetched by a node joining afterwards. The same options and
 * seed give the same run, event for event.
 */
import type { Logger } from '../../worker/env.ts';
import { type FinalKey, type ReplicaState, type Verdict, check } from './checker.ts';
import { Cluster } from './cluster.ts';
import { awaitConvergence, storedFinal, storedVersion } from './convergence.ts';
import { CHURN_KINDS, type FaultEvent, FaultDriver, type FaultKind } from './faults.ts';
import { Network, type NetworkConditions, type NetworkStats } from './network.ts';
import { Rng } from './random.ts';
import { Scheduler } from './scheduler.ts';
import { epilogue } from './epilogue.ts';
import { KEY_BYTES_BOUND, SIBLING_BOUND, valueId } from './values.ts';
import { audit, Witness } from './witness.ts';
import {
  type OperationMix,
  type OperationRecord,
  type QuorumChoice,
  type Refusal,
  Workload,
  type WorkloadKind,
} from './workload.ts';

const utf8 = new TextEncoder();

/** Options of {@link runSimulation}. */
export interface SimulationOptions {
  /** The seed everything random derives from. */
  readonly seed: number;
  /** Nodes in the cluster. @default 5 */
  readonly nodes?: number;
  /** Nodes with keys and ids derived from them, that sign their versions (cluster.ts, `keys`). @default false */
  readonly signed?: boolean;
  /** Client node calls (gets, puts, deletes) to make. @default 2000 */
  readonly ops?: number;
  /** Faults to inject while the clients run. @default none */
  readonly faults?: readonly FaultKind[];
  /** Misbehaving clients to run beside the honest ones (see workload.ts). @default none */
  readonly workloads?: readonly WorkloadKind[];
  /** How many hot keys the `hot` clients put blind to. @default 2 */
  readonly hotKeys?: number;
  /** How clients choose R and W. @default 'random' */
  readonly quorums?: QuorumChoice;
  /** Clients running at once. @default 2 × nodes */
  readonly clients?: number;
  /** Size of the honest clients' key set. @default max(4, nodes) */
  readonly keys?: number;
  /** Replication factor N. @default 3 */
  readonly n?: number;
  /** Per-node reply timeout, ms. @default 500 */
  readonly requestTimeout?: number;
  /** Hinted-handoff round interval, ms. @default 1000 */
  readonly hintInterval?: number;
  /** Ring partitions Q. @default 64 */
  readonly partitions?: number;
  /**
   * The starting nodes begin as a cluster formed earlier, empty, each holding the partitions it owns (cluster.ts,
   * `formed`), rather than as new nodes that each ask every other whether it holds each of their partitions.
   * @default false
   */
  readonly formed?: boolean;
  /**
   * How the end of the run checks convergence: `read` reads every key with R = N until two rounds agree (reads
   * repair); `anti-entropy` reads nothing and waits until the stored state converges by itself.
   * @default 'anti-entropy' when `faults` has a churn kind (join, leave, fail), else 'read'
   */
  readonly convergence?: ConvergenceMode;
  /** Virtual ms between convergence checks in `anti-entropy` mode. @default 1000 */
  readonly convergenceStep?: number;
  /** Virtual ms after the heal past which an `anti-entropy` run fails as not converged. @default 600000 */
  readonly convergenceCap?: number;
  /** The nodes' anti-entropy interval, ms (0 = off). @default the node's default */
  readonly antiEntropyInterval?: number;
  /** The nodes' anti-entropy bandwidth, bytes/s. @default the node's default */
  readonly antiEntropyBytesPerSecond?: number;
  /** The nodes' partition transfer bandwidth, bytes/s. @default the node's default */
  readonly transferBytesPerSecond?: number;
  /** The nodes' tombstone grace, ms. @default the node's default */
  readonly tombstoneGrace?: number;
  /** Longest delay of a view change's arrival at a node, virtual ms. @default 20 */
  readonly viewDelay?: number;
  /** Virtual ms from a node's failure to its removal from the view. @default 3000 */
  readonly failureDetection?: number;
  /** Most members the view may gain or lose through joins and leaves. @default max(2, floor(nodes / 5)) */
  readonly maxDrift?: number;
  /** Ring tokens per node T. @default 16 */
  readonly tokensPerNode?: number;
  /** Latency and faults of the network when no fault is active. */
  readonly network?: Partial<NetworkConditions>;
  /** Longest pause between a client's calls, virtual ms. @default 5 */
  readonly thinkTime?: number;
  /** Relative weights of the client operations. */
  readonly mix?: Partial<OperationMix>;
  /** Virtual ms between faults, drawn uniformly. @default [100, 800] */
  readonly faultInterval?: readonly [number, number];
  /** Virtual ms a fault lasts, drawn uniformly. @default [300, 3000] */
  readonly faultDuration?: readonly [number, number];
  /** Each fault kind asked for is favoured until injected this many times (faults.ts). @default 1 under churn */
  readonly eachFault?: number;
  /** Most nodes crashed at once. @default max(1, floor(nodes / 5)) */
  readonly maxCrashed?: number;
  /** A client call still pending after this many virtual ms is reported as hung and ends the run. @default 60000 */
  readonly hangAfter?: number;
  /** Called about every `progressEvery` client calls. */
  readonly onProgress?: (progress: Progress) => void;
  /** @default 1000 */
  readonly progressEvery?: number;
  /** Called after every client call (for the demo's narration). */
  readonly onOperation?: (record: OperationRecord) => void;
  /** Called on every fault injected or healed. */
  readonly onFault?: (event: FaultEvent) => void;
  /** The nodes' logger. @default silent */
  readonly logger?: Logger;
  /** Called once the cluster is built and before anything runs, for tracing tools. */
  readonly inspect?: (world: { scheduler: Scheduler; network: Network; cluster: Cluster }) => void;
}

/** How a run checks convergence at its end (see {@link SimulationOptions.convergence}). */
export type ConvergenceMode = 'read' | 'anti-entropy';

/** Where a run is. */
export interface Progress {
  readonly ops: number;
  readonly simulatedMs: number;
  readonly wallMs: number;
  readonly crashed: number;
  readonly partitioned: boolean;
  /** Members of the current view. */
  readonly members: number;
}

/** The outcome of a run. */
export interface SimulationResult {
  readonly seed: number;
  readonly nodes: number;
  /** Client node calls made. */
  readonly ops: number;
  readonly faults: readonly FaultKind[];
  readonly workloads: readonly WorkloadKind[];
  /** Acknowledged puts with W ≥ 2. */
  readonly acknowledged: number;
  readonly lost: number;
  readonly siblingsLost: number;
  readonly resurrected: number;
  /** Returned values nobody wrote to that key. */
  readonly phantoms: number;
  readonly converged: boolean;
  readonly divergentKeys: number;
  readonly convergence: ConvergenceMode;
  /**
   * In `anti-entropy` mode, virtual ms from the heal until the stored state had converged (to within one
   * convergence step); null when it never did, and in `read` mode.
   */
  readonly convergenceMs: number | null;
  /** Members of the view at the end. */
  readonly members: number;
  /** Client calls that never completed. */
  readonly hung: number;
  /** Errors no fault should cause: unexpected error codes, exceptions from timers or deliveries, malformed frames. */
  readonly bugs: number;
  /**
   * Dots naming two different writes: in the history, the final replicas, or anything any node ever stored (the
   * storage witness).
   */
  readonly repeatedDots: number;
  /**
   * Gets and puts with R or W at most the default that failed for want of replicas (`ERR_QUORUM`, `ERR_TIMEOUT`,
   * `ERR_CLOSED` from a running node). A failure when {@link availabilityRequired}.
   */
  readonly refused: number;
  /** True when no fault but membership change was injected: then nothing may be refused. */
  readonly availabilityRequired: boolean;
  /** Misbehaving clients' calls answered otherwise than they must be (accepted, wrong code, refused below a bound). */
  readonly violations: number;
  /** Writes that had to store nothing (refused, or bound to be) but were stored somewhere, even for a while. */
  readonly refusedStored: number;
  /**
   * Stored versions naming a dot or a context entry no coordinator issued, and nodes whose counter ran past their own
   * writes.
   */
  readonly poisoned: number;
  /** Sibling sets of blind-only keys past what merges of bounded writes allow. */
  readonly overBound: number;
  /** Keys that the epilogue could not read or resolve, partitions that did not converge, a joiner that never finished. */
  readonly wedged: number;
  /** Virtual ms a node joining after the run took to fetch its partitions, when the epilogue ran. */
  readonly joinMs: number | null;
  /** True when nothing above is wrong. */
  readonly ok: boolean;
  readonly opsPerSecond: number;
  readonly simulatedMs: number;
  readonly wallMs: number;
  /** Client calls that succeeded. */
  readonly succeeded: number;
  /** Failed client calls by error code. */
  readonly failures: Readonly<Record<string, number>>;
  /** Calls the misbehaving clients made, by what they did. */
  readonly misbehaviours: Readonly<Record<string, number>>;
  /** Hints still held after quiescence. */
  readonly hintsLeft: number;
  readonly faultsInjected: Readonly<Record<FaultKind, number>>;
  /**
   * Joins and leaves in each third of the client phase's virtual time, in order: whether membership changed
   * throughout the run or only in part of it.
   */
  readonly joinsLeavesByThird: readonly [number, number, number];
  readonly network: NetworkStats;
  readonly events: number;
  /** Batches of events run, each followed by a microtask drain. */
  readonly batches: number;
  readonly metrics: Readonly<Record<string, number>>;
  /** The first few of each finding, for diagnosis. */
  readonly details: {
    readonly lost: Verdict['lost'];
    readonly resurrected: Verdict['resurrected'];
    readonly phantoms: Verdict['phantoms'];
    readonly divergent: Verdict['divergent'];
    /** In `anti-entropy` mode, what still stood in the way of convergence at the cap. */
    readonly unconverged: readonly string[];
    readonly hung: readonly object[];
    readonly bugs: readonly string[];
    readonly repeatedDots: readonly Verdict['repeatedDots'][number][];
    readonly refused: readonly Refusal[];
    readonly violations: readonly string[];
    readonly refusedStored: readonly string[];
    readonly poisoned: readonly string[];
    readonly overBound: readonly string[];
    readonly wedged: readonly string[];
  };
  /** The full verdict, the writes and the fault log (not printed by the CLI). */
  readonly verdict: Verdict;
  readonly faultLog: readonly FaultEvent[];
}

const SHOWN = 5;

/**
 * Runs one seeded simulation and checks it. A promise rejection that nothing handles during the run (a node
 * dropping an error on the floor) is counted among the bugs rather than ending the process.
 */
export async function runSimulation(options: SimulationOptions): Promise<SimulationResult> {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  try {
    return await simulate(options, rejections);
  } finally {
    process.off('unhandledRejection', onRejection);
  }
}

async function simulate(options: SimulationOptions, rejections: readonly unknown[]): Promise<SimulationResult> {
  const wallStart = performance.now();
  const nodes = options.nodes ?? 5;
  const n = Math.min(options.n ?? 3, nodes);
  const requestTimeout = options.requestTimeout ?? 500;
  const hintInterval = options.hintInterval ?? 1000;
  const faults = options.faults ?? [];
  const workloads = options.workloads ?? [];
  const mode: ConvergenceMode =
    options.convergence ?? (faults.some((k) => CHURN_KINDS.includes(k)) ? 'anti-entropy' : 'read');
  const rng = new Rng(options.seed);
  const scheduler = new Scheduler();
  const network = new Network(scheduler, rng.fork('network'), options.network);
  const witness = new Witness();
  const cluster = new Cluster({
    scheduler,
    network,
    rng: rng.fork('nodes'),
    size: nodes,
    witness,
    ...(options.signed === true ? { keys: true } : {}),
    ...(options.formed === true ? { formed: true } : {}),
    ...(options.viewDelay !== undefined ? { viewDelay: options.viewDelay } : {}),
    ...(options.failureDetection !== undefined ? { failureDetection: options.failureDetection } : {}),
    node: {
      n,
      r: Math.min(2, n),
      w: Math.min(2, n),
      requestTimeout,
      hintInterval,
      partitions: options.partitions ?? 64,
      tokensPerNode: options.tokensPerNode ?? 16,
      ...defined({
        antiEntropyInterval: options.antiEntropyInterval,
        antiEntropyBytesPerSecond: options.antiEntropyBytesPerSecond,
        transferBytesPerSecond: options.transferBytesPerSecond,
        tombstoneGrace: options.tombstoneGrace,
      }),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
    },
  });
  options.inspect?.({ scheduler, network, cluster });
  const keys = Array.from({ length: options.keys ?? Math.max(4, nodes) }, (_, i) => `k${i}`);
  const hotKeys = workloads.includes('hot') ? Array.from({ length: options.hotKeys ?? 2 }, (_, i) => `hot${i}`) : [];
  const bigKeys = workloads.includes('oversize') ? ['big0'] : [];
  // Keys only ever written blind during the run: their sibling sets only grow, up to what the bounds allow.
  const blindKeys = [...hotKeys, ...bigKeys];
  const allKeys = [...keys, ...blindKeys];
  const progressEvery = options.progressEvery ?? 1000;
  let nextProgress = progressEvery;
  const workload = new Workload({
    cluster,
    scheduler,
    rng: rng.fork('clients'),
    operations: options.ops ?? 2000,
    clients: options.clients ?? 2 * nodes,
    keys,
    n,
    kinds: workloads,
    hotKeys,
    bigKey: 'big0',
    witness,
    defaultQuorum: Math.min(2, n),
    ...(options.quorums !== undefined ? { quorums: options.quorums } : {}),
    ...(options.mix !== undefined ? { mix: options.mix } : {}),
    ...(options.thinkTime !== undefined ? { thinkTime: options.thinkTime } : {}),
    onOperation: (record) => {
      options.onOperation?.(record);
      if (options.onProgress !== undefined && workload.operations >= nextProgress) {
        nextProgress += progressEvery;
        options.onProgress(progress());
      }
    },
  });
  const driver = new FaultDriver(scheduler, network, cluster, rng.fork('faults'), {
    kinds: faults,
    ...(options.faultInterval !== undefined ? { interval: options.faultInterval } : {}),
    ...(options.faultDuration !== undefined ? { duration: options.faultDuration } : {}),
    ...(options.eachFault !== undefined ? { eachAtLeast: options.eachFault } : {}),
    ...(options.maxCrashed !== undefined ? { maxCrashed: options.maxCrashed } : {}),
    ...(options.maxDrift !== undefined ? { maxDrift: options.maxDrift } : {}),
    replicas: n,
    ...(options.onFault !== undefined ? { onEvent: options.onFault } : {}),
  });
  const progress = (): Progress => ({
    ops: workload.operations,
    simulatedMs: scheduler.now,
    wallMs: performance.now() - wallStart,
    crashed: cluster.crashed().length,
    partitioned: network.sides !== null,
    members: cluster.memberIds().length,
  });

  // The client phase, watched for calls that never complete.
  const hangAfter = options.hangAfter ?? 60_000;
  const hung: object[] = [];
  const watchdog = (): void => {
    for (const call of workload.inFlight.values()) {
      if (scheduler.now - call.start > hangAfter) hung.push(call);
    }
    if (hung.length === 0) scheduler.schedule(1000, watchdog);
  };
  scheduler.schedule(1000, watchdog);
  workload.start();
  driver.start();
  await scheduler.run(() => workload.done || hung.length > 0);
  const clientsEnd = scheduler.now;

  driver.stop();
  let final: FinalKey[] = [];
  /** Keys the final reads could not read, with the last error. */
  const unreadableKeys = new Map<string, string>();
  let hintsLeft: number;
  let convergenceMs: number | null = null;
  let unconverged: readonly string[] = [];
  let stateConverged = true;
  if (mode === 'anti-entropy') {
    // Nothing reads: whatever brings the replicas together is the nodes' own background work.
    const outcome = await awaitConvergence(cluster, scheduler, n, {
      ...(options.convergenceStep !== undefined ? { step: options.convergenceStep } : {}),
      ...(options.convergenceCap !== undefined ? { cap: options.convergenceCap } : {}),
      shown: SHOWN,
    });
    stateConverged = outcome.converged;
    if (outcome.converged) convergenceMs = outcome.ms;
    else unconverged = [`${outcome.problems} problems after ${outcome.ms} ms`, ...outcome.details];
    final = await Promise.all(allKeys.map((key) => storedFinal(cluster, key, n)));
    hintsLeft = await cluster.hintsHeld();
  } else {
    // Let hinted handoff and replication finish.
    const settleFor = Math.max(hintInterval, 4 * requestTimeout) + hintInterval;
    await scheduler.advance(settleFor);
    hintsLeft = await cluster.hintsHeld();
    for (let waited = 0; hintsLeft > 0 && waited < 60_000; waited += hintInterval) {
      await scheduler.advance(hintInterval);
      hintsLeft = await cluster.hintsHeld();
    }

    // Read every key with R = N until two rounds agree; the reads also repair.
    let previous = '';
    for (let round = 0; round < 6; round++) {
      const { values, unreadable } = await finalReads(cluster, scheduler, allKeys, n, round);
      for (const [key, error] of unreadable) unreadableKeys.set(key, error);
      await scheduler.advance(2 * requestTimeout);
      const snapshot = JSON.stringify(values);
      final = await Promise.all(
        allKeys.map(async (key, i) => ({ key, values: values[i]!, replicas: await replicaStates(cluster, key, n) })),
      );
      if (snapshot === previous) break;
      previous = snapshot;
    }
  }

  // Refusals store nothing; where a forwarded put can time out, one coordinator may store what the next refuses.
  const strictRefusals = faults.every((k) => k === 'join');
  const verdict = check(workload.writes, final, { strictRefusals });
  const converged = verdict.converged && stateConverged;
  const members = cluster.memberIds().length;
  const findings = await audit(cluster, witness, {
    blindKeys: new Set(blindKeys),
    maxSiblings: SIBLING_BOUND,
    maxKeyBytes: KEY_BYTES_BOUND,
  });
  const after =
    workloads.length > 0
      ? await epilogue({ cluster, scheduler, rng: rng.fork('epilogue'), n, keys: allKeys, watched: allKeys })
      : { wedged: [] as string[], joinMs: null };
  after.wedged.unshift(
    ...[...unreadableKeys].map(([key, error]) => `the final reads (R = N) of ${key} kept failing: ${error}`),
  );
  // What the witness saw stored at any time, the epilogue included.
  const repeated = [...verdict.repeatedDots, ...witness.repeated];
  const repeatedCount = verdict.repeatedDots.length + witness.repeatedCount;
  const everStored = workload.writes
    .filter((w) => w.kind === 'put' && (w.storesNothing === true || (strictRefusals && w.outcome === 'failed')))
    .filter((w) => witness.everStored(w.key, w.id))
    .map((w) => `${w.id} (key ${w.key}${w.code !== undefined ? `, answered ${w.code}` : ', acknowledged'}) was stored`);
  const refusedStored = [
    ...verdict.refusedStored.map((r) => `${r.id} (key ${r.key}, answered ${r.code ?? 'ok'}) is in ${r.where}`),
    ...everStored,
  ];
  const availabilityRequired = faults.every((k) => CHURN_KINDS.includes(k));
  const metrics = cluster.metricTotals();
  const bugs = [
    ...workload.unexpected,
    ...scheduler.errors.slice(0, SHOWN).map((e) => `thrown from an event: ${errorText(e)}`),
    ...rejections.slice(0, SHOWN).map((e) => `unhandled rejection: ${errorText(e)}`),
    ...(metrics.malformedFrames ? [`${metrics.malformedFrames} malformed frames`] : []),
    // Honest nodes ship only versions they can prove (proof.ts): one dropped is a bug of the signing path.
    ...(metrics.unprovenVersions ? [`${metrics.unprovenVersions} versions dropped as unproven`] : []),
  ];
  const refusedFails = availabilityRequired ? workload.refusalCount : 0;
  const bugCount =
    workload.unexpectedCount +
    scheduler.errors.length +
    rejections.length +
    (metrics.malformedFrames ?? 0) +
    (metrics.unprovenVersions ?? 0);
  await cluster.close();
  const wallMs = performance.now() - wallStart;
  const result: SimulationResult = {
    seed: options.seed,
    nodes,
    ops: workload.operations,
    faults,
    workloads,
    acknowledged: verdict.acknowledged,
    lost: verdict.lost.length,
    siblingsLost: verdict.siblingsLost.length,
    resurrected: verdict.resurrected.length,
    phantoms: verdict.phantoms.length,
    converged,
    divergentKeys: verdict.divergent.length,
    convergence: mode,
    convergenceMs,
    members,
    hung: hung.length,
    bugs: bugCount,
    repeatedDots: repeatedCount,
    refused: workload.refusalCount,
    availabilityRequired,
    violations: workload.violationCount,
    refusedStored: refusedStored.length,
    poisoned: findings.poisonedCount,
    overBound: findings.overBoundCount,
    wedged: after.wedged.length,
    joinMs: after.joinMs,
    ok:
      verdict.lost.length === 0 &&
      verdict.resurrected.length === 0 &&
      verdict.phantoms.length === 0 &&
      converged &&
      hung.length === 0 &&
      bugCount === 0 &&
      repeatedCount === 0 &&
      refusedFails === 0 &&
      workload.violationCount === 0 &&
      refusedStored.length === 0 &&
      findings.poisonedCount === 0 &&
      findings.overBoundCount === 0 &&
      after.wedged.length === 0,
    opsPerSecond: Math.round(workload.operations / (wallMs / 1000)),
    simulatedMs: clientsEnd,
    wallMs: Math.round(wallMs),
    succeeded: workload.succeeded,
    failures: workload.failures,
    misbehaviours: workload.misbehaviours,
    hintsLeft,
    faultsInjected: driver.counts,
    joinsLeavesByThird: byThird(driver.log, clientsEnd),
    network: network.stats,
    events: scheduler.eventsRun,
    batches: scheduler.batches,
    metrics,
    details: {
      lost: verdict.lost.slice(0, SHOWN),
      resurrected: verdict.resurrected.slice(0, SHOWN),
      phantoms: verdict.phantoms.slice(0, SHOWN),
      divergent: verdict.divergent.slice(0, SHOWN),
      unconverged,
      hung: hung.slice(0, SHOWN),
      bugs: bugs.slice(0, SHOWN),
      repeatedDots: repeated.slice(0, SHOWN),
      refused: workload.refusals.slice(0, SHOWN),
      violations: workload.violations.slice(0, SHOWN),
      refusedStored: refusedStored.slice(0, SHOWN),
      poisoned: findings.poisoned.slice(0, SHOWN),
      overBound: findings.overBound.slice(0, SHOWN),
      wedged: after.wedged.slice(0, SHOWN),
    },
    verdict,
    faultLog: driver.log,
  };
  return result;
}

/**
 * One R = N read of every key, each from a different running node; a failed read is retried after a pause. A key
 * whose read still fails after 20 retries is unreadable: its values are left to what its replicas store, and the
 * last error is reported.
 */
async function finalReads(
  cluster: Cluster,
  scheduler: Scheduler,
  keys: readonly string[],
  n: number,
  round: number,
): Promise<{ values: string[][]; unreadable: Map<string, string> }> {
  const out: string[][] = [];
  const unreadable = new Map<string, string>();
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    let values: string[] | null = null;
    for (let attempt = 0; values === null; attempt++) {
      const alive = cluster.live();
      const node = cluster.node(alive[(i + round + attempt) % alive.length]!)!;
      let settled = false;
      let failure: unknown;
      const read = node.get(key, { r: n }).then(
        (result) => result.values.map(valueId).sort(),
        (error: unknown) => {
          failure = error;
          return null;
        },
      );
      void read.finally(() => (settled = true));
      await scheduler.run(() => settled);
      values = await read;
      if (values !== null) break;
      if (attempt >= 20) {
        unreadable.set(key, errorText(failure).split('\n')[0]!);
        values = [...(await storedFinal(cluster, key, n)).values];
        break;
      }
      await scheduler.advance(1000);
    }
    out.push(values!);
  }
  return { values: out, unreadable };
}

/** The dots each replica of the key's preference list stores, read straight from its storage. */
async function replicaStates(cluster: Cluster, key: string, n: number): Promise<ReplicaState[]> {
  const bytes = utf8.encode(key);
  const states: ReplicaState[] = [];
  for (const id of cluster.preferenceList(bytes, n)) {
    const handle = cluster.slot(id).data.reopen();
    const siblings = await handle.get(bytes);
    await handle.close();
    states.push({ node: id, versions: siblings.map(storedVersion) });
  }
  return states;
}

/** Joins and leaves of `log` in each third of [0, end). */
function byThird(log: readonly FaultEvent[], end: number): [number, number, number] {
  const thirds: [number, number, number] = [0, 0, 0];
  for (const event of log) {
    if ((event.kind === 'join' || event.kind === 'leave') && event.time < end)
      thirds[Math.min(2, Math.floor((3 * event.time) / end)) as 0 | 1 | 2] += 1;
  }
  return thirds;
}

/** The entries of `record` that are set, for options under `exactOptionalPropertyTypes`. */
function defined<T extends object>(record: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
