/**
 * The peer-frame codec: {@link PeerMessage} to MessagePack and back. Peers are not trusted, so `decodeMessage`
 * checks the frame's size, its MessagePack structure (lengths, nesting, item count) and then every field of the
 * message before returning it; anything wrong becomes a {@link MalformedFrameError} naming the field and the problem,
 * and nothing else ever escapes it.
 *
 * Frames in the layout encodeMessage writes (every map's fields in declared order) are read by a fast path: one
 * pass straight into the message, checking every field, type and size as it goes, and giving up at the first byte
 * that leaves the layout or a value that is not valid. Every other frame, and every frame the fast path gives up on,
 * takes the checked path, which alone produces errors: a scanner walks the MessagePack tokens without allocating, so
 * a hostile frame (a length header of 4 GiB, arrays nested sixteen million deep, millions of tiny items) is refused
 * before `@msgpack/msgpack` builds anything from it; then the decoder builds the value and a hand-written checker
 * copies it into a fresh message of exactly the declared shape. Encoding mirrors this: a writer for well-typed
 * messages, and the generic encoder for anything else.
 */
import { Decoder, Encoder, type ExtensionCodecType } from '@msgpack/msgpack';
import { ERROR_CODES, type ErrorCode, MalformedFrameError } from '../errors.ts';
import {
  type CoordinateMessage,
  type CoordinateReplyMessage,
  DEFAULT_LIMITS,
  type ErrorMessage,
  type KeysAsk,
  type KeysMessage,
  type KeysPage,
  type KeysReplyMessage,
  MAX_KEYS_ASKS,
  MAX_KEYS_PER_PARTITION,
  NODE_ID_PATTERN,
  type PeerMessage,
  type ProtocolLimits,
  type ReadMessage,
  type ReadReplyMessage,
  type ReplicateAckMessage,
  type ReplicateMessage,
  type SyncDropMessage,
  type SyncEntry,
  type SyncKeysMessage,
  type SyncKeysReplyMessage,
  type SyncPushMessage,
  type SyncTreeMessage,
  type SyncTreeReplyMessage,
  type NoticeMessage,
  type WatchMessage,
  type WatchTarget,
  MAX_SYNC_ENTRIES,
  MAX_WATCH_LEASE_MS,
  MAX_WATCH_TARGETS,
  MIN_WATCH_LEASE_MS,
  TREE_DEPTH,
  TREE_FANOUT,
  TREE_HASH_BYTES,
  TREE_LEAVES,
  type WireReceipt,
} from './protocol.ts';
import { MAX_PARTITIONS } from '../ring/ring.ts';
import { type ClockEntry, type VClock, isCounter, isWellFormed, MAX_CLOCK_ENTRIES } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';
import { PROOF_BYTES, signsVersions } from '../versions/proof.ts';

/** Most node ids in each list of a write receipt (`acknowledged`, `fallbacks`, `hints`). @default 64 */
export const MAX_RECEIPT_NODES = 64;

/** Longest `message` of an {@link ErrorMessage}, in UTF-16 code units. @default 1024 */
export const MAX_ERROR_MESSAGE_LENGTH = 1024;

/** Largest `w` a coordinate request may ask for. @default 16 */
export const MAX_WRITE_QUORUM = 16;

/**
 * How deep MessagePack containers may nest in a frame: message → entries → entry → versions → version → context →
 * clock entry (a sync-push or sync-keys-reply; the other messages nest two levels less).
 * @default 7
 */
export const MAX_FRAME_DEPTH = 7;

// Longest string in a frame, in UTF-8 bytes: an error message of MAX_ERROR_MESSAGE_LENGTH UTF-16 units takes at
// most three bytes per unit (a surrogate pair is four bytes for two units).
const MAX_STRING_BYTES = 3 * MAX_ERROR_MESSAGE_LENGTH;

// The largest map of any message (coordinate) has nine fields; the room above that lets the field checker name
// a few unexpected fields rather than the scanner refusing the map whole.
const MAX_MAP_FIELDS = 16;

// Tokens (headers, keys and scalars) in one clock entry `{node, counter, timestamp}`, and in a version
// `{dot, context, value}` whose context is full.
const ENTRY_TOKENS = 7;
const VERSION_TOKENS = 1 + 3 + ENTRY_TOKENS + (1 + ENTRY_TOKENS * MAX_CLOCK_ENTRIES) + 1;
// The envelope, a full context and a full receipt with room to spare; versions come on top.
const BASE_TOKENS = 1024;
// Tokens of one sync entry `{key, versions}` besides its versions: map header, two keys, the key, the array header.
const SYNC_ENTRY_TOKENS = 5;
// Largest bin of a tree-hash reply: a hash for every leaf.
const MAX_HASHES_BYTES = TREE_LEAVES * TREE_HASH_BYTES;
// Longest array of any message: sync entries, or the indexes of a whole tree level.
const MAX_FIXED_ARRAY = Math.max(
  MAX_CLOCK_ENTRIES,
  MAX_RECEIPT_NODES,
  MAX_SYNC_ENTRIES,
  TREE_LEAVES,
  MAX_WATCH_TARGETS,
  MAX_KEYS_ASKS,
  MAX_KEYS_PER_PARTITION,
);

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

const FIELDS = {
  replicate: ['type', 'from', 'requestId', 'key', 'versions', 'hintFor', 'durable', 'fresh'],
  'replicate-ack': ['type', 'from', 'requestId'],
  read: ['type', 'from', 'requestId', 'key', 'requireHeld'],
  'read-reply': ['type', 'from', 'requestId', 'versions'],
  coordinate: ['type', 'from', 'requestId', 'key', 'value', 'context', 'w', 'ifMatch', 'durable'],
  'coordinate-reply': ['type', 'from', 'requestId', 'context', 'receipt'],
  error: ['type', 'from', 'requestId', 'code', 'message', 'required', 'acknowledged'],
  // Appended after the older types: FastWriter names each type's frame head by its index here.
  'sync-tree': ['type', 'from', 'requestId', 'partition', 'level', 'indexes'],
  'sync-tree-reply': ['type', 'from', 'requestId', 'held', 'hashes'],
  'sync-keys': ['type', 'from', 'requestId', 'partition', 'leaves', 'after', 'maxBytes'],
  'sync-keys-reply': ['type', 'from', 'requestId', 'entries', 'next'],
  'sync-push': ['type', 'from', 'requestId', 'partition', 'entries'],
  'sync-drop': ['type', 'from', 'requestId', 'partition', 'entries'],
  // Read by the checked path only (the fast paths give up on them): one-way and rare next to replication.
  watch: ['type', 'from', 'requestId', 'targets', 'leaseMs'],
  notice: ['type', 'from', 'requestId', 'key', 'versions'],
  keys: ['type', 'from', 'requestId', 'asks', 'prefix', 'limit'],
  'keys-reply': ['type', 'from', 'requestId', 'pages', 'refused'],
} as const satisfies Record<PeerMessage['type'], readonly string[]>;

const ENTRY_FIELDS = ['node', 'counter', 'timestamp'] as const;
const VERSION_FIELDS = ['dot', 'context', 'value'] as const;
/** A signed version's fields (see proof.ts). */
const SIGNED_VERSION_FIELDS = ['dot', 'context', 'value', 'proof'] as const;
const RECEIPT_FIELDS = ['coordinator', 'acknowledged', 'fallbacks', 'hints'] as const;
const HINT_FIELDS = ['holder', 'target'] as const;
const SYNC_ENTRY_FIELDS = ['key', 'versions'] as const;
const WATCH_TARGET_FIELDS = ['key', 'prefix'] as const;
const KEYS_ASK_FIELDS = ['partition', 'after'] as const;
const KEYS_PAGE_FIELDS = ['partition', 'keys', 'more'] as const;

/** A decoded MessagePack map. */
type Fields = Record<string, unknown>;

// Every extension is refused; the default codec would turn type -1 into a Date.
const NO_EXTENSIONS: ExtensionCodecType<undefined> = {
  tryToEncode: () => null,
  decode: (_data, type) => {
    throw new Error(`extension type ${type} is not allowed`);
  },
};

const encoder = new Encoder({ extensionCodec: NO_EXTENSIONS });

interface FrameReader {
  readonly decoder: Decoder;
  readonly maxTokens: number;
  readonly maxBinBytes: number;
}

const readers = new WeakMap<ProtocolLimits, FrameReader>();

function readerFor(limits: ProtocolLimits): FrameReader {
  let reader = readers.get(limits);
  if (reader === undefined) {
    const maxBinBytes = Math.max(limits.maxKeyBytes, limits.maxValueBytes, MAX_HASHES_BYTES);
    reader = {
      decoder: new Decoder({
        extensionCodec: NO_EXTENSIONS,
        maxStrLength: MAX_STRING_BYTES,
        maxBinLength: maxBinBytes,
        maxArrayLength: Math.max(limits.maxSiblings, MAX_FIXED_ARRAY),
        maxMapLength: MAX_MAP_FIELDS,
        maxExtLength: 0,
      }),
      // The most items a valid message holds: a sync-push or sync-keys-reply of MAX_SYNC_ENTRIES keys with
      // maxSiblings full versions each. The frame-size limit usually binds first; a hostile frame costs the decoder
      // no more than the largest valid one.
      maxTokens: BASE_TOKENS + MAX_SYNC_ENTRIES * (SYNC_ENTRY_TOKENS + VERSION_TOKENS * limits.maxSiblings),
      maxBinBytes,
    };
    readers.set(limits, reader);
  }
  return reader;
}

/**
 * Encodes `message` as one MessagePack frame holding exactly the fields its type declares. The frame is usually a
 * view into a block shared with other frames, as Node's small Buffers are: its bytes never change, but its `buffer`
 * holds other frames too, so copy the frame before transferring or keeping a buffer.
 */
export function encodeMessage(message: PeerMessage): Uint8Array {
  const frame = fastWriter.frame(message);
  return frame ?? encoder.encode(wireForm(message));
}

