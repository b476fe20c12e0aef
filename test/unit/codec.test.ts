import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decode as msgpackDecode, encode as msgpackEncode, ExtData } from '@msgpack/msgpack';
import { decodeMessage, encodeMessage, MAX_FRAME_DEPTH, MAX_RECEIPT_NODES } from '../../worker/wire/codec.ts';
import { ERROR_CODES, MalformedFrameError } from '../../worker/errors.ts';
import {
  DEFAULT_LIMITS,
  MAX_KEYS_ASKS,
  MAX_KEYS_PER_PARTITION,
  MAX_SYNC_ENTRIES,
  MAX_WATCH_LEASE_MS,
  MAX_WATCH_TARGETS,
  MIN_WATCH_LEASE_MS,
  type PeerMessage,
  type ProtocolLimits,
  type SyncEntry,
  TREE_DEPTH,
  TREE_FANOUT,
  TREE_HASH_BYTES,
  TREE_LEAVES,
} from '../../worker/wire/protocol.ts';
import { MAX_PARTITIONS } from '../../worker/ring/ring.ts';
import { type ClockEntry, MAX_CLOCK_ENTRIES, MAX_COUNTER, type VClock } from '../../worker/versions/vclock.ts';
import type { Version } from '../../worker/versions/version.ts';

// ---------------------------------------------------------------------------------------------------------------
// Generators of valid messages.

const ID_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'.split('');
const nodeIdArb = fc.oneof(
  fc.constantFrom('a', 'b', 'c', 'node-1', 'node-2'),
  fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 64 }),
);
const entryArb: fc.Arbitrary<ClockEntry> = fc.record({
  node: nodeIdArb,
  counter: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: MAX_COUNTER })),
  timestamp: fc.oneof(fc.nat(), fc.double({ min: 0, noNaN: true, noDefaultInfinity: true })),
});
const byNode = (a: ClockEntry, b: ClockEntry): number => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
const clockArb: fc.Arbitrary<VClock> = fc
  .uniqueArray(entryArb, { selector: (e) => e.node, maxLength: MAX_CLOCK_ENTRIES })
  .map((entries) => entries.sort(byNode));
const valueArb = fc.option(fc.uint8Array({ maxLength: 48 }), { nil: null });
const unsignedArb: fc.Arbitrary<Version> = fc.record({ dot: entryArb, context: clockArb, value: valueArb });
// A version of a node whose id derives from its key, with a proof (a public key and a signature, 96 bytes).
const signedArb: fc.Arbitrary<Version> = fc.record({
  dot: fc.record({
    node: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 16, maxLength: 16 }).map((s) => `k${s}`),
    counter: fc.integer({ min: 1, max: MAX_COUNTER }),
    timestamp: fc.nat(),
  }),
  context: clockArb,
  value: valueArb,
  proof: fc.uint8Array({ minLength: 96, maxLength: 96 }),
});
const versionArb: fc.Arbitrary<Version> = fc.oneof(unsignedArb, signedArb);
const versionsArb = fc.uniqueArray(versionArb, { selector: (v) => `${v.dot.node}:${v.dot.counter}`, maxLength: 5 });
const keyArb = fc.uint8Array({ minLength: 1, maxLength: 48 });
const requestIdArb = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const envelope = { from: nodeIdArb, requestId: requestIdArb };
const partitionArb = fc.oneof(fc.nat(255), fc.integer({ min: 0, max: MAX_PARTITIONS - 1 }));
/** Ascending distinct integers below `bound`. */
const indexesArb = (bound: number): fc.Arbitrary<number[]> =>
  fc.uniqueArray(fc.nat(bound - 1), { maxLength: bound }).map((xs) => xs.sort((a, b) => a - b));
const syncEntriesArb: fc.Arbitrary<SyncEntry[]> = fc.array(fc.record({ key: keyArb, versions: versionsArb }), {
  maxLength: 4,
});
const tombstoneEntriesArb: fc.Arbitrary<SyncEntry[]> = syncEntriesArb.map((entries) =>
  entries.map((e) => ({ key: e.key, versions: e.versions.map((v) => ({ ...v, value: null })) })),
);

const messageArbs: { [T in PeerMessage['type']]: fc.Arbitrary<Extract<PeerMessage, { type: T }>> } = {
  replicate: fc
    .record({
      type: fc.constant('replicate' as const),
      ...envelope,
      key: keyArb,
      versions: versionsArb,
      hintFor: fc.option(nodeIdArb, { nil: null }),
      durable: fc.boolean(),
    })
    .chain((m) =>
      // Null, or the counter of a dot of the sender's among the versions, as a coordinator ships its new write.
      fc
        .constantFrom(null, ...m.versions.filter((v) => v.dot.node === m.from).map((v) => v.dot.counter))
        .map((fresh) => ({ ...m, fresh })),
    ),
  'replicate-ack': fc.record({ type: fc.constant('replicate-ack' as const), ...envelope }),
  read: fc.record({ type: fc.constant('read' as const), ...envelope, key: keyArb, requireHeld: fc.boolean() }),
  'read-reply': fc.record({ type: fc.constant('read-reply' as const), ...envelope, versions: versionsArb }),
  coordinate: fc.record({
    type: fc.constant('coordinate' as const),
    ...envelope,
    key: keyArb,
    value: valueArb,
    context: clockArb,
    w: fc.integer({ min: 1, max: 16 }),
    ifMatch: fc.boolean(),
    durable: fc.boolean(),
  }),
  'coordinate-reply': fc.record({
    type: fc.constant('coordinate-reply' as const),
    ...envelope,
    context: clockArb,
    receipt: fc.record({
      coordinator: nodeIdArb,
      acknowledged: fc.array(nodeIdArb, { maxLength: 5 }),
      fallbacks: fc.array(nodeIdArb, { maxLength: 3 }),
      hints: fc.array(fc.record({ holder: nodeIdArb, target: nodeIdArb }), { maxLength: 3 }),
    }),
  }),
  error: fc.record({
    type: fc.constant('error' as const),
    ...envelope,
    code: fc.constantFrom(...ERROR_CODES),
    message: fc.string({ unit: 'grapheme', maxLength: 200 }).filter((s) => s.length <= 1024),
    required: fc.option(fc.nat(16), { nil: null }),
    acknowledged: fc.option(fc.nat(16), { nil: null }),
  }),
  'sync-tree': fc.integer({ min: 0, max: TREE_DEPTH }).chain((level) =>
    fc.record({
      type: fc.constant('sync-tree' as const),
      ...envelope,
      partition: partitionArb,
      level: fc.constant(level),
      indexes: indexesArb(TREE_FANOUT ** level),
    }),
  ),
  'sync-tree-reply': fc.record({
    type: fc.constant('sync-tree-reply' as const),
    ...envelope,
    held: fc.boolean(),
    hashes: fc
      .nat(TREE_LEAVES)
      .chain((n) => fc.uint8Array({ minLength: n * TREE_HASH_BYTES, maxLength: n * TREE_HASH_BYTES })),
  }),
  'sync-keys': fc.record({
    type: fc.constant('sync-keys' as const),
    ...envelope,
    partition: partitionArb,
    leaves: indexesArb(TREE_LEAVES),
    after: fc.option(keyArb, { nil: null }),
    maxBytes: fc.oneof(fc.integer({ min: 1, max: 1 << 20 }), fc.constant(DEFAULT_LIMITS.maxFrameBytes)),
  }),
  'sync-keys-reply': fc.record({
    type: fc.constant('sync-keys-reply' as const),
    ...envelope,
    entries: syncEntriesArb,
    next: fc.option(keyArb, { nil: null }),
  }),
  'sync-push': fc.record({
    type: fc.constant('sync-push' as const),
    ...envelope,
    partition: partitionArb,
    entries: syncEntriesArb,
  }),
  'sync-drop': fc.record({
    type: fc.constant('sync-drop' as const),
    ...envelope,
    partition: partitionArb,
    entries: tombstoneEntriesArb,
  }),
  watch: fc.record({
    type: fc.constant('watch' as const),
    ...envelope,
    targets: fc.array(fc.record({ key: keyArb, prefix: fc.boolean() }), { maxLength: 6 }),
    leaseMs: fc.integer({ min: MIN_WATCH_LEASE_MS, max: MAX_WATCH_LEASE_MS }),
  }),
  notice: fc.record({ type: fc.constant('notice' as const), ...envelope, key: keyArb, versions: versionsArb }),
  keys: fc.record({
    type: fc.constant('keys' as const),
    ...envelope,
    asks: fc
      .uniqueArray(fc.record({ partition: partitionArb, after: fc.option(keyArb, { nil: null }) }), {
        selector: (a) => a.partition,
        maxLength: 8,
      })
      .map((asks) => asks.sort((a, b) => a.partition - b.partition)),
    prefix: fc.uint8Array({ maxLength: 16 }),
    limit: fc.integer({ min: 1, max: MAX_KEYS_PER_PARTITION }),
  }),
  'keys-reply': fc.record({
    type: fc.constant('keys-reply' as const),
    ...envelope,
    pages: fc
      .uniqueArray(
        fc.record({
          partition: partitionArb,
          keys: fc
            .uniqueArray(keyArb, { selector: (k) => Buffer.from(k).toString('hex'), maxLength: 6 })
            .map((keys) => keys.sort(Buffer.compare)),
          more: fc.boolean(),
        }),
        { selector: (p) => p.partition, maxLength: 6 },
      )
      .map((pages) => pages.sort((a, b) => a.partition - b.partition)),
    refused: indexesArb(MAX_KEYS_ASKS),
  }),
};
const messageArb: fc.Arbitrary<PeerMessage> = fc.oneof(...Object.values(messageArbs));

