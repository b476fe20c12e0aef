/**
 * Command-line options shared by the simulation's CLI and soak, and the command that reproduces a run.
 */
import { parseArgs } from 'node:util';
import { CHURN_KINDS, FAULT_KINDS, type FaultKind } from './faults.ts';
import type { SimulationOptions } from './run.ts';
import { type QuorumChoice, WORKLOAD_KINDS, type WorkloadKind } from './workload.ts';

/** The options a command line can set. */
export type CliOptions = Pick<
  SimulationOptions,
  | 'seed'
  | 'nodes'
  | 'signed'
  | 'formed'
  | 'ops'
  | 'faults'
  | 'workloads'
  | 'hotKeys'
  | 'quorums'
  | 'clients'
  | 'keys'
  | 'n'
  | 'requestTimeout'
  | 'hintInterval'
  | 'thinkTime'
  | 'faultInterval'
  | 'faultDuration'
  | 'eachFault'
  | 'partitions'
  | 'convergence'
  | 'antiEntropyInterval'
  | 'tombstoneGrace'
>;

const NUMERIC = [
  'seed',
  'nodes',
  'ops',
  'clients',
  'keys',
  'hot-keys',
  'n',
  'request-timeout',
  'hint-interval',
  'think-time',
  'partitions',
  'anti-entropy-interval',
  'tombstone-grace',
  'each-fault',
] as const;
const RANGES = ['fault-interval', 'fault-duration'] as const;

/** The `parseArgs` option table of the simulation flags. */
export const SIM_FLAGS = {
  seed: { type: 'string' },
  nodes: { type: 'string' },
  ops: { type: 'string' },
  faults: { type: 'string' },
  workload: { type: 'string' },
  'hot-keys': { type: 'string' },
  quorums: { type: 'string' },
  clients: { type: 'string' },
  keys: { type: 'string' },
  n: { type: 'string' },
  'request-timeout': { type: 'string' },
  'hint-interval': { type: 'string' },
  'think-time': { type: 'string' },
  'fault-interval': { type: 'string' },
  'fault-duration': { type: 'string' },
  partitions: { type: 'string' },
  'anti-entropy-interval': { type: 'string' },
  'tombstone-grace': { type: 'string' },
  'each-fault': { type: 'string' },
  churn: { type: 'boolean' },
  'anti-entropy-only': { type: 'boolean' },
  'final-read': { type: 'boolean' },
  signed: { type: 'boolean' },
  formed: { type: 'boolean' },
} as const;

/**
 * Parses `--faults`: a comma-separated list of {@link FAULT_KINDS}, `churn` (join, leave and fail), `all`, or `none`.
 * @throws Error naming an unknown kind.
 */
export function parseFaults(text: string | undefined): FaultKind[] {
  if (text === undefined || text === '' || text === 'none') return [];
  if (text === 'all') return [...FAULT_KINDS];
  const kinds = text.split(',').flatMap((k): readonly string[] => (k.trim() === 'churn' ? CHURN_KINDS : [k.trim()]));
  for (const k of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(k))
      throw new Error(`unknown fault ${JSON.stringify(k)}; use ${FAULT_KINDS.join(', ')}, churn, all or none`);
  }
  return [...new Set(kinds)] as FaultKind[];
}

/**
 * Parses `--workload`: a comma-separated list of {@link WORKLOAD_KINDS} (misbehaving clients), `all`, or `none`.
 * @throws Error naming an unknown kind.
 */
export function parseWorkloads(text: string | undefined): WorkloadKind[] {
  if (text === undefined || text === '' || text === 'none') return [];
  if (text === 'all') return [...WORKLOAD_KINDS];
  const kinds = text.split(',').map((k) => k.trim());
  for (const k of kinds) {
    if (!(WORKLOAD_KINDS as readonly string[]).includes(k))
      throw new Error(`unknown workload ${JSON.stringify(k)}; use ${WORKLOAD_KINDS.join(', ')}, all or none`);
  }
  return [...new Set(kinds)] as WorkloadKind[];
}

/**
 * Reads the simulation flags out of `values` (as `parseArgs` returns them), leaving unset ones out. `--churn` adds
 * the churn kinds to the faults; `--anti-entropy-only` and `--final-read` choose how convergence is checked.
 * @throws Error for a flag that is not a non-negative integer, or for both convergence flags at once.
 */
