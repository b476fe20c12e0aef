/**
 * Corrupted and forged contexts, as a misbehaving or buggy client sends them. A context is untrusted input: every one
 * made here must be refused with `ERR_INVALID_ARGUMENT`, storing nothing. Three families:
 *
 * - malformed: not what `encodeContext` produces (random bytes, a truncated or re-alphabeted string, a base64url tail
 *   with stray bits, an over-long string, MessagePack that is not a clock or is a clock out of shape);
 * - out of range: a well-formed clock naming a counter above MAX_COUNTER (2^48): near 2^53, or 1e15;
 * - never issued: a well-formed clock, in range, naming a version no node drew: the coordinator's own future counter,
 *   another member's, or a node that never existed.
 *
 * The contexts are built by hand with MessagePack, never through `encodeContext`, which may itself refuse them.
 */
import { Encoder } from '@msgpack/msgpack';
import { decodeContext } from '../../worker/wire/context.ts';
import type { Rng } from './random.ts';

/** The kinds of bad context, each refused for its own reason. */
export const FORGERIES = [
  'random-bytes',
  'truncated',
  'wrong-alphabet',
  'stray-bits',
  'too-long',
  'not-a-clock',
  'unsorted',
  'repeated-node',
  'bad-counter',
  'bad-node',
  'bad-timestamp',
  'extra-field',
  'too-many-entries',
  'counter-near-2^53',
  'counter-1e15',
  'own-future',
  'other-future',
  'ghost-node',
] as const;

/** One kind of bad context. */
export type Forgery = (typeof FORGERIES)[number];

/** Which family of the module comment a forgery belongs to. */
export function familyOf(forgery: Forgery): 'malformed' | 'out-of-range' | 'never-issued' {
  if (forgery === 'own-future' || forgery === 'other-future' || forgery === 'ghost-node') return 'never-issued';
  if (forgery === 'counter-near-2^53' || forgery === 'counter-1e15') return 'out-of-range';
  return 'malformed';
}

/** What a forger knows when it makes a context. */
export interface ForgeInputs {
  readonly rng: Rng;
  /** The context a read of the key returned: '' when the key was absent or the read failed. */
  readonly real: string;
  /** The node the put goes to, which coordinates it when it owns the key. */
  readonly coordinator: string;
  /** The other members of the view. */
  readonly others: readonly string[];
  /** The highest counter each node has drawn so far. */
  readonly issued: (node: string) => number;
  /** Virtual ms, for timestamps. */
  readonly now: number;
}

interface Entry {
  node: unknown;
  counter: unknown;
  timestamp: unknown;
  [extra: string]: unknown;
}

const encoder = new Encoder();
const bigEncoder = new Encoder({ useBigInt64: true });
const MAX_COUNTER = 2 ** 48;
const CONTEXT_LIMIT = 4096;

