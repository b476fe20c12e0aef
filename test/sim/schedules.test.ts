/**
 * Seeded fault schedules over small clusters of real nodes: each must lose no acknowledged write, bring back no
 * superseded value and end with every key's replicas in agreement. A failing test names the command that replays it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FaultKind } from './faults.ts';
import { reproduceCommand } from './options.ts';
import { describeFailure } from './report.ts';
import { runSimulation } from './run.ts';

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
        clients: 6,
        // Slow clients and frequent faults stretch virtual time, which is cheap, so that faults overlap the calls.
        thinkTime: 40,
        faultInterval: [50, 400] as const,
        faultDuration: [200, 1500] as const,
      };
      const result = await runSimulation(options);
      const why = `${describeFailure(result).join('\n')}\nreplay with: ${reproduceCommand(options)}`;
      assert.deepEqual(
        {
          lost: result.lost,
          siblingsLost: result.siblingsLost,
          resurrected: result.resurrected,
          phantoms: result.phantoms,
          converged: result.converged,
          hung: result.hung,
          bugs: result.bugs,
        },
        { lost: 0, siblingsLost: 0, resurrected: 0, phantoms: 0, converged: true, hung: 0, bugs: 0 },
        why,
      );
      for (const kind of faults) assert.ok(result.faultsInjected[kind] > 0, `no ${kind} fault was injected`);
      assert.ok(result.acknowledged > 0, 'no put was acknowledged');
    });
  }
});
