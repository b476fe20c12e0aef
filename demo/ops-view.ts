/**
 * The get / put / delete form and what came back: the siblings, the context (with its clock), and the receipt that
 * says which nodes took part. A get fills the context field, so the next put supersedes what was read.
 */
import type { StoreGetResult, StorePutResult } from '../client/index.ts';
import { h, replace } from './dom.ts';
import { formatMs, parseValueInput, valueToInput } from './format.ts';
import { type PageContext, contextBlock, errorBlock, receiptBlock, siblingsBlock } from './page.ts';

type Operation = 'get' | 'put' | 'delete';

/** The operations card. */
export class OpsView {
  /** The card's content. */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #form: HTMLFormElement;
  readonly #key: HTMLInputElement;
  readonly #value: HTMLTextAreaElement;
  readonly #valueKind: HTMLElement;
  readonly #context: HTMLInputElement;
  readonly #r: HTMLSelectElement;
  readonly #w: HTMLSelectElement;
  readonly #ifMatch: HTMLInputElement;
  readonly #result: HTMLElement;
  readonly #buttons: HTMLButtonElement[];

  constructor(page: PageContext, n: number) {
    this.#page = page;
    this.#key = h('input', {
      id: 'op-key',
      name: 'key',
      testid: 'key',
      required: true,
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'e.g. cart',
      maxlength: 1024,
      onInput: () => this.#page.showKey(this.#key.value),
    });
    this.#value = h('textarea', {
      id: 'op-value',
      name: 'value',
      testid: 'value',
      rows: 3,
      spellcheck: 'false',
      placeholder: 'text, or JSON such as ["milk","eggs"]',
      'aria-describedby': 'op-value-kind',
      onInput: () => this.#showKind(),
    });
    this.#valueKind = h('span', { id: 'op-value-kind', class: 'field-note' });
    this.#context = h('input', {
      id: 'op-context',
      name: 'context',
      testid: 'context',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'empty: a write that has read nothing',
      'aria-describedby': 'op-context-note',
    });
    const quorum = (id: string, label: string): HTMLSelectElement =>
      h(
        'select',
        { id, name: id, 'aria-label': label },
        h('option', { value: '' }, 'default'),
        ...Array.from({ length: n }, (_, i) => h('option', { value: i + 1 }, String(i + 1))),
      );
    this.#r = quorum('op-r', 'Read quorum R');
    this.#w = quorum('op-w', 'Write quorum W');
    this.#ifMatch = h('input', { id: 'op-ifmatch', type: 'checkbox', name: 'ifMatch' });
    this.#buttons = (['get', 'put', 'delete'] as const).map((op) =>
      h(
        'button',
        {
          type: 'submit',
          value: op,
          class: op === 'delete' ? 'danger' : op === 'put' ? 'primary' : '',
          testid: `op-${op}`,
        },
        op === 'get' ? 'Get' : op === 'put' ? 'Put' : 'Delete',
      ),
    );
    this.#form = h(
      'form',
      {
        class: 'op-form',
        testid: 'put-form',
        'aria-label': 'Get, put or delete a key',
        onSubmit: (e: SubmitEvent) => this.#submit(e),
      },
      h('label', { for: 'op-key' }, 'Key'),
      this.#key,
      h('label', { for: 'op-value' }, 'Value'),
      h('div', { class: 'field' }, this.#value, this.#valueKind),
      h('label', { for: 'op-context' }, 'Context'),
      h(
        'div',
        { class: 'field' },
        h(
          'div',
          { class: 'inline' },
          this.#context,
          h(
            'button',
            { type: 'button', class: 'ghost', title: 'Clear the context', onClick: () => (this.#context.value = '') },
            'Clear',
          ),
        ),
        h(
          'span',
          { id: 'op-context-note', class: 'field-note' },
          'Filled by each get and put; a put with it supersedes what was read.',
        ),
      ),
      h('span', { class: 'label-like' }, 'Options'),
      h(
        'div',
        { class: 'options' },
        h('label', { for: 'op-r' }, 'R'),
        this.#r,
        h('label', { for: 'op-w' }, 'W'),
        this.#w,
        h('label', { class: 'check' }, this.#ifMatch, ' ifMatch'),
      ),
      h('div', { class: 'buttons' }, ...this.#buttons),
    );
    this.#result = h(
      'section',
      { class: 'result', testid: 'result', 'aria-live': 'polite', 'aria-label': 'Result' },
      h('p', { class: 'muted' }, 'Type a key and press Get (Enter), Put or Delete.'),
    );
    this.element = h('div', { class: 'ops' }, this.#form, this.#result);
    this.#showKind();
  }

  #showKind(): void {
    const parsed = parseValueInput(this.#value.value);
    this.#valueKind.textContent =
      parsed.kind === 'json'
        ? `Stored as JSON (${Array.isArray(parsed.value) ? 'array' : parsed.value === null ? 'null' : typeof parsed.value})`
        : 'Stored as text (it is not JSON)';
  }

  async #submit(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const submitter = event.submitter as HTMLButtonElement | null;
    const op = (submitter?.value ?? 'get') as Operation;
    const key = this.#key.value;
    if (key === '') {
      this.#key.focus();
      return;
    }
    this.#page.showKey(key);
    const store = this.#page.store;
    const context = this.#context.value.trim();
    const r = this.#r.value === '' ? {} : { r: Number(this.#r.value) };
    const w = this.#w.value === '' ? {} : { w: Number(this.#w.value) };
    const withContext = context === '' ? {} : { context };
    for (const b of this.#buttons) b.disabled = true;
    this.#result.classList.add('busy');
    const started = performance.now();
    try {
      if (op === 'get') {
        const result = await store.get(key, r);
        this.#showRead(key, result, performance.now() - started);
      } else {
        const result =
          op === 'put'
            ? await store.put(key, parseValueInput(this.#value.value).value, {
                ...withContext,
                ...w,
                ...(this.#ifMatch.checked ? { ifMatch: true } : {}),
              })
            : await store.delete(key, { ...withContext, ...w });
        this.#showWrite(op, key, result, performance.now() - started);
      }
    } catch (error) {
      const ms = performance.now() - started;
      replace(this.#result, this.#status(op, key, ms, false), errorBlock(error));
      this.#page.log('op', 'warn', `${op} “${key}” failed after ${formatMs(ms)}`, {
        error: error instanceof Error ? error.message : String(error),
      });
    } finally {
      for (const b of this.#buttons) b.disabled = false;
      this.#result.classList.remove('busy');
    }
  }

  #status(op: Operation, key: string, ms: number, ok: boolean, note = ''): HTMLElement {
    return h(
      'p',
      { class: ok ? 'status ok' : 'status failed', 'data-op': op, 'data-ok': ok },
      h('strong', {}, op),
      ' ',
      h('code', {}, key),
      ` ${ok ? 'succeeded' : 'failed'} in ${formatMs(ms)}${note}`,
    );
  }

  #showRead(key: string, result: StoreGetResult, ms: number): void {
    this.#context.value = result.context;
    const single = result.values.length === 1 ? result.values[0] : undefined;
    if (single !== undefined) {
      this.#value.value = valueToInput(single);
      this.#showKind();
    }
    const count = result.values.length;
    replace(
      this.#result,
      this.#status(
        'get',
        key,
        ms,
        true,
        ` · ${count === 0 ? 'absent' : count === 1 ? '1 value' : `${count} siblings`}`,
      ),
      siblingsBlock(result.values, 'siblings'),
      contextBlock(this.#page, result.context, 'result-context'),
      receiptBlock(this.#page, result.receipt, 'receipt'),
    );
    this.#page.log('op', 'info', `get “${key}”: ${count} value${count === 1 ? '' : 's'} in ${formatMs(ms)}`, {
      coordinator: result.receipt.coordinator,
      replied: result.receipt.replied.join(','),
    });
  }

  #showWrite(op: 'put' | 'delete', key: string, result: StorePutResult, ms: number): void {
    this.#context.value = result.context;
    const { receipt } = result;
    replace(
      this.#result,
      this.#status(op, key, ms, true, ` · ${receipt.acknowledged.length} acknowledged`),
      h(
        'div',
        { testid: 'siblings', class: 'siblings', 'data-count': 0 },
        h(
          'p',
          { class: 'muted' },
          op === 'put' ? 'Written. Get the key to see its siblings.' : 'Deleted: a tombstone was written.',
        ),
      ),
      contextBlock(this.#page, result.context, 'result-context'),
      receiptBlock(this.#page, receipt, 'receipt'),
    );
    this.#page.log('op', receipt.fallbacks.length > 0 ? 'warn' : 'info', `${op} “${key}” in ${formatMs(ms)}`, {
      coordinator: receipt.coordinator,
      acknowledged: receipt.acknowledged.join(','),
      ...(receipt.fallbacks.length > 0 ? { fallbacks: receipt.fallbacks.join(',') } : {}),
      ...(receipt.hints.length > 0 ? { hints: receipt.hints.map((x) => `${x.holder}→${x.target}`).join(',') } : {}),
    });
  }
}
