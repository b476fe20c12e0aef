/**
 * A Bloom filter of the keys a store holds: "certainly absent" or "maybe present". A write to a key the filter has
 * never seen needs no read of its stored siblings (there are none), which spares the IndexedDB engine one request
 * per new key: half its requests when a burst of puts creates keys. Keys are added, never removed (a deleted key is
 * a false positive, which costs only the read the filter would have spared).
 *
 * 2^22 bits (512 KiB) and 3 hashes: about 0.03 % false positives at 100,000 keys, 13 % at a million, where it still
 * spares most reads; it never answers "absent" for a key that was added.
 */

const BITS = 1 << 22;
const MASK = BITS - 1;
const HASHES = 3;

/** FNV-1a of `bytes` from `seed`, 32 bits. */
function fnv1a(bytes: Uint8Array, seed: number): number {
  let h = seed;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A Bloom filter of byte keys. */
export class KeyFilter {
  readonly #bits = new Uint8Array(BITS >>> 3);

  /** Adds `key`. */
  add(key: Uint8Array): void {
    const h1 = fnv1a(key, 0x811c9dc5);
    const h2 = fnv1a(key, 0x2545f491) | 1;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + Math.imul(i, h2)) & MASK;
      this.#bits[bit >>> 3]! |= 1 << (bit & 7);
    }
  }

  /** False when `key` was certainly never added; true when it may have been. */
  mayHave(key: Uint8Array): boolean {
    const h1 = fnv1a(key, 0x811c9dc5);
    const h2 = fnv1a(key, 0x2545f491) | 1;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + Math.imul(i, h2)) & MASK;
      if ((this.#bits[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
    }
    return true;
  }
}