// ---------------------------------------------------------------------------------------------------------------
// Fixed samples, one per type.

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
const dotA1: ClockEntry = { node: 'a', counter: 1, timestamp: 1000 };
const sampleVersions: Version[] = [
  { dot: dotA1, context: [], value: bytes(1, 2, 3) },
  {
    dot: { node: 'b', counter: 7, timestamp: 1001.5 },
    context: [
      { node: 'a', counter: 1, timestamp: 999 },
      { node: 'c', counter: 3, timestamp: 12 },
    ],
    value: null,
  },
];
const samples: { [T in PeerMessage['type']]: Extract<PeerMessage, { type: T }> } = {
  replicate: {
    type: 'replicate',
    from: 'node-1',
    requestId: 42,
    key: bytes(107, 101, 121),
    versions: sampleVersions,
    hintFor: 'node-3',
    durable: true,
    fresh: null,
  },
  'replicate-ack': { type: 'replicate-ack', from: 'node-2', requestId: 42 },
  read: { type: 'read', from: 'node-1', requestId: 0, key: bytes(0), requireHeld: false },
  'read-reply': { type: 'read-reply', from: 'node-2', requestId: 7, versions: sampleVersions },
  coordinate: {
    type: 'coordinate',
    from: 'node-4',
    requestId: Number.MAX_SAFE_INTEGER,
    key: bytes(9, 9),
    value: bytes(),
    context: [dotA1],
    w: 2,
    ifMatch: false,
    durable: false,
  },
  'coordinate-reply': {
    type: 'coordinate-reply',
    from: 'node-1',
    requestId: 3,
    context: [
      { node: 'a', counter: 2, timestamp: 5 },
      { node: 'b', counter: 1, timestamp: 6 },
    ],
    receipt: {
      coordinator: 'a',
      acknowledged: ['a', 'c'],
      fallbacks: ['c'],
      hints: [{ holder: 'c', target: 'b' }],
    },
  },
  error: {
    type: 'error',
    from: 'node-2',
    requestId: 9,
    code: 'ERR_QUORUM',
    message: 'only 1 of 2 replicas answered',
    required: 2,
    acknowledged: 1,
  },
  'sync-tree': { type: 'sync-tree', from: 'node-1', requestId: 11, partition: 200, level: 1, indexes: [0, 3, 7] },
  'sync-tree-reply': {
    type: 'sync-tree-reply',
    from: 'node-2',
    requestId: 11,
    held: true,
    hashes: new Uint8Array(3 * TREE_HASH_BYTES).map((_, i) => i * 7),
  },
  'sync-keys': {
    type: 'sync-keys',
    from: 'node-1',
    requestId: 12,
    partition: MAX_PARTITIONS - 1,
    leaves: [1, 2, 63],
    after: bytes(5, 6),
    maxBytes: 65536,
  },
  'sync-keys-reply': {
    type: 'sync-keys-reply',
    from: 'node-2',
    requestId: 12,
    entries: [
      { key: bytes(1), versions: sampleVersions },
      { key: bytes(2, 3), versions: [] },
    ],
    next: null,
  },
  'sync-push': {
    type: 'sync-push',
    from: 'node-3',
    requestId: 13,
    partition: 0,
    entries: [{ key: bytes(7), versions: sampleVersions.slice(0, 1) }],
  },
  'sync-drop': {
    type: 'sync-drop',
    from: 'node-1',
    requestId: 14,
    partition: 17,
    entries: [
      { key: bytes(8), versions: sampleVersions.slice(1) },
      { key: bytes(9, 9), versions: sampleVersions.map((v) => ({ ...v, value: null })) },
    ],
  },
  watch: {
    type: 'watch',
    from: 'node-2',
    requestId: 0,
    targets: [
      { key: bytes(107, 101, 121), prefix: false },
      { key: bytes(117, 47), prefix: true },
    ],
    leaseMs: 30_000,
  },
  notice: { type: 'notice', from: 'node-3', requestId: 0, key: bytes(107, 101, 121), versions: sampleVersions },
  keys: {
    type: 'keys',
    from: 'node-1',
    requestId: 15,
    asks: [
      { partition: 3, after: null },
      { partition: 4095, after: bytes(117, 58, 98) },
    ],
    prefix: bytes(117, 58),
    limit: 100,
  },
  'keys-reply': {
    type: 'keys-reply',
    from: 'node-2',
    requestId: 15,
    pages: [{ partition: 3, keys: [bytes(117, 58, 97), bytes(117, 58, 97, 0), bytes(117, 58, 99)], more: true }],
    refused: [4095],
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

type Tree = Record<string, unknown>;

/** The message as the plain tree MessagePack carries, for editing before re-encoding. */
function treeOf(message: PeerMessage): Tree {
  return msgpackDecode(encodeMessage(message)) as Tree;
}

/** A frame of `message` edited by `edit`, encoded without any checks. */
function edited(message: PeerMessage, edit: (tree: Tree) => void): Uint8Array {
  const tree = treeOf(message);
  edit(tree);
  return msgpackEncode(tree);
}

/** `tree` with the fields of every map in reverse order, arrays and bytes as they are. */
function reversed(tree: unknown): unknown {
  if (Array.isArray(tree)) return tree.map(reversed);
  if (typeof tree !== 'object' || tree === null || tree instanceof Uint8Array) return tree;
  return Object.fromEntries(
    Object.entries(tree)
      .reverse()
      .map(([k, v]) => [k, reversed(v)]),
  );
}

function at(tree: unknown, path: (string | number)[]): Tree {
  let node = tree;
  for (const step of path) node = (node as Tree)[step];
  return node as Tree;
}

function assertMalformed(frame: Uint8Array, pattern: RegExp, limits?: ProtocolLimits): MalformedFrameError {
  try {
    decodeMessage(frame, limits);
  } catch (error) {
    assert.ok(error instanceof MalformedFrameError, `expected a MalformedFrameError, got ${String(error)}`);
    assert.equal(error.code, 'ERR_MALFORMED_FRAME');
    assert.match(error.message, pattern);
    return error;
  }
  assert.fail(`expected the frame to be rejected with ${pattern}`);
}

/** Decodes `frame`; true when it is valid, false when it is a MalformedFrameError; fails on anything else. */
function validOrMalformed(frame: Uint8Array, limits?: ProtocolLimits): boolean {
  let message: PeerMessage;
  try {
    message = decodeMessage(frame, limits);
  } catch (error) {
    if (error instanceof MalformedFrameError && error.code === 'ERR_MALFORMED_FRAME') return false;
    throw new Error(`decodeMessage threw something other than MalformedFrameError: ${String(error)}`, {
      cause: error,
    });
  }
  // Whatever it accepts is a message it accepts again unchanged.
  assert.deepEqual(decodeMessage(encodeMessage(message), limits), message);
  return true;
}

// ---------------------------------------------------------------------------------------------------------------

describe('encodeMessage and decodeMessage', () => {
  for (const [type, message] of Object.entries(samples)) {
    it(`round trips a ${type} message exactly`, () => {
      assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
    });
  }

  it('round trips every generated message of every type exactly', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        // fast-check makes objects without a prototype; the clone gives them the one decoded maps have.
        assert.deepStrictEqual(decodeMessage(encodeMessage(message)), structuredClone(message));
      }),
      { numRuns: 2000 },
    );
  });

  it('round trips a full message at every default limit', () => {
    const fullClock = Array.from({ length: MAX_CLOCK_ENTRIES }, (_, i) => ({
      node: `${String(i).padStart(2, '0')}${'n'.repeat(62)}`,
      counter: MAX_COUNTER,
      timestamp: Number.MAX_VALUE,
    }));
    const message: PeerMessage = {
      type: 'replicate',
      from: 'x'.repeat(64),
      requestId: Number.MAX_SAFE_INTEGER,
      key: new Uint8Array(DEFAULT_LIMITS.maxKeyBytes).fill(1),
      versions: Array.from({ length: DEFAULT_LIMITS.maxSiblings }, (_, i) => ({
        dot:
          i === 0
            ? { node: 'x'.repeat(64), counter: MAX_COUNTER, timestamp: i }
            : { node: 'z', counter: i, timestamp: i },
        context: fullClock,
        value: i === 0 ? new Uint8Array(DEFAULT_LIMITS.maxValueBytes).fill(2) : null,
      })),
      hintFor: null,
      durable: false,
      fresh: MAX_COUNTER,
    };
    assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
  });

  it('round trips a sync-push of the most entries with the largest keys', () => {
    const message: PeerMessage = {
      ...samples['sync-push'],
      entries: Array.from({ length: MAX_SYNC_ENTRIES }, (_, i) => ({
        key: new Uint8Array(DEFAULT_LIMITS.maxKeyBytes).fill(i & 0xff),
        versions: sampleVersions,
      })),
    };
    assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
  });

  it('decodes a sync message holding the most items the limits allow, in any field order', () => {
    const limits: ProtocolLimits = { ...DEFAULT_LIMITS, maxSiblings: 2 };
    const fullClock = Array.from({ length: MAX_CLOCK_ENTRIES }, (_, i) => ({
      node: `n${i}`,
      counter: 1,
      timestamp: 0,
    }));
    const message: PeerMessage = {
      ...samples['sync-keys-reply'],
      entries: Array.from({ length: MAX_SYNC_ENTRIES }, (_, i) => ({
        key: Uint8Array.of(i >> 8, i & 0xff),
        versions: [1, 2].map((counter) => ({
          dot: { node: 'z', counter, timestamp: 0 },
          context: fullClock,
          value: null,
        })),
      })),
      next: bytes(9),
    };
    const frame = encodeMessage(message);
    assert.deepStrictEqual(decodeMessage(frame, limits), message);
    assert.deepStrictEqual(decodeMessage(msgpackEncode(reversed(msgpackDecode(frame))), limits), message);
  });

  it('round trips a sync-tree of every index of each level and a reply of a hash per leaf', () => {
    for (let level = 0; level <= TREE_DEPTH; level++) {
      const indexes = Array.from({ length: TREE_FANOUT ** level }, (_, i) => i);
      const message: PeerMessage = { ...samples['sync-tree'], level, indexes };
      assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
    }
    const reply: PeerMessage = { ...samples['sync-tree-reply'], hashes: new Uint8Array(TREE_LEAVES * TREE_HASH_BYTES) };
    assert.deepStrictEqual(decodeMessage(encodeMessage(reply)), reply);
  });

  it('round trips an error message of 1024 characters of any script', () => {
    for (const text of ['x'.repeat(1024), '€'.repeat(1024), '😀'.repeat(512)]) {
      const message: PeerMessage = { ...samples.error, message: text };
      assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
    }
  });

  it('round trips a receipt with the most node ids it may carry', () => {
    const ids = Array.from({ length: MAX_RECEIPT_NODES }, (_, i) => `n${i}`);
    const message: PeerMessage = {
      ...samples['coordinate-reply'],
      receipt: {
        coordinator: 'n0',
        acknowledged: ids,
        fallbacks: ids,
        hints: ids.map((id) => ({ holder: id, target: id })),
      },
    };
    assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
  });

  it('leaves out properties that the message type does not declare', () => {
    const message = { ...samples.read, extra: 'x', versions: [] };
    const frame = encodeMessage(message);
    assert.deepEqual(Object.keys(msgpackDecode(frame) as Tree).sort(), [
      'from',
      'key',
      'requestId',
      'requireHeld',
      'type',
    ]);
    assert.deepStrictEqual(decodeMessage(frame), samples.read);
  });

  it('returns byte fields that share no memory with the frame', () => {
    const frame = encodeMessage(samples.replicate);
    const decoded = decodeMessage(frame);
    assert.equal(decoded.type, 'replicate');
    if (decoded.type !== 'replicate') return;
    const before = structuredClone({ key: decoded.key, value: decoded.versions[0]!.value });
    frame.fill(0);
    assert.notEqual(decoded.key.buffer, frame.buffer);
    assert.deepStrictEqual({ key: decoded.key, value: decoded.versions[0]!.value }, before);
  });

  it('returns byte fields that are plain Uint8Array copies when the frame is a Node Buffer', () => {
    const frame = Buffer.from(encodeMessage(samples.replicate));
    const decoded = decodeMessage(frame);
    assert.deepStrictEqual(decoded, samples.replicate);
    if (decoded.type !== 'replicate') return;
    assert.equal(Object.getPrototypeOf(decoded.key), Uint8Array.prototype);
    frame.fill(0);
    assert.deepStrictEqual(decoded.key, samples.replicate.key);
  });

  it('accepts a frame that is a view into a larger buffer', () => {
    const frame = encodeMessage(samples.coordinate);
    const big = new Uint8Array(frame.length + 20);
    big.set(frame, 10);
    assert.deepStrictEqual(decodeMessage(big.subarray(10, 10 + frame.length)), samples.coordinate);
  });

  it('writes exactly the bytes @msgpack/msgpack writes for the message', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        const frame = encodeMessage(message);
        assert.deepStrictEqual([...frame], [...msgpackEncode(msgpackDecode(frame))]);
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes a frame whose fields come in another order to the same message', () => {
    fc.assert(
      fc.property(messageArb, (message) => {
        assert.deepStrictEqual(decodeMessage(msgpackEncode(reversed(treeOf(message)))), structuredClone(message));
      }),
      { numRuns: 2000 },
    );
  });

  it('leaves a frame unchanged while later frames are encoded', () => {
    const frame = encodeMessage(samples.replicate);
    const copy = frame.slice();
    for (let i = 0; i < 2000; i++) encodeMessage({ ...samples['read-reply'], requestId: i });
    encodeMessage({ ...samples.coordinate, value: new Uint8Array(200_000).fill(9) });
    assert.deepStrictEqual([...frame], [...copy]);
    assert.deepStrictEqual(decodeMessage(frame), samples.replicate);
  });
});

