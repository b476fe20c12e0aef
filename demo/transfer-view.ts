/**
 * Partitions on the move, polled every second from `store.partitions()`: how many this node holds, is still fetching
 * from another owner, or is releasing to the new owners after a membership change; a map of the ring's partitions
 * by state; one row with a progress bar for each partition in transfer; and the counters of transfers and
 * anti-entropy, so that a person sees a joining tab fill up and the background repair that keeps replicas equal.
 */
import type { HostMetrics, PartitionInfo, PartitionState } from '../client/index.ts';
import { h, replace } from './dom.ts';
import { formatBytes } from './format.ts';
import { type PageContext, nodeChip } from './page.ts';

/** Most rows of partitions in transfer the list shows; the rest are counted in one line. @default 24 */
export const MAX_TRANSFER_ROWS = 24;

type NodeCounters = HostMetrics['node'];

/** The counters of partition transfer and anti-entropy, with their labels, in the order shown. */
const COUNTERS: readonly [keyof NodeCounters, string][] = [
  ['partitionsFetched', 'partitions fetched'],
  ['partitionsReleased', 'partitions released'],
  ['keysReleased', 'keys released'],
  ['keysRepaired', 'keys repaired'],
  ['syncKeysServed', 'sync keys served'],
  ['syncBytes', 'sync bytes'],
  ['antiEntropyRounds', 'anti-entropy rounds'],
  ['antiEntropyRepairs', 'anti-entropy repairs'],
  ['tombstonesCollected', 'tombstones collected'],
  ['hintsRerouted', 'hints rerouted'],
];

const STATES: readonly PartitionState[] = ['held', 'fetching', 'releasing'];

/** How many partitions are in each state. */
export function countStates(partitions: readonly PartitionInfo[]): Record<PartitionState, number> {
  const counts: Record<PartitionState, number> = { held: 0, fetching: 0, releasing: 0 };
  for (const p of partitions) counts[p.state]++;
  return counts;
}

/** The transfer card. */
export class TransferView {
  /** The card's content (`data-testid="transfer-panel"`). */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #counts: Record<PartitionState, HTMLElement>;
  readonly #map: HTMLElement;
  readonly #cells: HTMLElement[] = [];
  readonly #list: HTMLElement;
  readonly #counters: HTMLElement;

