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
  const head = idBytes(id);
  if (size <= head.byteLength) return head;
  const value = new Uint8Array(size).fill(0x2e); // '.'
  value.set(head);
  value[head.byteLength] = SEPARATOR;
  return value;
}

/**
 * The UTF-8 bytes of write id `id`. Ids are ASCII, written here a byte per character: in Node, a call of
 * `TextEncoder.encode` costs more than that for a string this short, and every put makes one.
 */
function idBytes(id: string): Uint8Array {
  const bytes = new Uint8Array(id.length);
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c >= 0x80) return utf8.encode(id);
    bytes[i] = c;
  }
  return bytes;
}

/** The id of the write whose value this is (see {@link writeValue}). */
export function valueId(value: Uint8Array): string {
  // The id ends at the first separator within ID_BYTES, else after ID_BYTES (or with the value). Ids are ASCII,
  // which decodes byte for byte; anything else goes through UTF-8 decoding.
  const limit = Math.min(value.byteLength, ID_BYTES);
  let id = '';
  for (let i = 0; i < limit; i++) {
    const c = value[i]!;
    if (c === SEPARATOR) return id;
    if (c >= 0x80) return text.decode(value.subarray(0, idEnd(value)));
    id += String.fromCharCode(c);
  }
  return id;
}

/** Where the id of `value` ends: at the first separator within ID_BYTES, else after ID_BYTES (or with the value). */
export function idEnd(value: Uint8Array): number {
  const limit = Math.min(value.byteLength, ID_BYTES);
  for (let i = 0; i < limit; i++) if (value[i] === SEPARATOR) return i;
  return limit;
}
