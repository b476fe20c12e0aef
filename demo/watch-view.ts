/**
 * The watch panel: watch a key or every key under a prefix, and see each change arrive as the owners that store it
 * tell this tab (`store.watch`). Notices from all owners of a write come in as one line: the store delivers each
 * change once, never older than the last one shown for its key.
 */
import { h, replace } from './dom.ts';
import { formatTime, formatValue } from './format.ts';
import { type PageContext, errorBlock } from './page.ts';

/** Most notice lines kept on screen. */
const MAX_LINES = 50;

interface Running {
  readonly label: string;
  readonly stop: () => void;
}

/** The watch card. */
export class WatchView {
  /** The card's content (`data-testid="watch-panel"`). */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #target: HTMLInputElement;
  readonly #prefix: HTMLInputElement;
  readonly #watching: HTMLElement;
  readonly #notices: HTMLOListElement;
  readonly #status: HTMLElement;
  readonly #running: Running[] = [];

  constructor(page: PageContext) {
    this.#page = page;
    this.#target = h('input', {
      id: 'watch-target',
      testid: 'watch-target',
      value: 'cart',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    this.#prefix = h('input', { id: 'watch-prefix', testid: 'watch-prefix', type: 'checkbox' });
    this.#watching = h('div', { class: 'watching', testid: 'watch-list' });
    this.#notices = h('ol', { class: 'watch-notices', testid: 'watch-notices', 'aria-live': 'polite' });
    this.#status = h('div', { class: 'step-out' });
    this.element = h(
      'div',
      { class: 'watch', testid: 'watch-panel' },
      h(
        'p',
        { class: 'intro' },
        'Watch a key, or every key under a prefix: each write another tab makes shows up here as soon as an owner ' +
          'of the key stores it, with the siblings a read would return.',
      ),
      h(
        'div',
        { class: 'conflict-key' },
        h('label', { for: 'watch-target' }, 'Key'),
        this.#target,
        h('label', { for: 'watch-prefix' }, this.#prefix, ' as prefix'),
        h('button', { type: 'button', testid: 'watch-start', onClick: () => this.#start() }, 'watch'),
      ),
      this.#status,
      this.#watching,
      this.#notices,
    );
    this.#renderWatching();
  }

  #start(): void {
    const text = this.#target.value;
    const prefix = this.#prefix.checked;
    try {
      const label = prefix ? `${text}…` : text;
      const stop = this.#page.store.watch(prefix ? { prefix: text } : text, (notice) => {
        const key = String(notice.key);
        const line = h(
          'li',
          { class: 'watch-notice', 'data-key': key },
          h('span', { class: 'muted' }, formatTime(Date.now())),
          ' ',
          h('code', {}, key),
          ' = ',
          notice.values.length === 0
            ? h('span', { class: 'muted' }, 'deleted')
            : notice.values.map((v) => formatValue(v).replace(/\s+/g, ' ')).join(' ‖ '),
          notice.values.length > 1
            ? h('span', { class: 'conflict-note' }, ` (${notice.values.length} siblings)`)
            : null,
        );
        this.#notices.prepend(line);
        while (this.#notices.childElementCount > MAX_LINES) this.#notices.lastElementChild!.remove();
      });
      this.#running.push({ label, stop });
      replace(this.#status);
      this.#page.log('op', 'info', `watching ${prefix ? 'prefix' : 'key'} “${text}”`);
    } catch (error) {
      replace(this.#status, errorBlock(error));
    }
    this.#renderWatching();
  }

  #renderWatching(): void {
    replace(
      this.#watching,
      this.#running.length === 0
        ? h('span', { class: 'muted' }, 'Nothing watched yet.')
        : h(
            'span',
            { class: 'chips' },
            ...this.#running.map((running) =>
              h(
                'span',
                { class: 'chip' },
                running.label,
                ' ',
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'link',
                    title: `stop watching ${running.label}`,
                    onClick: () => {
                      running.stop();
                      this.#running.splice(this.#running.indexOf(running), 1);
                      this.#renderWatching();
                    },
                  },
                  '×',
                ),
              ),
            ),
          ),
    );
  }
}
