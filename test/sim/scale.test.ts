/**
 * The hundred-node version of `npm run sim:1000`: a formed cluster of a hundred nodes over Q = 1024 partitions runs
 * a minute of virtual time or more under every fault kind, each injected at least ten times, with members joining
 * and leaving throughout, and must lose nothing and converge by anti-entropy alone (no final read repairs anything:
 * convergence.ts). About 25 s of wall time on an idle two-core machine.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FAULT_KINDS } from './faults.ts';
import type { CliOptions } from './options.ts';
import { expectVerdict } from './verdict.ts';

/** The run, as `npm run sim -- --seed 100 --nodes 100 --partitions 1024 --formed --faults all --each-fault 15 …`. */
const HUNDRED: CliOptions = {
  seed: 100,
  nodes: 100,
  partitions: 1024,
  formed: true,
  faults: FAULT_KINDS,
  eachFault: 15,
  clients: 10,
  thinkTime: 200,
  faultInterval: [200, 800],
  ops: 4000,
};

describe('a hundred-node cluster for a simulated minute', () => {
  it('loses nothing and converges by anti-entropy alone under every fault, members joining and leaving throughout', async () => {
    const result = await expectVerdict(
      HUNDRED,
      (r) => ({ ok: r.ok, lost: r.lost, converged: r.converged, convergence: r.convergence }),
      { ok: true, lost: 0, converged: true, convergence: 'anti-entropy' },
    );
    assert.ok(result.simulatedMs >= 60_000, `only ${result.simulatedMs} ms simulated`);
    for (const kind of FAULT_KINDS) {
      assert.ok(result.faultsInjected[kind] >= 10, `${kind} injected ${result.faultsInjected[kind]} times`);
    }
    assert.ok(
      result.joinsLeavesByThird.every((count) => count > 0),
      `joins and leaves by third: ${result.joinsLeavesByThird.join(', ')}`,
    );
  });
});
