/**
 * A guided conflict. Two tabs read one key and both write over that same read: neither write has seen the other,
 * so the cluster keeps both as siblings. A read returns the siblings and one context that covers them; a write
 * with that context replaces them all. Each step is a button, and each shows what it did.
 */
import type { Value } from '../client/index.ts';
import { h, replace } from './dom.ts';
import { formatMs, formatValue, mergeSiblings, parseValueInput, valueToInput } from './format.ts';
import { type PageContext, contextBlock, errorBlock, receiptBlock, siblingsBlock } from './page.ts';

const ITEMS = ['apple', 'pear', 'plum', 'fig', 'kiwi', 'lime', 'mango', 'cherry', 'peach', 'grape'];

function itemFor(id: string, offset = 0): string {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return ITEMS[(h + offset) % ITEMS.length]!;
}

/** The conflict card. */
export class ConflictView {
  /** The card's content (`data-testid="conflict-panel"`). */
  readonly element: HTMLElement;
  readonly #page: PageContext;
  readonly #key: HTMLInputElement;
  readonly #value: HTMLInputElement;
  readonly #merged: HTMLTextAreaElement;
  readonly #steps: HTMLLIElement[] = [];
  readonly #buttons: HTMLButtonElement[] = [];
  readonly #outs: HTMLElement[] = [];
  readonly #rival: HTMLButtonElement;
  /** The context of step 1's read, which step 2 writes over. */
  #firstContext: string | null = null;
  /** The context of step 3's read, which step 4 writes over. */
  #siblingsContext: string | null = null;
  #rivals = 0;

