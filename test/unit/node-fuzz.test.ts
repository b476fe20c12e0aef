/**
 * A node fed hostile frames: random bytes and valid frames of every message type, mutated byte by byte or field by
 * field, from members of its view and from strangers. Whatever arrives, `receive` never throws, every malformed frame
 * counts once in `malformedFrames`, and a malformed frame leaves the stored data (keys, siblings, hints) untouched.
 * The node runs on a MemoryStorage holding keys and hints that the valid frames target, with the simulation's virtual
 * clock standing still, so no timer fires while the frames arrive.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { ERROR_CODES } from '../../worker/errors.ts';
import { DynamoNode } from '../../worker/node.ts';
import { DEFAULT_LIMITS, type PeerMessage } from '../../worker/wire/protocol.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { ClockEntry, VClock } from '../../worker/versions/vclock.ts';
import type { Version } from '../../worker/versions/version.ts';
import { Scheduler, WORLD } from '../sim/scheduler.ts';

const SELF = 'self';
const PEERS = ['peer-1', 'peer-2'] as const;
const PARTITIONS = 8;
const text = new TextEncoder();
const KEYS = Array.from({ length: 6 }, (_, i) => text.encode(`key-${i}`));

const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Rig {
  readonly node: DynamoNode;
  readonly storage: MemoryStorage;
}

/** A node in a view of three, whose storage holds two siblings of every key in KEYS and hints for peer-2. */
async function rig(): Promise<Rig> {
  const scheduler = new Scheduler();
  const storage = new MemoryStorage();
  const node = new DynamoNode({
    id: SELF,
    domain: 'd0',
    storage,
    transport: { send: () => {} },
    clock: scheduler.clock,
    timers: scheduler.timersFor(WORLD),
    partitions: PARTITIONS,
  });
  node.setMembers([
    { id: SELF, domain: 'd0' },
    { id: 'peer-1', domain: 'd1' },
    { id: 'peer-2', domain: 'd2' },
  ]);
  for (const [i, key] of KEYS.entries()) {
    const partition = node.ring.partitionOf(key);
    await storage.apply(key, partition, [
      { dot: { node: 'peer-1', counter: i + 1, timestamp: 1000 }, context: [], value: text.encode(`one-${i}`) },
      {
        dot: { node: 'peer-2', counter: 2, timestamp: 1001 },
        context: [{ node: 'self', counter: 1, timestamp: 900 }],
        value: i % 2 === 0 ? text.encode(`two-${i}`) : null,
      },
    ]);
    if (i < 2) {
      await storage.putHint({
        target: 'peer-2',
        key,
        partition,
        siblings: [{ dot: { node: 'peer-1', counter: 9, timestamp: 1002 }, context: [], value: text.encode('hint') }],
      });
    }
  }
  return { node, storage };
}

/** Everything the storage holds: every key of every partition, every hint, and the counts. */
async function contents(storage: MemoryStorage): Promise<unknown> {
  const keys = [];
  for (let p = 0; p < PARTITIONS; p++) keys.push(...(await storage.scanPartition(p)));
  return { keys, hints: await storage.listHints(), stats: await storage.stats() };
}

/** What the node must count as malformed: a frame the codec refuses, or one whose sender is not its transport's. */
function isMalformed(from: string, frame: Uint8Array): boolean {
  try {
    return decodeMessage(frame, DEFAULT_LIMITS).from !== from;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Valid messages aimed at the stored data: new siblings and tombstones of stored keys, reads of them, replies.

const nodeArb = fc.constantFrom(SELF, ...PEERS, 'other');
const entryArb: fc.Arbitrary<ClockEntry> = fc.record({
  node: nodeArb,
  counter: fc.integer({ min: 1, max: 12 }),
  timestamp: fc.integer({ min: 0, max: 2000 }),
});
const clockArb: fc.Arbitrary<VClock> = fc
  .uniqueArray(entryArb, { selector: (e) => e.node, maxLength: 4 })
  .map((c) => c.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)));
const valueArb = fc.option(fc.uint8Array({ maxLength: 16 }), { nil: null });
const versionsArb: fc.Arbitrary<Version[]> = fc.uniqueArray(
  fc.record({ dot: entryArb, context: clockArb, value: valueArb }),
  { selector: (v) => `${v.dot.node}:${v.dot.counter}`, minLength: 1, maxLength: 3 },
);
const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...KEYS) },
  fc.uint8Array({ minLength: 1, maxLength: 8 }),
);
const fromArb = fc.constantFrom(...PEERS);
const requestIdArb = fc.nat(8);

