/**
 * The ring as the nodes compute it: Q partitions around a circle, clockwise from the top, each coloured by the
 * nodes of its preference list. The thick outer band is each partition's primary (the first node of the list), the
 * thinner bands inside are the second and third replicas. This node's partitions are drawn brighter and marked by
 * a light arc outside the ring; a looked-up key shows as a needle at its partition.
 */
import type { ViewMember } from '../client/index.ts';
import { Ring } from '../worker/ring/ring.ts';
import { h, replace, s } from './dom.ts';

/** Who serves what, computed from one view exactly as every node computes it. */
export interface Ownership {
  readonly ring: Ring;
  /** N: the length of a full preference list. */
  readonly n: number;
  /** The preference list of every partition. */
  readonly lists: readonly (readonly string[])[];
  /** Partitions whose primary each member is. */
  readonly primary: ReadonlyMap<string, number>;
  /** Partitions whose preference list holds each member, at any place. */
  readonly replica: ReadonlyMap<string, number>;
}

/** The ring of `members` in `partitions` partitions (the cluster's Q) and the preference list of each partition. */
export function computeOwnership(members: readonly ViewMember[], n: number, partitions: number): Ownership {
  const ring = new Ring(
    members.map(({ id, domain, placement }) => ({ id, domain, placement })),
    { partitions },
  );
  const lists: (readonly string[])[] = [];
  const primary = new Map<string, number>();
  const replica = new Map<string, number>();
  for (let p = 0; p < ring.partitions; p++) {
    const list = ring.preferenceList(p, n);
    lists.push(list);
    if (list[0] !== undefined) primary.set(list[0], (primary.get(list[0]) ?? 0) + 1);
    for (const id of list) replica.set(id, (replica.get(id) ?? 0) + 1);
  }
  return { ring, n, lists, primary, replica };
}

const SIZE = 380;
const C = SIZE / 2;
const OUTER = 158;
const PRIMARY_WIDTH = 30;
const REPLICA_WIDTH = 11;
const BAND_GAP = 3;
const EMPTY_COLOR = '#2a3242';

/** A point at `r` from the centre, `turn` of the way round clockwise from the top. */
function at(r: number, turn: number): string {
  const a = turn * 2 * Math.PI;
  return `${(C + r * Math.sin(a)).toFixed(2)} ${(C - r * Math.cos(a)).toFixed(2)}`;
}

function arc(inner: number, outer: number, from: number, to: number): string {
  const large = to - from > 0.5 ? 1 : 0;
  return (
    `M ${at(outer, from)} A ${outer} ${outer} 0 ${large} 1 ${at(outer, to)} ` +
    `L ${at(inner, to)} A ${inner} ${inner} 0 ${large} 0 ${at(inner, from)} Z`
  );
}

/** Runs of consecutive partitions with the same value, none longer than half the ring (so an arc stays drawable). */
function runs<T>(values: readonly T[]): { first: number; last: number; value: T }[] {
  const out: { first: number; last: number; value: T }[] = [];
  const half = values.length / 2;
  values.forEach((value, p) => {
    const run = out[out.length - 1];
    if (run !== undefined && run.value === value && p - run.first < half) run.last = p;
    else out.push({ first: p, last: p, value });
  });
  return out;
}

const PLACE = ['primary', 'second replica', 'third replica'];

function placeName(i: number): string {
  return PLACE[i] ?? `replica ${i + 1}`;
}

/** The ring's SVG and its caption. */
export class RingView {
  /** The view's root, to place in the page. */
  readonly element: HTMLElement;
  readonly #svg: SVGSVGElement;
  readonly #bands: SVGGElement;
  readonly #needle: SVGGElement;
  readonly #center: SVGGElement;
  readonly #caption: HTMLElement;
  readonly #self: string;
  #ownership: Ownership | null = null;
  #colors: ReadonlyMap<string, string> = new Map();
  #key: string | null = null;

  constructor(self: string) {
    this.#self = self;
    this.#bands = s('g');
    this.#needle = s('g', { class: 'needle' });
    this.#center = s('g', { class: 'ring-center' });
    this.#svg = s(
      'svg',
      {
        viewBox: `0 0 ${SIZE} ${SIZE}`,
        role: 'img',
        'aria-label': 'The ring: partitions coloured by the nodes that serve them',
        testid: 'ring',
      },
      this.#bands,
      this.#ticks(),
      this.#needle,
      this.#center,
    );
    this.#caption = h('p', { class: 'ring-caption' });
    this.element = h('div', { class: 'ring-wrap' }, this.#svg, this.#caption);
  }