describe('decodeMessage rejects', () => {
  it('a frame over maxFrameBytes before decoding it', () => {
    const frame = encodeMessage(samples.replicate);
    assertMalformed(frame, /^frame: \d+ bytes is over the limit of 10 bytes$/, {
      ...DEFAULT_LIMITS,
      maxFrameBytes: 10,
    });
  });

  it('something that is not a Uint8Array', () => {
    assertMalformed('hello' as unknown as Uint8Array, /^frame: expected a Uint8Array/);
  });

  it('an empty frame', () => {
    assertMalformed(new Uint8Array(0), /^frame: truncated at byte 0/);
  });

  it('a truncated frame', () => {
    const frame = encodeMessage(samples.replicate);
    for (let cut = 0; cut < frame.length; cut++) assertMalformed(frame.subarray(0, cut), /^frame: truncated/);
  });

  it('bytes after the message', () => {
    const frame = encodeMessage(samples.read);
    assertMalformed(new Uint8Array([...frame, 0xc0]), /^frame: 1 bytes after the message/);
  });

  it('the unused MessagePack byte 0xc1', () => {
    assertMalformed(bytes(0x81, 0xa1, 0x61, 0xc1), /^frame: invalid byte 0xc1 at 3/);
  });

  it('a MessagePack extension, the timestamp type included', () => {
    assertMalformed(msgpackEncode({ type: new Date(0) }), /^frame: extension type at byte \d+ is not allowed/);
    assertMalformed(msgpackEncode([new ExtData(5, bytes(1, 2, 3, 4, 5))]), /^frame: extension type at byte 1/);
  });

  it('a bin whose declared length is over the value limit, without reading it', () => {
    assertMalformed(bytes(0xc6, 0xff, 0xff, 0xff, 0xff), /^frame: bin of 4294967295 bytes is over the limit/);
  });

  it('a string whose declared length is over the string limit, without reading it', () => {
    assertMalformed(bytes(0xdb, 0x7f, 0xff, 0xff, 0xff), /^frame: string of 2147483647 bytes is over the limit/);
  });

  it('an array whose declared length is over the array limit', () => {
    assertMalformed(bytes(0xdd, 0xff, 0xff, 0xff, 0xff), /^frame: array of 4294967295 entries is over the limit/);
  });

  it('a map whose declared size is over the map limit', () => {
    assertMalformed(bytes(0xdf, 0x00, 0x01, 0x00, 0x00), /^frame: map of 65536 entries is over the limit/);
  });

  it('containers nested deeper than any message, however long the frame', () => {
    const bomb = new Uint8Array(1 << 20).fill(0x91);
    bomb[bomb.length - 1] = 0;
    const started = performance.now();
    assertMalformed(bomb, new RegExp(`^frame: nested deeper than ${MAX_FRAME_DEPTH} levels`));
    assert.ok(performance.now() - started < 100, 'refused without decoding the whole frame');
  });

  it('a frame of more items than any message of the limits holds', () => {
    const frame = new Uint8Array(1 + 2 + 20000);
    frame.set([0xdc, 0x4e, 0x20]); // array16 of 20000 items, each the fixint 0
    assertMalformed(frame, /^frame: (array of 20000 entries is over the limit|more than \d+ MessagePack items)/);
    // The most a message of these limits holds: MAX_SYNC_ENTRIES entries of one full version each, about 91000.
    const limits = { ...DEFAULT_LIMITS, maxSiblings: 1 };
    const many = msgpackEncode(Array.from({ length: 1000 }, () => Array.from({ length: 100 }, () => 0)));
    assertMalformed(many, /^frame: more than \d+ MessagePack items/, limits);
  });

  it('a map key that is not a string, with the MessagePack error as cause', () => {
    const error = assertMalformed(bytes(0x81, 0xc4, 0x01, 0x61, 0x01), /^frame: not valid MessagePack/);
    assert.ok(error.cause instanceof Error);
  });

  it('the map key __proto__', () => {
    assertMalformed(bytes(0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0x01), /^frame: not valid MessagePack/);
  });

  it('a version with a proof under the dot of a node whose id does not derive from a key, on either path', () => {
    const version = samples.replicate.versions[0]!;
    assert.ok(!/^k.{16}$/.test(version.dot.node));
    const tree = msgpackDecode(encodeMessage(samples.replicate)) as { versions: Record<string, unknown>[] };
    tree.versions[0]!['proof'] = new Uint8Array(96);
    assertMalformed(msgpackEncode(tree), /replicate\.versions\[0\]\.proof: .* not an id derived from a key/);
    assertMalformed(msgpackEncode(reversed(tree)), /replicate\.versions\[0\]\.proof: .* not an id derived from a key/);
  });

  it('a version whose proof is not 96 bytes, on either path of the decoder', () => {
    const base = samples.replicate.versions[0]!;
    const signed = { ...base, dot: { ...base.dot, node: 'kAAAAAAAAAAAAAAAA' }, proof: new Uint8Array(96) };
    const frame = encodeMessage({ ...samples.replicate, versions: [signed] });
    const tree = msgpackDecode(frame) as { versions: { proof: Uint8Array }[] };
    tree.versions[0]!.proof = new Uint8Array(95);
    assertMalformed(msgpackEncode(tree), /replicate\.versions\[0\]\.proof: expected 96 bytes/);
    assertMalformed(msgpackEncode(reversed(tree)), /replicate\.versions\[0\]\.proof: expected 96 bytes/);
  });

  it('a frame that is not a map', () => {
    assertMalformed(msgpackEncode(['replicate']), /^message: expected a map, got an array/);
    assertMalformed(msgpackEncode(null), /^message: expected a map, got null/);
    assertMalformed(msgpackEncode(bytes(1)), /^message: expected a map, got bytes/);
    assertMalformed(msgpackEncode(5), /^message: expected a map, got the integer 5/);
  });

  it('a message without a type', () => {
    assertMalformed(
      edited(samples.read, (t) => delete t.type),
      /^message\.type: missing field/,
    );
  });

  it('a type that is not a string', () => {
    assertMalformed(
      edited(samples.read, (t) => (t.type = 3)),
      /^message\.type: expected a string/,
    );
  });

  it('an unknown type', () => {
    assertMalformed(
      edited(samples.read, (t) => (t.type = 'gossip')),
      /^message\.type: unknown message type gossip/,
    );
    assertMalformed(
      edited(samples.read, (t) => (t.type = 'toString')),
      /^message\.type: unknown message type toString/,
    );
  });

  it('a message missing a field of its type', () => {
    for (const message of Object.values(samples)) {
      for (const field of Object.keys(treeOf(message)).filter((f) => f !== 'type')) {
        assertMalformed(
          edited(message, (t) => delete t[field]),
          new RegExp(`^${message.type}\\.${field}: missing field$`),
        );
      }
    }
  });

  it('a message with a field its type does not declare', () => {
    for (const message of Object.values(samples)) {
      assertMalformed(
        edited(message, (t) => (t.extra = 1)),
        new RegExp(`^${message.type}\\.extra: unexpected field$`),
      );
    }
    assertMalformed(
      edited(samples.read, (t) => (t['a b'] = 1)),
      /^read\."a b": unexpected field$/,
    );
  });

  it('a from that is not a node id', () => {
    for (const from of ['', 'x'.repeat(65), 'a b', 'é', 'a/b']) {
      assertMalformed(
        edited(samples.read, (t) => (t.from = from)),
        /^read\.from: .* is not a node id/,
      );
    }
    assertMalformed(
      edited(samples.read, (t) => (t.from = 1)),
      /^read\.from: expected a node id string, got the integer 1/,
    );
  });

  it('a requestId that is not a non-negative safe integer', () => {
    for (const id of [-1, 1.5, 2 ** 53, Number.NaN, Infinity, '1', null]) {
      assertMalformed(
        edited(samples['replicate-ack'], (t) => (t.requestId = id)),
        /^replicate-ack\.requestId: expected a non-negative safe integer/,
      );
    }
  });

  it('a watch of more targets than one watcher may hold at a node', () => {
    const targets = Array.from({ length: MAX_WATCH_TARGETS + 1 }, () => ({ key: bytes(1), prefix: false }));
    assertMalformed(
      encodeMessage({ ...samples.watch, targets }),
      // The scanner refuses the array's header before the checker sees the message.
      new RegExp(`${MAX_WATCH_TARGETS + 1} (entries|targets) is over the limit`),
    );
  });

  it('a watch target with an empty key, a prefix that is not a boolean, or a field of its own', () => {
    assertMalformed(
      edited(samples.watch, (t) => ((t.targets as Tree[])[0]!.key = bytes())),
      /^watch\.targets\[0\]\.key: /,
    );
    assertMalformed(
      edited(samples.watch, (t) => ((t.targets as Tree[])[1]!.prefix = 1)),
      /^watch\.targets\[1\]\.prefix: /,
    );
    assertMalformed(
      edited(samples.watch, (t) => ((t.targets as Tree[])[0]!.id = 1)),
      /^watch\.targets\[0\]\.id: unexpected field$/,
    );
  });

  it('a watch lease outside its bounds or not a whole number of ms', () => {
    for (const lease of [MIN_WATCH_LEASE_MS - 1, MAX_WATCH_LEASE_MS + 1, 1500.5, '30000', null]) {
      assertMalformed(
        edited(samples.watch, (t) => (t.leaseMs = lease)),
        /^watch\.leaseMs: expected an integer of ms/,
      );
    }
  });

  it('a requestId beyond 64 bits of precision', () => {
    const tree = { ...treeOf(samples['replicate-ack']), requestId: 2n ** 64n - 1n };
    assertMalformed(
      msgpackEncode(tree, { useBigInt64: true }),
      /^replicate-ack\.requestId: expected a non-negative safe integer/,
    );
  });

  it('a key that is empty, too long or not bytes', () => {
    assertMalformed(
      edited(samples.read, (t) => (t.key = bytes())),
      /^read\.key: 0 bytes is under the minimum of 1$/,
    );
    assertMalformed(
      edited(samples.read, (t) => (t.key = new Uint8Array(1025))),
      /^read\.key: 1025 bytes is over the limit of 1024$/,
    );
    assertMalformed(
      edited(samples.read, (t) => (t.key = 'key')),
      /^read\.key: expected bytes, got a string/,
    );
  });

  it('a key over a configured maxKeyBytes', () => {
    const limits = { ...DEFAULT_LIMITS, maxKeyBytes: 2 };
    assertMalformed(encodeMessage(samples.replicate), /^replicate\.key: 3 bytes is over the limit of 2$/, limits);
  });

  it('a value over maxValueBytes or of the wrong type', () => {
    const limits = { ...DEFAULT_LIMITS, maxValueBytes: 2 };
    assertMalformed(encodeMessage(samples.replicate), /^replicate\.versions\[0\]\.value: 3 bytes is over/, limits);
    assertMalformed(
      edited(samples.coordinate, (t) => (t.value = 'v')),
      /^coordinate\.value: expected bytes, got a string/,
    );
    assertMalformed(
      edited(samples.coordinate, (t) => (t.value = [1])),
      /^coordinate\.value: expected bytes, got an array/,
    );
  });

  it('a value over the default maxValueBytes', () => {
    const message: PeerMessage = { ...samples.coordinate, value: new Uint8Array(DEFAULT_LIMITS.maxValueBytes + 1) };
    assertMalformed(encodeMessage(message), /^frame: bin of 1048577 bytes is over the limit of 1048576/);
  });

  it('versions that are not an array', () => {
    assertMalformed(
      edited(samples['read-reply'], (t) => (t.versions = {})),
      /^read-reply\.versions: expected an array of versions, got a map/,
    );
  });

  it('more versions than maxSiblings', () => {
    const limits = { ...DEFAULT_LIMITS, maxSiblings: 1 };
    assertMalformed(
      encodeMessage(samples['read-reply']),
      /^read-reply\.versions: 2 versions is over the limit of 1$/,
      limits,
    );
    const many = Array.from({ length: DEFAULT_LIMITS.maxSiblings + 1 }, (_, i) => ({
      ...sampleVersions[0]!,
      dot: { ...dotA1, counter: i + 1 },
    }));
    assertMalformed(
      encodeMessage({ ...samples['read-reply'], versions: many }),
      // The scanner refuses an array over the longest any message holds before the checker sees it.
      /^frame: array of 1025 entries is over the limit$/,
    );
  });

  it('two versions of the same dot', () => {
    const versions = [sampleVersions[0]!, { ...sampleVersions[1]!, dot: { ...dotA1, timestamp: 5 } }];
    assertMalformed(
      encodeMessage({ ...samples.replicate, versions }),
      /^replicate\.versions\[1\]\.dot: the dot a:1 appears twice/,
    );
  });

  it('a version that is not a map or has the wrong fields', () => {
    assertMalformed(
      edited(samples.replicate, (t) => ((t.versions as unknown[])[1] = [1, 2, 3])),
      /^replicate\.versions\[1\]: expected a map, got an array/,
    );
    assertMalformed(
      edited(samples.replicate, (t) => delete at(t, ['versions', 0]).context),
      /^replicate\.versions\[0\]\.context: missing field/,
    );
    assertMalformed(
      edited(samples.replicate, (t) => (at(t, ['versions', 0]).sibling = true)),
      /^replicate\.versions\[0\]\.sibling: unexpected field/,
    );
  });

  it('a dot or clock counter that is not an integer from 1 to MAX_COUNTER', () => {
    for (const counter of [0, -1, 1.5, MAX_COUNTER + 1, 1e15, 2 ** 53 - 1, 2 ** 53, 'one', null]) {
      assertMalformed(
        edited(samples.replicate, (t) => (at(t, ['versions', 1, 'dot']).counter = counter)),
        /^replicate\.versions\[1\]\.dot\.counter: expected an integer from 1 to 2\^48/,
      );
      assertMalformed(
        edited(samples.replicate, (t) => (at(t, ['versions', 1, 'context', 1]).counter = counter)),
        /^replicate\.versions\[1\]\.context\[1\]\.counter: expected an integer from 1 to 2\^48/,
      );
    }
  });

  it('a coordinate context or read reply naming a counter above MAX_COUNTER, written by the fast encoder', () => {
    // Well-typed messages take the fast path both ways: its reader must refuse what the checked path refuses.
    const context = [{ node: 'a', counter: MAX_COUNTER + 1, timestamp: 0 }];
    assertMalformed(encodeMessage({ ...samples.coordinate, context }), /^coordinate\.context\[0\]\.counter: /);
    const versions = [{ dot: { node: 'a', counter: 2 ** 53 - 1, timestamp: 0 }, context: [], value: null }];
    assertMalformed(
      encodeMessage({ ...samples['read-reply'], versions }),
      /^read-reply\.versions\[0\]\.dot\.counter: /,
    );
    const atMax: Version[] = [
      {
        dot: { node: 'a', counter: MAX_COUNTER, timestamp: 0 },
        context: [{ node: 'b', counter: MAX_COUNTER, timestamp: 0 }],
        value: null,
      },
    ];
    const message: PeerMessage = { ...samples['read-reply'], versions: atMax };
    assert.deepStrictEqual(decodeMessage(encodeMessage(message)), message);
  });

  it('a timestamp that is negative, not finite or not a number', () => {
    for (const timestamp of [-1, -0.5, Number.NaN, Infinity, -Infinity, '0', null]) {
      assertMalformed(
        edited(samples.replicate, (t) => (at(t, ['versions', 1, 'context', 1]).timestamp = timestamp)),
        /^replicate\.versions\[1\]\.context\[1\]\.timestamp: expected a finite non-negative number/,
      );
    }
  });

  it('a clock entry whose node is not a node id', () => {
    assertMalformed(
      edited(samples.coordinate, (t) => (at(t, ['context', 0]).node = 'no spaces')),
      /^coordinate\.context\[0\]\.node: "no spaces" is not a node id/,
    );
  });

  it('a clock entry with a missing or extra field', () => {
    assertMalformed(
      edited(samples.coordinate, (t) => delete at(t, ['context', 0]).timestamp),
      /^coordinate\.context\[0\]\.timestamp: missing field/,
    );
    assertMalformed(
      edited(samples.coordinate, (t) => (at(t, ['context', 0]).actor = 'a')),
      /^coordinate\.context\[0\]\.actor: unexpected field/,
    );
  });

  it('a clock that is not sorted by node', () => {
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (t.context as unknown[]).reverse()),
      /^coordinate-reply\.context\[1\]\.node: entries must be sorted by node with no node twice/,
    );
  });

  it('a clock that names a node twice', () => {
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['context', 1]).node = 'a')),
      /^coordinate-reply\.context\[1\]\.node: entries must be sorted by node with no node twice/,
    );
  });

  it('a clock of more than MAX_CLOCK_ENTRIES entries', () => {
    const context = Array.from({ length: MAX_CLOCK_ENTRIES + 1 }, (_, i) => ({
      node: `n${String(i).padStart(2, '0')}`,
      counter: 1,
      timestamp: 0,
    }));
    assertMalformed(
      encodeMessage({ ...samples.coordinate, context }),
      /^coordinate\.context: 11 entries is over the limit of 10$/,
    );
  });

  it('a clock that is not an array', () => {
    assertMalformed(
      edited(samples.coordinate, (t) => (t.context = { a: 1 })),
      /^coordinate\.context: expected an array of clock entries, got a map/,
    );
  });

  it('a w outside 1 to 16 or not an integer', () => {
    for (const w of [0, 17, 1.5, -1, '2', true]) {
      assertMalformed(
        edited(samples.coordinate, (t) => (t.w = w)),
        /^coordinate\.w: expected an integer from 1 to 16/,
      );
    }
  });

  it('a boolean field that is not a boolean', () => {
    for (const [message, field] of [
      [samples.replicate, 'durable'],
      [samples.coordinate, 'ifMatch'],
      [samples.coordinate, 'durable'],
      [samples['sync-tree-reply'], 'held'],
    ] as const) {
      for (const value of [0, 1, 'true', null]) {
        assertMalformed(
          edited(message, (t) => (t[field] = value)),
          new RegExp(`^${message.type}\\.${field}: expected a boolean`),
        );
      }
    }
  });

  it('a replicate whose fresh is not a counter, or names no version of its sender', () => {
    assertMalformed(
      edited(samples.replicate, (t) => (t.fresh = 0)),
      /^replicate\.fresh: expected null or an integer from 1 to 2\^48/,
    );
    // Sent by the node of the first sample version's dot, as its coordinator would.
    const sent = { ...samples.replicate, from: samples.replicate.versions[0]!.dot.node };
    const own = sent.versions.filter((v) => v.dot.node === sent.from).map((v) => v.dot.counter);
    const unnamed = Math.max(...own) + 1;
    assertMalformed(
      edited(sent, (t) => (t.fresh = unnamed)),
      new RegExp(`^replicate\\.fresh: names dot ${sent.from}:${unnamed}, which no version shipped has`),
    );
    const named = { ...sent, fresh: own[0]! };
    assert.deepStrictEqual(decodeMessage(encodeMessage(named)), named);
  });

  it('a hintFor that is neither null nor a node id', () => {
    assertMalformed(
      edited(samples.replicate, (t) => (t.hintFor = '')),
      /^replicate\.hintFor: "" is not a node id/,
    );
    assertMalformed(
      edited(samples.replicate, (t) => (t.hintFor = false)),
      /^replicate\.hintFor: expected a node id string/,
    );
  });

  it('an error code that dynamesh does not define', () => {
    for (const code of ['ERR_NOPE', 'toString', '', 7]) {
      assertMalformed(
        edited(samples.error, (t) => (t.code = code)),
        /^error\.code: expected an error code/,
      );
    }
  });

  it('an error message over 1024 characters or not a string', () => {
    assertMalformed(
      edited(samples.error, (t) => (t.message = 'x'.repeat(1025))),
      /^error\.message: 1025 characters is over the limit of 1024$/,
    );
    assertMalformed(
      edited(samples.error, (t) => (t.message = null)),
      /^error\.message: expected a string, got null/,
    );
  });

  it('required or acknowledged counts that are neither null nor non-negative integers', () => {
    for (const field of ['required', 'acknowledged']) {
      for (const value of [-1, 0.5, '2', false]) {
        assertMalformed(
          edited(samples.error, (t) => (t[field] = value)),
          new RegExp(`^error\\.${field}: expected null or a non-negative safe integer`),
        );
      }
    }
  });

  it('a receipt whose node lists hold something other than node ids', () => {
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt']).acknowledged = ['a', 'b c'])),
      /^coordinate-reply\.receipt\.acknowledged\[1\]: "b c" is not a node id/,
    );
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt']).fallbacks = 'c')),
      /^coordinate-reply\.receipt\.fallbacks: expected an array of node ids, got a string/,
    );
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt']).coordinator = null)),
      /^coordinate-reply\.receipt\.coordinator: expected a node id string, got null/,
    );
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt', 'hints', 0]).target = 9)),
      /^coordinate-reply\.receipt\.hints\[0\]\.target: expected a node id string/,
    );
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt', 'hints', 0]).via = 'x')),
      /^coordinate-reply\.receipt\.hints\[0\]\.via: unexpected field/,
    );
  });

  it('a receipt with more node ids than MAX_RECEIPT_NODES', () => {
    const ids = Array.from({ length: MAX_RECEIPT_NODES + 1 }, (_, i) => `n${i}`);
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt']).acknowledged = ids)),
      /^coordinate-reply\.receipt\.acknowledged: 65 node ids is over the limit of 64$/,
    );
    assertMalformed(
      edited(samples['coordinate-reply'], (t) => (at(t, ['receipt']).fallbacks = ids)),
      /^coordinate-reply\.receipt\.fallbacks: 65 node ids is over the limit of 64$/,
    );
  });
});

