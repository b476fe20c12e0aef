/**
 * The signalling server's Prometheus metrics, in a Registry of its own (never prom-client's global one, so several
 * servers in one process, as in tests, keep apart). Gauges are read from the membership when scraped.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { MetricsSnapshot } from './events.ts';
import { FAILURE_REASONS, type MembershipStats, type QuietState } from './membership.ts';

/** Where scrape-time gauges read from. */
export interface MetricsSource {
  stats(): Promise<MembershipStats>;
  connections(): number;
  /** Every pushed node snapshot, for the optional per-node gauge. */
  nodeSnapshots(): Iterable<{ cluster: string; node: string; values: MetricsSnapshot }>;
}

/** Labels of rejected events: the event name (or `unknown`) and the reason (the error code, lower-case, no `ERR_`). */
export type RejectionLabels = 'event' | 'reason';

/** The counters the server increments and the registry `/metrics` serves. */
export interface SignalingMetrics {
  readonly registry: Registry;
  readonly joins: Counter;
  readonly leaves: Counter;
  readonly failures: Counter<'reason'>;
  /** Members that turned suspect under the grace rule, by what they announced (hidden, frozen). */
  readonly gracesStarted: Counter<'state'>;
  readonly signalsRelayed: Counter;
  /** Peer frames relayed between members without a peer connection, and their bytes. */
  readonly framesRelayed: Counter;
  readonly frameBytesRelayed: Counter;
  readonly viewsPushed: Counter;
  readonly rejected: Counter<RejectionLabels>;
  /** Connections and HTTP requests refused before any event, by reason (`origin`: a page not allowed to connect). */
  readonly refused: Counter<'reason'>;
}

/**
 * Creates the registry and metrics; `exportNodeMetrics` adds `dynamesh_node_metric{cluster,node,name}`. With
 * `processId` (a process of a service on Redis), every series carries the label `process`: each process reports its
 * own counters and connections, and a scraper of all of them tells them apart.
 */
export function createSignalingMetrics(
  source: MetricsSource,
  exportNodeMetrics: boolean,
  processId?: string,
): SignalingMetrics {
  const registry = new Registry();
  if (processId !== undefined) registry.setDefaultLabels({ process: processId });
  const registers = [registry];
  new Gauge({
    name: 'dynamesh_signaling_clusters',
    help: 'Clusters with at least one member.',
    registers,
    async collect() {
      this.set((await source.stats()).clusters);
    },
  });
  new Gauge({
    name: 'dynamesh_signaling_members',
    help: 'Members by state: alive and suspect are in their view, out_of_view are joined but out of it.',
    labelNames: ['state'] as const,
    registers,
    async collect() {
      const stats = await source.stats();
      this.set({ state: 'alive' }, stats.alive);
      this.set({ state: 'suspect' }, stats.suspect);
      this.set({ state: 'out_of_view' }, stats.outOfView);
    },
  });
  new Gauge({
    name: 'dynamesh_signaling_members_in_grace',
    help: 'Suspect members kept in their view because they announced their tab hidden or frozen before falling silent.',
    registers,
    async collect() {
      this.set((await source.stats()).inGrace);
    },
  });
  new Gauge({
    name: 'dynamesh_signaling_connections',
    help: 'Open Socket.IO connections, joined or not.',
    registers,
    collect() {
      this.set(source.connections());
    },
  });
  if (exportNodeMetrics) {
    new Gauge({
      name: 'dynamesh_node_metric',
      help: 'The latest metrics snapshot each node pushed, one series per entry.',
      labelNames: ['cluster', 'node', 'name'] as const,
      registers,
      collect() {
        // Rebuilt on every scrape, so nodes that left take their series with them.
        this.reset();
        for (const { cluster, node, values } of source.nodeSnapshots()) {
          for (const [name, value] of Object.entries(values)) this.set({ cluster, node, name }, value);
        }
      },
    });
  }
  const failures = new Counter({
    name: 'dynamesh_signaling_failures_detected_total',
    help: 'Members that left their view without leaving, by reason (heartbeat, unconfirmed, majority, grace).',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of FAILURE_REASONS) failures.inc({ reason }, 0);
  const gracesStarted = new Counter({
    name: 'dynamesh_signaling_graces_started_total',
    help: 'Silent members kept in their view as suspect because they announced their tab hidden or frozen, by state.',
    labelNames: ['state'] as const,
    registers,
  });
  for (const state of ['hidden', 'frozen'] satisfies QuietState[]) gracesStarted.inc({ state }, 0);
  return {
    registry,
    joins: new Counter({ name: 'dynamesh_signaling_joins_total', help: 'Accepted joins.', registers }),
    leaves: new Counter({ name: 'dynamesh_signaling_leaves_total', help: 'Explicit leaves.', registers }),
    failures,
    gracesStarted,
    signalsRelayed: new Counter({
      name: 'dynamesh_signaling_signals_relayed_total',
      help: 'WebRTC signals relayed between members.',
      registers,
    }),
    framesRelayed: new Counter({
      name: 'dynamesh_signaling_frames_relayed_total',
      help: 'Peer frames relayed between members that have no peer connection to each other.',
      registers,
    }),
    frameBytesRelayed: new Counter({
      name: 'dynamesh_signaling_frame_bytes_relayed_total',
      help: 'Bytes of peer frames relayed between members.',
      registers,
    }),
    viewsPushed: new Counter({
      name: 'dynamesh_signaling_view_changes_total',
      help: 'View changes pushed to a cluster.',
      registers,
    }),
    rejected: new Counter({
      name: 'dynamesh_signaling_events_rejected_total',
      help: 'Events answered with an error or dropped, by event and reason.',
      labelNames: ['event', 'reason'] as const,
      registers,
    }),
    refused: new Counter({
      name: 'dynamesh_signaling_connections_refused_total',
      help: 'Connections refused before any event (origin: a web page not allowed to connect), by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
  };
}

/** The `reason` label of an error code: `ERR_RATE_LIMITED` → `rate_limited`. */
export function reasonLabel(code: string): string {
  return code.replace(/^ERR_/, '').toLowerCase();
}
