/**
 * The flat snapshot a node pushes to the signalling server (its `metrics` event), as a tab and the always-on node both
 * push it: the node's counters, its latency percentiles and its storage counts, each a number under its name.
 */
import type { HostMetrics } from '../worker/main.ts';

export function metricsSnapshot({ node, storage }: HostMetrics): Record<string, number> {
  const flat: Record<string, number> = {};
  for (const [name, value] of Object.entries(node)) if (typeof value === 'number') flat[name] = value;
  flat['get_p50_ms'] = node.latency.get.p50;
  flat['get_p99_ms'] = node.latency.get.p99;
  flat['put_p50_ms'] = node.latency.put.p50;
  flat['put_p99_ms'] = node.latency.put.p99;
  flat['keys'] = storage.keys;
  flat['bytes'] = storage.bytes;
  flat['hints'] = storage.hints;
  return flat;
}