describe('decodeMessage rejects sync messages with', () => {
  it('a sync-drop entry holding a version that is not a tombstone', () => {
    const entries = [{ key: bytes(1), versions: [sampleVersions[1]!, sampleVersions[0]!] }];
    assertMalformed(
      encodeMessage({ ...samples['sync-drop'], entries }),
      /^sync-drop\.entries\[0\]\.versions\[1\]\.value: expected null: only tombstones are dropped$/,
    );
  });

  it('a partition that is not an integer from 0 to 65535', () => {
    for (const message of [samples['sync-tree'], samples['sync-keys'], samples['sync-push'], samples['sync-drop']]) {
      for (const partition of [-1, MAX_PARTITIONS, 1.5, '1', null]) {
        assertMalformed(
          edited(message, (t) => (t.partition = partition)),
          new RegExp(`^${message.type}\\.partition: expected an integer from 0 to 65535`),
        );
      }
    }
  });

  it('a level outside 0 to TREE_DEPTH', () => {
    for (const level of [-1, TREE_DEPTH + 1, 0.5, true]) {
      assertMalformed(
        edited(samples['sync-tree'], (t) => (t.level = level)),
        /^sync-tree\.level: expected an integer from 0 to 2/,
      );
    }
  });

  it('a node index at or past the width of its level', () => {
    assertMalformed(
      edited(samples['sync-tree'], (t) => (t.indexes = [0, TREE_FANOUT])),
      /^sync-tree\.indexes\[1\]: expected an integer from 0 to 7, got the integer 8$/,
    );
    assertMalformed(
      edited(samples['sync-tree'], (t) => Object.assign(t, { level: 0, indexes: [1] })),
      /^sync-tree\.indexes\[0\]: expected an integer from 0 to 0, got the integer 1$/,
    );
    assertMalformed(
      edited(samples['sync-tree'], (t) => Object.assign(t, { level: 2, indexes: [TREE_LEAVES] })),
      /^sync-tree\.indexes\[0\]: expected an integer from 0 to 63/,
    );
  });

  it('node indexes out of order or repeated', () => {
    assertMalformed(
      edited(samples['sync-tree'], (t) => (t.indexes = [3, 1])),
      /^sync-tree\.indexes\[1\]: 1 does not follow 3: indexes at level 1 must ascend$/,
    );
    assertMalformed(
      edited(samples['sync-tree'], (t) => (t.indexes = [2, 2])),
      /^sync-tree\.indexes\[1\]: 2 does not follow 2/,
    );
  });

  it('more node indexes than its level has nodes', () => {
    assertMalformed(
      edited(samples['sync-tree'], (t) => (t.indexes = Array.from({ length: TREE_FANOUT + 1 }, (_, i) => i))),
      /^sync-tree\.indexes: 9 indexes at level 1 is over the limit of 8$/,
    );
    assertMalformed(
      edited(samples['sync-tree'], (t) => Object.assign(t, { level: 0, indexes: [0, 0] })),
      /^sync-tree\.indexes: 2 indexes at level 0 is over the limit of 1$/,
    );
  });

  it('node indexes that are not an array', () => {
    assertMalformed(
      edited(samples['sync-tree'], (t) => (t.indexes = bytes(0, 1))),
      /^sync-tree\.indexes: expected an array of indexes at level 1, got bytes/,
    );
  });

  it('a leaf at or past TREE_LEAVES, out of order, repeated, or too many leaves', () => {
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.leaves = [0, TREE_LEAVES])),
      /^sync-keys\.leaves\[1\]: expected an integer from 0 to 63, got the integer 64$/,
    );
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.leaves = [5, 4])),
      /^sync-keys\.leaves\[1\]: 4 does not follow 5: leaves must ascend$/,
    );
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.leaves = [5, 5])),
      /^sync-keys\.leaves\[1\]: 5 does not follow 5/,
    );
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.leaves = Array.from({ length: TREE_LEAVES + 1 }, (_, i) => i))),
      /^sync-keys\.leaves: 65 leaves is over the limit of 64$/,
    );
  });

  it('hashes that are not whole hashes, more than one per leaf, or not bytes', () => {
    assertMalformed(
      edited(samples['sync-tree-reply'], (t) => (t.hashes = new Uint8Array(TREE_HASH_BYTES + 1))),
      /^sync-tree-reply\.hashes: 9 bytes is not a whole number of 8-byte hashes$/,
    );
    assertMalformed(
      edited(samples['sync-tree-reply'], (t) => (t.hashes = new Uint8Array((TREE_LEAVES + 1) * TREE_HASH_BYTES))),
      /^sync-tree-reply\.hashes: 520 bytes is over the limit of 512$/,
    );
    assertMalformed(
      edited(samples['sync-tree-reply'], (t) => (t.hashes = [1, 2])),
      /^sync-tree-reply\.hashes: expected bytes, got an array/,
    );
  });

  it('a maxBytes that is not a positive integer up to maxFrameBytes', () => {
    for (const maxBytes of [0, -1, 1.5, DEFAULT_LIMITS.maxFrameBytes + 1, '1', null]) {
      assertMalformed(
        edited(samples['sync-keys'], (t) => (t.maxBytes = maxBytes)),
        new RegExp(`^sync-keys\\.maxBytes: expected a positive integer up to ${DEFAULT_LIMITS.maxFrameBytes}`),
      );
    }
    assertMalformed(
      encodeMessage(samples['sync-keys']),
      /^sync-keys\.maxBytes: expected a positive integer up to 1000, got the integer 65536$/,
      { ...DEFAULT_LIMITS, maxFrameBytes: 1000 },
    );
  });

  it('an after or next that is neither null nor a key', () => {
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.after = bytes())),
      /^sync-keys\.after: 0 bytes is under the minimum of 1$/,
    );
    assertMalformed(
      edited(samples['sync-keys'], (t) => (t.after = new Uint8Array(DEFAULT_LIMITS.maxKeyBytes + 1))),
      /^sync-keys\.after: 1025 bytes is over the limit of 1024$/,
    );
    assertMalformed(
      edited(samples['sync-keys-reply'], (t) => (t.next = 'k')),
      /^sync-keys-reply\.next: expected bytes, got a string/,
    );
    assertMalformed(
      edited(samples['sync-keys-reply'], (t) => (t.next = false)),
      /^sync-keys-reply\.next: expected bytes, got a boolean/,
    );
  });

  it('more entries than MAX_SYNC_ENTRIES', () => {
    const entries = Array.from({ length: MAX_SYNC_ENTRIES + 1 }, (_, i) => ({ key: bytes(i & 0xff, 1), versions: [] }));
    assertMalformed(
      encodeMessage({ ...samples['sync-push'], entries }),
      /^frame: array of 1025 entries is over the limit/,
    );
    // Limits whose sibling arrays are longer than MAX_SYNC_ENTRIES let the frame through to the entry count check.
    assertMalformed(
      encodeMessage({ ...samples['sync-keys-reply'], entries }),
      /^sync-keys-reply\.entries: 1025 entries is over the limit of 1024$/,
      { ...DEFAULT_LIMITS, maxSiblings: 2000 },
    );
  });

  it('entries that are not an array, or an entry that is not a map of key and versions', () => {
    assertMalformed(
      edited(samples['sync-push'], (t) => (t.entries = {})),
      /^sync-push\.entries: expected an array of entries, got a map/,
    );
    assertMalformed(
      edited(samples['sync-push'], (t) => ((t.entries as unknown[])[0] = [bytes(1), []])),
      /^sync-push\.entries\[0\]: expected a map, got an array/,
    );
    assertMalformed(
      edited(samples['sync-push'], (t) => delete at(t, ['entries', 0]).key),
      /^sync-push\.entries\[0\]\.key: missing field/,
    );
    assertMalformed(
      edited(samples['sync-push'], (t) => (at(t, ['entries', 0]).partition = 0)),
      /^sync-push\.entries\[0\]\.partition: unexpected field/,
    );
  });

  it('an entry key that is empty or over maxKeyBytes', () => {
    assertMalformed(
      edited(samples['sync-keys-reply'], (t) => (at(t, ['entries', 1]).key = bytes())),
      /^sync-keys-reply\.entries\[1\]\.key: 0 bytes is under the minimum of 1$/,
    );
    assertMalformed(
      encodeMessage(samples['sync-keys-reply']),
      /^sync-keys-reply\.entries\[1\]\.key: 2 bytes is over the limit of 1$/,
      { ...DEFAULT_LIMITS, maxKeyBytes: 1 },
    );
  });

  it('entry versions that replicate would refuse', () => {
    assertMalformed(
      encodeMessage(samples['sync-keys-reply']),
      /^sync-keys-reply\.entries\[0\]\.versions: 2 versions is over the limit of 1$/,
      { ...DEFAULT_LIMITS, maxSiblings: 1 },
    );
    const versions = [sampleVersions[0]!, { ...sampleVersions[1]!, dot: dotA1 }];
    assertMalformed(
      encodeMessage({ ...samples['sync-push'], entries: [{ key: bytes(1), versions }] }),
      /^sync-push\.entries\[0\]\.versions\[1\]\.dot: the dot a:1 appears twice/,
    );
    assertMalformed(
      edited(samples['sync-push'], (t) => (at(t, ['entries', 0, 'versions', 0, 'dot']).counter = 0)),
      /^sync-push\.entries\[0\]\.versions\[0\]\.dot\.counter: expected an integer from 1 to 2\^48/,
    );
    assertMalformed(
      encodeMessage(samples['sync-push']),
      /^sync-push\.entries\[0\]\.versions\[0\]\.value: 3 bytes is over the limit of 2$/,
      { ...DEFAULT_LIMITS, maxValueBytes: 2 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Fuzzing: whatever the bytes, the decoder answers a message or a MalformedFrameError.

const hostileArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    null,
    true,
    false,
    0,
    -0,
    -1,
    1,
    1.5,
    16,
    17,
    Number.NaN,
    Infinity,
    -Infinity,
    2 ** 53,
    2 ** 64,
    -(2 ** 63),
    Number.MAX_SAFE_INTEGER,
    '',
    'a',
    'a b',
    'x'.repeat(65),
    'replicate',
    'ERR_QUORUM',
    '__proto__',
    'constructor',
    new Uint8Array(0),
    new Uint8Array(1025),
    [],
    {},
    { node: 'a', counter: 1, timestamp: 0 },
    [
      { node: 'b', counter: 1, timestamp: 0 },
      { node: 'a', counter: 1, timestamp: 0 },
    ],
    { holder: 'a', target: 'b' },
  ),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 70 }),
  fc.uint8Array({ maxLength: 8 }),
  fc.array(nodeIdArb, { maxLength: 3 }),
  messageArb.map((m) => treeOf(m)),
);

