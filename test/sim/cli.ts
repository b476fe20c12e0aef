/**
 * `npm run sim -- --nodes 20 --ops 20000 --seed 7 --faults partition,crash,loss`
 *
 * Runs one seeded simulation, shows progress on stderr, and prints one JSON line of figures on stdout. Exits 1 when
 * an acknowledged write was lost, a deleted value came back, the replicas did not converge, a call hung or a node
 * misbehaved, after printing what went wrong and the command that replays the run.
 */
import { reproduceCommand, parseSimArgs, type CliOptions } from './options.ts';
import { describeFailure, summary } from './report.ts';
import { runSimulation } from './run.ts';

async function main(): Promise<number> {
  let flags: Partial<CliOptions>;
  try {
    flags = parseSimArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(
      'usage: npm run sim -- [--seed S] [--nodes N] [--ops K] [--faults partition,crash,loss,reorder,duplicate|all|none]\n' +
        '                      [--clients C] [--keys K] [--n N] [--request-timeout MS] [--hint-interval MS]\n' +
        '                      [--think-time MS] [--fault-interval MIN-MAX] [--fault-duration MIN-MAX]\n',
    );
    return 2;
  }
  const options: CliOptions = { ...flags, seed: flags.seed ?? 1 };
  const tty = process.stderr.isTTY;
  const total = options.ops ?? 2000;
  const faults = options.faults?.join(',') || 'none';
  process.stderr.write(`sim: seed ${options.seed}, ${options.nodes ?? 5} nodes, ${total} ops, faults ${faults}\n`);
  const result = await runSimulation({
    ...options,
    progressEvery: Math.max(1000, Math.ceil(total / 20)),
    onProgress: (p) => {
      const line =
        `sim: ${p.ops}/${total} ops, ${(p.simulatedMs / 1000).toFixed(1)} s simulated, ` +
        `${(p.wallMs / 1000).toFixed(1)} s wall` +
        (p.crashed > 0 ? `, ${p.crashed} crashed` : '') +
        (p.partitioned ? ', partitioned' : '');
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
  });
  if (tty) process.stderr.write('\r\x1b[K');
  process.stderr.write(
    `sim: ${result.ops} ops (${result.succeeded} succeeded), ${result.acknowledged} acknowledged puts, ` +
      `${(result.simulatedMs / 1000).toFixed(1)} s simulated in ${(result.wallMs / 1000).toFixed(1)} s, ` +
      `${result.opsPerSecond} ops/s\n`,
  );
  process.stdout.write(`${JSON.stringify(summary(result))}\n`);
  if (result.ok) return 0;
  process.stderr.write(
    `\nFAILED\n${describeFailure(result).join('\n')}\n\nreproduce with:\n  ${reproduceCommand(options)}\n`,
  );
  return 1;
}

process.exitCode = await main();
