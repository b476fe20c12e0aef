/**
 * Seeded simulations of what clients do to a cluster: membership churn with no other fault, blind writes to hot
 * keys, corrupted and forged contexts, oversize values. Each run is judged by the whole checker (lost writes,
 * resurrections, convergence, repeated dots, refused writes that stored something, versions naming what was never
 * issued, sibling sets past their bounds, keys wedged after the run) and by what its clients must get back. A
 * failing test prints what went wrong and the command that replays it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FAULT_KINDS } from './faults.ts';
import { FORGERIES } from './forge.ts';
import type { CliOptions } from './options.ts';
import type { SimulationResult } from './run.ts';
import { expectVerdict } from './verdict.ts';

/** Runs one simulation and asserts that nothing at all went wrong, naming the replay command on failure. */
function expectClean(options: CliOptions): Promise<SimulationResult> {
  return expectVerdict(
    options,
    (result) => ({
      lost: result.lost,
      resurrected: result.resurrected,
      phantoms: result.phantoms,
      converged: result.converged,
      hung: result.hung,
      bugs: result.bugs,
      repeatedDots: result.repeatedDots,
      refused: result.availabilityRequired ? result.refused : 0,
      violations: result.violations,
      refusedStored: result.refusedStored,
      poisoned: result.poisoned,
      overBound: result.overBound,
      wedged: result.wedged,
    }),
    {
      lost: 0,
      resurrected: 0,
      phantoms: 0,
      converged: true,
      hung: 0,
      bugs: 0,
      repeatedDots: 0,
      refused: 0,
      violations: 0,
      refusedStored: 0,
      poisoned: 0,
      overBound: 0,
      wedged: 0,
    },
    { requireOk: true },
  );
}

/** Calls the misbehaving clients made whose description mentions `word`. */
function made(result: SimulationResult, word: string): number {
  return Object.entries(result.misbehaviours)
    .filter(([what]) => what.includes(word))
    .reduce((sum, [, count]) => sum + count, 0);
}

describe('membership churn alone refuses no request', () => {
  // Five nodes: the N + 1 floor lets one member at a time be down, and every change moves partitions between few.
  for (const seed of [3101, 3102, 3103, 3104]) {
    it(`seed ${seed}: 5 nodes joining, leaving and failing at random, default quorums`, async () => {
      const result = await expectClean({
        seed,
        nodes: 5,
        ops: 2000,
        faults: ['join', 'leave', 'fail'],
        quorums: 'default',
        clients: 8,
        thinkTime: 10,
        faultInterval: [100, 600],
        faultDuration: [300, 2000],
      });
      assert.ok(result.availabilityRequired);
      assert.equal(result.refused, 0);
    });
  }

  for (const [seed, nodes] of [
    [3201, 3],
    [3202, 4],
    [3203, 5],
  ] as const) {
    it(`seed ${seed}: a fresh cluster of ${nodes} answers from its very first request on`, async () => {
      // No pause before the first calls: they reach nodes that have just started.
      const result = await expectClean({ seed, nodes, ops: 600, clients: 12, thinkTime: 0, quorums: 'default' });
      assert.ok(result.availabilityRequired);
      assert.equal(result.refused, 0);
    });
  }
});

describe('blind writes to a hot key never wedge it', () => {
  for (const seed of [3301, 3302, 3303]) {
    it(`seed ${seed}: many clients put blind to two hot keys through every node`, async () => {
      const result = await expectClean({ seed, nodes: 5, ops: 3000, workloads: ['hot'] });
      assert.ok((result.failures.ERR_TOO_MANY_SIBLINGS ?? 0) > 0, 'no hot key reached its sibling bound');
      assert.ok(result.joinMs !== null, 'no node joined after the run');
    });
  }

  it('seed 3304: merges of sets bounded on each side of a partition stay within what bounded writes allow', async () => {
    const result = await expectClean({
      seed: 3304,
      nodes: 6,
      ops: 3000,
      workloads: ['hot'],
      faults: ['partition'],
      faultInterval: [50, 300],
      faultDuration: [300, 1500],
    });
    assert.ok((result.failures.ERR_TOO_MANY_SIBLINGS ?? 0) > 0, 'no hot key reached its sibling bound');
  });

  it('seed 3305: while members join, leave and fail, refusing nothing for want of replicas', async () => {
    const result = await expectClean({
      seed: 3305,
      nodes: 5,
      ops: 3000,
      workloads: ['hot'],
      faults: ['join', 'leave', 'fail'],
      quorums: 'default',
    });
    assert.equal(result.refused, 0);
  });
});

describe('forged contexts are refused and poison no node', () => {
  for (const seed of [3401, 3402, 3403]) {
    it(`seed ${seed}: corrupted, out-of-range and never-issued contexts among honest writes`, async () => {
      const result = await expectClean({ seed, nodes: 5, ops: 4000, clients: 12, workloads: ['forged'] });
      for (const forgery of FORGERIES) assert.ok(made(result, `(${forgery})`) > 0, `no ${forgery} context was sent`);
    });
  }

  it('seed 3404: also to hot keys, under crashes and partitions', async () => {
    await expectClean({
      seed: 3404,
      nodes: 5,
      ops: 3000,
      clients: 12,
      workloads: ['forged', 'hot'],
      faults: ['crash', 'partition'],
    });
  });

  /**
   * Members come and go until more nodes than a clock can name have written each key, so clocks prune entries that
   * honest contexts, read just before, still carry, of nodes that may have left since. These seeds once had such a
   * context refused as never issued (`ERR_INVALID_ARGUMENT`); the forged ones beside them must still be refused.
   */
  for (const seed of [16, 1072557124]) {
    it(`seed ${seed}: among them honest contexts naming entries their key's clocks pruned, under churn`, async () => {
      await expectClean({ seed, nodes: 3, ops: 8000, keys: 3, faults: FAULT_KINDS, workloads: ['forged'] });
    });
  }
});

describe('oversize values are refused and store nothing', () => {
  for (const seed of [3501, 3502, 3503]) {
    it(`seed ${seed}: values over maxValueBytes, and large blind puts past a key's byte bound`, async () => {
      const result = await expectClean({ seed, nodes: 5, ops: 1500, workloads: ['oversize'] });
      assert.ok(made(result, 'over maxValueBytes') > 0);
      assert.ok(made(result, 'large blind put') > 0);
      assert.ok((result.failures.ERR_TOO_LARGE ?? 0) > made(result, 'over maxValueBytes'), 'no key reached its bound');
    });
  }
});

describe('no two acknowledged writes share a dot', () => {
  const mixes = [
    { seed: 3601, faults: ['crash', 'loss'] },
    { seed: 3605, faults: ['partition', 'crash', 'duplicate'] },
    { seed: 3603, faults: ['join', 'leave', 'fail', 'crash'] },
  ] as const;
  for (const { seed, faults } of mixes) {
    it(`seed ${seed}: ${faults.join('+')}, every client misbehaving`, async () => {
      const result = await expectClean({
        seed,
        nodes: 5,
        ops: 2500,
        clients: 10,
        faults,
        workloads: ['hot', 'forged', 'oversize'],
      });
      assert.equal(result.repeatedDots, 0);
    });
  }
});
