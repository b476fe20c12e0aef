/**
 * MD5 (RFC 1321), pure, for the ring's positions and the Merkle trees' digests: both hash small inputs (a key, a key
 * with its dots) on hot paths, where a general-purpose hasher's objects and buffers cost more than the hashing. Not
 * for anything that needs a secure hash; md5 here only spreads keys and detects differences between replicas.
 */

// K[i] = floor(abs(sin(i + 1)) * 2^32), written out (RFC 1321's table) rather than computed: Math.sin may round
// differently in another engine.
// prettier-ignore
const K = Int32Array.of(
  0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
  0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
  0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
  0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
  0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
  0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
  0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
  0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
  0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
  0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
  0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
  0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
  0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
  0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
  0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
  0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
);
// Left-rotation amounts, per round and step.
// prettier-ignore
const S = Uint8Array.of(
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
  5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
  6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
);

/** The state words A, B, C, D of the last {@link md5Words} call. */
const state = new Int32Array(4);
/** One block's 16 little-endian words. */
const words = new Int32Array(16);
/** The padded last block or two. */
const tail = new Uint8Array(128);

function block(bytes: Uint8Array, at: number): void {
  for (let i = 0; i < 16; i++, at += 4) {
    words[i] = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  for (let i = 0; i < 64; i++) {
    let f: number;
    let g: number;
    if (i < 16) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (i < 32) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) & 15;
    } else if (i < 48) {
      f = b ^ c ^ d;
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) & 15;
    }
    const x = (a + f + K[i]! + words[g]!) | 0;
    const s = S[i]!;
    a = d;
    d = c;
    c = b;
    b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
}

/**
 * The md5 of the first `length` bytes of `bytes` (all of them by default) as its four state words: the digest is
 * their little-endian bytes, A first. The array is shared and overwritten by the next call: read it at once.
 */
export function md5Words(bytes: Uint8Array, length: number = bytes.length): Int32Array {
  state[0] = 0x67452301;
  state[1] = 0xefcdab89 | 0;
  state[2] = 0x98badcfe | 0;
  state[3] = 0x10325476;
  const n = length;
  const whole = n - (n % 64);
  for (let at = 0; at < whole; at += 64) block(bytes, at);
  const rest = n - whole;
  for (let i = 0; i < rest; i++) tail[i] = bytes[whole + i]!;
  tail[rest] = 0x80;
  const end = rest < 56 ? 64 : 128;
  tail.fill(0, rest + 1, end - 8);
  // The length in bits, 64-bit little-endian.
  const bitsLo = (n * 8) >>> 0;
  const bitsHi = Math.floor(n / 2 ** 29);
  for (let i = 0; i < 4; i++) {
    tail[end - 8 + i] = (bitsLo >>> (8 * i)) & 0xff;
    tail[end - 4 + i] = (bitsHi >>> (8 * i)) & 0xff;
  }
  block(tail, 0);
  if (end === 128) block(tail, 64);
  return state;
}

/** A state word as the big-endian 32-bit number its four digest bytes spell, unsigned. */
export function bigEndian(word: number): number {
  return (((word & 0xff) << 24) | ((word & 0xff00) << 8) | ((word >>> 8) & 0xff00) | (word >>> 24)) >>> 0;
}

/** The 16-byte md5 digest of `bytes`, fresh. */
export function md5(bytes: Uint8Array): Uint8Array {
  const w = md5Words(bytes);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = (w[i >> 2]! >>> (8 * (i & 3))) & 0xff;
  return out;
}