  constructor(page: PageContext) {
    this.#page = page;
    const count = (state: PartitionState): HTMLElement =>
      h('div', { class: 'tile-value', testid: `partitions-${state}` }, '–');
    this.#counts = { held: count('held'), fetching: count('fetching'), releasing: count('releasing') };
    const explain: Record<PartitionState, string> = {
      held: 'complete copies: serves and coordinates',
      fetching: 'owned, still streaming in',
      releasing: 'no longer owned, handing over',
    };
    this.#map = h('div', {
      class: 'partition-map',
      role: 'img',
      'aria-label': 'Every ring partition, by this node’s state for it',
      testid: 'partition-map',
    });
    this.#list = h('ul', { class: 'transfer-list', testid: 'transfer-list' });
    this.#counters = h('dl', { class: 'counters', testid: 'transfer-counters' });
    this.element = h(
      'div',
      { class: 'transfer', testid: 'transfer-panel' },
      h(
        'div',
        { class: 'tiles tiles-3' },
        ...STATES.map((state) =>
          h(
            'div',
            { class: `tile state-${state}` },
            h('div', { class: 'tile-name' }, state),
            this.#counts[state],
            h('div', { class: 'tile-sub' }, explain[state]),
          ),
        ),
      ),
      this.#map,
      h(
        'p',
        { class: 'map-legend' },
        ...STATES.map((state) => h('span', { class: `legend-item` }, h('i', { class: `cell ${state}` }), state)),
        h('span', { class: 'legend-item' }, h('i', { class: 'cell none' }), 'not owned'),
      ),
      this.#list,
      this.#counters,
    );
    this.#showList([]);
  }

  /** Shows what `store.partitions()` answered; `q` is the number of ring partitions. */
  showPartitions(partitions: readonly PartitionInfo[], q: number): void {
    const counts = countStates(partitions);
    for (const state of STATES) this.#counts[state].textContent = String(counts[state]);
    this.#drawMap(partitions, q);
    this.#showList(partitions.filter((p) => p.state !== 'held'));
  }

  /** Shows the transfer and anti-entropy counters of this node's metrics. */
  showCounters(node: NodeCounters): void {
    replace(
      this.#counters,
      ...COUNTERS.flatMap(([name, label]) => {
        const value = node[name] as number;
        return [
          h('dt', {}, label),
          h('dd', { 'data-counter': name }, name === 'syncBytes' ? formatBytes(value) : String(value)),
        ];
      }),
    );
  }

  #drawMap(partitions: readonly PartitionInfo[], q: number): void {
    if (this.#cells.length !== q) {
      this.#cells.length = 0;
      for (let p = 0; p < q; p++) this.#cells.push(h('i', { class: 'cell none', 'data-partition': p }));
      replace(this.#map, ...this.#cells);
    }
    const byPartition = new Map(partitions.map((p) => [p.partition, p]));
    this.#cells.forEach((cell, p) => {
      const info = byPartition.get(p);
      const state = info?.state ?? 'none';
      cell.className = `cell ${state}`;
      cell.style.setProperty('--progress', info === undefined ? '0' : String(info.progress));
      cell.title =
        info === undefined
          ? `partition ${p}: not owned by this node`
          : `partition ${p}: ${info.state}${info.state === 'held' ? '' : ` ${Math.round(info.progress * 100)} %`}, ` +
            `${info.keys} keys, root ${info.root}`;
    });
  }

  #showList(moving: readonly PartitionInfo[]): void {
    if (moving.length === 0) {
      replace(this.#list, h('li', { class: 'muted empty' }, 'No partition in transfer: every owned one is held.'));
      return;
    }
    const shown = [...moving].sort((a, b) => a.progress - b.progress || a.partition - b.partition);
    replace(
      this.#list,
      ...shown.slice(0, MAX_TRANSFER_ROWS).map((p) => this.#row(p)),
      shown.length > MAX_TRANSFER_ROWS
        ? h('li', { class: 'muted more' }, `and ${shown.length - MAX_TRANSFER_ROWS} more in transfer`)
        : null,
    );
  }

  #row(p: PartitionInfo): HTMLElement {
    const percent = Math.round(Math.max(0, Math.min(1, p.progress)) * 100);
    const self = this.#page.store.nodeId;
    // A fetching node pulls from the other owners; a releasing one pushes to the owners it is no longer among.
    const peers = p.owners.filter((id) => id !== self);
    return h(
      'li',
      {
        class: `transfer-row ${p.state}`,
        testid: 'transfer-row',
        'data-partition': p.partition,
        'data-state': p.state,
        'data-progress': p.progress.toFixed(3),
      },
      h('span', { class: 'transfer-partition' }, `p${p.partition}`),
      h('span', { class: `badge transfer-state ${p.state}` }, p.state),
      h(
        'span',
        {
          class: 'bar',
          role: 'progressbar',
          'aria-valuemin': 0,
          'aria-valuemax': 100,
          'aria-valuenow': percent,
          'aria-label': `partition ${p.partition} ${p.state}`,
        },
        h('span', { class: 'bar-fill', style: `width:${percent}%` }),
      ),
      h('span', { class: 'transfer-percent' }, `${percent} %`),
      h('span', { class: 'transfer-keys muted' }, `${p.keys} key${p.keys === 1 ? '' : 's'}`),
      h(
        'span',
        { class: 'chips transfer-peers', title: p.state === 'fetching' ? 'from' : 'to' },
        p.state === 'fetching' ? '← ' : '→ ',
        ...peers.map((id) => nodeChip(this.#page, id, false)),
      ),
    );
  }
}
