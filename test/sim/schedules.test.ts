/**
 * Seeded fault schedules over clusters of real nodes: each must lose no acknowledged write, bring back no superseded
 * value, give no dot to two writes, store nothing it refused or never issued, and end with every key's replicas in
 * agreement. Schedules with churn (joins, leaves, failures) check
 * convergence by anti-entropy alone, with no final read. A failing test names the command that replays it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FaultKind } from './faults.ts';
import type { CliOptions } from './options.ts';
import type { SimulationResult } from './run.ts';
import { expectVerdict } from './verdict.ts';

/** The fault mixes the schedules cycle through. */
const MIXES: readonly (readonly FaultKind[])[] = [
  ['partition'],
  ['crash'],
  ['loss'],
  ['reorder'],
  ['pause'],
  ['partition', 'crash'],
  ['crash', 'loss'],
  ['partition', 'pause'],
  ['partition', 'loss', 'reorder'],
  ['partition', 'crash', 'loss', 'reorder'],
  ['partition', 'crash', 'loss', 'reorder', 'duplicate', 'pause'],
];

/** Cluster sizes; coprime with the number of mixes, so every mix meets every size. */
const SIZES = [3, 5, 8];
const SCHEDULES = 55;
/** Sized so that the file stays well under a minute on two cores while every schedule sees several faults. */
const OPS = 600;

/** Slow clients and frequent faults stretch virtual time, which is cheap, so that faults overlap the calls. */
const PACE = {
  clients: 6,
  thinkTime: 40,
  faultInterval: [50, 400],
  faultDuration: [200, 1500],
} as const satisfies Partial<CliOptions>;

/** Runs one schedule and asserts its verdict, naming the replay command on failure. */
function expectClean(options: CliOptions): Promise<SimulationResult> {
  return expectVerdict(
    options,
    (result) => ({
      lost: result.lost,
      siblingsLost: result.siblingsLost,
      resurrected: result.resurrected,
      phantoms: result.phantoms,
      converged: result.converged,
      hung: result.hung,
      bugs: result.bugs,
      repeatedDots: result.repeatedDots,
      refusedStored: result.refusedStored,
      poisoned: result.poisoned,
    }),
    {
      lost: 0,
      siblingsLost: 0,
      resurrected: 0,
      phantoms: 0,
      converged: true,
      hung: 0,
      bugs: 0,
      repeatedDots: 0,
      refusedStored: 0,
      poisoned: 0,
    },
  );
}

describe('seeded fault schedules', () => {
  for (let i = 0; i < SCHEDULES; i++) {
    const seed = 1000 + i;
    const faults = MIXES[i % MIXES.length]!;
    const nodes = SIZES[i % SIZES.length]!;
    it(`seed ${seed}: ${nodes} nodes, ${faults.join('+')}`, async () => {
      const options = {
        seed,
        nodes,
        ops: OPS,
        faults,
        ...PACE,
      };
      await expectClean(options);
    });
  }
});

/**
 * Churn schedules: each size with its mixes. At 5 nodes the N + 1 floor allows one member down at a time, so the
 * mixes there leave crashes out; every churn schedule converges by anti-entropy alone.
 */
const CHURN_SCHEDULES: readonly { nodes: number; faults: readonly FaultKind[] }[] = [
  { nodes: 5, faults: ['join', 'leave', 'fail'] },
  { nodes: 5, faults: ['join', 'leave', 'fail', 'partition', 'loss'] },
  { nodes: 5, faults: ['join', 'leave', 'fail', 'reorder', 'duplicate', 'pause'] },
  { nodes: 6, faults: ['join', 'leave', 'fail', 'partition'] },
  { nodes: 6, faults: ['join', 'fail', 'crash', 'loss'] },
  { nodes: 6, faults: ['join', 'leave', 'fail', 'pause', 'reorder'] },
  { nodes: 7, faults: ['join', 'leave', 'fail', 'crash', 'partition'] },
  { nodes: 7, faults: ['join', 'leave', 'fail', 'partition', 'crash', 'loss', 'reorder', 'duplicate', 'pause'] },
  { nodes: 7, faults: ['leave', 'fail', 'loss', 'duplicate'] },
  { nodes: 8, faults: ['join', 'leave', 'fail', 'partition', 'loss'] },
  { nodes: 8, faults: ['join', 'leave', 'fail', 'crash', 'pause'] },
  { nodes: 8, faults: ['join', 'leave', 'fail', 'partition', 'crash', 'loss', 'reorder', 'duplicate', 'pause'] },
];