// A copy with only the declared fields, so that a caller's extra properties never reach the wire (where the
// receiver would refuse them).
function wireForm(m: PeerMessage): object {
  switch (m.type) {
    case 'replicate':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        key: m.key,
        versions: m.versions.map(wireVersion),
        hintFor: m.hintFor,
        durable: m.durable,
        fresh: m.fresh,
      };
    case 'replicate-ack':
      return { type: m.type, from: m.from, requestId: m.requestId };
    case 'read':
      return { type: m.type, from: m.from, requestId: m.requestId, key: m.key, requireHeld: m.requireHeld };
    case 'read-reply':
      return { type: m.type, from: m.from, requestId: m.requestId, versions: m.versions.map(wireVersion) };
    case 'coordinate':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        key: m.key,
        value: m.value,
        context: m.context.map(wireEntry),
        w: m.w,
        ifMatch: m.ifMatch,
        durable: m.durable,
      };
    case 'coordinate-reply':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        context: m.context.map(wireEntry),
        receipt: {
          coordinator: m.receipt.coordinator,
          acknowledged: m.receipt.acknowledged,
          fallbacks: m.receipt.fallbacks,
          hints: m.receipt.hints.map((h) => ({ holder: h.holder, target: h.target })),
        },
      };
    case 'error':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        code: m.code,
        message: m.message,
        required: m.required,
        acknowledged: m.acknowledged,
      };
    case 'sync-tree':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        partition: m.partition,
        level: m.level,
        indexes: m.indexes,
      };
    case 'sync-tree-reply':
      return { type: m.type, from: m.from, requestId: m.requestId, held: m.held, hashes: m.hashes };
    case 'sync-keys':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        partition: m.partition,
        leaves: m.leaves,
        after: m.after,
        maxBytes: m.maxBytes,
      };
    case 'sync-keys-reply':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        entries: m.entries.map(wireSyncEntry),
        next: m.next,
      };
    case 'sync-push':
    case 'sync-drop':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        partition: m.partition,
        entries: m.entries.map(wireSyncEntry),
      };
    case 'watch':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        targets: m.targets.map((t) => ({ key: t.key, prefix: t.prefix })),
        leaseMs: m.leaseMs,
      };
    case 'notice':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        key: m.key,
        versions: m.versions.map(wireVersion),
      };
    case 'keys':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        asks: m.asks.map((a) => ({ partition: a.partition, after: a.after })),
        prefix: m.prefix,
        limit: m.limit,
      };
    case 'keys-reply':
      return {
        type: m.type,
        from: m.from,
        requestId: m.requestId,
        pages: m.pages.map((p) => ({ partition: p.partition, keys: p.keys, more: p.more })),
        refused: m.refused,
      };
  }
}

function wireSyncEntry(e: SyncEntry): object {
  return { key: e.key, versions: e.versions.map(wireVersion) };
}

function wireVersion(v: Version): object {
  const wire = { dot: wireEntry(v.dot), context: v.context.map(wireEntry), value: v.value };
  return v.proof === undefined ? wire : { ...wire, proof: v.proof };
}

function wireEntry(e: ClockEntry): object {
  return { node: e.node, counter: e.counter, timestamp: e.timestamp };
}

/**
 * Decodes and checks one frame from a peer. The returned message has exactly the fields of its type, and its byte
 * fields are fresh copies that share no memory with `frame`.
 * @param limits Size limits to enforce; pass the same object on every call, since the decoder built for it is
 * cached per object. @default DEFAULT_LIMITS
 * @throws MalformedFrameError for any frame that is not a valid message; nothing else.
 */
export function decodeMessage(frame: Uint8Array, limits: ProtocolLimits = DEFAULT_LIMITS): PeerMessage {
  try {
    if (!(frame instanceof Uint8Array)) fail('frame', 'expected a Uint8Array');
    if (frame.byteLength > limits.maxFrameBytes) {
      fail('frame', `${frame.byteLength} bytes is over the limit of ${limits.maxFrameBytes} bytes`);
    }
    const fast = fastReader.message(frame, limits);
    if (fast !== null) return fast;
    const reader = readerFor(limits);
    scanFrame(frame, reader.maxTokens, reader.maxBinBytes, limits.maxSiblings);
    let raw: unknown;
    try {
      raw = reader.decoder.decode(frame);
    } catch (error) {
      fail('frame', `not valid MessagePack (${errorText(error)})`, error);
    }
    return readMessage(raw, limits);
  } catch (error) {
    if (error instanceof MalformedFrameError) throw error;
    // A checker bug must still not let a peer's frame throw something the node does not expect.
    throw new MalformedFrameError(`frame: could not be checked (${errorText(error)})`, { cause: error });
  }
}

/**
 * Walks the MessagePack tokens of `bytes` without building anything, refusing what no valid message contains:
 * extension types, the unused byte 0xc1, strings, bins and containers over their limits, nesting deeper than
 * {@link MAX_FRAME_DEPTH}, more than `maxTokens` tokens, a truncated value, or bytes after the value.
 */
function scanFrame(bytes: Uint8Array, maxTokens: number, maxBinBytes: number, maxSiblings: number): void {
  const end = bytes.length;
  const maxArray = Math.max(maxSiblings, MAX_FIXED_ARRAY);
  // left[d]: items still expected at nesting level d (level 0 holds the message itself).
  const left = new Array<number>(MAX_FRAME_DEPTH + 1).fill(0);
  left[0] = 1;
  let depth = 0;
  let pos = 0;
  let tokens = 0;
  for (;;) {
    while (left[depth] === 0) {
      if (depth === 0) {
        if (pos !== end) fail('frame', `${end - pos} bytes after the message`);
        return;
      }
      depth--;
    }
    left[depth]!--;
    if (++tokens > maxTokens) fail('frame', `more than ${maxTokens} MessagePack items`);
    if (pos >= end) fail('frame', `truncated at byte ${pos}`);
    const b = bytes[pos]!;
    let size = 0; // bytes of the token after its head byte
    let items = 0; // entries of a container: its items, or its keys and values
    let map = false;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) {
      // fixint, nil, false, true
    } else if (b <= 0x8f) {
      map = true;
      items = b & 0x0f;
    } else if (b <= 0x9f) {
      items = b & 0x0f;
    } else if (b <= 0xbf) {
      size = b & 0x1f;
      if (size > MAX_STRING_BYTES) fail('frame', `string of ${size} bytes is over the limit of ${MAX_STRING_BYTES}`);
    } else if (b >= 0xca && b <= 0xd3) {
      // float32, float64, uint8..64, int8..64
      size = FIXED_SIZES[b - 0xca]!;
    } else {
      const kind = VARIABLE_KINDS[b];
      if (kind === undefined) {
        fail('frame', b === 0xc1 ? `invalid byte 0xc1 at ${pos}` : `extension type at byte ${pos} is not allowed`);
      }
      const head = kind.head;
      const length = lengthAt(bytes, pos + 1, head);
      if (length < 0) fail('frame', `truncated at byte ${pos}`);
      switch (kind.kind) {
        case 'bin':
          if (length > maxBinBytes) fail('frame', `bin of ${length} bytes is over the limit of ${maxBinBytes}`);
          size = head + length;
          break;
        case 'str':
          if (length > MAX_STRING_BYTES) {
            fail('frame', `string of ${length} bytes is over the limit of ${MAX_STRING_BYTES}`);
          }
          size = head + length;
          break;
        case 'array':
        case 'map':
          map = kind.kind === 'map';
          items = length;
          size = head;
          break;
      }
    }
    pos += 1 + size;
    if (pos > end) fail('frame', `truncated at byte ${pos - 1 - size}`);
    if (items > 0) {
      if (map ? items > MAX_MAP_FIELDS : items > maxArray) {
        fail('frame', `${map ? 'map' : 'array'} of ${items} entries is over the limit`);
      }
      if (depth === MAX_FRAME_DEPTH) fail('frame', `nested deeper than ${MAX_FRAME_DEPTH} levels`);
      left[++depth] = map ? 2 * items : items;
    }
  }
}

// Bytes after the head byte of 0xca..0xd3: float32, float64, uint8, uint16, uint32, uint64, int8 .. int64.
const FIXED_SIZES = [4, 8, 1, 2, 4, 8, 1, 2, 4, 8];

// Head bytes of the tokens whose length follows them, with the width of that length.
const VARIABLE_KINDS: Partial<Record<number, { kind: 'bin' | 'str' | 'array' | 'map'; head: number }>> = {
  0xc4: { kind: 'bin', head: 1 },
  0xc5: { kind: 'bin', head: 2 },
  0xc6: { kind: 'bin', head: 4 },
  0xd9: { kind: 'str', head: 1 },
  0xda: { kind: 'str', head: 2 },
  0xdb: { kind: 'str', head: 4 },
  0xdc: { kind: 'array', head: 2 },
  0xdd: { kind: 'array', head: 4 },
  0xde: { kind: 'map', head: 2 },
  0xdf: { kind: 'map', head: 4 },
};

// The big-endian unsigned integer of `width` bytes at `at`, or -1 when the frame ends first.
function lengthAt(bytes: Uint8Array, at: number, width: number): number {
  if (at + width > bytes.length) return -1;
  let n = 0;
  for (let i = 0; i < width; i++) n = n * 256 + bytes[at + i]!;
  return n;
}