type Mutation =
  | { kind: 'replace'; pick: number; value: unknown }
  | { kind: 'delete'; pick: number }
  | { kind: 'add'; pick: number; name: string; value: unknown }
  | { kind: 'duplicate'; pick: number };

const fieldNameArb = fc.oneof(
  fc.constantFrom(
    'type',
    'from',
    'requestId',
    'key',
    'versions',
    'value',
    'context',
    'node',
    'counter',
    'timestamp',
    'dot',
    'receipt',
    'hints',
    'w',
  ),
  fc.string({ maxLength: 10 }).filter((s) => s !== '__proto__'),
);
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: hostileArb }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), pick: fc.nat(), name: fieldNameArb, value: hostileArb }),
  fc.record({ kind: fc.constant('duplicate' as const), pick: fc.nat() }),
);

/** Every container in `tree` with the keys or indexes it holds. */
function slots(tree: unknown, out: { parent: Tree | unknown[]; key: string | number }[] = []) {
  if (Array.isArray(tree)) {
    tree.forEach((child, i) => {
      out.push({ parent: tree, key: i });
      slots(child, out);
    });
  } else if (typeof tree === 'object' && tree !== null && !(tree instanceof Uint8Array)) {
    for (const [k, child] of Object.entries(tree)) {
      out.push({ parent: tree as Tree, key: k });
      slots(child, out);
    }
  }
  return out;
}