const messageArb: fc.Arbitrary<PeerMessage> = fc.oneof(
  fc
    .record({
      type: fc.constant('replicate' as const),
      from: fromArb,
      requestId: requestIdArb,
      key: keyArb,
      versions: versionsArb,
      hintFor: fc.option(fc.constantFrom(SELF, ...PEERS), { nil: null }),
      durable: fc.boolean(),
    })
    .chain((m) =>
      fc
        .constantFrom(null, ...m.versions.filter((v) => v.dot.node === m.from).map((v) => v.dot.counter))
        .map((fresh) => ({ ...m, fresh })),
    ),
  fc.record({ type: fc.constant('replicate-ack' as const), from: fromArb, requestId: requestIdArb }),
  fc.record({
    type: fc.constant('read' as const),
    from: fromArb,
    requestId: requestIdArb,
    key: keyArb,
    requireHeld: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('read-reply' as const),
    from: fromArb,
    requestId: requestIdArb,
    versions: versionsArb,
  }),
  fc.record({
    type: fc.constant('coordinate' as const),
    from: fromArb,
    requestId: requestIdArb,
    key: keyArb,
    value: valueArb,
    context: clockArb,
    w: fc.integer({ min: 1, max: 3 }),
    ifMatch: fc.boolean(),
    durable: fc.boolean(),
  }),
  fc.record({
    type: fc.constant('coordinate-reply' as const),
    from: fromArb,
    requestId: requestIdArb,
    context: clockArb,
    receipt: fc.record({
      coordinator: nodeArb,
      acknowledged: fc.array(nodeArb, { maxLength: 3 }),
      fallbacks: fc.array(nodeArb, { maxLength: 2 }),
      hints: fc.array(fc.record({ holder: nodeArb, target: nodeArb }), { maxLength: 2 }),
    }),
  }),
  fc.record({
    type: fc.constant('error' as const),
    from: fromArb,
    requestId: requestIdArb,
    code: fc.constantFrom(...ERROR_CODES),
    message: fc.string({ maxLength: 40 }),
    required: fc.option(fc.nat(3), { nil: null }),
    acknowledged: fc.option(fc.nat(3), { nil: null }),
  }),
);

// ---------------------------------------------------------------------------------------------------------------
// Mutations.

type Tree = Record<string, unknown>;

const hostileArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 17, Number.NaN, Infinity, 2 ** 53, '', 'a b', 'peer-1', bytes(0)),
  fc.constantFrom<unknown>([], {}, [
    { node: 'b', counter: 1, timestamp: 0 },
    { node: 'a', counter: 1, timestamp: 0 },
  ]),
  fc.integer(),
  fc.string({ maxLength: 8 }),
  fc.uint8Array({ maxLength: 4 }),
);

function bytes(n: number): Uint8Array {
  return new Uint8Array(n);
}

/**
 * Every (container, key) of `tree`: arrays and maps only. Other decoded objects (an `ExtData` or a `Date`, which byte
 * edits can make of a frame) are leaves: an edit inside one would leave a value MessagePack cannot encode again.
 */
function slots(tree: unknown, out: [Tree | unknown[], string | number][] = []): [Tree | unknown[], string | number][] {
  if (Array.isArray(tree)) {
    tree.forEach((child, i) => {
      out.push([tree, i]);
      slots(child, out);
    });
  } else if (typeof tree === 'object' && tree !== null && isMap(tree)) {
    for (const [k, child] of Object.entries(tree)) {
      out.push([tree as Tree, k]);
      slots(child, out);
    }
  }
  return out;
}

/** True for what MessagePack decodes a map into: a plain object. */
function isMap(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

type Edit =
  | { kind: 'replace'; pick: number; value: unknown }
  | { kind: 'delete'; pick: number }
  | { kind: 'add'; name: string; value: unknown }
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; data: Uint8Array };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: hostileArb }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('add' as const),
    name: fc.constantFrom('key', 'value', 'extra', 'hintFor'),
    value: hostileArb,
  }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    data: fc.uint8Array({ minLength: 1, maxLength: 4 }),
  }),
);