function fail(path: string, problem: string, cause?: unknown): never {
  throw new MalformedFrameError(`${path}: ${problem}`, cause === undefined ? undefined : { cause });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// Peer-chosen names quoted and cut short, so an error message stays readable and small.
function quote(name: string): string {
  return /^[A-Za-z0-9_-]{1,32}$/.test(name) ? name : JSON.stringify(name.length > 32 ? `${name.slice(0, 32)}…` : name);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'bytes';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  return `a ${typeof value}`;
}

function isMap(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** `value` as a map with exactly `fields`, else a failure naming the missing or unexpected field. */
function readMap(value: unknown, path: string, fields: readonly string[]): Fields {
  if (!isMap(value)) fail(path, `expected a map, got ${typeName(value)}`);
  for (const field of fields) {
    if (!Object.hasOwn(value, field)) fail(`${path}.${field}`, 'missing field');
  }
  const keys = Object.keys(value);
  if (keys.length !== fields.length) {
    const extra = keys.find((k) => !fields.includes(k)) ?? '';
    fail(`${path}.${quote(extra)}`, 'unexpected field');
  }
  return value;
}

function readNodeId(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, `expected a node id string, got ${typeName(value)}`);
  if (!NODE_ID_PATTERN.test(value)) fail(path, `${quote(value)} is not a node id (1 to 64 of [A-Za-z0-9_-])`);
  return value;
}

function readNodeIds(value: unknown, path: string): string[] {
  if (!Array.isArray(value)) fail(path, `expected an array of node ids, got ${typeName(value)}`);
  if (value.length > MAX_RECEIPT_NODES)
    fail(path, `${value.length} node ids is over the limit of ${MAX_RECEIPT_NODES}`);
  const out: string[] = [];
  for (let i = 0; i < value.length; i++) out.push(readNodeId(value[i], `${path}[${i}]`));
  return out;
}

function readBoolean(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') fail(path, `expected a boolean, got ${typeName(value)}`);
  return value;
}

/**
 * A replicate's `fresh`: null, or the counter of a dot of the sender under which `versions` holds a version (the
 * write the sender just issued).
 */
function readFresh(value: unknown, from: string, versions: readonly Version[]): number | null {
  if (value === null) return null;
  if (!isCounter(value)) {
    fail('replicate.fresh', `expected null or an integer from 1 to 2^48 (MAX_COUNTER), got ${typeName(value)}`);
  }
  if (!isFreshIn(value, from, versions)) {
    fail('replicate.fresh', `names dot ${from}:${value}, which no version shipped has`);
  }
  return value;
}

/** Whether one of `versions` is under the dot (`from`, `counter`). */
function isFreshIn(counter: number, from: string, versions: readonly Version[]): boolean {
  return versions.some((v) => v.dot.node === from && v.dot.counter === counter);
}

function readRequestId(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    fail(path, `expected a non-negative safe integer, got ${typeName(value)}`);
  }
  return value;
}

function readCount(value: unknown, path: string): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    fail(path, `expected null or a non-negative safe integer, got ${typeName(value)}`);
  }
  return value;
}

function readBytes(value: unknown, path: string, min: number, max: number): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(path, `expected bytes, got ${typeName(value)}`);
  if (value.byteLength < min) fail(path, `${value.byteLength} bytes is under the minimum of ${min}`);
  if (value.byteLength > max) fail(path, `${value.byteLength} bytes is over the limit of ${max}`);
  // A copy: the decoder hands out views of the frame, which would pin the whole frame and change with it. Not
  // `value.slice()`: when the frame is a Node Buffer, so is `value`, and Buffer's slice is a view.
  const copy = new Uint8Array(value.byteLength);
  copy.set(value);
  return copy;
}

function readKey(value: unknown, path: string, limits: ProtocolLimits): Uint8Array {
  return readBytes(value, path, 1, limits.maxKeyBytes);
}

function readValue(value: unknown, path: string, limits: ProtocolLimits): Uint8Array | null {
  return value === null ? null : readBytes(value, path, 0, limits.maxValueBytes);
}

function readEntry(value: unknown, path: string): ClockEntry {
  const m = readMap(value, path, ENTRY_FIELDS);
  const node = readNodeId(m.node, `${path}.node`);
  const { counter, timestamp } = m;
  if (!isCounter(counter)) {
    fail(`${path}.counter`, `expected an integer from 1 to 2^48 (MAX_COUNTER), got ${typeName(counter)}`);
  }
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) {
    fail(`${path}.timestamp`, `expected a finite non-negative number, got ${typeName(timestamp)}`);
  }
  return { node, counter, timestamp };
}

/**
 * Checks that `value`, as decoded from MessagePack, is a well-formed vector clock of at most
 * {@link MAX_CLOCK_ENTRIES} entries, and returns a fresh copy of it.
 * @param path Names the clock in the error message, e.g. `coordinate.context`.
 * @throws MalformedFrameError naming the entry and the problem.
 */
export function readClock(value: unknown, path: string): VClock {
  if (!Array.isArray(value)) fail(path, `expected an array of clock entries, got ${typeName(value)}`);
  if (value.length > MAX_CLOCK_ENTRIES) {
    fail(path, `${value.length} entries is over the limit of ${MAX_CLOCK_ENTRIES}`);
  }
  const clock: ClockEntry[] = [];
  for (let i = 0; i < value.length; i++) clock.push(readEntry(value[i], `${path}[${i}]`));
  if (!isWellFormed(clock)) {
    const i = clock.findIndex((e, j) => j > 0 && clock[j - 1]!.node >= e.node);
    fail(`${path}[${i}].node`, 'entries must be sorted by node with no node twice');
  }
  return clock;
}

function readVersions(value: unknown, path: string, limits: ProtocolLimits): Version[] {
  if (!Array.isArray(value)) fail(path, `expected an array of versions, got ${typeName(value)}`);
  if (value.length > limits.maxSiblings) {
    fail(path, `${value.length} versions is over the limit of ${limits.maxSiblings}`);
  }
  const versions: Version[] = [];
  for (let i = 0; i < value.length; i++) {
    const at = `${path}[${i}]`;
    const signed = isMap(value[i]) && Object.hasOwn(value[i] as object, 'proof');
    const m = readMap(value[i], at, signed ? SIGNED_VERSION_FIELDS : VERSION_FIELDS);
    const dot = readEntry(m.dot, `${at}.dot`);
    const context = readClock(m.context, `${at}.context`);
    const v = readValue(m.value, `${at}.value`, limits);
    for (const earlier of versions) {
      if (earlier.dot.node === dot.node && earlier.dot.counter === dot.counter) {
        fail(`${at}.dot`, `the dot ${dot.node}:${dot.counter} appears twice`);
      }
    }
    if (signed) {
      const proof = m.proof;
      if (!signsVersions(dot.node)) {
        fail(`${at}.proof`, `${dot.node} is not an id derived from a key, and only such nodes sign their versions`);
      }
      if (!(proof instanceof Uint8Array) || proof.byteLength !== PROOF_BYTES) {
        fail(`${at}.proof`, `expected ${PROOF_BYTES} bytes (a public key and a signature), got ${typeName(proof)}`);
      }
      versions.push({ dot, context, value: v, proof });
    } else {
      versions.push({ dot, context, value: v });
    }
  }
  return versions;
}

/** An integer from `min` to `max`, else a failure naming the range. */
function readInteger(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(path, `expected an integer from ${min} to ${max}, got ${typeName(value)}`);
  }
  return value;
}

function readPartition(value: unknown, path: string): number {
  return readInteger(value, path, 0, MAX_PARTITIONS - 1);
}

/** Ascending distinct integers each below `bound`, so at most `bound` of them: tree node or leaf indexes. */
function readIndexes(value: unknown, path: string, bound: number, what: string): number[] {
  if (!Array.isArray(value)) fail(path, `expected an array of ${what}, got ${typeName(value)}`);
  if (value.length > bound) fail(path, `${value.length} ${what} is over the limit of ${bound}`);
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const at = `${path}[${i}]`;
    const index = readInteger(value[i], at, 0, bound - 1);
    if (i > 0 && index <= out[i - 1]!) fail(at, `${index} does not follow ${out[i - 1]!}: ${what} must ascend`);
    out.push(index);
  }
  return out;
}

function readHashes(value: unknown, path: string): Uint8Array {
  const hashes = readBytes(value, path, 0, MAX_HASHES_BYTES);
  if (hashes.byteLength % TREE_HASH_BYTES !== 0) {
    fail(path, `${hashes.byteLength} bytes is not a whole number of ${TREE_HASH_BYTES}-byte hashes`);
  }
  return hashes;
}

function readMaxBytes(value: unknown, path: string, limits: ProtocolLimits): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > limits.maxFrameBytes) {
    fail(path, `expected a positive integer up to ${limits.maxFrameBytes}, got ${typeName(value)}`);
  }
  return value;
}

function readNullableKey(value: unknown, path: string, limits: ProtocolLimits): Uint8Array | null {
  return value === null ? null : readKey(value, path, limits);
}

/** Sync entries; every version a tombstone when `tombstones`. */
function readSyncEntries(value: unknown, path: string, limits: ProtocolLimits, tombstones: boolean): SyncEntry[] {
  if (!Array.isArray(value)) fail(path, `expected an array of entries, got ${typeName(value)}`);
  if (value.length > MAX_SYNC_ENTRIES) {
    fail(path, `${value.length} entries is over the limit of ${MAX_SYNC_ENTRIES}`);
  }
  const entries: SyncEntry[] = [];
  for (let i = 0; i < value.length; i++) {
    const at = `${path}[${i}]`;
    const m = readMap(value[i], at, SYNC_ENTRY_FIELDS);
    const key = readKey(m.key, `${at}.key`, limits);
    const versions = readVersions(m.versions, `${at}.versions`, limits);
    if (tombstones) {
      const live = versions.findIndex((v) => v.value !== null);
      if (live >= 0) fail(`${at}.versions[${live}].value`, 'expected null: only tombstones are dropped');
    }
    entries.push({ key, versions });
  }
  return entries;
}

function readReceipt(value: unknown, path: string): WireReceipt {
  const m = readMap(value, path, RECEIPT_FIELDS);
  const coordinator = readNodeId(m.coordinator, `${path}.coordinator`);
  const acknowledged = readNodeIds(m.acknowledged, `${path}.acknowledged`);
  const fallbacks = readNodeIds(m.fallbacks, `${path}.fallbacks`);
  const hintsPath = `${path}.hints`;
  const rawHints = m.hints;
  if (!Array.isArray(rawHints)) fail(hintsPath, `expected an array of hints, got ${typeName(rawHints)}`);
  if (rawHints.length > MAX_RECEIPT_NODES) {
    fail(hintsPath, `${rawHints.length} hints is over the limit of ${MAX_RECEIPT_NODES}`);
  }
  const hints: { holder: string; target: string }[] = [];
  for (let i = 0; i < rawHints.length; i++) {
    const at = `${hintsPath}[${i}]`;
    const h = readMap(rawHints[i], at, HINT_FIELDS);
    hints.push({ holder: readNodeId(h.holder, `${at}.holder`), target: readNodeId(h.target, `${at}.target`) });
  }
  return { coordinator, acknowledged, fallbacks, hints };
}