/** A context of kind `kind`; see the module comment. */
export function forge(kind: Forgery, inputs: ForgeInputs): string {
  const { rng, real, coordinator, others, issued, now } = inputs;
  const base = (): Entry[] => {
    try {
      return decodeContext(real).map((e) => ({ node: e.node, counter: e.counter, timestamp: e.timestamp }));
    } catch {
      return [];
    }
  };
  // A well-formed string to spoil: the real context, or one naming a dot that was issued.
  const sample = (): string => {
    if (real.length >= 4) return real;
    const node = rng.pick([coordinator, ...others]);
    return pack([{ node, counter: Math.max(1, issued(node)), timestamp: now }]);
  };
  const anyNode = (): string => rng.pick([coordinator, ...others]);
  switch (kind) {
    case 'random-bytes': {
      const bytes = new Uint8Array(rng.between(4, 96));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
      // An array header could begin a clock: the empty clock is one byte, 0x90.
      while (isArrayHeader(bytes[0]!)) bytes[0] = rng.int(256);
      return base64url(bytes);
    }
    case 'truncated': {
      const s = sample();
      return s.slice(0, rng.between(1, s.length - 1));
    }
    case 'wrong-alphabet': {
      const s = sample();
      const bad = rng.pick(['+', '/', '=', '.', ' ', '\n', '*', 'é', '\u0000', '\u{1F600}']);
      if (rng.chance(0.2)) return `${s}${rng.chance(0.5) ? '=' : '=='}`;
      const at = rng.int(s.length);
      return s.slice(0, at) + bad + s.slice(at + 1);
    }
    case 'stray-bits': {
      // The last digit of a string whose length is 2 or 3 mod 4 carries bits past the last byte: they must be 0.
      let s = sample();
      if (s.length % 4 === 0) s = s.slice(0, -1);
      if (s.length % 4 === 1) s = s.slice(0, -1);
      const last = ALPHABET.indexOf(s[s.length - 1]!);
      const spare = s.length % 4 === 2 ? 0x0f : 0x03;
      return s.slice(0, -1) + ALPHABET[(last & ~spare) | (1 + rng.int(spare))]!;
    }
    case 'too-long':
      return sample().padEnd(CONTEXT_LIMIT + 1 + rng.int(4096), 'A');
    case 'not-a-clock':
      return base64url(
        encoder.encode(
          rng.pick<unknown>([
            { node: anyNode(), counter: 1, timestamp: now },
            'context',
            42,
            null,
            [anyNode(), 1, now],
            [[{ node: anyNode(), counter: 1, timestamp: now }]],
            new Uint8Array([1, 2, 3]),
          ]),
        ),
      );
    case 'unsorted': {
      const [a, b] = [...new Set([anyNode(), anyNode(), 'zz'])].sort().reverse();
      return pack([
        { node: a, counter: 1, timestamp: now },
        { node: b, counter: 1, timestamp: now },
      ]);
    }
    case 'repeated-node': {
      const node = anyNode();
      return pack([
        { node, counter: 1, timestamp: now },
        { node, counter: 2, timestamp: now },
      ]);
    }
    case 'bad-counter': {
      const counter = rng.pick<unknown>([0, -1, 1.5, Number.NaN, Infinity, '5', 2 ** 53, 1e300, 2n ** 64n - 1n]);
      return pack([{ node: anyNode(), counter, timestamp: now }]);
    }
    case 'bad-node': {
      const node = rng.pick<unknown>(['', 'a b', 'x'.repeat(65), 'né', 7, null]);
      return pack([{ node, counter: 1, timestamp: now }]);
    }
    case 'bad-timestamp': {
      const timestamp = rng.pick<unknown>([-1, Number.NaN, Infinity, 'now', null]);
      return pack([{ node: anyNode(), counter: 1, timestamp }]);
    }
    case 'extra-field':
      return pack([{ node: anyNode(), counter: 1, timestamp: now, hint: rng.pick<unknown>([1, 'x', null]) }]);
    case 'too-many-entries':
      return pack(
        Array.from({ length: 11 + rng.int(8) }, (_, i) => ({
          node: `g${String(i).padStart(2, '0')}`,
          counter: 1,
          timestamp: now,
        })),
      );
    case 'counter-near-2^53':
      return pack(
        withEntry(base(), {
          node: rng.pick([coordinator, ...others, ghost(rng)]),
          counter: rng.pick([2 ** 53 - 1, 2 ** 53 - 2, 2 ** 53 - 1 - rng.int(1000)]),
          timestamp: now,
        }),
      );
    case 'counter-1e15':
      return pack(
        withEntry(base(), { node: rng.pick([coordinator, ...others, ghost(rng)]), counter: 1e15, timestamp: now }),
      );
    case 'own-future':
      return pack(withEntry(base(), { node: coordinator, counter: future(rng, issued(coordinator)), timestamp: now }));
    case 'other-future': {
      const node = others.length > 0 ? rng.pick(others) : coordinator;
      return pack(withEntry(base(), { node, counter: future(rng, issued(node)), timestamp: now }));
    }
    case 'ghost-node':
      return pack(
        withEntry(base(), { node: ghost(rng), counter: rng.pick([1, 2, 1000, MAX_COUNTER]), timestamp: now }),
      );
  }
}

/**
 * A counter above `issued` that its node will not reach during a run: far enough ahead that no write in flight
 * catches up with it, or the very top of the range.
 */
function future(rng: Rng, issued: number): number {
  return rng.pick([issued + 1000 + rng.int(1000), issued + 1_000_000, MAX_COUNTER - 1, MAX_COUNTER]);
}

/** A node id no simulated cluster uses (theirs are `nNN`). */
function ghost(rng: Rng): string {
  return `ghost${rng.int(100)}`;
}

/** `entries` with `entry` in its node's place, sorted by node as a clock is. */
function withEntry(entries: Entry[], entry: Entry): Entry[] {
  return [...entries.filter((e) => e.node !== entry.node), entry].sort((a, b) =>
    String(a.node) < String(b.node) ? -1 : String(a.node) > String(b.node) ? 1 : 0,
  );
}

/** The context string of `entries`, as `encodeContext` would write it were they well-formed. */
function pack(entries: Entry[]): string {
  const big = entries.some((e) => typeof e.counter === 'bigint');
  return base64url((big ? bigEncoder : encoder).encode(entries));
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** True for the first byte of a MessagePack array. */
function isArrayHeader(byte: number): boolean {
  return (byte >= 0x90 && byte <= 0x9f) || byte === 0xdc || byte === 0xdd;
}
