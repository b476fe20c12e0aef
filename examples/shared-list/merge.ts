/**
 * How the shared list resolves concurrent edits of one item (siblings): pure, so that every tab merges alike.
 */
import { isUndecodable, type ReadValue } from '../../client/index.ts';

/** One entry of the list, as stored under `item:<id>`. */
// A type alias, not an interface: it is then a `Value` that `put` takes (an object of values).
export type Item = {
  readonly text: string;
  readonly done: boolean;
  /** When it was added, ms since the epoch: the list's order. */
  readonly created: number;
  /** When its text or state was last changed, ms since the epoch, by the tab that changed it. */
  readonly edited: number;
};

/** True when `value` is an {@link Item} (another app's value, or an undecodable one, is not). */
export function isItem(value: ReadValue): value is Item {
  if (isUndecodable(value) || typeof value !== 'object' || value === null || value instanceof Uint8Array) return false;
  const { text, done, created, edited } = value as Record<string, unknown>;
  return (
    typeof text === 'string' && typeof done === 'boolean' && typeof created === 'number' && typeof edited === 'number'
  );
}

/**
 * One item from concurrent versions of it: done when any version is done (no tick is lost to a concurrent edit), the
 * text of the latest edit (equal times: the larger text, so that every tab picks the same), added at the earliest.
 * Null when no version is an item.
 */
export function mergeItems(values: readonly ReadValue[]): Item | null {
  const items = values.filter(isItem);
  if (items.length === 0) return null;
  const latest = items.reduce((a, b) => (b.edited > a.edited || (b.edited === a.edited && b.text > a.text) ? b : a));
  const created = Math.min(...items.map((i) => i.created));
  return { text: latest.text, done: items.some((i) => i.done), created, edited: latest.edited };
}