function readMessage(raw: unknown, limits: ProtocolLimits): PeerMessage {
  if (!isMap(raw)) fail('message', `expected a map, got ${typeName(raw)}`);
  const type = raw.type;
  if (typeof type !== 'string')
    fail('message.type', type === undefined ? 'missing field' : `expected a string, got ${typeName(type)}`);
  if (!Object.hasOwn(FIELDS, type)) fail('message.type', `unknown message type ${quote(type)}`);
  const t = type as PeerMessage['type'];
  const m = readMap(raw, t, FIELDS[t]);
  const from = readNodeId(m.from, `${t}.from`);
  const requestId = readRequestId(m.requestId, `${t}.requestId`);
  switch (t) {
    case 'replicate': {
      const versions = readVersions(m.versions, 'replicate.versions', limits);
      const message: ReplicateMessage = {
        type: t,
        from,
        requestId,
        key: readKey(m.key, 'replicate.key', limits),
        versions,
        hintFor: m.hintFor === null ? null : readNodeId(m.hintFor, 'replicate.hintFor'),
        durable: readBoolean(m.durable, 'replicate.durable'),
        fresh: readFresh(m.fresh, from, versions),
      };
      return message;
    }
    case 'replicate-ack': {
      const message: ReplicateAckMessage = { type: t, from, requestId };
      return message;
    }
    case 'read': {
      const message: ReadMessage = {
        type: t,
        from,
        requestId,
        key: readKey(m.key, 'read.key', limits),
        requireHeld: readBoolean(m.requireHeld, 'read.requireHeld'),
      };
      return message;
    }
    case 'read-reply': {
      const message: ReadReplyMessage = {
        type: t,
        from,
        requestId,
        versions: readVersions(m.versions, 'read-reply.versions', limits),
      };
      return message;
    }
    case 'coordinate': {
      const w = m.w;
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 1 || w > MAX_WRITE_QUORUM) {
        fail('coordinate.w', `expected an integer from 1 to ${MAX_WRITE_QUORUM}, got ${typeName(w)}`);
      }
      const message: CoordinateMessage = {
        type: t,
        from,
        requestId,
        key: readKey(m.key, 'coordinate.key', limits),
        value: readValue(m.value, 'coordinate.value', limits),
        context: readClock(m.context, 'coordinate.context'),
        w,
        ifMatch: readBoolean(m.ifMatch, 'coordinate.ifMatch'),
        durable: readBoolean(m.durable, 'coordinate.durable'),
      };
      return message;
    }
    case 'coordinate-reply': {
      const message: CoordinateReplyMessage = {
        type: t,
        from,
        requestId,
        context: readClock(m.context, 'coordinate-reply.context'),
        receipt: readReceipt(m.receipt, 'coordinate-reply.receipt'),
      };
      return message;
    }
    case 'error': {
      const code = m.code;
      if (typeof code !== 'string' || !KNOWN_CODES.has(code)) {
        fail('error.code', `expected an error code, got ${typeof code === 'string' ? quote(code) : typeName(code)}`);
      }
      const text = m.message;
      if (typeof text !== 'string') fail('error.message', `expected a string, got ${typeName(text)}`);
      if (text.length > MAX_ERROR_MESSAGE_LENGTH) {
        fail('error.message', `${text.length} characters is over the limit of ${MAX_ERROR_MESSAGE_LENGTH}`);
      }
      const message: ErrorMessage = {
        type: t,
        from,
        requestId,
        code: code as ErrorCode,
        message: text,
        required: readCount(m.required, 'error.required'),
        acknowledged: readCount(m.acknowledged, 'error.acknowledged'),
      };
      return message;
    }
    case 'sync-tree': {
      const partition = readPartition(m.partition, 'sync-tree.partition');
      const level = readInteger(m.level, 'sync-tree.level', 0, TREE_DEPTH);
      const message: SyncTreeMessage = {
        type: t,
        from,
        requestId,
        partition,
        level,
        indexes: readIndexes(m.indexes, 'sync-tree.indexes', TREE_FANOUT ** level, `indexes at level ${level}`),
      };
      return message;
    }
    case 'sync-tree-reply': {
      const message: SyncTreeReplyMessage = {
        type: t,
        from,
        requestId,
        held: readBoolean(m.held, 'sync-tree-reply.held'),
        hashes: readHashes(m.hashes, 'sync-tree-reply.hashes'),
      };
      return message;
    }
    case 'sync-keys': {
      const message: SyncKeysMessage = {
        type: t,
        from,
        requestId,
        partition: readPartition(m.partition, 'sync-keys.partition'),
        leaves: readIndexes(m.leaves, 'sync-keys.leaves', TREE_LEAVES, 'leaves'),
        after: readNullableKey(m.after, 'sync-keys.after', limits),
        maxBytes: readMaxBytes(m.maxBytes, 'sync-keys.maxBytes', limits),
      };
      return message;
    }
    case 'sync-keys-reply': {
      const message: SyncKeysReplyMessage = {
        type: t,
        from,
        requestId,
        entries: readSyncEntries(m.entries, 'sync-keys-reply.entries', limits, false),
        next: readNullableKey(m.next, 'sync-keys-reply.next', limits),
      };
      return message;
    }
    case 'sync-push': {
      const message: SyncPushMessage = {
        type: t,
        from,
        requestId,
        partition: readPartition(m.partition, 'sync-push.partition'),
        entries: readSyncEntries(m.entries, 'sync-push.entries', limits, false),
      };
      return message;
    }
    case 'sync-drop': {
      const message: SyncDropMessage = {
        type: t,
        from,
        requestId,
        partition: readPartition(m.partition, 'sync-drop.partition'),
        entries: readSyncEntries(m.entries, 'sync-drop.entries', limits, true),
      };
      return message;
    }
    case 'watch': {
      const message: WatchMessage = {
        type: t,
        from,
        requestId,
        targets: readWatchTargets(m.targets, 'watch.targets', limits),
        leaseMs: readLease(m.leaseMs, 'watch.leaseMs'),
      };
      return message;
    }
    case 'notice': {
      const message: NoticeMessage = {
        type: t,
        from,
        requestId,
        key: readKey(m.key, 'notice.key', limits),
        versions: readVersions(m.versions, 'notice.versions', limits),
      };
      return message;
    }
    case 'keys': {
      const message: KeysMessage = {
        type: t,
        from,
        requestId,
        asks: readKeysAsks(m.asks, 'keys.asks', limits),
        prefix: readBytes(m.prefix, 'keys.prefix', 0, limits.maxKeyBytes),
        limit: readInteger(m.limit, 'keys.limit', 1, MAX_KEYS_PER_PARTITION),
      };
      return message;
    }
    case 'keys-reply': {
      const message: KeysReplyMessage = {
        type: t,
        from,
        requestId,
        pages: readKeysPages(m.pages, 'keys-reply.pages', limits),
        refused: readAscendingPartitions(m.refused, 'keys-reply.refused'),
      };
      return message;
    }
  }
}

function readWatchTargets(value: unknown, path: string, limits: ProtocolLimits): WatchTarget[] {
  if (!Array.isArray(value)) fail(path, `expected an array of watch targets, got ${typeName(value)}`);
  if (value.length > MAX_WATCH_TARGETS) fail(path, `${value.length} targets is over the limit of ${MAX_WATCH_TARGETS}`);
  const out: WatchTarget[] = [];
  for (let i = 0; i < value.length; i++) {
    const at = `${path}[${i}]`;
    const t = readMap(value[i], at, WATCH_TARGET_FIELDS);
    out.push({ key: readKey(t.key, `${at}.key`, limits), prefix: readBoolean(t.prefix, `${at}.prefix`) });
  }
  return out;
}

/** A `keys` or `keys-reply` list: an array of at most {@link MAX_KEYS_ASKS} `what`. */
function readAsksArray(value: unknown, path: string, what: string): unknown[] {
  if (!Array.isArray(value)) fail(path, `expected an array of ${what}, got ${typeName(value)}`);
  if (value.length > MAX_KEYS_ASKS) fail(path, `${value.length} ${what} is over the limit of ${MAX_KEYS_ASKS}`);
  return value;
}

/** The partition at `at`, which must follow `previous` (undefined for the first): partitions ascend, each once. */
function readNextPartition(value: unknown, at: string, previous: number | undefined): number {
  const partition = readPartition(value, at);
  if (previous !== undefined && partition <= previous) {
    fail(at, `${partition} does not follow ${previous}: partitions must ascend`);
  }
  return partition;
}

/** Partitions ascending and distinct, at most {@link MAX_KEYS_ASKS}. */
function readAscendingPartitions(value: unknown, path: string): number[] {
  const out: number[] = [];
  readAsksArray(value, path, 'partitions').forEach((v, i) =>
    out.push(readNextPartition(v, `${path}[${i}]`, out[i - 1])),
  );
  return out;
}

function readLease(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_WATCH_LEASE_MS || value > MAX_WATCH_LEASE_MS)
    fail(path, `expected an integer of ms from ${MIN_WATCH_LEASE_MS} to ${MAX_WATCH_LEASE_MS}, got ${typeName(value)}`);
  return value;
}

/** A `keys` message's asks: ascending by partition, each once, at most {@link MAX_KEYS_ASKS}. */
function readKeysAsks(value: unknown, path: string, limits: ProtocolLimits): KeysAsk[] {
  const asks = readAsksArray(value, path, 'asks');
  const out: KeysAsk[] = [];
  for (let i = 0; i < asks.length; i++) {
    const at = `${path}[${i}]`;
    const m = readMap(asks[i], at, KEYS_ASK_FIELDS);
    const partition = readNextPartition(m.partition, `${at}.partition`, out[i - 1]?.partition);
    out.push({ partition, after: readNullableKey(m.after, `${at}.after`, limits) });
  }
  return out;
}