function applyEdit(frame: Uint8Array, edit: Edit): Uint8Array {
  const at = 'at' in edit ? edit.at % Math.max(1, frame.length) : 0;
  switch (edit.kind) {
    case 'replace':
    case 'delete':
    case 'add': {
      let tree: unknown;
      try {
        tree = msgpackDecode(frame);
      } catch {
        return frame; // an earlier byte edit already broke it
      }
      const all = slots(tree);
      if (edit.kind === 'add' || all.length === 0) {
        if (typeof tree === 'object' && tree !== null && !Array.isArray(tree) && !(tree instanceof Uint8Array)) {
          (tree as Tree)[edit.kind === 'add' ? edit.name : 'extra'] = edit.kind === 'add' ? edit.value : null;
        }
      } else {
        const [parent, key] = all[edit.pick % all.length]!;
        if (edit.kind === 'replace') (parent as Record<string | number, unknown>)[key] = edit.value;
        else if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
      }
      return msgpackEncode(tree);
    }
    case 'flip': {
      const out = frame.slice();
      if (out.length > 0) out[at] = out[at]! ^ edit.xor;
      return out;
    }
    case 'truncate':
      return frame.slice(0, at);
    case 'insert':
      return new Uint8Array([...frame.subarray(0, at), ...edit.data, ...frame.subarray(at)]);
  }
}

interface Delivery {
  readonly from: string;
  readonly frame: Uint8Array;
}

const deliveryArb: fc.Arbitrary<Delivery> = fc.oneof(
  // A valid frame, mutated, from its own sender or from someone else.
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        messageArb,
        fc.array(editArb, { maxLength: 3 }),
        fc.option(fc.constantFrom(...PEERS, SELF, 'stranger'), { freq: 4, nil: null }),
      )
      .map(([message, edits, sender]) => ({
        from: sender ?? message.from,
        frame: edits.reduce(applyEdit, encodeMessage(message)),
      })),
  },
  // Random bytes.
  {
    weight: 1,
    arbitrary: fc.record({ from: fc.constantFrom(...PEERS), frame: fc.uint8Array({ maxLength: 64 }) }),
  },
);

describe('DynamoNode.receive under fuzzing', () => {
  it('counts, drops and never stores a malformed frame, and never throws, whatever it is sent', async () => {
    let malformed = 0;
    let valid = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(deliveryArb, { minLength: 1, maxLength: 12 }), async (deliveries) => {
        const { node, storage } = await rig();
        try {
          for (const { from, frame } of deliveries) {
            const expectMalformed = isMalformed(from, frame);
            const before = await contents(storage);
            const counted = node.metrics().malformedFrames;
            assert.doesNotThrow(() => node.receive(from, frame));
            await drain();
            assert.equal(node.metrics().malformedFrames, counted + (expectMalformed ? 1 : 0));
            if (expectMalformed) {
              malformed++;
              assert.deepStrictEqual(await contents(storage), before);
            } else {
              valid++;
            }
          }
        } finally {
          await node.close();
          await drain();
        }
      }),
      { numRuns: 400 },
    );
    // Both kinds arrive, so the property is checked on malformed frames and valid ones go through between them.
    assert.ok(malformed > 500 && valid > 100, `malformed ${malformed}, valid ${valid}`);
  });

  it('changes the stored data on a valid replicate frame, so the comparison above can see a change', async () => {
    const { node, storage } = await rig();
    const before = await contents(storage);
    const message: PeerMessage = {
      type: 'replicate',
      from: 'peer-1',
      requestId: 1,
      key: KEYS[0]!,
      versions: [{ dot: { node: 'peer-1', counter: 50, timestamp: 5 }, context: [], value: text.encode('new') }],
      hintFor: null,
      durable: false,
      fresh: null,
    };
    node.receive('peer-1', encodeMessage(message));
    await drain();
    assert.notDeepStrictEqual(await contents(storage), before);
    assert.equal(node.metrics().malformedFrames, 0);
    await node.close();
  });

  it('counts a frame whose sender differs from its transport sender as malformed and stores nothing', async () => {
    const { node, storage } = await rig();
    const before = await contents(storage);
    const message: PeerMessage = {
      type: 'replicate',
      from: 'peer-2',
      requestId: 1,
      key: KEYS[0]!,
      versions: [{ dot: { node: 'peer-1', counter: 50, timestamp: 5 }, context: [], value: text.encode('new') }],
      hintFor: null,
      durable: false,
      fresh: null,
    };
    node.receive('peer-1', encodeMessage(message));
    await drain();
    assert.equal(node.metrics().malformedFrames, 1);
    assert.deepStrictEqual(await contents(storage), before);
    await node.close();
  });
});
