/**
 * `npm run sim -- --nodes 20 --ops 20000 --seed 7 --faults partition,crash,loss`
 * `npm run sim -- --nodes 50 --ops 20000 --seed 7 --faults join,leave,fail,partition,loss`
 * `npm run sim -- --nodes 5 --ops 3000 --seed 7 --workload hot,forged,oversize`
 * `npm run sim -- --nodes 5 --ops 3000 --seed 7 --faults churn --quorums default`
 *
 * Runs one seeded simulation, shows progress on stderr, and prints one JSON line of figures on stdout (with
 * `convergenceMs` when convergence was left to anti-entropy, the default under churn). Exits 1 when an acknowledged
 * write was lost, a deleted value came back, the replicas did not converge, a call hung, a node misbehaved, a dot
 * named two writes, a misbehaving client was answered wrongly, a key was left wedged, or a request was refused in a
 * run where nothing but membership changed, after printing what went wrong and the command that replays the run.
 */
import { reproduceCommand, parseSimArgs, type CliOptions } from './options.ts';
import { describeFailure, summary } from './report.ts';
import { type SimulationResult, runSimulation } from './run.ts';

async function main(): Promise<number> {
  let flags: Partial<CliOptions>;
  try {
    flags = parseSimArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(
      'usage: npm run sim -- [--seed S] [--nodes N] [--ops K] [--churn]\n' +
        '                      [--faults partition,crash,loss,reorder,duplicate,pause,join,leave,fail|churn|all|none]\n' +
        '                      [--workload hot,forged,oversize|all|none] [--hot-keys H] [--quorums random|default]\n' +
        '                      [--clients C] [--keys K] [--n N] [--request-timeout MS] [--hint-interval MS]\n' +
        '                      [--think-time MS] [--fault-interval MIN-MAX] [--fault-duration MIN-MAX] [--each-fault K]\n' +
        '                      [--partitions Q] [--anti-entropy-interval MS] [--tombstone-grace MS]\n' +
        '                      [--anti-entropy-only | --final-read] [--signed] [--formed]\n',
    );
    return 2;
  }
  const options: CliOptions = { ...flags, seed: flags.seed ?? 1 };
  const tty = process.stderr.isTTY;
  const total = options.ops ?? 2000;
  const faults = options.faults?.join(',') || 'none';
  const workloads = options.workloads?.length ? `, workload ${options.workloads.join(',')}` : '';
  process.stderr.write(
    `sim: seed ${options.seed}, ${options.nodes ?? 5} nodes, ${total} ops, faults ${faults}${workloads}\n`,
  );
  const result = await runSimulation({
    ...options,
    progressEvery: Math.max(1000, Math.ceil(total / 20)),
    onProgress: (p) => {
      const line =
        `sim: ${p.ops}/${total} ops, ${(p.simulatedMs / 1000).toFixed(1)} s simulated, ` +
        `${(p.wallMs / 1000).toFixed(1)} s wall` +
        `, ${p.members} members` +
        (p.crashed > 0 ? `, ${p.crashed} down` : '') +
        (p.partitioned ? ', partitioned' : '');
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
  });
  if (tty) process.stderr.write('\r\x1b[K');
  process.stderr.write(
    `sim: ${result.ops} ops (${result.succeeded} succeeded), ${result.acknowledged} acknowledged puts, ` +
      `${(result.simulatedMs / 1000).toFixed(1)} s simulated in ${(result.wallMs / 1000).toFixed(1)} s, ` +
      `${result.opsPerSecond} ops/s${convergenceText(result)}\n`,
  );
  process.stdout.write(`${JSON.stringify(summary(result))}\n`);
  if (result.ok) return 0;
  process.stderr.write(
    `\nFAILED\n${describeFailure(result).join('\n')}\n\nreproduce with:\n  ${reproduceCommand(options)}\n`,
  );
  return 1;
}

/** How long anti-entropy took to converge, for the closing line; empty when the final read checked convergence. */
function convergenceText(result: SimulationResult): string {
  if (result.convergence !== 'anti-entropy') return '';
  if (result.convergenceMs === null) return '; never converged by anti-entropy alone';
  return `; converged by anti-entropy alone ${(result.convergenceMs / 1000).toFixed(1)} s after the heal`;
}

process.exitCode = await main();