/** A `keys-reply`'s pages: ascending by partition, each once; each page's keys ascending and distinct. */
function readKeysPages(value: unknown, path: string, limits: ProtocolLimits): KeysPage[] {
  const pages = readAsksArray(value, path, 'pages');
  const out: KeysPage[] = [];
  for (let i = 0; i < pages.length; i++) {
    const at = `${path}[${i}]`;
    const m = readMap(pages[i], at, KEYS_PAGE_FIELDS);
    const partition = readNextPartition(m.partition, `${at}.partition`, out[i - 1]?.partition);
    const rawKeys = m.keys;
    if (!Array.isArray(rawKeys)) fail(`${at}.keys`, `expected an array of keys, got ${typeName(rawKeys)}`);
    if (rawKeys.length > MAX_KEYS_PER_PARTITION) {
      fail(`${at}.keys`, `${rawKeys.length} keys is over the limit of ${MAX_KEYS_PER_PARTITION}`);
    }
    const keys: Uint8Array[] = [];
    for (let j = 0; j < rawKeys.length; j++) {
      const key = readKey(rawKeys[j], `${at}.keys[${j}]`, limits);
      if (j > 0 && compareBytes(keys[j - 1]!, key) >= 0) fail(`${at}.keys[${j}]`, 'keys must ascend in byte order');
      keys.push(key);
    }
    out.push({ partition, keys, more: readBoolean(m.more, `${at}.more`) });
  }
  return out;
}

/** Byte order of two keys. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

// ---------------------------------------------------------------------------------------------------------------
// The fast paths. Frames from encodeMessage have one layout: every map's fields in the declared order, keys as
// fixstr, node ids as fixstr or str8. readFast reads a frame of that layout once, straight into the message, checking
// every field, type and size on the way (the same checks as readMessage, and the scanner's limits, which a message
// that passes them cannot exceed). Anything else (another field order, an unexpected encoding, a wrong value, a
// truncation, bytes after the message) makes it give up before building anything of consequence, and the frame goes
// through the checked path above, which alone names problems. So the fast path accepts a subset of what the checked
// path accepts and returns the same message for it; a hostile frame costs at most one failed fast read on top.
// writeFast is its mirror: it writes what `encoder.encode(wireForm(m))` writes for well-typed messages and gives up
// on anything else, which then takes that generic path.

/** Thrown inside the fast paths when a frame or message leaves their layout; caught in this module. */
const BAIL = new Error('not in the fast layout');

// Characters of a node id, by byte.
const ID_BYTE = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') ID_BYTE[c.charCodeAt(0)] = 1;

/** The MessagePack bytes of a short ASCII string, as encodeMessage writes it. */
function packed(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Constant bytes of the layout (a key, a head), also as big-endian 32-bit words and the 0 to 3 bytes after them:
 * the writer stores and the reader checks a run a word at a time, a quarter of the steps of a byte loop, and runs are
 * most of a frame's bytes (every clock entry spells out `node`, `counter` and `timestamp`).
 */
class Run {
  readonly bytes: Uint8Array;
  readonly length: number;
  readonly words: Int32Array;
  readonly tail: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.length = bytes.length;
    const whole = bytes.length >> 2;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.words = Int32Array.from({ length: whole }, (_, i) => view.getInt32(4 * i));
    this.tail = bytes.slice(4 * whole);
  }
}

/** The run of a key's MessagePack bytes. */
function keyRun(name: string): Run {
  return new Run(packed(name));
}

const K = {
  type: keyRun('type'),
  from: keyRun('from'),
  requestId: keyRun('requestId'),
  key: keyRun('key'),
  versions: keyRun('versions'),
  hintFor: keyRun('hintFor'),
  durable: keyRun('durable'),
  fresh: keyRun('fresh'),
  requireHeld: keyRun('requireHeld'),
  value: keyRun('value'),
  context: keyRun('context'),
  w: keyRun('w'),
  ifMatch: keyRun('ifMatch'),
  receipt: keyRun('receipt'),
  code: keyRun('code'),
  message: keyRun('message'),
  required: keyRun('required'),
  acknowledged: keyRun('acknowledged'),
  node: keyRun('node'),
  counter: keyRun('counter'),
  timestamp: keyRun('timestamp'),
  dot: keyRun('dot'),
  coordinator: keyRun('coordinator'),
  fallbacks: keyRun('fallbacks'),
  hints: keyRun('hints'),
  holder: keyRun('holder'),
  target: keyRun('target'),
  partition: keyRun('partition'),
  level: keyRun('level'),
  indexes: keyRun('indexes'),
  held: keyRun('held'),
  hashes: keyRun('hashes'),
  leaves: keyRun('leaves'),
  after: keyRun('after'),
  maxBytes: keyRun('maxBytes'),
  entries: keyRun('entries'),
  next: keyRun('next'),
  proof: keyRun('proof'),
};

// A clock entry's map header and its first key.
const ENTRY_HEAD = new Run(Uint8Array.of(0x83, ...K.node.bytes));
// Most bytes a clock entry with a node id under 32 characters takes: head, id, and both keys with a 9-byte number.
const SHORT_ENTRY_BYTES = ENTRY_HEAD.length + 32 + K.counter.length + 9 + K.timestamp.length + 9;
// A version's map header and its first key.
const VERSION_HEAD = new Run(Uint8Array.of(0x83, ...K.dot.bytes));
// A signed version's: one field more, its proof, written last.
const SIGNED_VERSION_HEAD = new Run(Uint8Array.of(0x84, ...K.dot.bytes));

const TYPES = Object.keys(FIELDS) as PeerMessage['type'][];
// The head of each message type's frame: its map header, the key `type` and the type's name.
const HEADS = TYPES.map((t) => {
  const name = packed(t);
  const head = new Uint8Array(1 + K.type.length + name.length);
  head[0] = 0x80 | FIELDS[t].length;
  head.set(K.type.bytes, 1);
  head.set(name, 1 + K.type.length);
  return head;
});
// Each head followed by the key `from`, which every message has next: the envelope's constant bytes in one copy.
const ENVELOPE_HEADS = HEADS.map((head) => new Run(Uint8Array.of(...head, ...K.from.bytes)));

// ---- writing

// Frames are written one after another into a block and handed out as views of it, as Node hands out small Buffers
// from a shared pool: one allocation per block instead of an ArrayBuffer per frame, which costs more than encoding a
// small message. A frame that outgrows what is left of the block moves to a new one.
const BLOCK_BYTES = 64 * 1024;

class FastWriter {
  block = new Uint8Array(BLOCK_BYTES);
  view = new DataView(this.block.buffer);
  /** Where the frame being written starts in `block`. */
  start = 0;
  at = 0;

  /** The frame of `m`, or null when some field is not of its declared type (the generic encoder then decides). */
  frame(m: PeerMessage): Uint8Array | null {
    this.at = this.start;
    try {
      this.message(m);
    } catch {
      this.at = this.start;
      return null;
    }
    return this.finish();
  }