  constructor(page: PageContext) {
    this.#page = page;
    const self = page.store.nodeId;
    this.#key = h('input', {
      id: 'conflict-key',
      testid: 'conflict-key',
      value: 'cart',
      autocomplete: 'off',
      spellcheck: 'false',
      onInput: () => this.#reset(),
    });
    this.#value = h('input', {
      id: 'conflict-value',
      testid: 'conflict-value',
      value: JSON.stringify([itemFor(self)]),
      autocomplete: 'off',
      spellcheck: 'false',
    });
    this.#merged = h('textarea', {
      id: 'conflict-merged',
      testid: 'conflict-merged',
      rows: 2,
      spellcheck: 'false',
      placeholder: 'filled by step 3: the union of the siblings',
    });
    const labels = [
      '1. read key',
      '2. write here with that context',
      '3. read: see siblings',
      '4. resolve: write merged with the read context',
    ];
    const actions = [() => this.#read(), () => this.#write(), () => this.#readSiblings(), () => this.#resolve()];
    labels.forEach((label, i) => {
      this.#buttons.push(
        h(
          'button',
          { type: 'button', class: 'step-button', testid: `conflict-step-${i + 1}`, onClick: actions[i]! },
          label,
        ),
      );
      this.#outs.push(h('div', { class: 'step-out', testid: `conflict-out-${i + 1}`, 'aria-live': 'polite' }));
    });
    this.#rival = h(
      'button',
      { type: 'button', class: 'link', testid: 'conflict-rival', onClick: () => this.#write(true) },
      'write a rival value from this tab instead',
    );
    const newTab = h('a', { href: location.href, target: '_blank', rel: 'noopener' }, 'Open a second tab');
    const explain = [
      h('p', { class: 'step-note' }, 'Reads the key and keeps its context: what this tab has seen.'),
      h(
        'div',
        { class: 'step-note' },
        h('label', { for: 'conflict-value' }, 'Value to write'),
        this.#value,
        h(
          'p',
          {},
          h('strong', {}, 'Now do the same in another tab: '),
          'click 1 there before anyone clicks 2, then click 2 in both tabs. Both writes then carry the same context, ' +
            'and neither has seen the other. Only one tab? ',
          this.#rival,
          '.',
        ),
      ),
      h(
        'p',
        { class: 'step-note' },
        'Reads again: the cluster kept both writes, as siblings, with one context covering them.',
      ),
      h(
        'div',
        { class: 'step-note' },
        h('label', { for: 'conflict-merged' }, 'Merged value (edit at will)'),
        this.#merged,
      ),
    ];
    labels.forEach((_, i) => {
      this.#steps.push(h('li', { class: 'step', 'data-step': i + 1 }, this.#buttons[i]!, explain[i]!, this.#outs[i]!));
    });
    this.element = h(
      'div',
      { class: 'conflict', testid: 'conflict-panel' },
      h(
        'p',
        { class: 'intro' },
        'Dynamo never drops a concurrent write: it keeps both as ',
        h('em', {}, 'siblings'),
        ' and lets the next writer merge them. ',
        newTab,
        ' of this cluster and follow the steps in both.',
      ),
      h('div', { class: 'conflict-key' }, h('label', { for: 'conflict-key' }, 'Key'), this.#key),
      h('ol', { class: 'steps' }, ...this.#steps),
    );
    this.#reset();
  }

  /** Back to step 1, for a new key. */
  #reset(): void {
    this.#firstContext = null;
    this.#siblingsContext = null;
    this.#outs.forEach((out) => replace(out));
    this.#mark(0);
  }

  /** Marks steps before `next` done and enables what may run now. */
  #mark(next: number): void {
    this.#steps.forEach((step, i) => {
      step.classList.toggle('done', i < next);
      step.classList.toggle('next', i === next);
    });
    this.#buttons[1]!.disabled = this.#firstContext === null;
    this.#rival.disabled = this.#firstContext === null;
    this.#buttons[3]!.disabled = this.#siblingsContext === null;
  }

  async #run(step: number, work: () => Promise<void>): Promise<void> {
    const button = this.#buttons[step]!;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await work();
    } catch (error) {
      replace(this.#outs[step]!, errorBlock(error));
      this.#page.log('conflict', 'warn', `guided conflict step ${step + 1} failed`, {
        error: error instanceof Error ? error.message : String(error),
      });
    } finally {
      button.removeAttribute('aria-busy');
      this.#mark(this.#nextStep(step));
      button.disabled = (step === 1 && this.#firstContext === null) || (step === 3 && this.#siblingsContext === null);
    }
  }

  #nextStep(step: number): number {
    if (step === 0) return this.#firstContext === null ? 0 : 1;
    if (step === 1) return 2;
    if (step === 2) return this.#siblingsContext === null ? 2 : 3;
    return 4;
  }

  #keyValue(): string {
    const key = this.#key.value;
    this.#page.showKey(key);
    return key;
  }

  #read(): Promise<void> {
    return this.#run(0, async () => {
      const key = this.#keyValue();
      this.#siblingsContext = null;
      replace(this.#outs[1]!);
      replace(this.#outs[2]!);
      replace(this.#outs[3]!);
      const started = performance.now();
      const result = await this.#page.store.get(key);
      this.#firstContext = result.context;
      this.#rivals = 0;
      const count = result.values.length;
      replace(
        this.#outs[0]!,
        h(
          'p',
          { class: 'status ok' },
          `Read ${count === 0 ? 'nothing yet' : count === 1 ? '1 value' : `${count} siblings`} in ${formatMs(performance.now() - started)}. `,
          'Context kept for step 2:',
        ),
        contextBlock(this.#page, result.context),
      );
    });
  }

  #write(rival = false): Promise<void> {
    return this.#run(1, async () => {
      const key = this.#keyValue();
      const context = this.#firstContext;
      if (context === null) return;
      const value: Value = rival
        ? [itemFor(this.#page.store.nodeId, ++this.#rivals * 3 + 1)]
        : parseValueInput(this.#value.value).value;
      const started = performance.now();
      const result = await this.#page.store.put(key, value, context === '' ? {} : { context });
      const out = this.#outs[1]!;
      if (!rival) replace(out);
      out.append(
        h(
          'p',
          { class: 'status ok' },
          `Wrote ${formatValue(value).replace(/\s+/g, ' ')} over the step-1 context in ${formatMs(performance.now() - started)}.`,
        ),
        receiptBlock(this.#page, result.receipt),
      );
      this.#page.log('conflict', 'info', `guided conflict: wrote “${key}” over the step-1 context`, { rival });
    });
  }

  #readSiblings(): Promise<void> {
    return this.#run(2, async () => {
      const key = this.#keyValue();
      const result = await this.#page.store.get(key);
      const count = result.values.length;
      this.#siblingsContext = result.context;
      this.#merged.value = count === 0 ? '' : valueToInput(mergeSiblings(result.values));
      replace(
        this.#outs[2]!,
        count > 1
          ? h(
              'p',
              { class: 'status conflict-found' },
              `${count} siblings: the cluster kept every write, and neither saw the other.`,
            )
          : h(
              'p',
              { class: 'status' },
              count === 1
                ? 'Only one value: the writes did not overlap (a tab read after the other wrote), or the other tab has not written yet. Read again, or start over at step 1 in both tabs.'
                : 'No value yet: write in step 2 first.',
            ),
        siblingsBlock(result.values, 'conflict-siblings', false),
        contextBlock(this.#page, result.context),
      );
    });
  }

  #resolve(): Promise<void> {
    return this.#run(3, async () => {
      const key = this.#keyValue();
      const context = this.#siblingsContext;
      if (context === null) return;
      const value = parseValueInput(this.#merged.value).value;
      const started = performance.now();
      const result = await this.#page.store.put(key, value, { context });
      const ms = performance.now() - started;
      const after = await this.#page.store.get(key);
      this.#siblingsContext = null;
      replace(
        this.#outs[3]!,
        h(
          'p',
          { class: after.values.length === 1 ? 'status ok' : 'status' },
          `Wrote the merge in ${formatMs(ms)}; a read now finds `,
          h('strong', { testid: 'conflict-resolved-count' }, String(after.values.length)),
          after.values.length === 1 ? ' value: resolved.' : ' values: another write raced this one.',
        ),
        siblingsBlock(after.values),
        receiptBlock(this.#page, result.receipt),
      );
      this.#page.log('conflict', 'info', `guided conflict: resolved “${key}”`, { values: after.values.length });
    });
  }
}
