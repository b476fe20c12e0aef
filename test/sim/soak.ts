/**
 * `npm run sim:soak -- --minutes 10`
 *
 * Runs simulations with random seeds, one after another, for as long as `--minutes` allows (default 10), printing one
 * line per seed, and stops at the first failure with its seed and the command that replays it (exit code 1).
 * Unless given, each seed also draws its cluster size; every fault kind is on unless `--faults` says otherwise, churn
 * included, so that convergence is left to anti-entropy and its time printed.
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { FAULT_KINDS } from './faults.ts';
import { type CliOptions, SIM_FLAGS, readSimFlags, reproduceCommand } from './options.ts';
import { Rng } from './random.ts';
import { describeFailure } from './report.ts';
import { runSimulation } from './run.ts';

/** Cluster sizes a soak draws from when `--nodes` is not given. */
const SIZES = [3, 4, 5, 7, 10, 20];

async function main(): Promise<number> {
  let flags: Partial<CliOptions>;
  let minutes: number;
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { ...SIM_FLAGS, minutes: { type: 'string' } },
      strict: true,
    });
    minutes = values.minutes === undefined ? 10 : Number(values.minutes);
    if (!(minutes > 0)) throw new Error('--minutes must be a positive number');
    flags = readSimFlags(values);
    if (flags.seed !== undefined) throw new Error('a soak draws its own seeds; use npm run sim for one seed');
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write('usage: npm run sim:soak -- [--minutes M] [--nodes N] [--ops K] [--faults ...]\n');
    return 2;
  }
  const deadline = performance.now() + minutes * 60_000;
  let runs = 0;
  let ops = 0;
  process.stdout.write(`soak: random seeds for ${minutes} min\n`);
  while (performance.now() < deadline) {
    const seed = randomInt(1, 2 ** 31);
    const draw = new Rng(seed).fork('soak');
    const options: CliOptions = {
      ...flags,
      seed,
      nodes: flags.nodes ?? draw.pick(SIZES),
      ops: flags.ops ?? 3000,
      faults: flags.faults ?? [...FAULT_KINDS],
    };
    const result = await runSimulation(options);
    runs++;
    ops += result.ops;
    process.stdout.write(
      `seed ${String(seed).padStart(10)}  ${String(result.nodes).padStart(2)} nodes  ${result.ops} ops  ` +
        `ack ${String(result.acknowledged).padStart(5)}  lost ${result.lost}  siblingsLost ${result.siblingsLost}  ` +
        `resurrected ${result.resurrected}  converged ${result.converged}` +
        (result.convergenceMs !== null ? ` in ${result.convergenceMs} ms  ` : '  ') +
        `faults ${Object.values(result.faultsInjected).reduce((a, b) => a + b, 0)}  ` +
        `${(result.wallMs / 1000).toFixed(1)} s  ${result.ok ? 'ok' : 'FAILED'}\n`,
    );
    if (!result.ok) {
      process.stdout.write(
        `\n${describeFailure(result).join('\n')}\n\nreproduce with:\n  ${reproduceCommand(options)}\n`,
      );
      return 1;
    }
  }
  process.stdout.write(`soak: ${runs} seeds, ${ops} ops, no failure\n`);
  return 0;
}

process.exitCode = await main();
