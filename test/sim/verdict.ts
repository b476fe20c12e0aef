/**
 * The assertion the simulation's test files share: run one simulation, compare the figures of its verdict with what
 * they must be, check that every fault kind asked for was injected and that some put was acknowledged, and name the
 * replay command on any failure.
 */
import assert from 'node:assert/strict';
import { type CliOptions, reproduceCommand } from './options.ts';
import { describeFailure } from './report.ts';
import { type SimulationResult, runSimulation } from './run.ts';

/**
 * Runs the simulation of `options` and asserts that `figures` of its result equal `expected`, and, when
 * `requireOk`, that the run passed every check of its own.
 */
export async function expectVerdict(
  options: CliOptions,
  figures: (result: SimulationResult) => Record<string, unknown>,
  expected: Record<string, unknown>,
  { requireOk = false }: { requireOk?: boolean } = {},
): Promise<SimulationResult> {
  const result = await runSimulation(options);
  const why = `${describeFailure(result).join('\n')}\nreplay with: ${reproduceCommand(options)}`;
  assert.deepEqual(figures(result), expected, why);
  if (requireOk) assert.ok(result.ok, why);
  for (const kind of options.faults ?? []) assert.ok(result.faultsInjected[kind] > 0, `no ${kind} fault was injected`);
  assert.ok(result.acknowledged > 0, 'no put was acknowledged');
  return result;
}