  /** The bytes of `clock` when it is a valid clock of at most MAX_CLOCK_ENTRIES entries, else null. */
  checkedClock(clock: VClock): Uint8Array | null {
    if (!Array.isArray(clock) || clock.length > MAX_CLOCK_ENTRIES) return null;
    this.at = this.start;
    try {
      const n = this.arrayHeader(clock);
      for (let i = 0; i < n; i++) {
        const e = clock[i]!;
        if (typeof e !== 'object' || e === null) throw BAIL;
        const { node, counter, timestamp } = e;
        if (typeof node !== 'string' || node.length === 0 || node.length > 64) throw BAIL;
        for (let k = 0; k < node.length; k++) {
          const c = node.charCodeAt(k);
          if (c > 0x7f || ID_BYTE[c] === 0) throw BAIL;
        }
        if (i > 0 && clock[i - 1]!.node >= node) throw BAIL;
        if (!isCounter(counter)) throw BAIL;
        if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp < 0) throw BAIL;
        this.byte(0x83);
        this.raw(K.node);
        this.ascii(node);
        this.raw(K.counter);
        this.number(counter);
        this.raw(K.timestamp);
        this.number(timestamp);
      }
    } catch {
      this.at = this.start;
      return null;
    }
    return this.finish();
  }

  /** The bytes written since `start`, as a view; the next write starts after them. */
  finish(): Uint8Array {
    const bytes = this.block.subarray(this.start, this.at);
    if (this.block.length > BLOCK_BYTES) {
      // A block grown for a huge frame is left to that frame alone, so that it is freed along with it.
      this.block = new Uint8Array(BLOCK_BYTES);
      this.view = new DataView(this.block.buffer);
      this.start = 0;
    } else {
      // The next write starts 8-byte aligned, so no two outputs share a word a reader might fetch as one.
      this.start = (this.at + 7) & ~7;
    }
    this.at = this.start;
    return bytes;
  }

  room(bytes: number): void {
    if (this.at + bytes <= this.block.length) return;
    const length = this.at - this.start;
    let size = BLOCK_BYTES;
    while (size < length + bytes) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.block.subarray(this.start, this.at));
    this.block = next;
    this.view = new DataView(next.buffer);
    this.start = 0;
    this.at = length;
  }

  raw(run: Run): void {
    this.room(run.length);
    this.at = this.rawAt(this.at, run);
  }

  /** Writes `run` at `at`, with room for it there; returns where it ends. */
  rawAt(at: number, run: Run): number {
    const view = this.view;
    const words = run.words;
    for (let i = 0; i < words.length; i++, at += 4) view.setInt32(at, words[i]!);
    const block = this.block;
    const tail = run.tail;
    for (let i = 0; i < tail.length; i++) block[at++] = tail[i]!;
    return at;
  }

  byte(b: number): void {
    this.room(1);
    this.block[this.at++] = b;
  }

  boolean(value: unknown): void {
    if (typeof value !== 'boolean') throw BAIL;
    this.byte(value ? 0xc3 : 0xc2);
  }

  // Numbers as @msgpack/msgpack writes them: safe integers in the smallest integer format, the rest as float64.
  // Negative numbers never occur in a well-typed message and are left to the generic encoder.
  number(value: unknown): void {
    this.room(9);
    this.at = this.numberAt(this.at, value);
  }

  /** Writes `value` as {@link number} does at `at`, with room for 9 bytes there; returns where it ends. */
  numberAt(at: number, value: unknown): number {
    if (typeof value !== 'number') throw BAIL;
    const block = this.block;
    if (!Number.isSafeInteger(value)) {
      block[at] = 0xcb;
      this.view.setFloat64(at + 1, value);
      return at + 9;
    } else if (value < 0) {
      throw BAIL;
    } else if (value < 0x80) {
      block[at] = value;
      return at + 1;
    } else if (value < 0x100) {
      block[at] = 0xcc;
      block[at + 1] = value;
      return at + 2;
    } else if (value < 0x10000) {
      block[at] = 0xcd;
      block[at + 1] = value >>> 8;
      block[at + 2] = value & 0xff;
      return at + 3;
    } else if (value < 0x100000000) {
      block[at] = 0xce;
      this.view.setUint32(at + 1, value);
      return at + 5;
    } else {
      block[at] = 0xcf;
      this.view.setUint32(at + 1, Math.floor(value / 0x100000000));
      this.view.setUint32(at + 5, value >>> 0);
      return at + 9;
    }
  }

  /** An ASCII string; any other is left to the generic encoder, whose UTF-8 is the reference. */
  ascii(value: unknown): void {
    if (typeof value !== 'string') throw BAIL;
    const n = value.length;
    this.room(3 + n);
    const block = this.block;
    let at = this.at;
    if (n < 32) {
      block[at++] = 0xa0 | n;
    } else if (n < 0x100) {
      block[at++] = 0xd9;
      block[at++] = n;
    } else if (n < 0x10000) {
      block[at++] = 0xda;
      block[at++] = n >>> 8;
      block[at++] = n & 0xff;
    } else {
      throw BAIL;
    }
    for (let i = 0; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) throw BAIL;
      block[at++] = c;
    }
    this.at = at;
  }

  bytes(value: unknown): void {
    if (!(value instanceof Uint8Array)) throw BAIL;
    const n = value.byteLength;
    this.room(5 + n);
    const block = this.block;
    if (n < 0x100) {
      block[this.at] = 0xc4;
      block[this.at + 1] = n;
      this.at += 2;
    } else if (n < 0x10000) {
      block[this.at] = 0xc5;
      block[this.at + 1] = n >>> 8;
      block[this.at + 2] = n & 0xff;
      this.at += 3;
    } else {
      block[this.at] = 0xc6;
      this.view.setUint32(this.at + 1, n);
      this.at += 5;
    }
    if (n < 64) {
      let at = this.at;
      for (let i = 0; i < n; i++) block[at++] = value[i]!;
      this.at = at;
    } else {
      block.set(value, this.at);
      this.at += n;
    }
  }

  nullableBytes(value: unknown): void {
    if (value === null) this.byte(0xc0);
    else this.bytes(value);
  }

  nullableNumber(value: unknown): void {
    if (value === null) this.byte(0xc0);
    else this.number(value);
  }

  arrayHeader(value: unknown): number {
    if (!Array.isArray(value)) throw BAIL;
    const n = value.length;
    if (n < 16) {
      this.byte(0x90 | n);
    } else if (n < 0x10000) {
      this.room(3);
      this.block[this.at] = 0xdc;
      this.block[this.at + 1] = n >>> 8;
      this.block[this.at + 2] = n & 0xff;
      this.at += 3;
    } else {
      throw BAIL;
    }
    return n;
  }

  // The hottest write, straight-line: one check of room for the whole entry when its node id is a short string,
  // then every byte written in place.
  entry(e: ClockEntry): void {
    if (typeof e !== 'object' || e === null) throw BAIL;
    const node = e.node;
    if (typeof node !== 'string' || node.length >= 32) {
      this.byte(0x83);
      this.raw(K.node);
      this.ascii(node);
      this.raw(K.counter);
      this.number(e.counter);
      this.raw(K.timestamp);
      this.number(e.timestamp);
      return;
    }
    const n = node.length;
    this.room(SHORT_ENTRY_BYTES);
    const block = this.block;
    let at = this.at;
    at = this.rawAt(at, ENTRY_HEAD);
    block[at++] = 0xa0 | n;
    for (let i = 0; i < n; i++) {
      const c = node.charCodeAt(i);
      if (c >= 0x80) throw BAIL;
      block[at++] = c;
    }
    at = this.rawAt(at, K.counter);
    at = this.numberAt(at, e.counter);
    at = this.rawAt(at, K.timestamp);
    this.at = this.numberAt(at, e.timestamp);
  }

  // Written afresh every time, with no cache of the bytes of clocks written before: a clock is written only a few
  // times while it lives, and a cached copy (an ArrayBuffer of its own, held by a WeakMap the collector must trace)
  // cost more than writing the clock again, a few short byte copies per entry.
  clock(clock: VClock): void {
    const n = this.arrayHeader(clock);
    for (let i = 0; i < n; i++) this.entry(clock[i]!);
  }

  versions(versions: readonly Version[]): void {
    const n = this.arrayHeader(versions);
    for (let i = 0; i < n; i++) {
      const v = versions[i]!;
      if (typeof v !== 'object' || v === null) throw BAIL;
      const proof = v.proof;
      this.raw(proof === undefined ? VERSION_HEAD : SIGNED_VERSION_HEAD);
      this.entry(v.dot);
      this.raw(K.context);
      this.clock(v.context);
      this.raw(K.value);
      this.nullableBytes(v.value);
      if (proof !== undefined) {
        this.raw(K.proof);
        this.bytes(proof);
      }
    }
  }

  ids(ids: readonly string[]): void {
    const n = this.arrayHeader(ids);
    for (let i = 0; i < n; i++) this.ascii(ids[i]);
  }

  numbers(numbers: readonly number[]): void {
    const n = this.arrayHeader(numbers);
    for (let i = 0; i < n; i++) this.number(numbers[i]);
  }

  entries(entries: readonly SyncEntry[]): void {
    const n = this.arrayHeader(entries);
    for (let i = 0; i < n; i++) {
      const e = entries[i]!;
      if (typeof e !== 'object' || e === null) throw BAIL;
      this.byte(0x82);
      this.raw(K.key);
      this.bytes(e.key);
      this.raw(K.versions);
      this.versions(e.versions);
    }
  }

  envelope(m: PeerMessage, type: number): void {
    this.raw(ENVELOPE_HEADS[type]!);
    this.ascii(m.from);
    this.raw(K.requestId);
    this.number(m.requestId);
  }

  // A method per type, each compiled on its own: a switch holding every type's fields was the largest function on a
  // frame's path, optimized last, and optimized again whenever a type first showed up.
  message(m: PeerMessage): void {
    switch (m.type) {
      case 'replicate':
        return this.replicate(m);
      case 'replicate-ack':
        return this.replicateAck(m);
      case 'read':
        return this.read(m);
      case 'read-reply':
        return this.readReply(m);
      case 'coordinate':
        return this.coordinate(m);
      case 'coordinate-reply':
        return this.coordinateReply(m);
      case 'error':
        return this.error(m);
      case 'sync-tree':
        return this.syncTree(m);
      case 'sync-tree-reply':
        return this.syncTreeReply(m);
      case 'sync-keys':
        return this.syncKeys(m);
      case 'sync-keys-reply':
        return this.syncKeysReply(m);
      case 'sync-push':
        return this.partitionEntries(m, 11);
      case 'sync-drop':
        return this.partitionEntries(m, 12);
      default:
        throw BAIL;
    }
  }

  replicate(m: ReplicateMessage): void {
    this.envelope(m, 0);
    this.raw(K.key);
    this.bytes(m.key);
    this.raw(K.versions);
    this.versions(m.versions);
    this.raw(K.hintFor);
    if (m.hintFor === null) this.byte(0xc0);
    else this.ascii(m.hintFor);
    this.raw(K.durable);
    this.boolean(m.durable);
    this.raw(K.fresh);
    this.nullableNumber(m.fresh);
  }

  replicateAck(m: ReplicateAckMessage): void {
    this.envelope(m, 1);
  }

  read(m: ReadMessage): void {
    this.envelope(m, 2);
    this.raw(K.key);
    this.bytes(m.key);
    this.raw(K.requireHeld);
    this.boolean(m.requireHeld);
  }

  readReply(m: ReadReplyMessage): void {
    this.envelope(m, 3);
    this.raw(K.versions);
    this.versions(m.versions);
  }

  coordinate(m: CoordinateMessage): void {
    this.envelope(m, 4);
    this.raw(K.key);
    this.bytes(m.key);
    this.raw(K.value);
    this.nullableBytes(m.value);
    this.raw(K.context);
    this.clock(m.context);
    this.raw(K.w);
    this.number(m.w);
    this.raw(K.ifMatch);
    this.boolean(m.ifMatch);
    this.raw(K.durable);
    this.boolean(m.durable);
  }

  coordinateReply(m: CoordinateReplyMessage): void {
    this.envelope(m, 5);
    this.raw(K.context);
    this.clock(m.context);
    const r = m.receipt;
    if (typeof r !== 'object' || r === null) throw BAIL;
    this.raw(K.receipt);
    this.byte(0x84);
    this.raw(K.coordinator);
    this.ascii(r.coordinator);
    this.raw(K.acknowledged);
    this.ids(r.acknowledged);
    this.raw(K.fallbacks);
    this.ids(r.fallbacks);
    this.raw(K.hints);
    const n = this.arrayHeader(r.hints);
    for (let i = 0; i < n; i++) {
      const h = r.hints[i]!;
      if (typeof h !== 'object' || h === null) throw BAIL;
      this.byte(0x82);
      this.raw(K.holder);
      this.ascii(h.holder);
      this.raw(K.target);
      this.ascii(h.target);
    }
  }

  error(m: ErrorMessage): void {
    this.envelope(m, 6);
    this.raw(K.code);
    this.ascii(m.code);
    this.raw(K.message);
    this.ascii(m.message);
    this.raw(K.required);
    this.nullableNumber(m.required);
    this.raw(K.acknowledged);
    this.nullableNumber(m.acknowledged);
  }

  syncTree(m: SyncTreeMessage): void {
    this.envelope(m, 7);
    this.raw(K.partition);
    this.number(m.partition);
    this.raw(K.level);
    this.number(m.level);
    this.raw(K.indexes);
    this.numbers(m.indexes);
  }

  syncTreeReply(m: SyncTreeReplyMessage): void {
    this.envelope(m, 8);
    this.raw(K.held);
    this.boolean(m.held);
    this.raw(K.hashes);
    this.bytes(m.hashes);
  }

  syncKeys(m: SyncKeysMessage): void {
    this.envelope(m, 9);
    this.raw(K.partition);
    this.number(m.partition);
    this.raw(K.leaves);
    this.numbers(m.leaves);
    this.raw(K.after);
    this.nullableBytes(m.after);
    this.raw(K.maxBytes);
    this.number(m.maxBytes);
  }

  syncKeysReply(m: SyncKeysReplyMessage): void {
    this.envelope(m, 10);
    this.raw(K.entries);
    this.entries(m.entries);
    this.raw(K.next);
    this.nullableBytes(m.next);
  }

  /** A sync-push or sync-drop, `type` telling which: the two share their fields. */
  partitionEntries(m: SyncPushMessage | SyncDropMessage, type: number): void {
    this.envelope(m, type);
    this.raw(K.partition);
    this.number(m.partition);
    this.raw(K.entries);
    this.entries(m.entries);
  }
}

