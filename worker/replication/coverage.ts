/**
 * The pure part of a coverage query (`keys`): the opaque cursor, where a prefix starts in key order, and the merge of
 * per-partition streams of keys into one stream in key order. Keys are placed on the ring by md5, so key order is
 * not partition order: the next key of the listing is the smallest next key across every partition, and it is known
 * only once every partition that may still hold keys has shown its next one (a k-way merge with lazy refill, as
 * riak_core's coverage folds merge their vnodes' results).
 */
import { InvalidArgumentError } from '../errors.ts';
import { MAX_KEYS_PER_PARTITION } from '../wire/protocol.ts';

/** Most keys in one page of `keys`. @default 1000 */
export const MAX_KEYS_LIMIT = MAX_KEYS_PER_PARTITION;

/** Keys in one page of `keys` unless the caller asks otherwise. @default 100 */
export const DEFAULT_KEYS_LIMIT = 100;

/** The first byte of a cursor: the cursor format, so that a later format can tell it from this one. */
const CURSOR_FORMAT = 1;

/** Byte order of two keys: negative when `a` sorts first (the order of IndexedDB's binary keys). */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** True when `key` starts with `prefix`. */
export function hasPrefix(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/**
 * The largest key of at most `maxKeyBytes` bytes that sorts before `prefix`, so that a scan "after" it starts at the
 * first key under `prefix` (storage scans take an exclusive lower bound); undefined for the empty prefix, which starts
 * at the beginning. A key longer than `maxKeyBytes` cannot be stored, so none falls between the two.
 */
export function keyBefore(prefix: Uint8Array, maxKeyBytes: number): Uint8Array | undefined {
  const n = prefix.length;
  if (n === 0) return undefined;
  const last = prefix[n - 1]!;
  // Nothing sorts between `p` and `p + 0x00`.
  if (last === 0) return n === 1 ? undefined : prefix.slice(0, n - 1);
  const before = new Uint8Array(Math.max(n, maxKeyBytes)).fill(0xff);
  before.set(prefix.subarray(0, n - 1));
  before[n - 1] = last - 1;
  return before;
}

/** Where a scan of a partition for `prefix` starts: after the cursor's key, or just before the prefix. */
export function scanStart(prefix: Uint8Array, after: Uint8Array | null, maxKeyBytes: number): Uint8Array | undefined {
  return after ?? keyBefore(prefix, maxKeyBytes);
}

/** The base64url text of a cursor continuing after `key`. */
export function encodeCursor(key: Uint8Array): string {
  const bytes = new Uint8Array(1 + key.length);
  bytes[0] = CURSOR_FORMAT;
  bytes.set(key, 1);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The key a cursor continues after, checked: base64url of this format, a key of 1 to `maxKeyBytes` bytes under
 * `prefix` (a cursor of another listing is refused rather than silently listing from somewhere else).
 * @throws InvalidArgumentError for anything else.
 */
export function decodeCursor(cursor: unknown, prefix: Uint8Array, maxKeyBytes: number): Uint8Array {
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]+$/.test(cursor) || cursor.length % 4 === 1) {
    throw new InvalidArgumentError('cursor must be a cursor returned by keys()');
  }
  const padded = cursor.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (cursor.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  if (bytes[0] !== CURSOR_FORMAT || bytes.length < 2 || bytes.length > 1 + maxKeyBytes) {
    throw new InvalidArgumentError('cursor must be a cursor returned by keys()');
  }
  const key = bytes.slice(1);
  if (!hasPrefix(key, prefix)) throw new InvalidArgumentError('cursor belongs to a listing of another prefix');
  return key;
}

/** One partition's answer: its next keys after where it was asked from, ascending. */
export interface PartitionKeys {
  readonly keys: readonly Uint8Array[];
  /** False when the partition holds no more keys under the prefix after the last one given. */
  readonly more: boolean;
}

interface Stream {
  /** Keys received and not yet emitted, ascending; `head` is the first left. */
  keys: readonly Uint8Array[];
  head: number;
  /** Where to ask from next: the last key received, or null before any. */
  after: Uint8Array | null;
  more: boolean;
}

/**
 * Merges per-partition streams of keys into one page in key order. Ask each partition of {@link needed} from its
 * `after`, {@link add} the answers, then {@link take}: it emits keys while every partition that may still hold keys
 * has a key waiting, and stops at `limit` keys or at a partition whose waiting keys ran out (ask it again, and take
 * again). A partition's answer may be shorter than asked (a reply's byte budget); the merge stays exact.
 */
export class CoverageMerge {
  readonly #streams = new Map<number, Stream>();
  readonly #limit: number;
  readonly #page: Uint8Array[] = [];

  /**
   * @param partitions Every partition of the ring.
   * @param after The cursor's key, or null for the first page.
   * @param limit Most keys in the page.
   */
  constructor(partitions: Iterable<number>, after: Uint8Array | null, limit: number) {
    this.#limit = limit;
    for (const p of partitions) this.#streams.set(p, { keys: [], head: 0, after, more: true });
  }

  /** The partitions to ask now, each with the key to continue after: those with no key waiting and more to give. */
  needed(): { partition: number; after: Uint8Array | null }[] {
    if (this.done) return [];
    const out: { partition: number; after: Uint8Array | null }[] = [];
    for (const [partition, s] of this.#streams) {
      if (s.more && s.head === s.keys.length) out.push({ partition, after: s.after });
    }
    return out;
  }

  /**
   * Takes one partition's answer to a request made from {@link needed}. Returns false, taking nothing, when the
   * partition was not waiting for one or its keys do not ascend past its `after`.
   */
  add(partition: number, answer: PartitionKeys): boolean {
    const s = this.#streams.get(partition);
    if (s === undefined || s.head !== s.keys.length || !s.more) return false;
    let previous = s.after;
    for (const key of answer.keys) {
      if (previous !== null && compareKeys(previous, key) >= 0) return false;
      previous = key;
    }
    s.keys = answer.keys;
    s.head = 0;
    s.after = previous;
    // An empty answer that claims more would ask the same question forever.
    s.more = answer.more && answer.keys.length > 0;
    return true;
  }

  /** Emits keys in order for as long as the next one is known; see the class. */
  take(): void {
    while (this.#page.length < this.#limit) {
      let best: Stream | undefined;
      for (const s of this.#streams.values()) {
        if (s.head < s.keys.length) {
          if (best === undefined || compareKeys(s.keys[s.head]!, best.keys[best.head]!) < 0) best = s;
        } else if (s.more) {
          return; // this partition's next key is unknown: it may be the smallest
        }
      }
      if (best === undefined) return;
      this.#page.push(best.keys[best.head++]!);
    }
  }

  /** True once the page is full, or every partition is exhausted and emitted. */
  get done(): boolean {
    if (this.#page.length >= this.#limit) return true;
    for (const s of this.#streams.values()) if (s.more || s.head < s.keys.length) return false;
    return true;
  }

  /** The keys emitted, in order. */
  get page(): readonly Uint8Array[] {
    return this.#page;
  }

  /**
   * True when keys may follow the page: some partition has keys waiting or more to give. A page that ends exactly at
   * the last key may say so; the next page is then empty and says there is no more.
   */
  get more(): boolean {
    for (const s of this.#streams.values()) if (s.more || s.head < s.keys.length) return true;
    return false;
  }
}