function mutate(tree: Tree, mutation: Mutation): void {
  // A copy: the hostile constants are shared between runs, and a mutation that reached into one would change it for
  // every later run, until one of them holds itself.
  if ('value' in mutation) mutation = { ...mutation, value: structuredClone(mutation.value) };
  const all = slots(tree);
  const slot = all[mutation.pick % all.length]!;
  const { parent, key } = slot;
  switch (mutation.kind) {
    case 'replace':
      (parent as Record<string | number, unknown>)[key] = mutation.value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      break;
    case 'add': {
      const target = (parent as Record<string | number, unknown>)[key];
      if (typeof target === 'object' && target !== null && !Array.isArray(target) && !(target instanceof Uint8Array)) {
        (target as Tree)[mutation.name] = mutation.value;
      } else if (Array.isArray(target)) {
        target.push(mutation.value);
      } else {
        tree[mutation.name] = mutation.value;
      }
      break;
    }
    case 'duplicate':
      if (Array.isArray(parent)) parent.push(structuredClone(parent[key as number]));
      else (parent as Tree)[key] = [parent[key as string]];
      break;
  }
}

type ByteEdit =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; data: Uint8Array }
  | { kind: 'remove'; at: number; length: number }
  | { kind: 'set'; at: number; value: number };

const byteEditArb: fc.Arbitrary<ByteEdit> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    data: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    kind: fc.constant('set' as const),
    at: fc.nat(),
    value: fc.constantFrom(
      0x00,
      0x7f,
      0x80,
      0x8f,
      0x90,
      0x9f,
      0xa0,
      0xc0,
      0xc1,
      0xc4,
      0xc6,
      0xc7,
      0xcb,
      0xcf,
      0xd3,
      0xd4,
      0xdb,
      0xdd,
      0xdf,
      0xff,
    ),
  }),
);