const fastWriter = new FastWriter();

// ---- reading

const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer);

// Node ids met lately, by a hash of their bytes: peers repeat a few dozen ids in every frame, and a hit costs a
// comparison of bytes instead of a new string. Direct-mapped, so a collision only costs a miss.
const ID_CACHE_SIZE = 1024;

class FastReader {
  src: Uint8Array = EMPTY;
  /** `src` as a DataView, to check runs a word at a time. */
  view: DataView = EMPTY_VIEW;
  pos = 0;
  readonly scratch = new DataView(new ArrayBuffer(8));
  readonly idBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(ID_CACHE_SIZE).fill(undefined);
  readonly ids: string[] = new Array<string>(ID_CACHE_SIZE).fill('');

  /** The message in `frame` when it has the fast layout and every field is valid, else null. */
  message(frame: Uint8Array, limits: ProtocolLimits): PeerMessage | null {
    try {
      this.start(frame);
      const message = this.readMessage(limits);
      return this.pos === this.src.length ? message : null;
    } catch {
      return null;
    } finally {
      this.src = EMPTY;
      this.view = EMPTY_VIEW;
    }
  }

  /** The clock in `bytes` when they hold exactly what {@link FastWriter.checkedClock} writes for a valid clock, else null. */
  clock(bytes: Uint8Array): VClock | null {
    try {
      this.start(bytes);
      const clock = this.readClock();
      return this.pos === this.src.length ? clock : null;
    } catch {
      return null;
    } finally {
      this.src = EMPTY;
      this.view = EMPTY_VIEW;
    }
  }