  /** Redraws for a new view. */
  update(ownership: Ownership, colors: ReadonlyMap<string, string>): void {
    this.#ownership = ownership;
    this.#colors = colors;
    this.#drawBands();
    this.#drawCenter();
    this.#drawNeedle();
    const q = ownership.ring.partitions;
    const mine = ownership.primary.get(this.#self) ?? 0;
    const replicas = ownership.replica.get(this.#self) ?? 0;
    replace(
      this.#caption,
      `Q = ${q} partitions, N = ${ownership.n}. This node is the primary of `,
      h('strong', {}, String(mine)),
      ` and holds a replica of `,
      h('strong', {}, String(replicas)),
      ` (${Math.round((100 * replicas) / q)} %).`,
      ownership.ring.members.length < ownership.n
        ? h('span', { class: 'warn' }, ` Fewer members than N: some replicas have nowhere to go.`)
        : null,
    );
  }

  /** Points the needle at `key`'s partition, or hides it for `null`. */
  showKey(key: string | null): void {
    this.#key = key;
    this.#drawNeedle();
    this.#drawCenter();
  }

  #color(id: string | undefined): string {
    return id === undefined ? EMPTY_COLOR : (this.#colors.get(id) ?? EMPTY_COLOR);
  }

  #label(id: string): string {
    return id === this.#self ? `${id} (this node)` : id;
  }

  #drawBands(): void {
    const own = this.#ownership!;
    const q = own.ring.partitions;
    const bands: SVGGElement[] = [];
    let outer = OUTER;
    for (let place = 0; place < own.n; place++) {
      const children: SVGElement[] = [];
      const width = place === 0 ? PRIMARY_WIDTH : REPLICA_WIDTH;
      const inner = outer - width;
      const owners = own.lists.map((list) => list[place]);
      for (const run of runs(owners)) {
        const mine = run.value === this.#self;
        const range = run.first === run.last ? `partition ${run.first}` : `partitions ${run.first}–${run.last}`;
        const who = run.value === undefined ? 'nobody (fewer members than N)' : this.#label(run.value);
        children.push(
          s(
            'path',
            {
              d: arc(inner, outer, run.first / q, (run.last + 1) / q),
              fill: this.#color(run.value),
              class: mine ? 'seg mine' : 'seg',
              'data-owner': run.value,
            },
            s('title', {}, `${range}: ${placeName(place)} ${who}`),
          ),
        );
        if (mine && place === 0) {
          children.push(
            s('path', { d: arc(OUTER + 3, OUTER + 7, run.first / q, (run.last + 1) / q), class: 'self-arc' }),
          );
        }
      }
      bands.push(s('g', { class: `band band-${place + 1}` }, ...children));
      outer = inner - BAND_GAP;
    }
    replace(this.#bands, ...bands);
  }

  #ticks(): SVGGElement {
    const g = s('g', { class: 'ticks', 'aria-hidden': 'true' });
    const q = this.#ownership?.ring.partitions ?? 256;
    for (let i = 0; i < 4; i++) {
      const turn = i / 4;
      const [x, y] = at(OUTER + 20, turn).split(' ');
      g.appendChild(s('text', { x, y, 'text-anchor': 'middle', 'dominant-baseline': 'middle' }, String((q * i) / 4)));
    }
    return g;
  }

  #partitionOfKey(): number | null {
    if (this.#key === null || this.#ownership === null) return null;
    return this.#ownership.ring.partitionOf(new TextEncoder().encode(this.#key));
  }

  #drawNeedle(): void {
    const p = this.#partitionOfKey();
    if (p === null) {
      replace(this.#needle);
      return;
    }
    const turn = (p + 0.5) / this.#ownership!.ring.partitions;
    const inner = OUTER - PRIMARY_WIDTH - (this.#ownership!.n - 1) * (REPLICA_WIDTH + BAND_GAP) - BAND_GAP;
    const [x, y] = at(OUTER + 10, turn).split(' ');
    replace(
      this.#needle,
      s('path', { d: `M ${at(inner - 6, turn)} L ${at(OUTER + 6, turn)}` }),
      s('circle', { cx: x, cy: y, r: 4 }),
    );
  }

  #drawCenter(): void {
    const own = this.#ownership;
    if (own === null) return;
    const p = this.#partitionOfKey();
    if (p === null) {
      const mine = own.primary.get(this.#self) ?? 0;
      replace(
        this.#center,
        s('text', { x: C, y: C - 26, class: 'small' }, 'primary of'),
        s('text', { x: C, y: C + 4, class: 'big', fill: this.#color(this.#self) }, `${mine}`),
        s('text', { x: C, y: C + 28, class: 'small' }, `of ${own.ring.partitions} partitions`),
      );
      return;
    }
    const list = own.lists[p] ?? [];
    const key = this.#key!.length > 16 ? `${this.#key!.slice(0, 15)}…` : this.#key!;
    replace(
      this.#center,
      s('text', { x: C, y: C - 40, class: 'small' }, `“${key}”`),
      s('text', { x: C, y: C - 18, class: 'mid' }, `partition ${p}`),
      ...list.map((id, i) =>
        s(
          'text',
          { x: C, y: C + 6 + i * 17, class: id === this.#self ? 'node mine' : 'node', fill: this.#color(id) },
          `${i + 1}. ${id.slice(0, 8)}${id === this.#self ? ' (you)' : ''}`,
        ),
      ),
    );
  }
}
