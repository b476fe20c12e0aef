/**
 * The bytes of one write-ahead log record: the keys one group commit wrote, each as its partition, its key and its
 * siblings (or its removal). One buffer a record, so that IndexedDB clones one array of bytes per commit and the
 * engine keeps logged keys in memory as offsets into it rather than as objects; each entry is decoded on its own
 * when a read, a scan or compaction needs it.
 *
 * Layout: entries one after another, each a 4-byte big-endian length and then that many bytes of MessagePack:
 * `[partition, key, siblings | null]`, a sibling as `[node, counter, timestamp, context, value | null]` (and its proof
 * after them when it has one, see proof.ts) and a context entry as `[node, counter, timestamp]`.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { StorageError } from '../errors.ts';
import type { ClockEntry } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';

/** One key as logged. */
export interface WalEntry {
  readonly key: Uint8Array;
  readonly partition: number;
  /** The key's siblings; null when the key was removed. */
  readonly siblings: readonly Version[] | null;
}

/** An encoded log record and where each of its entries starts, in the order given. */
export interface EncodedWal {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly starts: readonly number[];
}

const encoder = new Encoder();
const decoder = new Decoder();
const LENGTH_BYTES = 4;

const entryForm = (c: ClockEntry): unknown[] => [c.node, c.counter, c.timestamp];

/** Builds one log record an entry at a time. */
export class WalWriter {
  readonly #parts: Uint8Array[] = [];
  #bytes = 0;

  /** True until an entry is added. */
  get empty(): boolean {
    return this.#parts.length === 0;
  }

  /**
   * Encodes `entry` now, so that an entry that cannot be encoded throws here, naming no other entry. An entry that
   * {@link decodeWalEntry} would not take back is refused too: in the log it would fail every read of its key and
   * every open of the database.
   */
  add(entry: WalEntry): void {
    checkEntry(entry);
    const part = encoder.encode([
      entry.partition,
      entry.key,
      entry.siblings === null
        ? null
        : entry.siblings.map((v) => {
            const form = [v.dot.node, v.dot.counter, v.dot.timestamp, v.context.map(entryForm), v.value];
            if (v.proof !== undefined) form.push(v.proof);
            return form;
          }),
    ]);
    this.#parts.push(part);
    this.#bytes += LENGTH_BYTES + part.byteLength;
  }

  /** The record of every entry added, in the order added. */
  finish(): EncodedWal {
    const bytes = new Uint8Array(this.#bytes);
    const view = new DataView(bytes.buffer);
    const starts: number[] = [];
    let at = 0;
    for (const part of this.#parts) {
      starts.push(at);
      view.setUint32(at, part.byteLength);
      bytes.set(part, at + LENGTH_BYTES);
      at += LENGTH_BYTES + part.byteLength;
    }
    return { bytes, starts };
  }
}

/** Encodes `entries` as one log record. */
export function encodeWal(entries: readonly WalEntry[]): EncodedWal {
  const writer = new WalWriter();
  for (const entry of entries) writer.add(entry);
  return writer.finish();
}

/** Where each entry of a log record starts. */
export function walStarts(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const starts: number[] = [];
  for (let at = 0; at < bytes.byteLength; at += LENGTH_BYTES + view.getUint32(at)) {
    if (at + LENGTH_BYTES > bytes.byteLength) throw corrupt('an entry length is cut short');
    starts.push(at);
  }
  return starts;
}

/** The entry of a log record that starts at `start`, with arrays and bytes of its own. */
export function decodeWalEntry(bytes: Uint8Array, start: number): WalEntry {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (start + LENGTH_BYTES > bytes.byteLength) throw corrupt('an entry starts past its end');
  const end = start + LENGTH_BYTES + view.getUint32(start);
  if (end > bytes.byteLength) throw corrupt('an entry runs past its end');
  let raw: unknown;
  try {
    raw = decoder.decode(bytes.subarray(start + LENGTH_BYTES, end));
  } catch (error) {
    throw corrupt('an entry is not valid MessagePack', error);
  }
  if (!Array.isArray(raw) || raw.length !== 3) throw corrupt('an entry is not [partition, key, siblings]');
  const [partition, key, siblings] = raw as [unknown, unknown, unknown];
  if (typeof partition !== 'number' || !(key instanceof Uint8Array)) throw corrupt('an entry has no key');
  if (siblings !== null && !Array.isArray(siblings)) throw corrupt('an entry has no siblings');
  return { key: key.slice(), partition, siblings: siblings === null ? null : siblings.map(version) };
}

/** Throws a TypeError unless `entry` has the types {@link decodeWalEntry} checks. */
function checkEntry(entry: WalEntry): void {
  const ok =
    entry.key instanceof Uint8Array &&
    Number.isInteger(entry.partition) &&
    (entry.siblings === null ||
      entry.siblings.every(
        (v) =>
          isClockEntry(v.dot) &&
          v.context.every(isClockEntry) &&
          (v.value === null || v.value instanceof Uint8Array) &&
          (v.proof === undefined || v.proof instanceof Uint8Array),
      ));
  if (!ok) throw new TypeError('a write-ahead log entry must hold a key, a partition and well-typed versions');
}

function isClockEntry(e: ClockEntry): boolean {
  return typeof e.node === 'string' && typeof e.counter === 'number' && typeof e.timestamp === 'number';
}

function version(raw: unknown): Version {
  if (!Array.isArray(raw) || (raw.length !== 5 && raw.length !== 6) || !Array.isArray(raw[3])) {
    throw corrupt('a sibling is malformed');
  }
  const value = raw[4] as unknown;
  if (value !== null && !(value instanceof Uint8Array)) throw corrupt('a sibling value is not bytes');
  const version = {
    dot: clockEntry(raw),
    context: raw[3].map(clockEntry),
    value: value === null ? null : value.slice(),
  };
  if (raw.length === 5) return version;
  const proof = raw[5] as unknown;
  if (!(proof instanceof Uint8Array)) throw corrupt('a sibling proof is not bytes');
  return { ...version, proof: proof.slice() };
}

function clockEntry(raw: unknown): ClockEntry {
  if (!Array.isArray(raw)) throw corrupt('a clock entry is malformed');
  const [node, counter, timestamp] = raw as unknown[];
  if (typeof node !== 'string' || typeof counter !== 'number' || typeof timestamp !== 'number') {
    throw corrupt('a clock entry is malformed');
  }
  return { node, counter, timestamp };
}

function corrupt(what: string, cause?: unknown): StorageError {
  return new StorageError(`the write-ahead log is corrupt: ${what}`, cause === undefined ? undefined : { cause });
}
