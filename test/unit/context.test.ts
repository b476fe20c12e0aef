import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encode as msgpackEncode, ExtData } from '@msgpack/msgpack';
import { decodeContext, encodeContext, MAX_CONTEXT_LENGTH } from '../../worker/wire/context.ts';
import { InvalidArgumentError } from '../../worker/errors.ts';
import {
  type ClockEntry,
  increment,
  MAX_CLOCK_ENTRIES,
  MAX_COUNTER,
  type VClock,
} from '../../worker/versions/vclock.ts';

const ID_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'.split('');
const entryArb: fc.Arbitrary<ClockEntry> = fc.record(
  {
    node: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 64 }),
    counter: fc.integer({ min: 1, max: MAX_COUNTER }),
    timestamp: fc.oneof(fc.nat(), fc.double({ min: 0, noNaN: true, noDefaultInfinity: true })),
  },
  { noNullPrototype: true },
);
const clockArb: fc.Arbitrary<VClock> = fc
  .uniqueArray(entryArb, { selector: (e) => e.node, maxLength: MAX_CLOCK_ENTRIES })
  .map((entries) => entries.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)));

/** The base64url of `bytes`, computed with Node's Buffer as an independent reference. */
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

function assertInvalid(context: unknown, pattern: RegExp): void {
  assert.throws(
    () => decodeContext(context as string),
    (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(error)}`);
      assert.equal(error.code, 'ERR_INVALID_ARGUMENT');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

const clock: VClock = increment(increment([], 'node-b', 1700000000000), 'node-a', 1700000000001);

describe('encodeContext and decodeContext', () => {
  it('round trips every well-formed clock exactly', () => {
    fc.assert(
      fc.property(clockArb, (c) => {
        const context = encodeContext(c);
        assert.deepStrictEqual(decodeContext(context), structuredClone(c));
      }),
      { numRuns: 2000 },
    );
  });

  it('produces unpadded base64url of the clock in MessagePack', () => {
    fc.assert(
      fc.property(clockArb, (c) => {
        const context = encodeContext(c);
        assert.match(context, /^[A-Za-z0-9_-]*$/);
        assert.equal(context, b64(msgpackEncode(c)));
      }),
      { numRuns: 500 },
    );
  });

  it('encodes a full clock of the longest node ids within MAX_CONTEXT_LENGTH', () => {
    const full = Array.from({ length: MAX_CLOCK_ENTRIES }, (_, i) => ({
      node: `${i}`.padStart(64, 'x'),
      counter: MAX_COUNTER,
      timestamp: Number.MAX_VALUE,
    }));
    const context = encodeContext(full);
    assert.ok(context.length <= MAX_CONTEXT_LENGTH, `${context.length} characters`);
    assert.deepStrictEqual(decodeContext(context), full);
  });

  it('decodes undefined, null and the empty string as the empty clock', () => {
    assert.deepStrictEqual(decodeContext(undefined), []);
    assert.deepStrictEqual(decodeContext(null), []);
    assert.deepStrictEqual(decodeContext(''), []);
  });

  it('round trips the empty clock', () => {
    assert.deepStrictEqual(decodeContext(encodeContext([])), []);
  });

  it('leaves out properties of clock entries that a clock does not have', () => {
    const withExtra = clock.map((e) => ({ ...e, note: 'x' }));
    assert.equal(encodeContext(withExtra), encodeContext(clock));
  });

  it('refuses to encode a clock that is not well-formed', () => {
    for (const bad of [
      [...clock].reverse(),
      [{ node: 'a', counter: 0, timestamp: 0 }],
      [{ node: 'a b', counter: 1, timestamp: 0 }],
      [{ node: 'a', counter: 1, timestamp: -1 }],
      Array.from({ length: MAX_CLOCK_ENTRIES + 1 }, (_, i) => ({ node: `n${i + 10}`, counter: 1, timestamp: 0 })),
    ]) {
      assert.throws(() => encodeContext(bad), { code: 'ERR_INVALID_ARGUMENT', name: 'InvalidArgumentError' });
    }
  });
});

describe('decodeContext rejects with ERR_INVALID_ARGUMENT', () => {
  it('a context that is not a string', () => {
    assertInvalid(42, /^invalid context: expected a string, got number/);
    assertInvalid({}, /^invalid context: expected a string, got object/);
  });

  it('a context over MAX_CONTEXT_LENGTH characters', () => {
    assertInvalid('A'.repeat(MAX_CONTEXT_LENGTH + 1), /^invalid context: 4097 characters is over the limit of 4096/);
  });

  it('characters outside the base64url alphabet', () => {
    const good = encodeContext(clock);
    for (const bad of [`${good.slice(0, -1)}+`, `${good.slice(0, 4)}/${good.slice(5)}`, `${good} `, `é${good}`]) {
      assertInvalid(bad, /^invalid context: not unpadded base64url/);
    }
  });

  it('base64 padding', () => {
    const good = encodeContext([{ node: 'a', counter: 1, timestamp: 0 }]);
    assert.notEqual(good.length % 4, 0);
    assertInvalid(good + '='.repeat(4 - (good.length % 4)), /^invalid context: not unpadded base64url/);
  });

  it('a length no base64url string has', () => {
    assertInvalid('kAAAA', /^invalid context: not unpadded base64url/);
  });

  it('a last character with bits that no encoder sets', () => {
    // 'kA' is [] (0x90); 'kB' decodes to the same byte with a stray low bit.
    assert.deepStrictEqual(decodeContext('kA'), []);
    assertInvalid('kB', /^invalid context: not unpadded base64url/);
  });

  it('bytes that are not MessagePack', () => {
    assertInvalid(b64(new Uint8Array([0xc1])), /^invalid context: not valid MessagePack/);
    assertInvalid(b64(msgpackEncode(clock).subarray(0, 10)), /^invalid context: not valid MessagePack/);
    assertInvalid(b64(new Uint8Array([...msgpackEncode(clock), 0])), /^invalid context: not valid MessagePack/);
  });

  it('MessagePack extensions', () => {
    assertInvalid(b64(msgpackEncode([new ExtData(1, new Uint8Array(4))])), /^invalid context: not valid MessagePack/);
    assertInvalid(b64(msgpackEncode(new Date(0))), /^invalid context: not valid MessagePack/);
  });

  it('MessagePack that is not an array of clock entries', () => {
    assertInvalid(b64(msgpackEncode({ a: 1 })), /^invalid context: context: expected an array of clock entries/);
    assertInvalid(b64(msgpackEncode('kA')), /^invalid context: context: expected an array of clock entries/);
    assertInvalid(b64(msgpackEncode([1])), /^invalid context: context\[0\]: expected a map/);
  });

  it('an entry with a missing or extra field', () => {
    assertInvalid(
      b64(msgpackEncode([{ node: 'a', counter: 1 }])),
      /^invalid context: context\[0\]\.timestamp: missing/,
    );
    assertInvalid(
      b64(msgpackEncode([{ node: 'a', counter: 1, timestamp: 0, x: 1 }])),
      /^invalid context: context\[0\]\.x: unexpected field/,
    );
  });

  it('an entry whose counter is not an integer from 1 to MAX_COUNTER (2^48)', () => {
    for (const counter of [0, -1, 1.5, MAX_COUNTER + 1, 1e15, 2 ** 53 - 1, 2 ** 53, '1']) {
      assertInvalid(
        b64(msgpackEncode([{ node: 'a', counter, timestamp: 0 }])),
        /^invalid context: context\[0\]\.counter: expected an integer from 1 to 2\^48/,
      );
    }
    assert.deepStrictEqual(decodeContext(b64(msgpackEncode([{ node: 'a', counter: MAX_COUNTER, timestamp: 0 }]))), [
      { node: 'a', counter: MAX_COUNTER, timestamp: 0 },
    ]);
  });

  it('refuses to encode a clock naming a counter above MAX_COUNTER', () => {
    assert.throws(
      () => encodeContext([{ node: 'a', counter: 2 ** 53 - 1, timestamp: 0 }]),
      (error: unknown) => error instanceof InvalidArgumentError && /2\^48/.test(error.message),
    );
  });

  it('an entry whose timestamp is negative or not finite', () => {
    for (const timestamp of [-1, Number.NaN, Infinity, null]) {
      assertInvalid(
        b64(msgpackEncode([{ node: 'a', counter: 1, timestamp }])),
        /^invalid context: context\[0\]\.timestamp: expected a finite non-negative number/,
      );
    }
  });

  it('an entry whose node is not a node id', () => {
    assertInvalid(
      b64(msgpackEncode([{ node: '', counter: 1, timestamp: 0 }])),
      /^invalid context: context\[0\]\.node: "" is not a node id/,
    );
  });

  it('entries out of order or naming a node twice', () => {
    assertInvalid(
      b64(msgpackEncode([...clock].reverse())),
      /^invalid context: context\[1\]\.node: entries must be sorted/,
    );
    assertInvalid(
      b64(msgpackEncode([clock[0], clock[0]])),
      /^invalid context: context\[1\]\.node: entries must be sorted/,
    );
  });

  it('more than MAX_CLOCK_ENTRIES entries', () => {
    const big = Array.from({ length: MAX_CLOCK_ENTRIES + 1 }, (_, i) => ({
      node: `n${i + 10}`,
      counter: 1,
      timestamp: 0,
    }));
    assertInvalid(b64(msgpackEncode(big)), /^invalid context: context: 11 entries is over the limit of 10/);
  });
});

/**
 * Decodes `text`; true when it is accepted, false for an InvalidArgumentError; fails on any other exception. What
 * it accepts must be a well-formed clock (encodeContext checks that) that round trips unchanged.
 */
function acceptedOrInvalid(text: string): boolean {
  let decoded: VClock;
  try {
    decoded = decodeContext(text);
  } catch (error) {
    assert.ok(error instanceof InvalidArgumentError && error.code === 'ERR_INVALID_ARGUMENT', String(error));
    return false;
  }
  assert.deepStrictEqual(decodeContext(encodeContext(decoded)), decoded);
  return true;
}

describe('decodeContext under fuzzing', () => {
  it('answers random strings with a well-formed clock or ERR_INVALID_ARGUMENT only', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 200 })), (text) => {
        acceptedOrInvalid(text.replace(/=+$/, ''));
      }),
      { numRuns: 5000 },
    );
  });

  it('answers valid contexts with one character changed with a well-formed clock or ERR_INVALID_ARGUMENT only', () => {
    let rejected = 0;
    fc.assert(
      fc.property(clockArb, fc.nat(), fc.constantFrom(...'AQgw_-9z+/=.'.split('')), (c, at, ch) => {
        const good = encodeContext(c);
        const i = at % good.length;
        if (!acceptedOrInvalid(good.slice(0, i) + ch + good.slice(i + 1))) rejected++;
      }),
      { numRuns: 3000 },
    );
    assert.ok(rejected > 0);
  });

  it('answers valid contexts cut short with ERR_INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(
        clockArb.filter((c) => c.length > 0),
        fc.nat(),
        (c, at) => {
          const good = encodeContext(c);
          assert.equal(acceptedOrInvalid(good.slice(0, 1 + (at % (good.length - 1)))), false);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
