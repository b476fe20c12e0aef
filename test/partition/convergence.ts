/**
 * When a healed cluster has converged, judged from every live node's `store.partitions()`: all nodes are in one
 * view of exactly the live nodes; each partition's owners all hold it (state `held`) with one Merkle root; and no
 * node outside a partition's owners still keeps keys of it.
 */
import type { PartitionReport } from './records.ts';

/** The verdict on one round of reports. */
export interface ConvergenceState {
  readonly converged: boolean;
  /** Why not, a few lines at most. */
  readonly problems: string[];
  /** Partitions whose owners disagree or are not all holding it. */
  readonly unsettled: number;
}

const SHOWN = 8;

/** Judges one round of reports from the nodes `live`. */
export function convergence(reports: readonly PartitionReport[], live: readonly string[]): ConvergenceState {
  const problems: string[] = [];
  const expected = [...live].sort().join(',');
  for (const report of reports) {
    const members = [...report.members].sort().join(',');
    if (members !== expected) problems.push(`${report.node} sees members ${members}, not ${expected}`);
  }
  const missing = live.filter((id) => !reports.some((r) => r.node === id));
  if (missing.length > 0) problems.push(`no report from ${missing.join(', ')}`);

  const byNode = new Map(reports.map((r) => [r.node, new Map(r.partitions.map((p) => [p.partition, p]))]));
  const partitions = new Set(reports.flatMap((r) => r.partitions.map((p) => p.partition)));
  let unsettled = 0;
  for (const partition of [...partitions].sort((a, b) => a - b)) {
    const views = reports.flatMap((r) => {
      const info = byNode.get(r.node)!.get(partition);
      return info === undefined ? [] : [{ node: r.node, info }];
    });
    const owners = new Set(views.map((v) => v.info.owners.join(',')));
    const why: string[] = [];
    if (owners.size > 1) why.push(`owners disagree: ${[...owners].join(' | ')}`);
    const ownerIds = views[0]!.info.owners;
    const roots = new Set<string>();
    for (const owner of ownerIds) {
      const info = byNode.get(owner)?.get(partition);
      if (info === undefined) why.push(`${owner} does not list it`);
      else {
        if (info.state !== 'held') why.push(`${owner} is ${info.state} (${Math.round(info.progress * 100)} %)`);
        roots.add(info.root);
      }
    }
    if (roots.size > 1) why.push(`roots differ: ${[...roots].join(', ')}`);
    for (const { node, info } of views) {
      if (!ownerIds.includes(node) && (info.keys > 0 || info.state === 'releasing')) {
        why.push(`${node}, not an owner, is ${info.state} with ${info.keys} keys`);
      }
    }
    if (why.length > 0) {
      unsettled++;
      if (problems.length < SHOWN) problems.push(`partition ${partition}: ${why.join('; ')}`);
    }
  }
  return { converged: problems.length === 0 && unsettled === 0, problems, unsettled };
}