  start(bytes: Uint8Array): void {
    // A Node Buffer's slice is a view, so byte fields are sliced from a plain Uint8Array over the same memory.
    this.src =
      bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  byte(): number {
    if (this.pos >= this.src.length) throw BAIL;
    return this.src[this.pos++]!;
  }

  need(bytes: number): void {
    if (this.pos + bytes > this.src.length) throw BAIL;
  }

  u16(): number {
    this.need(2);
    const src = this.src;
    const v = (src[this.pos]! << 8) | src[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const src = this.src;
    const p = this.pos;
    const v = src[p]! * 0x1000000 + ((src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!);
    this.pos += 4;
    return v;
  }

  /** Checks that the next bytes are `expected` (a key or a head): the layout leaves no choice. */
  expect(expected: Run): void {
    this.need(expected.length);
    const src = this.src;
    const words = expected.words;
    let p = this.pos;
    for (let i = 0; i < words.length; i++, p += 4) {
      if (((src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!) !== words[i]) throw BAIL;
    }
    const tail = expected.tail;
    for (let i = 0; i < tail.length; i++) if (src[p++] !== tail[i]) throw BAIL;
    this.pos = p;
  }

  /** Consumes a nil and answers true, or answers false and consumes nothing. */
  nil(): boolean {
    if (this.pos < this.src.length && this.src[this.pos] === 0xc0) {
      this.pos++;
      return true;
    }
    return false;
  }

  /** Any MessagePack number, decoded as @msgpack/msgpack decodes it. */
  number(): number {
    const b = this.byte();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xcc:
        return this.byte();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        const high = this.u32();
        return high * 0x100000000 + this.u32();
      }
      case 0xd0:
        return (this.byte() << 24) >> 24;
      case 0xd1:
        return (this.u16() << 16) >> 16;
      case 0xd2:
        return this.u32() | 0;
      case 0xd3: {
        const high = this.u32() | 0;
        return high * 0x100000000 + this.u32();
      }
      case 0xca:
      case 0xcb: {
        const n = b === 0xca ? 4 : 8;
        this.need(n);
        for (let i = 0; i < n; i++) this.scratch.setUint8(i, this.src[this.pos + i]!);
        this.pos += n;
        return n === 4 ? this.scratch.getFloat32(0) : this.scratch.getFloat64(0);
      }
      default:
        throw BAIL;
    }
  }

  boolean(): boolean {
    const b = this.byte();
    if (b === 0xc3) return true;
    if (b === 0xc2) return false;
    throw BAIL;
  }

  /** A node id: 1 to 64 of [A-Za-z0-9_-], as fixstr or str8. */
  id(): string {
    const b = this.byte();
    let n: number;
    if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xd9) n = this.byte();
    else throw BAIL;
    if (n === 0 || n > 64) throw BAIL;
    this.need(n);
    const src = this.src;
    const start = this.pos;
    let hash = 0x811c9dc5;
    for (let i = 0; i < n; i++) {
      const c = src[start + i]!;
      if (ID_BYTE[c] === 0) throw BAIL;
      hash = Math.imul(hash ^ c, 0x01000193);
    }
    this.pos = start + n;
    const slot = (hash >>> 0) & (ID_CACHE_SIZE - 1);
    const cached = this.idBytes[slot];
    if (cached !== undefined && cached.length === n) {
      let same = true;
      for (let i = 0; i < n; i++) {
        if (cached[i] !== src[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return this.ids[slot]!;
    }
    const bytes = src.slice(start, start + n);
    const id = String.fromCharCode.apply(null, bytes as unknown as number[]);
    this.idBytes[slot] = bytes;
    this.ids[slot] = id;
    return id;
  }

  /** A string of ASCII bytes, at most `max` long. */
  ascii(max: number): string {
    const b = this.byte();
    let n: number;
    if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xd9) n = this.byte();
    else if (b === 0xda) n = this.u16();
    else throw BAIL;
    if (n > max) throw BAIL;
    this.need(n);
    const src = this.src;
    const p = this.pos;
    for (let i = 0; i < n; i++) if (src[p + i]! >= 0x80) throw BAIL;
    this.pos = p + n;
    return String.fromCharCode.apply(null, src.subarray(p, p + n) as unknown as number[]);
  }

  /** Fresh bytes, `min` to `max` of them, or null for a nil when `nullable`. */
  bytes(min: number, max: number, nullable: boolean): Uint8Array | null {
    const b = this.byte();
    let n: number;
    if (b === 0xc4) n = this.byte();
    else if (b === 0xc5) n = this.u16();
    else if (b === 0xc6) n = this.u32();
    else if (b === 0xc0 && nullable) return null;
    else throw BAIL;
    if (n < min || n > max) throw BAIL;
    this.need(n);
    const bytes = this.src.slice(this.pos, this.pos + n);
    this.pos += n;
    return bytes;
  }

  key(limits: ProtocolLimits): Uint8Array {
    return this.bytes(1, limits.maxKeyBytes, false)!;
  }

  arrayHeader(max: number): number {
    const b = this.byte();
    let n: number;
    if ((b & 0xf0) === 0x90) n = b & 0x0f;
    else if (b === 0xdc) n = this.u16();
    else if (b === 0xdd) n = this.u32();
    else throw BAIL;
    if (n > max) throw BAIL;
    return n;
  }

  count(): number | null {
    if (this.nil()) return null;
    const n = this.number();
    if (!Number.isSafeInteger(n) || n < 0) throw BAIL;
    return n;
  }

  entry(): ClockEntry {
    this.expect(ENTRY_HEAD);
    const node = this.id();
    this.expect(K.counter);
    const counter = this.number();
    if (!isCounter(counter)) throw BAIL;
    this.expect(K.timestamp);
    const timestamp = this.number();
    if (!Number.isFinite(timestamp) || timestamp < 0) throw BAIL;
    return { node, counter, timestamp };
  }

  readClock(): VClock {
    const n = this.arrayHeader(MAX_CLOCK_ENTRIES);
    const clock: ClockEntry[] = [];
    for (let i = 0; i < n; i++) {
      const entry = this.entry();
      if (i > 0 && clock[i - 1]!.node >= entry.node) throw BAIL;
      clock.push(entry);
    }
    return clock;
  }

  versions(limits: ProtocolLimits): Version[] {
    const n = this.arrayHeader(limits.maxSiblings);
    const versions: Version[] = [];
    for (let i = 0; i < n; i++) {
      const signed = this.pos < this.src.length && this.src[this.pos] === 0x84;
      this.expect(signed ? SIGNED_VERSION_HEAD : VERSION_HEAD);
      const dot = this.entry();
      this.expect(K.context);
      const context = this.readClock();
      this.expect(K.value);
      const value = this.bytes(0, limits.maxValueBytes, true);
      for (let j = 0; j < i; j++) {
        const earlier = versions[j]!.dot;
        if (earlier.node === dot.node && earlier.counter === dot.counter) throw BAIL;
      }
      if (signed) {
        if (!signsVersions(dot.node)) throw BAIL;
        this.expect(K.proof);
        const proof = this.bytes(PROOF_BYTES, PROOF_BYTES, false)!;
        versions.push({ dot, context, value, proof });
      } else {
        versions.push({ dot, context, value });
      }
    }
    return versions;
  }

  partition(): number {
    const p = this.number();
    if (!Number.isInteger(p) || p < 0 || p >= MAX_PARTITIONS) throw BAIL;
    return p;
  }

  /** Ascending distinct integers, each below `bound`. */
  indexes(bound: number): number[] {
    const n = this.arrayHeader(bound);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const index = this.number();
      if (!Number.isInteger(index) || index < 0 || index >= bound) throw BAIL;
      if (i > 0 && index <= out[i - 1]!) throw BAIL;
      out.push(index);
    }
    return out;
  }

  /** Sync entries; every version a tombstone when `tombstones`. */
  entries(limits: ProtocolLimits, tombstones: boolean): SyncEntry[] {
    const n = this.arrayHeader(MAX_SYNC_ENTRIES);
    const entries: SyncEntry[] = [];
    for (let i = 0; i < n; i++) {
      if (this.byte() !== 0x82) throw BAIL;
      this.expect(K.key);
      const key = this.key(limits);
      this.expect(K.versions);
      const versions = this.versions(limits);
      if (tombstones) for (const v of versions) if (v.value !== null) throw BAIL;
      entries.push({ key, versions });
    }
    return entries;
  }

  idList(): string[] {
    const n = this.arrayHeader(MAX_RECEIPT_NODES);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(this.id());
    return ids;
  }

  /**
   * The index into TYPES of the frame's head, which the frame starts with, followed by the key `from`. No head is a
   * prefix of another (each names its type as a string of its own length), so at most one matches.
   */
  head(): number {
    const first = this.src[0];
    for (let t = 0; t < ENVELOPE_HEADS.length; t++) {
      // Most heads are told apart by their first byte (the map's field count), the rest by their type names.
      const head = ENVELOPE_HEADS[t]!;
      if (head.bytes[0] === first && this.startsWith(head)) {
        this.pos = head.length;
        return t;
      }
    }
    throw BAIL;
  }

  /** True when the frame starts with `run`, compared a word at a time. */
  startsWith(run: Run): boolean {
    const src = this.src;
    if (run.length > src.length) return false;
    const words = run.words;
    let p = 0;
    for (let i = 0; i < words.length; i++, p += 4) {
      if (((src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!) !== words[i]) return false;
    }
    const tail = run.tail;
    for (let i = 0; i < tail.length; i++) if (src[p++] !== tail[i]) return false;
    return true;
  }

  /** The message of the frame; its fields after the envelope are read by a method per type (see the writer's). */
  readMessage(limits: ProtocolLimits): PeerMessage {
    const type = this.head();
    const from = this.id();
    this.expect(K.requestId);
    const requestId = this.number();
    if (!Number.isSafeInteger(requestId) || requestId < 0) throw BAIL;
    switch (TYPES[type]) {
      case 'replicate':
        return this.replicateBody(from, requestId, limits);
      case 'replicate-ack':
        return this.replicateAckBody(from, requestId);
      case 'read':
        return this.readBody(from, requestId, limits);
      case 'read-reply':
        return this.readReplyBody(from, requestId, limits);
      case 'coordinate':
        return this.coordinateBody(from, requestId, limits);
      case 'coordinate-reply':
        return this.coordinateReplyBody(from, requestId);
      case 'error':
        return this.errorBody(from, requestId);
      case 'sync-tree':
        return this.syncTreeBody(from, requestId);
      case 'sync-tree-reply':
        return this.syncTreeReplyBody(from, requestId);
      case 'sync-keys':
        return this.syncKeysBody(from, requestId, limits);
      case 'sync-keys-reply':
        return this.syncKeysReplyBody(from, requestId, limits);
      case 'sync-push':
        return this.syncPushBody(from, requestId, limits);
      case 'sync-drop':
        return this.syncDropBody(from, requestId, limits);
      default:
        throw BAIL;
    }
  }

  replicateBody(from: string, requestId: number, limits: ProtocolLimits): ReplicateMessage {
    this.expect(K.key);
    const key = this.key(limits);
    this.expect(K.versions);
    const versions = this.versions(limits);
    this.expect(K.hintFor);
    const hintFor = this.nil() ? null : this.id();
    this.expect(K.durable);
    const durable = this.boolean();
    this.expect(K.fresh);
    const fresh = this.nil() ? null : this.number();
    if (fresh !== null && (!isCounter(fresh) || !isFreshIn(fresh, from, versions))) throw BAIL;
    const message: ReplicateMessage = {
      type: 'replicate',
      from,
      requestId,
      key,
      versions,
      hintFor,
      durable,
      fresh,
    };
    return message;
  }

  replicateAckBody(from: string, requestId: number): ReplicateAckMessage {
    const message: ReplicateAckMessage = { type: 'replicate-ack', from, requestId };
    return message;
  }

  readBody(from: string, requestId: number, limits: ProtocolLimits): ReadMessage {
    this.expect(K.key);
    const key = this.key(limits);
    this.expect(K.requireHeld);
    const message: ReadMessage = { type: 'read', from, requestId, key, requireHeld: this.boolean() };
    return message;
  }

  readReplyBody(from: string, requestId: number, limits: ProtocolLimits): ReadReplyMessage {
    this.expect(K.versions);
    const message: ReadReplyMessage = { type: 'read-reply', from, requestId, versions: this.versions(limits) };
    return message;
  }

  coordinateBody(from: string, requestId: number, limits: ProtocolLimits): CoordinateMessage {
    this.expect(K.key);
    const key = this.key(limits);
    this.expect(K.value);
    const value = this.bytes(0, limits.maxValueBytes, true);
    this.expect(K.context);
    const context = this.readClock();
    this.expect(K.w);
    const w = this.number();
    if (!Number.isInteger(w) || w < 1 || w > MAX_WRITE_QUORUM) throw BAIL;
    this.expect(K.ifMatch);
    const ifMatch = this.boolean();
    this.expect(K.durable);
    const durable = this.boolean();
    const message: CoordinateMessage = {
      type: 'coordinate',
      from,
      requestId,
      key,
      value,
      context,
      w,
      ifMatch,
      durable,
    };
    return message;
  }

  coordinateReplyBody(from: string, requestId: number): CoordinateReplyMessage {
    this.expect(K.context);
    const context = this.readClock();
    this.expect(K.receipt);
    if (this.byte() !== 0x84) throw BAIL;
    this.expect(K.coordinator);
    const coordinator = this.id();
    this.expect(K.acknowledged);
    const acknowledged = this.idList();
    this.expect(K.fallbacks);
    const fallbacks = this.idList();
    this.expect(K.hints);
    const n = this.arrayHeader(MAX_RECEIPT_NODES);
    const hints: { holder: string; target: string }[] = [];
    for (let i = 0; i < n; i++) {
      if (this.byte() !== 0x82) throw BAIL;
      this.expect(K.holder);
      const holder = this.id();
      this.expect(K.target);
      hints.push({ holder, target: this.id() });
    }
    const message: CoordinateReplyMessage = {
      type: 'coordinate-reply',
      from,
      requestId,
      context,
      receipt: { coordinator, acknowledged, fallbacks, hints },
    };
    return message;
  }

  errorBody(from: string, requestId: number): ErrorMessage {
    this.expect(K.code);
    const code = this.ascii(64);
    if (!KNOWN_CODES.has(code)) throw BAIL;
    this.expect(K.message);
    const text = this.ascii(MAX_ERROR_MESSAGE_LENGTH);
    this.expect(K.required);
    const required = this.count();
    this.expect(K.acknowledged);
    const acknowledged = this.count();
    const message: ErrorMessage = {
      type: 'error',
      from,
      requestId,
      code: code as ErrorCode,
      message: text,
      required,
      acknowledged,
    };
    return message;
  }

  syncTreeBody(from: string, requestId: number): SyncTreeMessage {
    this.expect(K.partition);
    const partition = this.partition();
    this.expect(K.level);
    const level = this.number();
    if (!Number.isInteger(level) || level < 0 || level > TREE_DEPTH) throw BAIL;
    this.expect(K.indexes);
    const indexes = this.indexes(TREE_FANOUT ** level);
    const message: SyncTreeMessage = { type: 'sync-tree', from, requestId, partition, level, indexes };
    return message;
  }

  syncTreeReplyBody(from: string, requestId: number): SyncTreeReplyMessage {
    this.expect(K.held);
    const held = this.boolean();
    this.expect(K.hashes);
    const hashes = this.bytes(0, MAX_HASHES_BYTES, false)!;
    if (hashes.length % TREE_HASH_BYTES !== 0) throw BAIL;
    const message: SyncTreeReplyMessage = { type: 'sync-tree-reply', from, requestId, held, hashes };
    return message;
  }

  syncKeysBody(from: string, requestId: number, limits: ProtocolLimits): SyncKeysMessage {
    this.expect(K.partition);
    const partition = this.partition();
    this.expect(K.leaves);
    const leaves = this.indexes(TREE_LEAVES);
    this.expect(K.after);
    const after = this.bytes(1, limits.maxKeyBytes, true);
    this.expect(K.maxBytes);
    const maxBytes = this.number();
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1 || maxBytes > limits.maxFrameBytes) throw BAIL;
    const message: SyncKeysMessage = { type: 'sync-keys', from, requestId, partition, leaves, after, maxBytes };
    return message;
  }

  syncKeysReplyBody(from: string, requestId: number, limits: ProtocolLimits): SyncKeysReplyMessage {
    this.expect(K.entries);
    const entries = this.entries(limits, false);
    this.expect(K.next);
    const next = this.bytes(1, limits.maxKeyBytes, true);
    const message: SyncKeysReplyMessage = { type: 'sync-keys-reply', from, requestId, entries, next };
    return message;
  }

  syncPushBody(from: string, requestId: number, limits: ProtocolLimits): SyncPushMessage {
    this.expect(K.partition);
    const partition = this.partition();
    this.expect(K.entries);
    const message: SyncPushMessage = {
      type: 'sync-push',
      from,
      requestId,
      partition,
      entries: this.entries(limits, false),
    };
    return message;
  }

  syncDropBody(from: string, requestId: number, limits: ProtocolLimits): SyncDropMessage {
    this.expect(K.partition);
    const partition = this.partition();
    this.expect(K.entries);
    const message: SyncDropMessage = {
      type: 'sync-drop',
      from,
      requestId,
      partition,
      entries: this.entries(limits, true),
    };
    return message;
  }
}

const fastReader = new FastReader();

/**
 * The MessagePack bytes of `clock` as an array of `{node, counter, timestamp}` maps, byte for byte what
 * `@msgpack/msgpack` writes for such an array, when `clock` is a clock that {@link readClock} accepts; else null,
 * and the caller takes the checked path, which names the problem. The bytes are a view that stays valid.
 */
export function packClock(clock: VClock): Uint8Array | null {
  return fastWriter.checkedClock(clock);
}

/**
 * The clock that `bytes` hold when they are exactly what {@link packClock} writes for a valid clock, else null (the
 * caller then takes the checked path). The clock is fresh.
 */
export function unpackClock(bytes: Uint8Array): VClock | null {
  return fastReader.clock(bytes);
}