function applyByteEdit(frame: Uint8Array, edit: ByteEdit): Uint8Array {
  const at = frame.length === 0 ? 0 : edit.at % frame.length;
  switch (edit.kind) {
    case 'flip': {
      const out = frame.slice();
      if (out.length > 0) out[at] = out[at]! ^ edit.xor;
      return out;
    }
    case 'set': {
      const out = frame.slice();
      if (out.length > 0) out[at] = edit.value;
      return out;
    }
    case 'truncate':
      return frame.slice(0, at);
    case 'insert':
      return new Uint8Array([...frame.subarray(0, at), ...edit.data, ...frame.subarray(at)]);
    case 'remove':
      return new Uint8Array([...frame.subarray(0, at), ...frame.subarray(at + edit.length)]);
  }
}

describe('decodeMessage rejects keys messages with', () => {
  it('asks out of partition order or naming a partition twice', () => {
    const asks = [
      { partition: 9, after: null },
      { partition: 2, after: null },
    ];
    assertMalformed(encodeMessage({ ...samples.keys, asks }), /^keys\.asks\[1\]\.partition: 2 does not follow 9/);
    assertMalformed(
      encodeMessage({ ...samples.keys, asks: [asks[0]!, asks[0]!] }),
      /^keys\.asks\[1\]\.partition: 9 does not follow 9/,
    );
  });

  it('more asks than MAX_KEYS_ASKS', () => {
    const asks = Array.from({ length: MAX_KEYS_ASKS + 1 }, (_, partition) => ({ partition, after: null }));
    assertMalformed(encodeMessage({ ...samples.keys, asks }), /^frame: array of 1025 entries is over the limit$/);
    assertMalformed(encodeMessage({ ...samples.keys, asks }), /^keys\.asks: 1025 asks is over the limit of 1024$/, {
      ...DEFAULT_LIMITS,
      maxSiblings: 2048,
    });
  });

  it('an ask with a missing field or an after that is not a key', () => {
    assertMalformed(
      edited(samples.keys, (t) => delete at(t, ['asks', 0]).after),
      /^keys\.asks\[0\]\.after: missing field/,
    );
    assertMalformed(
      edited(samples.keys, (t) => (at(t, ['asks', 1]).after = bytes())),
      /^keys\.asks\[1\]\.after: 0 bytes is under the minimum of 1/,
    );
  });

  it('a prefix over maxKeyBytes', () => {
    assertMalformed(
      encodeMessage({ ...samples.keys, prefix: new Uint8Array(DEFAULT_LIMITS.maxKeyBytes + 1) }),
      /^keys\.prefix: 1025 bytes is over the limit of 1024$/,
    );
  });

  it('a limit outside 1 to MAX_KEYS_PER_PARTITION', () => {
    for (const limit of [0, MAX_KEYS_PER_PARTITION + 1, 1.5]) {
      assertMalformed(encodeMessage({ ...samples.keys, limit }), /^keys\.limit: expected an integer from 1 to 1000/);
    }
  });

  it('a page whose keys do not ascend, or are repeated', () => {
    const page = samples['keys-reply'].pages[0]!;
    assertMalformed(
      encodeMessage({ ...samples['keys-reply'], pages: [{ ...page, keys: [...page.keys].reverse() }] }),
      /^keys-reply\.pages\[0\]\.keys\[1\]: keys must ascend in byte order/,
    );
    assertMalformed(
      encodeMessage({ ...samples['keys-reply'], pages: [{ ...page, keys: [bytes(1), bytes(1)] }] }),
      /^keys-reply\.pages\[0\]\.keys\[1\]: keys must ascend/,
    );
  });

  it('a page of more keys than MAX_KEYS_PER_PARTITION', () => {
    const keys = Array.from({ length: MAX_KEYS_PER_PARTITION + 1 }, (_, i) => bytes(i >> 8, i & 0xff));
    assertMalformed(
      encodeMessage({ ...samples['keys-reply'], pages: [{ partition: 1, keys, more: false }] }),
      /^keys-reply\.pages\[0\]\.keys: 1001 keys is over the limit of 1000$/,
    );
  });

  it('pages out of partition order, or refused partitions out of order', () => {
    const page = samples['keys-reply'].pages[0]!;
    assertMalformed(
      encodeMessage({ ...samples['keys-reply'], pages: [page, page] }),
      /^keys-reply\.pages\[1\]\.partition: 3 does not follow 3/,
    );
    assertMalformed(
      encodeMessage({ ...samples['keys-reply'], refused: [5, 1] }),
      /^keys-reply\.refused\[1\]: 1 does not follow 5/,
    );
  });

  it('a page without its more flag', () => {
    assertMalformed(
      edited(samples['keys-reply'], (t) => delete at(t, ['pages', 0]).more),
      /^keys-reply\.pages\[0\]\.more: missing field/,
    );
  });
});

