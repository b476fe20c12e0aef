/**
 * This node's counters, polled every second: operations with a one-minute sparkline, get and put latency (p50 and
 * p99 over the node's recent window), what it stores; and below, every member's pushed metrics, one row per node.
 */
import type { HostMetrics, ViewMember } from '../client/index.ts';
import { h, replace, s } from './dom.ts';
import { formatBytes, formatMs } from './format.ts';
import { type PageContext, nodeChip } from './page.ts';

/** Seconds of history the operations sparkline keeps. @default 60 */
export const SPARK_SECONDS = 60;

type ClusterMetrics = Awaited<ReturnType<PageContext['store']['clusterMetrics']>>;

const DETAIL: [keyof HostMetrics['node'], string][] = [
  ['coordinated', 'coordinated'],
  ['forwards', 'forwarded'],
  ['replicasWritten', 'replicas written'],
  ['readsServed', 'reads served'],
  ['readsCompleted', 'reads completed from a holder'],
  ['readRepairs', 'read repairs'],
  ['fallbacksUsed', 'fallbacks used'],
  ['hintsStored', 'hints stored'],
  ['hintsDelivered', 'hints delivered'],
  ['quorumFailures', 'quorum failures'],
  ['timeouts', 'timeouts'],
  ['framesSent', 'frames sent'],
  ['framesReceived', 'frames received'],
];

/** A latency in a table cell: the column says ms. */
function ms(value: number): string {
  return value < 10 ? value.toFixed(1) : String(Math.round(value));
}

function operations(m: { gets?: number; puts?: number; deletes?: number }): number {
  return (m.gets ?? 0) + (m.puts ?? 0) + (m.deletes ?? 0);
}

/** The metrics card. */
export class MetricsView {
  /** The card's content (`data-testid="metrics"`). */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #tiles: HTMLElement;
  readonly #detail: HTMLElement;
  readonly #table: HTMLTableSectionElement;
  readonly #history: number[] = [];
  #lastOps: number | null = null;

  constructor(page: PageContext) {
    this.#page = page;
    this.#tiles = h('div', { class: 'tiles' });
    this.#detail = h('dl', { class: 'counters' });
    this.#table = h('tbody');
    this.element = h(
      'div',
      { class: 'metrics', testid: 'metrics' },
      this.#tiles,
      this.#detail,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'cluster-table', testid: 'cluster-metrics' },
          h('caption', {}, 'Every node, as last pushed to the signalling server'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ...['node', 'ops', 'get ms p50·p99', 'put ms p50·p99', 'keys', 'bytes'].map((name) =>
                h('th', { scope: 'col' }, name),
              ),
            ),
          ),
          this.#table,
        ),
      ),
    );
  }

  /** Shows this node's metrics. */
  showNode(metrics: HostMetrics): void {
    const { node, storage } = metrics;
    const ops = operations(node);
    if (this.#lastOps !== null) this.#history.push(Math.max(0, ops - this.#lastOps));
    if (this.#history.length > SPARK_SECONDS) this.#history.shift();
    this.#lastOps = ops;
    const latencyTile = (name: string, testid: string, l: HostMetrics['node']['latency']['get']): HTMLElement =>
      l.count === 0
        ? tile(name, testid, '–', 'no samples yet')
        : tile(name, testid, formatMs(l.p50), `p50 · p99 ${formatMs(l.p99)} · ${l.count} ops`);
    const tile = (name: string, testid: string, value: string, sub: string, extra?: Node): HTMLElement =>
      h(
        'div',
        { class: 'tile', testid },
        h('div', { class: 'tile-name' }, name),
        h('div', { class: 'tile-value' }, value),
        h('div', { class: 'tile-sub' }, sub),
        extra ?? null,
      );
    replace(
      this.#tiles,
      tile(
        'operations',
        'metric-ops',
        String(ops),
        `${node.gets} get · ${node.puts} put · ${node.deletes} del`,
        this.#sparkline(),
      ),
      latencyTile('get latency', 'metric-get', node.latency.get),
      latencyTile('put latency', 'metric-put', node.latency.put),
      tile(
        'stored',
        'metric-stored',
        `${storage.keys} key${storage.keys === 1 ? '' : 's'}`,
        `${formatBytes(storage.bytes)} · ${storage.hints} hints`,
      ),
    );
    replace(
      this.#detail,
      ...DETAIL.flatMap(([name, label]) => [
        h('dt', {}, label),
        h('dd', { class: node[name] !== 0 && /Failures|timeouts/.test(name) ? 'bad' : '' }, String(node[name])),
      ]),
      h('dt', {}, 'frames dropped'),
      h('dd', { class: metrics.framesDropped > 0 ? 'bad' : '' }, String(metrics.framesDropped)),
    );
  }

  /** Shows every node's pushed metrics, members of the view first, in view order. */
  showCluster(members: readonly ViewMember[], cluster: ClusterMetrics): void {
    const ids = [
      ...members.map((m) => m.id),
      ...Object.keys(cluster).filter((id) => !members.some((m) => m.id === id)),
    ];
    replace(
      this.#table,
      ...ids.map((id) => {
        const values = cluster[id]?.values;
        const cell = (text: string): HTMLElement => h('td', {}, values === undefined ? '–' : text);
        const v = (name: string): number => values?.[name] ?? 0;
        return h(
          'tr',
          { 'data-node-id': id, class: id === this.#page.store.nodeId ? 'mine' : '' },
          h('th', { scope: 'row' }, nodeChip(this.#page, id, false)),
          cell(String(operations({ gets: v('gets'), puts: v('puts'), deletes: v('deletes') }))),
          cell(`${ms(v('get_p50_ms'))} · ${ms(v('get_p99_ms'))}`),
          cell(`${ms(v('put_p50_ms'))} · ${ms(v('put_p99_ms'))}`),
          cell(String(v('keys'))),
          cell(formatBytes(v('bytes'))),
        );
      }),
    );
  }

  #sparkline(): SVGSVGElement {
    const width = 120;
    const height = 26;
    const max = Math.max(1, ...this.#history);
    const step = width / (SPARK_SECONDS - 1);
    const offset = SPARK_SECONDS - this.#history.length;
    const points = this.#history.map(
      (v, i) => `${((offset + i) * step).toFixed(1)},${(height - 2 - ((height - 4) * v) / max).toFixed(1)}`,
    );
    return s(
      'svg',
      {
        class: 'spark',
        viewBox: `0 0 ${width} ${height}`,
        role: 'img',
        'aria-label': `operations per second, last ${SPARK_SECONDS} s`,
      },
      points.length > 1 ? s('polyline', { points: points.join(' ') }) : null,
    );
  }
}
