/**
 * The client's opaque context: a vector clock as the base64url (no padding) of its MessagePack. Clients hand
 * contexts back on later puts, so a context is untrusted input and `decodeContext` accepts only what
 * `encodeContext` could have produced. Written without `Buffer`, for browsers and Node alike.
 */
import { Decoder, Encoder, type ExtensionCodecType } from '@msgpack/msgpack';
import { InvalidArgumentError, MalformedFrameError } from '../errors.ts';
import { packClock, readClock, unpackClock } from './codec.ts';
import { EMPTY_CLOCK, type VClock } from '../versions/vclock.ts';

/**
 * Longest context string accepted, in characters. A full clock of `MAX_CLOCK_ENTRIES` entries with 64-character
 * node ids encodes to about 1.3 KiB.
 * @default 4096
 */
export const MAX_CONTEXT_LENGTH = 4096;

const NO_EXTENSIONS: ExtensionCodecType<undefined> = {
  tryToEncode: () => null,
  decode: (_data, type) => {
    throw new Error(`extension type ${type} is not allowed`);
  },
};

const encoder = new Encoder({ extensionCodec: NO_EXTENSIONS });

// The input is at most 3 KiB of bytes, so these limits only keep the decoder from building anything a clock
// never holds; the clock checker reports the precise problem (such as too many entries).
const decoder = new Decoder({
  extensionCodec: NO_EXTENSIONS,
  maxStrLength: 256,
  maxBinLength: 0,
  maxArrayLength: MAX_CONTEXT_LENGTH,
  maxMapLength: 16,
  maxExtLength: 0,
});

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const SIXTETS = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) SIXTETS[ALPHABET.charCodeAt(i)] = i;

/**
 * The opaque context string of `clock`.
 * @throws InvalidArgumentError when `clock` is not well-formed (unsorted, a bad node id, counter or timestamp) or
 * has more than `MAX_CLOCK_ENTRIES` entries.
 */
export function encodeContext(clock: VClock): string {
  const packed = packClock(clock);
  if (packed !== null) return toBase64Url(packed);
  let copy: VClock;
  try {
    // The copy also drops any extra properties of the caller's entries, which decodeContext would refuse.
    copy = readClock(
      clock.map((e) => ({ node: e.node, counter: e.counter, timestamp: e.timestamp })),
      'clock',
    );
  } catch (error) {
    throw new InvalidArgumentError(`cannot encode the context: ${errorText(error)}`, { cause: error });
  }
  return toBase64Url(encoder.encode(copy));
}

/**
 * The clock of a context string from {@link encodeContext}; the empty clock for `undefined`, `null` or `''`.
 * @throws InvalidArgumentError (`ERR_INVALID_ARGUMENT`) for anything `encodeContext` does not produce.
 */
export function decodeContext(context: string | undefined | null): VClock {
  if (context === undefined || context === null || context === '') return EMPTY_CLOCK;
  if (typeof context !== 'string') {
    throw new InvalidArgumentError(`invalid context: expected a string, got ${typeof context}`);
  }
  if (context.length > MAX_CONTEXT_LENGTH) {
    throw new InvalidArgumentError(
      `invalid context: ${context.length} characters is over the limit of ${MAX_CONTEXT_LENGTH}`,
    );
  }
  const bytes = fromBase64Url(context);
  if (bytes === null) throw new InvalidArgumentError('invalid context: not unpadded base64url');
  const clock = unpackClock(bytes);
  if (clock !== null) return clock;
  let raw: unknown;
  try {
    raw = decoder.decode(bytes);
  } catch (error) {
    throw new InvalidArgumentError(`invalid context: not valid MessagePack (${errorText(error)})`, { cause: error });
  }
  try {
    return readClock(raw, 'context');
  } catch (error) {
    if (!(error instanceof MalformedFrameError)) throw error;
    throw new InvalidArgumentError(`invalid context: ${error.message}`, { cause: error });
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// Base64url digits by sixtet, as bytes, and the text they spell is read in one call: building the string a few
// characters at a time costs more than the encoding itself.
const DIGITS = new Uint8Array(64);
for (let i = 0; i < 64; i++) DIGITS[i] = ALPHABET.charCodeAt(i);
const digits = new Uint8Array(Math.ceil((MAX_CONTEXT_LENGTH * 3) / 4) + 4);
const ascii = new TextDecoder('latin1');

function toBase64Url(bytes: Uint8Array): string {
  const n = bytes.length;
  const out = n <= ((digits.length - 4) / 4) * 3 ? digits : new Uint8Array(Math.ceil((n * 4) / 3) + 4);
  let o = 0;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = DIGITS[v >> 18]!;
    out[o++] = DIGITS[(v >> 12) & 63]!;
    out[o++] = DIGITS[(v >> 6) & 63]!;
    out[o++] = DIGITS[v & 63]!;
  }
  if (n - i === 1) {
    const v = bytes[i]! << 16;
    out[o++] = DIGITS[v >> 18]!;
    out[o++] = DIGITS[(v >> 12) & 63]!;
  } else if (n - i === 2) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out[o++] = DIGITS[v >> 18]!;
    out[o++] = DIGITS[(v >> 12) & 63]!;
    out[o++] = DIGITS[(v >> 6) & 63]!;
  }
  return ascii.decode(out.subarray(0, o));
}

// Decoded contexts land here and are read before the next decode: a context's bytes are a few dozen, and a fresh
// array of more than 64 bytes costs V8 more than decoding it.
const scratch = new Uint8Array((MAX_CONTEXT_LENGTH / 4) * 3);

// The bytes of unpadded base64url `text` (at most MAX_CONTEXT_LENGTH characters), as a view of `scratch` valid
// until the next call, or null when it is not exactly what toBase64Url produces: a character outside the alphabet,
// padding, an impossible length, or non-zero bits after the last byte.
function fromBase64Url(text: string): Uint8Array | null {
  const tail = text.length % 4;
  if (tail === 1) return null;
  const out = scratch.subarray(0, ((text.length - tail) / 4) * 3 + (tail === 0 ? 0 : tail - 1));
  let bits = 0;
  let count = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const sixtet = code < 128 ? SIXTETS[code]! : -1;
    if (sixtet < 0) return null;
    bits = (bits << 6) | sixtet;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[o++] = (bits >> count) & 0xff;
      bits &= (1 << count) - 1;
    }
  }
  return bits === 0 ? out : null;
}