describe('decodeMessage under fuzzing', () => {
  it('answers random bytes with a message or a MalformedFrameError only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (frame) => {
        validOrMalformed(frame);
      }),
      { numRuns: 20000 },
    );
  });

  it('answers random bytes behind a map head with a message or a MalformedFrameError only', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0x80, max: 0x89 }), fc.uint8Array({ maxLength: 256 }), (head, rest) => {
        validOrMalformed(new Uint8Array([head, ...rest]));
      }),
      { numRuns: 10000 },
    );
  });

  it('answers valid frames with flipped, cut, inserted and removed bytes with a message or a MalformedFrameError only', () => {
    fc.assert(
      fc.property(messageArb, fc.array(byteEditArb, { minLength: 1, maxLength: 4 }), (message, edits) => {
        let frame = encodeMessage(message);
        for (const edit of edits) frame = applyByteEdit(frame, edit);
        validOrMalformed(frame);
      }),
      { numRuns: 10000 },
    );
  });

  it('answers two valid frames spliced together with a message or a MalformedFrameError only', () => {
    fc.assert(
      fc.property(messageArb, messageArb, fc.nat(), fc.nat(), (a, b, i, j) => {
        const fa = encodeMessage(a);
        const fb = encodeMessage(b);
        const cut = i % (fa.length + 1);
        validOrMalformed(new Uint8Array([...fa.subarray(0, cut), ...fb.subarray(j % (fb.length + 1))]));
      }),
      { numRuns: 5000 },
    );
  });

  it('answers valid messages with fields changed, removed, added or duplicated with a message or a MalformedFrameError only', () => {
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(messageArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (message, mutations) => {
        const tree = treeOf(message);
        for (const mutation of mutations) mutate(tree, mutation);
        if (validOrMalformed(msgpackEncode(tree))) accepted++;
        else rejected++;
      }),
      { numRuns: 10000 },
    );
    // Both outcomes occur, so the mutations reach past the first check and the property is not vacuous.
    assert.ok(accepted > 0 && rejected > 0, `accepted ${accepted}, rejected ${rejected}`);
  });

  it('answers a mutated frame as it answers the same frame with its fields in reverse order', () => {
    // Frames in the encoder's field order take the decoder's fast path, others its checked path: both must agree.
    let accepted = 0;
    fc.assert(
      fc.property(messageArb, fc.array(mutationArb, { maxLength: 2 }), (message, mutations) => {
        const tree = treeOf(message);
        for (const mutation of mutations) mutate(tree, mutation);
        const outcome = (frame: Uint8Array): PeerMessage | 'malformed' =>
          validOrMalformed(frame) ? decodeMessage(frame) : 'malformed';
        const inOrder = outcome(msgpackEncode(tree));
        assert.deepStrictEqual(inOrder, outcome(msgpackEncode(reversed(tree))));
        if (inOrder !== 'malformed') accepted++;
      }),
      { numRuns: 5000 },
    );
    assert.ok(accepted > 0, 'some mutated frames are still valid');
  });

  it('rejects every message with one field given a value of another type', () => {
    const kindOf = (v: unknown): string =>
      v === null ? 'null' : v instanceof Uint8Array ? 'bytes' : Array.isArray(v) ? 'array' : typeof v;
    // -1 is wrong for every number of the protocol.
    const candidates: unknown[] = [null, true, -1, 'x y', bytes(), [], {}];
    const wrongFor = (value: unknown): unknown[] => candidates.filter((c) => kindOf(c) !== kindOf(value));
    for (const message of Object.values(samples)) {
      const tree = treeOf(message);
      const leaves = slots(tree).filter(({ parent, key }) => {
        const v = (parent as Record<string | number, unknown>)[key];
        return v === null || typeof v !== 'object' || v instanceof Uint8Array;
      });
      for (const { parent, key } of leaves) {
        const original = (parent as Record<string | number, unknown>)[key];
        for (const wrong of wrongFor(original)) {
          // null is a legal value of the nullable fields; bytes of a nullable value field stay legal too.
          if (
            (wrong === null || original === null) &&
            ['hintFor', 'value', 'required', 'acknowledged', 'after', 'next'].includes(String(key))
          )
            continue;
          (parent as Record<string | number, unknown>)[key] = wrong;
          const frame = msgpackEncode(tree);
          (parent as Record<string | number, unknown>)[key] = original;
          assert.equal(validOrMalformed(frame), false, `${message.type} with ${String(key)} = ${String(wrong)}`);
        }
      }
    }
  });
});