export function readSimFlags(values: Record<string, unknown>): Partial<CliOptions> {
  const out: Record<string, unknown> = {};
  for (const flag of NUMERIC) {
    const raw = values[flag];
    if (raw === undefined) continue;
    const number = Number(raw);
    if (!Number.isSafeInteger(number) || number < 0) throw new Error(`--${flag} must be a non-negative integer`);
    out[camel(flag)] = number;
  }
  for (const flag of RANGES) {
    const raw = values[flag];
    if (raw === undefined) continue;
    const match = /^(\d+)-(\d+)$/.exec(String(raw));
    if (match === null || Number(match[1]) > Number(match[2]))
      throw new Error(`--${flag} must be MIN-MAX in virtual ms, such as 100-800`);
    out[camel(flag)] = [Number(match[1]), Number(match[2])];
  }
  if (values.faults !== undefined) out.faults = parseFaults(String(values.faults));
  if (values.workload !== undefined) out.workloads = parseWorkloads(String(values.workload));
  if (values.quorums !== undefined) {
    if (values.quorums !== 'random' && values.quorums !== 'default')
      throw new Error('--quorums must be random or default');
    out.quorums = values.quorums as QuorumChoice;
  }
  if (values.churn === true)
    out.faults = [...new Set([...((out.faults as FaultKind[] | undefined) ?? []), ...CHURN_KINDS])];
  if (values['anti-entropy-only'] === true && values['final-read'] === true)
    throw new Error('--anti-entropy-only and --final-read exclude each other');
  if (values['anti-entropy-only'] === true) out.convergence = 'anti-entropy';
  if (values['final-read'] === true) out.convergence = 'read';
  if (values.signed === true) out.signed = true;
  if (values.formed === true) out.formed = true;
  return out as Partial<CliOptions>;
}

function camel(flag: string): string {
  return flag.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
}

/** Parses a whole simulation command line. */
export function parseSimArgs(args: readonly string[]): Partial<CliOptions> {
  const { values } = parseArgs({ args: [...args], options: SIM_FLAGS, strict: true });
  return readSimFlags(values);
}

/** The command that replays a run with these options. */
export function reproduceCommand(options: CliOptions): string {
  const parts = ['npm run sim --', `--seed ${options.seed}`];
  if (options.nodes !== undefined) parts.push(`--nodes ${options.nodes}`);
  if (options.ops !== undefined) parts.push(`--ops ${options.ops}`);
  parts.push(
    `--faults ${options.faults !== undefined && options.faults.length > 0 ? options.faults.join(',') : 'none'}`,
  );
  if (options.workloads !== undefined && options.workloads.length > 0)
    parts.push(`--workload ${options.workloads.join(',')}`);
  if (options.hotKeys !== undefined) parts.push(`--hot-keys ${options.hotKeys}`);
  if (options.quorums !== undefined) parts.push(`--quorums ${options.quorums}`);
  if (options.clients !== undefined) parts.push(`--clients ${options.clients}`);
  if (options.keys !== undefined) parts.push(`--keys ${options.keys}`);
  if (options.n !== undefined) parts.push(`--n ${options.n}`);
  if (options.requestTimeout !== undefined) parts.push(`--request-timeout ${options.requestTimeout}`);
  if (options.hintInterval !== undefined) parts.push(`--hint-interval ${options.hintInterval}`);
  if (options.thinkTime !== undefined) parts.push(`--think-time ${options.thinkTime}`);
  if (options.faultInterval !== undefined) parts.push(`--fault-interval ${options.faultInterval.join('-')}`);
  if (options.faultDuration !== undefined) parts.push(`--fault-duration ${options.faultDuration.join('-')}`);
  if (options.eachFault !== undefined) parts.push(`--each-fault ${options.eachFault}`);
  if (options.partitions !== undefined) parts.push(`--partitions ${options.partitions}`);
  if (options.antiEntropyInterval !== undefined) parts.push(`--anti-entropy-interval ${options.antiEntropyInterval}`);
  if (options.tombstoneGrace !== undefined) parts.push(`--tombstone-grace ${options.tombstoneGrace}`);
  if (options.convergence === 'anti-entropy') parts.push('--anti-entropy-only');
  if (options.convergence === 'read') parts.push('--final-read');
  if (options.signed === true) parts.push('--signed');
  if (options.formed === true) parts.push('--formed');
  return parts.join(' ');
}
