/**
 * Fitting keys to the wire limits (wire/fit.ts), the wire limits' distance above the store's bounds (limitsFor),
 * and the client's decoding of siblings that never throws (client/values.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encode } from '@msgpack/msgpack';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { entryWireBytes, fitEntry, messageRoom, versionWireBytes } from '../../worker/wire/fit.ts';
import {
  DEFAULT_KEY_BOUNDS,
  DEFAULT_LIMITS,
  MAX_SYNC_ENTRIES,
  type ProtocolLimits,
  type SyncEntry,
  WIRE_HEADROOM,
  limitsFor,
} from '../../worker/wire/protocol.ts';
import { MAX_CLOCK_ENTRIES, MAX_COUNTER } from '../../worker/versions/vclock.ts';
import { type Version, resolve } from '../../worker/versions/version.ts';
import { storedSize } from '../../worker/storage/records.ts';
import { UndecodableValue, isUndecodable, readValue } from '../../client/values.ts';

const text = new TextEncoder();

function version(node: string, counter: number, bytes = 4, context: Version['context'] = []): Version {
  return { dot: { node, counter, timestamp: counter }, context, value: new Uint8Array(bytes).fill(counter & 0xff) };
}

const dotsOf = (entries: readonly SyncEntry[]): string[] =>
  entries.flatMap((e) => e.versions.map((v) => `${v.dot.node}:${v.dot.counter}`));

describe('limitsFor', () => {
  it('keeps the default wire limits WIRE_HEADROOM times above the default bounds', () => {
    assert.deepEqual(limitsFor(), DEFAULT_LIMITS);
    assert.ok(DEFAULT_LIMITS.maxSiblings >= WIRE_HEADROOM * DEFAULT_KEY_BOUNDS.maxSiblings);
    assert.ok(DEFAULT_LIMITS.maxFrameBytes >= WIRE_HEADROOM * DEFAULT_KEY_BOUNDS.maxSiblingSetBytes);
  });

  it('raises the wire limits for larger bounds, and never lowers them', () => {
    const limits = limitsFor({ maxSiblings: 100, maxSiblingSetBytes: 16 * 1024 * 1024 }, { maxSiblings: 8 });
    assert.equal(limits.maxSiblings, 1600);
    assert.ok(limits.maxFrameBytes >= 16 * 16 * 1024 * 1024);
    assert.equal(limitsFor({ maxSiblings: 1 }, { maxSiblings: 4 }).maxSiblings, 16);
    assert.equal(limitsFor({}, { maxFrameBytes: 2 ** 30 }).maxFrameBytes, 2 ** 30);
  });

  it('lets one message carry any sibling set the bounds allow, many times over', () => {
    // The largest set a put may leave, with full clocks of the longest node ids, merged WIRE_HEADROOM times.
    const clock = Array.from({ length: MAX_CLOCK_ENTRIES - 1 }, (_, i) => ({
      node: `${i}`.padStart(64, 'c'),
      counter: MAX_COUNTER,
      timestamp: 1e12,
    }));
    const per = Math.floor(DEFAULT_KEY_BOUNDS.maxSiblingSetBytes / DEFAULT_KEY_BOUNDS.maxSiblings) - 1300;
    const versions = Array.from({ length: DEFAULT_KEY_BOUNDS.maxSiblings * WIRE_HEADROOM }, (_, i) => ({
      dot: { node: `${i % WIRE_HEADROOM}`.padStart(64, 'd'), counter: i + 1, timestamp: 1e12 },
      context: clock,
      value: new Uint8Array(per),
    }));
    const key = new Uint8Array(DEFAULT_LIMITS.maxKeyBytes).fill(7);
    assert.ok(storedSize(key, versions.slice(0, 32)) <= DEFAULT_KEY_BOUNDS.maxSiblingSetBytes);
    const frame = encodeMessage({ type: 'read-reply', from: 'a', requestId: 1, versions });
    assert.ok(frame.byteLength <= DEFAULT_LIMITS.maxFrameBytes, `${frame.byteLength} bytes`);
    assert.equal(decodeMessage(frame).type, 'read-reply');
    assert.ok(entryWireBytes({ key, versions }) >= frame.byteLength - 64, 'the wire estimate is an upper bound');
  });
});

describe('fitEntry', () => {
  const key = text.encode('k');

  it('answers an entry that fits with itself', () => {
    const entry = { key, versions: [version('a', 1), version('b', 2)] };
    const fitted = fitEntry(entry, DEFAULT_LIMITS);
    assert.equal(fitted.parts.length, 1);
    assert.equal(fitted.parts[0], entry);
    assert.equal(fitted.withheld, 0);
  });

  it('cuts a set with more siblings than a message carries into parts in ascending counter order', () => {
    const limits: ProtocolLimits = { ...DEFAULT_LIMITS, maxSiblings: 3 };
    const versions = [version('b', 9), version('a', 2), version('a', 1), version('c', 5), version('b', 3)];
    const fitted = fitEntry({ key, versions }, limits);
    assert.deepEqual(
      fitted.parts.map((p) => p.versions.length),
      [3, 2],
    );
    assert.deepEqual(dotsOf(fitted.parts), ['a:1', 'a:2', 'b:3', 'c:5', 'b:9']);
    assert.equal(fitted.withheld, 0);
    for (const part of fitted.parts) assert.deepEqual(part.key, key);
  });

  it('cuts a set larger than one message into parts that each fit one', () => {
    const limits: ProtocolLimits = { ...DEFAULT_LIMITS, maxFrameBytes: 64 * 1024 + 10_000 };
    const versions = Array.from({ length: 10 }, (_, i) => version('a', i + 1, 3000));
    const fitted = fitEntry({ key, versions }, limits);
    assert.ok(fitted.parts.length > 1);
    for (const part of fitted.parts) assert.ok(entryWireBytes(part) <= messageRoom(limits));
    assert.equal(dotsOf(fitted.parts).length, 10);
  });

  it('withholds an unsendable version and every later version of its coordinator, nothing else', () => {
    const versions = [
      version('a', 1),
      { ...version('a', 2), dot: { node: 'a', counter: 2 ** 53 - 1, timestamp: 1 } },
      version('b', 3, 4, [{ node: 'x', counter: 1e15, timestamp: 1 }]),
      version('b', 7),
      version('c', 4),
    ];
    const fitted = fitEntry({ key, versions }, DEFAULT_LIMITS);
    assert.deepEqual(dotsOf(fitted.parts), ['a:1', 'c:4']);
    assert.equal(fitted.withheld, 3);
    const large = fitEntry({ key, versions: [version('a', 1, 10)] }, { ...DEFAULT_LIMITS, maxValueBytes: 8 });
    assert.deepEqual(large, { parts: [], bytes: 0, withheld: 1 });
    const longKey = fitEntry({ key: new Uint8Array(2000), versions: [version('a', 1)] }, DEFAULT_LIMITS);
    assert.equal(longKey.parts.length, 0);
  });

  it('keeps to a total, sending a prefix that holds every earlier dot of each coordinator it holds', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.record({ node: fc.constantFrom('a', 'b', 'c'), counter: fc.integer({ min: 1, max: 50 }) }), {
          selector: (d) => `${d.node}:${d.counter}`,
          minLength: 1,
          maxLength: 40,
        }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 200, max: 4000 }),
        (dots, maxSiblings, total) => {
          const versions = dots.map((d) => version(d.node, d.counter, 50));
          const limits: ProtocolLimits = { ...DEFAULT_LIMITS, maxSiblings };
          const fitted = fitEntry({ key, versions }, limits, total);
          assert.ok(fitted.bytes <= total);
          const sent = fitted.parts.flatMap((p) => p.versions);
          assert.equal(sent.length + fitted.withheld, versions.length);
          for (const part of fitted.parts) assert.ok(part.versions.length <= maxSiblings);
          for (const v of sent) {
            for (const earlier of versions) {
              if (earlier.dot.node === v.dot.node && earlier.dot.counter < v.dot.counter)
                assert.ok(sent.includes(earlier), 'a sent dot follows one withheld');
            }
          }
          // Merged by a receiver, the parts are what the sender holds, or a part of it the sender's reads cover.
          assert.ok(resolve([], sent).siblings.length === sent.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('estimates bytes at least as large as the encoding', () => {
    const v = version('n'.repeat(64), MAX_COUNTER, 100, [
      { node: 'm'.repeat(64), counter: MAX_COUNTER, timestamp: 1e300 },
    ]);
    const entries = Array.from({ length: 3 }, () => ({ key, versions: [v] }));
    const frame = encodeMessage({ type: 'sync-push', from: 'a', requestId: 1, partition: 0, entries });
    assert.ok(entries.reduce((sum, e) => sum + entryWireBytes(e), 0) + 64 >= frame.byteLength);
    assert.ok(versionWireBytes(v) >= 100);
    assert.ok(MAX_SYNC_ENTRIES >= 1);
  });
});

describe('readValue', () => {
  it('decodes what MessagePack decodes', () => {
    assert.deepEqual(readValue(encode({ a: [1, 'x'] })), { a: [1, 'x'] });
    assert.deepEqual(readValue(encode(new Uint8Array([1, 2]))), new Uint8Array([1, 2]));
  });

  it('answers bytes it cannot decode with an UndecodableValue holding them, never throwing', () => {
    for (const bytes of [
      new Uint8Array([0xc1]),
      new Uint8Array([0x92, 0x01]),
      new Uint8Array([0x01, 0x02]),
      new Uint8Array(),
    ]) {
      const value = readValue(bytes);
      assert.ok(isUndecodable(value), `${[...bytes].join(',')}`);
      assert.ok(value instanceof UndecodableValue);
      assert.deepEqual(value.bytes, bytes);
      assert.ok(value.reason.length > 0);
    }
    assert.ok(!isUndecodable('x'));
    assert.ok(!isUndecodable(null));
    assert.ok(!isUndecodable({ bytes: new Uint8Array(), reason: 'looks alike' }));
  });
});
