/**
 * How a simulation run is reported: the JSON line of its figures and, when it failed, what it found.
 */
import type { SimulationResult } from './run.ts';

/** The JSON line a run prints: its figures, and the first few findings when there are any. */
export function summary(result: SimulationResult): Record<string, unknown> {
  const { verdict: _verdict, faultLog: _faultLog, metrics, details, ...figures } = result;
  const findings = Object.fromEntries(Object.entries(details).filter(([, list]) => list.length > 0));
  return {
    ...figures,
    metrics: pick(metrics, [
      'forwards',
      'readRepairs',
      'fallbacksUsed',
      'hintsStored',
      'hintsDelivered',
      'hintsRerouted',
      'timeouts',
      'partitionsFetched',
      'partitionsReleased',
      'keysReleased',
      'antiEntropyRounds',
      'keysRepaired',
      'tombstonesCollected',
      'unauthorizedMessages',
    ]),
    ...(Object.keys(findings).length > 0 ? { details: findings } : {}),
  };
}

/** Human-readable lines saying what a failed run found. */
export function describeFailure(result: SimulationResult): string[] {
  const lines: string[] = [];
  const d = result.details;
  if (result.lost > 0) {
    lines.push(
      `${result.lost} acknowledged writes lost (${result.siblingsLost} of them siblings of surviving values):`,
    );
    for (const l of d.lost)
      lines.push(`  ${l.id} (key ${l.key}, W=${l.w}); the key holds [${l.finalValues.join(', ')}]`);
  }
  if (result.resurrected > 0) {
    lines.push(`${result.resurrected} superseded values came back:`);
    for (const r of d.resurrected) lines.push(`  ${r.id} (key ${r.key}) superseded by ${r.supersededBy}, by ${r.by}`);
  }
  if (result.phantoms > 0) {
    lines.push(`${result.phantoms} values nobody wrote:`);
    for (const p of d.phantoms) lines.push(`  ${JSON.stringify(p.value)} under key ${p.key}`);
  }
  if (d.unconverged.length > 0) {
    lines.push('the stored state did not converge by anti-entropy alone:');
    for (const u of d.unconverged) lines.push(`  ${u}`);
  }
  if (result.divergentKeys > 0) {
    lines.push(`${result.divergentKeys} keys whose replicas disagree:`);
    for (const k of d.divergent) {
      const sets = k.replicas.map((r) => `${r.node}=[${r.versions.map((v) => `${v.node}:${v.counter}`).join(' ')}]`);
      lines.push(`  ${k.key}: ${sets.join('  ')}`);
    }
  }
  if (result.hung > 0) lines.push(`${result.hung} client calls never completed: ${JSON.stringify(d.hung)}`);
  if (result.bugs > 0) {
    lines.push(`${result.bugs} errors no fault should cause:`);
    for (const b of d.bugs) lines.push(`  ${b.split('\n').slice(0, 4).join('\n    ')}`);
  }
  if (result.repeatedDots > 0) {
    lines.push(`${result.repeatedDots} times a dot was found naming two different writes:`);
    for (const r of d.repeatedDots) lines.push(`  ${r.dot}: ${r.writes.join(' and ')}, seen in ${r.where}`);
  }
  if (result.availabilityRequired && result.refused > 0) {
    lines.push(`${result.refused} requests refused for want of replicas in a run with no fault but membership change:`);
    for (const r of d.refused)
      lines.push(
        `  ${r.kind} of ${r.key} via ${r.node} (quorum ${r.quorum}) at ${r.start}-${r.end} ms: ${r.code}: ${r.message}`,
      );
  }
  const listed: [number, string, readonly string[]][] = [
    [result.violations, 'misbehaving calls answered otherwise than they must be', d.violations],
    [result.refusedStored, 'writes that had to store nothing were stored', d.refusedStored],
    [result.poisoned, 'stored versions or counters naming what was never issued', d.poisoned],
    [result.overBound, 'sibling sets past what merges of bounded writes allow', d.overBound],
    [result.wedged, 'problems after the run, in a phase without faults', d.wedged],
  ];
  for (const [count, what, shown] of listed) {
    if (count === 0) continue;
    lines.push(`${count} ${what}:`);
    for (const line of shown) lines.push(`  ${line}`);
  }
  return lines;
}

function pick(record: Readonly<Record<string, number>>, names: readonly string[]): Record<string, number> {
  return Object.fromEntries(names.map((name) => [name, record[name] ?? 0]));
}
