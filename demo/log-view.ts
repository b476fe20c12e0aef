/**
 * The live log: the node's own log entries, membership and peer changes, conflicts and this page's operations,
 * newest first, capped so that a long-running tab stays light.
 */
import { h, replace } from './dom.ts';
import { formatTime } from './format.ts';
import type { LogKind, LogLevel } from './page.ts';

/** Lines the log keeps. @default 200 */
export const LOG_CAP = 200;

/** The log card. */
export class LogView {
  /** The card's content. */
  readonly element: HTMLElement;
  readonly #list: HTMLOListElement;
  readonly #count: HTMLElement;

  constructor() {
    this.#list = h('ol', { class: 'log', testid: 'log', 'aria-label': 'Live log, newest first', 'aria-live': 'off' });
    this.#count = h('span', { class: 'muted' });
    this.element = h(
      'div',
      { class: 'log-wrap' },
      h(
        'div',
        { class: 'log-tools' },
        this.#count,
        h('button', { type: 'button', class: 'ghost', onClick: () => this.clear() }, 'Clear'),
      ),
      this.#list,
    );
    this.#updateCount();
  }

  /** Adds a line at the top. */
  add(kind: LogKind, level: LogLevel, msg: string, fields: Record<string, unknown> = {}, time = Date.now()): void {
    const shown = Object.entries(fields).filter(([, v]) => v !== undefined && v !== '');
    this.#list.prepend(
      h(
        'li',
        { class: `entry level-${level}`, 'data-kind': kind, 'data-level': level },
        h('time', { datetime: new Date(time).toISOString() }, formatTime(time)),
        h('span', { class: `kind kind-${kind}` }, kind),
        h('span', { class: 'msg' }, msg),
        shown.length === 0
          ? null
          : h(
              'span',
              { class: 'fields' },
              ...shown.map(([k, v]) => h('span', { class: 'log-field' }, `${k}=`, h('b', {}, String(v)))),
            ),
      ),
    );
    while (this.#list.childElementCount > LOG_CAP) this.#list.lastElementChild?.remove();
    this.#updateCount();
  }

  /** Empties the log. */
  clear(): void {
    replace(this.#list);
    this.#updateCount();
  }

  #updateCount(): void {
    const n = this.#list.childElementCount;
    this.#count.textContent = `${n} line${n === 1 ? '' : 's'}${n >= LOG_CAP ? ` (the latest ${LOG_CAP})` : ''}`;
  }
}