describe('seeded churn schedules', () => {
  CHURN_SCHEDULES.forEach(({ nodes, faults }, i) => {
    const seed = 2000 + i;
    it(`seed ${seed}: ${nodes} nodes, ${faults.join('+')}, converging by anti-entropy alone`, async () => {
      const result = await expectClean({
        seed,
        nodes,
        ops: OPS,
        faults,
        ...PACE,
      });
      assert.equal(result.convergence, 'anti-entropy');
      assert.ok(result.convergenceMs !== null);
    });
  });
});

/**
 * Nodes that sign their versions, as tabs do (cluster.ts, `keys`): every fault kind, churn included. Beside the usual
 * verdict, no honest node drops a version as unproven (a bug of the signing path: `bugs` counts it).
 */
describe('seeded schedules of nodes that sign their versions', () => {
  const SIGNED: readonly { nodes: number; faults: readonly FaultKind[] }[] = [
    { nodes: 5, faults: ['partition', 'crash', 'loss', 'reorder', 'duplicate', 'pause'] },
    { nodes: 6, faults: ['join', 'leave', 'fail', 'partition', 'loss'] },
    { nodes: 7, faults: ['join', 'leave', 'fail', 'partition', 'crash', 'loss', 'reorder', 'duplicate', 'pause'] },
  ];
  SIGNED.forEach(({ nodes, faults }, i) => {
    const seed = 3000 + i;
    it(`seed ${seed}: ${nodes} signing nodes, ${faults.join('+')}`, async () => {
      await expectClean({
        seed,
        nodes,
        signed: true,
        ops: OPS,
        faults,
        ...PACE,
      });
    });
  });
});

/**
 * Churn schedules that once failed, each for a cause fixed since: a partition that no member held whole marked held
 * empty by a new owner, while members that stored keys of it (owners that never finished fetching it, old owners not
 * done releasing it) were passed over, so their keys answered as absent and their releases were refused for good
 * (5048 and 5063 did not converge; 5345 and 5465 lost acknowledged writes); and an honest put refused as naming a
 * version never issued by a node that joined after the version's writer left (5008).
 */
describe('churn schedules that once failed', () => {
  for (const seed of [5008, 5048, 5063, 5345, 5465]) {
    it(`seed ${seed}: 8 nodes, join+leave+fail+partition+loss`, async () => {
      await expectClean({
        seed,
        nodes: 8,
        ops: OPS,
        faults: ['join', 'leave', 'fail', 'partition', 'loss'],
        ...PACE,
      });
    });
  }
});

/**
 * The large run of `npm run sim -- --nodes 50 --ops 20000 --seed 7 --faults join,leave,fail,partition,loss`: fifty
 * nodes, members joining, leaving and failing while the clients run, then convergence by anti-entropy alone. It
 * takes about 8 s of wall time on an idle two-core machine (11 s of CPU).
 */
const LARGE_OPS = 20_000;

describe('a fifty-node cluster under churn', () => {
  it('loses nothing and converges by anti-entropy alone while nodes join, leave and fail', async () => {
    const result = await expectClean({
      seed: 7,
      nodes: 50,
      ops: LARGE_OPS,
      faults: ['join', 'leave', 'fail', 'partition', 'loss'],
    });
    assert.equal(result.convergence, 'anti-entropy');
    assert.ok(result.convergenceMs !== null);
  });
});
