/**
 * The values the simulated clients write, and the bounds the checks hold the nodes to. Every value starts with the
 * unique id of the write that put it; a large value pads the id after a `|`, so that whatever stores or returns a
 * value, the checker can still tell which write it came from by reading its first bytes.
 */

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The byte that ends a write id inside a padded value. */
const SEPARATOR = 0x7c; // '|'
/** Write ids are short: an id is found within this many leading bytes. */
const ID_BYTES = 64;

/**
 * Most siblings one coordinator may leave behind under one key, the nodes' `maxSiblings` default: a put that would
 * make the coordinator's sibling set larger is refused with `ERR_TOO_MANY_SIBLINGS`.
 */
export const SIBLING_BOUND = 32;

/**
 * Most bytes of one key's sibling set, the nodes' default: a put that would make the coordinator's set larger is
 * refused with `ERR_TOO_LARGE`. The checks count value bytes only, which any accounting of the set's size exceeds.
 */
export const KEY_BYTES_BOUND = 4 * 1024 * 1024;

/** The value of write `id`: the id itself, or padded to `size` bytes when that is longer. */
export function writeValue(id: string, size = 0): Uint8Array {
  const head = utf8.encode(id);
  if (size <= head.byteLength) return head;
  const value = new Uint8Array(size).fill(0x2e); // '.'
  value.set(head);
  value[head.byteLength] = SEPARATOR;
  return value;
}

/** The id of the write whose value this is (see {@link writeValue}). */
export function valueId(value: Uint8Array): string {
  const head = value.subarray(0, ID_BYTES);
  const end = head.indexOf(SEPARATOR);
  return text.decode(end < 0 ? (value.byteLength <= ID_BYTES ? value : head) : head.subarray(0, end));
}
