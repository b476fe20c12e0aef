/**
 * A shared list that several tabs edit at once, on dynamesh's public API alone: items under `item:<id>`, loaded page
 * by page with `store.keys`, kept current with `store.watch` on the prefix, and concurrent edits (siblings) resolved by
 * merging (merge.ts) and putting the merge with the context that covers them.
 *
 * Query parameters: `server` (the signalling server, default http://127.0.0.1:8787, `npm start`'s) and `cluster`
 * (default `shared-list`).
 */
import { openStore, type ReadValue, type Store } from '../../client/index.ts';
import { type Item, mergeItems } from './merge.ts';

const PREFIX = 'item:';
const params = new URLSearchParams(location.search);
const status = document.querySelector<HTMLElement>('#status')!;
const list = document.querySelector<HTMLUListElement>('#items')!;
const form = document.querySelector<HTMLFormElement>('#add')!;
const input = document.querySelector<HTMLInputElement>('#text')!;

/**
 * Writes wait for one replica: a lone tab can edit the list, and an edit shows at once; the key's other owners get it
 * as the put goes on (and through hints and anti-entropy when they are away).
 */
const W = 1;

/** What this tab shows: each item with the context of the versions it was read or written as. */
const items = new Map<string, { item: Item; context: string }>();

const store: Store = await openStore({
  url: params.get('server') ?? 'http://127.0.0.1:8787',
  cluster: params.get('cluster') ?? 'shared-list',
});
Object.assign(window, { list: { store, items } });

/** Shows what a read or a notice of `key` says; siblings are merged and the merge put back over all of them. */
async function show(key: string, values: readonly ReadValue[], context: string): Promise<void> {
  const item = mergeItems(values);
  if (item === null) items.delete(key);
  else items.set(key, { item, context });
  render();
  if (item !== null && values.length > 1) {
    const { context: merged } = await store.put(key, item, { context, w: W });
    items.set(key, { item, context: merged });
  }
}

/** Shows a failed write or read in the status line (a stale context, a cluster out of reach); the app goes on. */
function report(error: unknown): void {
  status.textContent = `not saved: ${error instanceof Error ? error.message : String(error)}`;
}

function keyText(key: string | Uint8Array): string {
  return typeof key === 'string' ? key : new TextDecoder().decode(key);
}

function render(): void {
  const sorted = [...items.entries()].sort(([ka, a], [kb, b]) => a.item.created - b.item.created || (ka < kb ? -1 : 1));
  list.replaceChildren(
    ...sorted.map(([key, { item }]) => {
      const li = document.createElement('li');
      li.className = item.done ? 'done' : '';
      li.dataset['key'] = key;
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = item.done;
      box.addEventListener('change', () => void edit(key, { done: box.checked }).catch(report));
      const text = document.createElement('span');
      text.textContent = item.text;
      const remove = document.createElement('button');
      remove.textContent = '✕';
      remove.title = 'Remove';
      remove.addEventListener('click', () => void removeItem(key).catch(report));
      li.append(box, text, remove);
      return li;
    }),
  );
  status.textContent = `${items.size} item${items.size === 1 ? '' : 's'} · node ${store.nodeId} · ${store.members().length} members`;
}

async function edit(key: string, change: Partial<Pick<Item, 'text' | 'done'>>): Promise<void> {
  const current = items.get(key);
  if (current === undefined) return;
  const item = { ...current.item, ...change, edited: Date.now() };
  const { context } = await store.put(key, item, { context: current.context, w: W });
  items.set(key, { item, context });
  render();
}

async function removeItem(key: string): Promise<void> {
  const current = items.get(key);
  if (current === undefined) return;
  await store.delete(key, { context: current.context, w: W });
  items.delete(key);
  render();
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (text === '') return;
  input.value = '';
  const key = `${PREFIX}${crypto.randomUUID()}`;
  const now = Date.now();
  const item: Item = { text, done: false, created: now, edited: now };
  void store.put(key, item, { w: W }).then(({ context }) => {
    items.set(key, { item, context });
    render();
  }, report);
});

// Watch first, then load: a change made while the list loads arrives as a notice, and a notice never goes back in
// time for a key, so the later of the two wins.
store.watch(
  { prefix: PREFIX },
  (notice) => void show(keyText(notice.key), notice.values, notice.context).catch(report),
);
let cursor: string | undefined;
do {
  const page = await store.keys({ prefix: PREFIX, limit: 100, ...(cursor !== undefined ? { cursor } : {}) });
  for (const key of page.keys) {
    const read = await store.get(key);
    await show(keyText(key), read.values, read.context);
  }
  cursor = page.cursor ?? undefined;
} while (cursor !== undefined);
store.on('membership', () => render());
render();
