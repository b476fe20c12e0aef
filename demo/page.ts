/**
 * What the views of the page share: the open store, member colours, the log, the ring's key needle, and the pieces
 * that show a result (node chips, siblings, a context and its clock, a receipt, an error).
 */
import type { ReadReceipt, ReadValue, Receipt, Store } from '../client/index.ts';
import { h } from './dom.ts';
import { clockOf, describeValue, formatValue } from './format.ts';

/** The kinds of log line the page writes. */
export type LogKind = 'node' | 'view' | 'peer' | 'server' | 'conflict' | 'op';

/** The level of a log line. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The services every view gets. */
export interface PageContext {
  readonly store: Store;
  /** The colour a member wears on the ring; grey for a node not in the view. */
  color(id: string): string;
  /** Adds a line to the live log. */
  log(kind: LogKind, level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
  /** Points the ring's needle at a key. */
  showKey(key: string): void;
}

/** A node id as a small chip in its member colour; `(you)` follows this node's id when `markSelf`. */
export function nodeChip(page: PageContext, id: string, markSelf = true): HTMLElement {
  const self = id === page.store.nodeId;
  return h(
    'span',
    { class: self ? 'chip mine' : 'chip', title: self ? `${id} (this node)` : id, 'data-node': id },
    h('span', { class: 'dot', style: `background:${page.color(id)}`, 'aria-hidden': 'true' }),
    id.slice(0, 8),
    self && markSelf ? ' (you)' : '',
  );
}

function chips(page: PageContext, ids: readonly string[]): HTMLElement {
  return ids.length === 0
    ? h('span', { class: 'muted' }, 'none')
    : h('span', { class: 'chips' }, ...ids.map((id) => nodeChip(page, id)));
}

/** The siblings of a read, one card each, with a word on what siblings are; "absent" when there are none. */
export function siblingsBlock(values: readonly ReadValue[], testid?: string, explain = true): HTMLElement {
  const attrs = { class: 'siblings', 'data-count': values.length, ...(testid !== undefined ? { testid } : {}) };
  if (values.length === 0)
    return h('div', attrs, h('p', { class: 'muted' }, 'No value: the key is absent or deleted.'));
  return h(
    'div',
    attrs,
    values.length > 1 && explain
      ? h('p', { class: 'conflict-note' }, `${values.length} siblings: concurrent writes, neither saw the other.`)
      : null,
    h(
      'ol',
      { class: 'sibling-list' },
      ...values.map((value, i) =>
        h(
          'li',
          { class: 'sibling', 'data-index': i },
          h('div', { class: 'sibling-head' }, values.length > 1 ? `sibling ${i + 1} · ` : '', describeValue(value)),
          h('pre', { class: 'value' }, formatValue(value)),
        ),
      ),
    ),
  );
}

/** A context: its vector clock as node:counter chips, and the opaque string it travels as. */
export function contextBlock(page: PageContext, context: string, testid?: string): HTMLElement {
  const clock = clockOf(context);
  return h(
    'div',
    { class: 'context-block', ...(testid !== undefined ? { testid } : {}) },
    h('span', { class: 'label' }, 'context'),
    h(
      'span',
      { class: 'clock', title: 'The vector clock inside the context' },
      clock === null
        ? h('span', { class: 'muted' }, 'not a context')
        : clock.length === 0
          ? h('span', { class: 'muted' }, 'empty clock')
          : h(
              'span',
              { class: 'chips' },
              ...clock.map((e) =>
                h('span', { class: 'clock-entry' }, nodeChip(page, e.node), h('b', {}, `:${e.counter}`)),
              ),
            ),
    ),
    h('code', { class: 'opaque', title: context }, context === '' ? '""' : context),
  );
}

/** Who answered a read, or who acknowledged a write, with its fallbacks and hints. */
export function receiptBlock(page: PageContext, receipt: Receipt | ReadReceipt, testid?: string): HTMLElement {
  const rows: [string, Node][] = [['coordinator', nodeChip(page, receipt.coordinator)]];
  if ('replied' in receipt) {
    rows.push(['replied', chips(page, receipt.replied)]);
  } else {
    rows.push(['acknowledged', chips(page, receipt.acknowledged)]);
    rows.push(['fallbacks', chips(page, receipt.fallbacks)]);
    rows.push([
      'hints',
      receipt.hints.length === 0
        ? h('span', { class: 'muted' }, 'none')
        : h(
            'span',
            { class: 'chips' },
            ...receipt.hints.map((hint) =>
              h('span', { class: 'hint' }, nodeChip(page, hint.holder), ' holds for ', nodeChip(page, hint.target)),
            ),
          ),
    ]);
  }
  return h(
    'dl',
    { class: 'receipt', ...(testid !== undefined ? { testid } : {}) },
    ...rows.flatMap(([name, value]) => [h('dt', {}, name), h('dd', { 'data-field': name }, value)]),
  );
}

/** A failure as the page shows it: the error's code, its message, and the quorum counts when there are some. */
export function errorBlock(error: unknown): HTMLElement {
  const raw = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const code = typeof raw === 'string' ? raw : 'ERROR';
  const message = error instanceof Error ? error.message : String(error);
  const counts = error as { required?: unknown; acknowledged?: unknown };
  return h(
    'p',
    { class: 'error-line', role: 'alert', 'data-code': code },
    h('code', {}, code),
    ' ',
    message,
    typeof counts.required === 'number' && typeof counts.acknowledged === 'number'
      ? ` (${counts.acknowledged} of ${counts.required} required)`
      : '',
  );
}
