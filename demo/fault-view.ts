/**
 * The fault panel: cut this node from chosen members (or from everyone), drop a share of its messages, delay what it
 * sends, and heal. It drives `store.faults`, which exists only when the page was opened with `?faults=1`; otherwise
 * the panel says so and links to the same page with faults on.
 */
import type { FaultState, StoreFaults, ViewMember } from '../client/index.ts';
import { MAX_FAULT_DELAY_MS } from '../worker/transport/faults.ts';
import { h, replace } from './dom.ts';
import { type PageContext, errorBlock, nodeChip } from './page.ts';

/** The fault card. */
export class FaultView {
  /** The card's content (`data-testid="faults"`). */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #faults: StoreFaults | undefined;
  readonly #targets = h('ul', { class: 'fault-targets', testid: 'fault-targets', 'aria-label': 'Nodes to isolate' });
  readonly #selected = new Set<string>();
  readonly #drop = h('input', {
    id: 'fault-drop',
    type: 'range',
    min: 0,
    max: 100,
    step: 1,
    value: 0,
    testid: 'fault-drop',
    'aria-describedby': 'fault-drop-value',
  });
  readonly #dropValue = h('output', { id: 'fault-drop-value', for: 'fault-drop' }, '0 %');
  readonly #delay = h('input', {
    id: 'fault-delay',
    type: 'number',
    min: 0,
    max: MAX_FAULT_DELAY_MS,
    step: 10,
    value: 0,
    testid: 'fault-delay',
  });
  readonly #state = h('dl', { class: 'counters', testid: 'fault-state' });
  readonly #result = h('div', { class: 'fault-result', 'aria-live': 'polite' });
  #members: readonly ViewMember[] = [];

  constructor(page: PageContext) {
    this.#page = page;
    this.#faults = page.store.faults;
    this.element = this.#faults === undefined ? this.#off() : this.#on();
  }

  /** Redraws the isolation checklist for the members of the view. */
  updateMembers(members: readonly ViewMember[]): void {
    this.#members = members;
    if (this.#faults === undefined) return;
    const self = this.#page.store.nodeId;
    const ids = new Set(members.map((m) => m.id));
    for (const id of [...this.#selected]) if (id !== self && !ids.has(id)) this.#selected.delete(id);
    const row = (id: string, label: Node): HTMLElement => {
      const box = h('input', {
        type: 'checkbox',
        value: id,
        checked: this.#selected.has(id),
        'data-node': id,
        onChange: () => {
          if (box.checked) this.#selected.add(id);
          else this.#selected.delete(id);
        },
      });
      return h('li', {}, h('label', { class: 'check' }, box, label));
    };
    replace(
      this.#targets,
      row(self, h('span', {}, nodeChip(this.#page, self, false), ' this node: cut from everyone')),
      ...members.filter((m) => m.id !== self).map((m) => row(m.id, nodeChip(this.#page, m.id))),
    );
  }

  /** Shows the faults in force and their counts, from the node's metrics. */
  showState(state: FaultState | undefined): void {
    if (state === undefined) return;
    const isolated =
      state.isolated.length === 0
        ? h('span', { class: 'muted' }, 'none')
        : h('span', { class: 'chips' }, ...state.isolated.map((id) => nodeChip(this.#page, id)));
    const active = state.isolated.length > 0 || state.dropRate > 0 || state.delayMs > 0;
    this.element.classList.toggle('faults-active', active);
    replace(
      this.#state,
      h('dt', {}, 'isolated'),
      h('dd', { 'data-field': 'isolated', class: 'fault-isolated' }, isolated),
      h('dt', {}, 'drop rate'),
      h('dd', { 'data-field': 'dropRate', class: state.dropRate > 0 ? 'bad' : '' }, `${pct(state.dropRate)} %`),
      h('dt', {}, 'delay'),
      h('dd', { 'data-field': 'delayMs', class: state.delayMs > 0 ? 'bad' : '' }, `${state.delayMs} ms`),
      h('dt', {}, 'dropped'),
      h('dd', { 'data-field': 'dropped' }, String(state.dropped)),
      h('dt', {}, 'delayed'),
      h('dd', { 'data-field': 'delayed' }, String(state.delayed)),
    );
    // Keep the controls in step with what the node runs, unless the user is moving them right now.
    if (document.activeElement !== this.#drop) {
      this.#drop.value = String(pct(state.dropRate));
      this.#dropValue.textContent = `${pct(state.dropRate)} %`;
    }
    if (document.activeElement !== this.#delay) this.#delay.value = String(state.delayMs);
  }

  #off(): HTMLElement {
    const url = new URL(location.href);
    url.searchParams.set('faults', '1');
    return h(
      'div',
      { class: 'faults faults-off', testid: 'faults' },
      h(
        'p',
        { testid: 'faults-off' },
        h('strong', {}, 'Fault injection is off in this tab.'),
        ' Its node sends and receives every message as the network delivers it. ',
        h('a', { href: url.href, testid: 'faults-enable' }, 'Open this page with ?faults=1'),
        ' to cut it from other nodes, drop a share of its messages or delay them.',
      ),
    );
  }

  #on(): HTMLElement {
    const faults = this.#faults!;
    this.#drop.addEventListener('input', () => (this.#dropValue.textContent = `${this.#drop.value} %`));
    this.#drop.addEventListener('change', () => {
      const p = Number(this.#drop.value) / 100;
      void this.#apply(`drop rate ${this.#drop.value} %`, () => faults.dropRate(p));
    });
    this.#delay.addEventListener('change', () => {
      const ms = Number(this.#delay.value);
      void this.#apply(`delay ${ms} ms`, () => faults.delay(ms));
    });
    this.updateMembers(this.#members);
    return h(
      'div',
      { class: 'faults', testid: 'faults' },
      h(
        'p',
        { class: 'hint-line' },
        'Faults act in this tab’s own transport: a cut drops messages both ways at this node, so cutting one side is a partition.',
      ),
      this.#targets,
      h(
        'div',
        { class: 'buttons fault-buttons' },
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            testid: 'fault-isolate',
            onClick: () => {
              const ids = [...this.#selected];
              if (ids.length === 0) {
                replace(this.#result, h('p', { class: 'muted' }, 'Tick the nodes to cut first.'));
                return;
              }
              void this.#apply(`isolated ${ids.map((id) => id.slice(0, 8)).join(', ')}`, () => faults.isolate(ids));
            },
          },
          'Isolate selected',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'primary',
            testid: 'fault-heal',
            onClick: () => {
              this.#selected.clear();
              this.updateMembers(this.#members);
              void this.#apply('healed every fault', () => faults.heal());
            },
          },
          'Heal all',
        ),
      ),
      h(
        'div',
        { class: 'options fault-options' },
        h('label', { for: 'fault-drop' }, 'Drop'),
        this.#drop,
        this.#dropValue,
        h('label', { for: 'fault-delay' }, 'Delay'),
        this.#delay,
        h('span', { class: 'muted' }, 'ms'),
      ),
      this.#state,
      this.#result,
    );
  }

  async #apply(what: string, change: () => Promise<FaultState>): Promise<void> {
    try {
      const state = await change();
      replace(this.#result);
      this.showState(state);
      this.#page.log('op', 'warn', `faults: ${what}`, {
        isolated: state.isolated.join(','),
        dropRate: state.dropRate,
        delayMs: state.delayMs,
      });
    } catch (error) {
      replace(this.#result, errorBlock(error));
    }
  }
}

function pct(p: number): number {
  return Math.round(p * 100);
}
