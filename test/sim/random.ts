/**
 * Seeded randomness for the simulation. Everything random in a run (latencies, losses, faults, clients' choices,
 * the nodes' own `Random`) is drawn from generators derived from the run's seed, so a seed replays a run exactly.
 *
 * The generator is sfc32 (Chris Doty-Humphrey's Small Fast Chaotic PRNG, from PractRand), seeded through
 * splitmix32: tiny, fast, and good enough for scheduling decisions; it is not for cryptography.
 */

/** splitmix32: spreads a 32-bit seed over 32 bits, so that nearby seeds give unrelated streams. */
function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a of a label, to derive independent child streams by name. */
function hashLabel(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A seeded pseudo-random stream with the helpers the simulation needs. */
export class Rng {
  /** The seed this stream was made from. */
  readonly seed: number;
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** @param seed - Any number; only its low 32 bits matter. */
  constructor(seed: number) {
    this.seed = seed >>> 0;
    const mix = splitmix32(this.seed);
    this.#a = mix() | 0;
    this.#b = mix() | 0;
    this.#c = mix() | 0;
    this.#d = mix() | 0;
    // sfc32's authors discard the first outputs so that weak seeds do not show in the stream.
    for (let i = 0; i < 12; i++) this.uint32();
  }

  /**
   * The next 32-bit unsigned integer. The state is kept as signed 32-bit integers, which carry the same bits as
   * sfc32's unsigned words: every step is then int32 arithmetic (`| 0`), and only the result is made unsigned. A
   * step with unsigned words (`>>> 0` after each sum) costs four times as much, and every frame draws its latency.
   */
  uint32(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const d = this.#d;
    const t = (a + b + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  }

  /** A uniform number in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /** A uniform element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty array');
    return items[this.int(items.length)]!;
  }

  /** An exponentially distributed number with the given mean. */
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.next());
  }

  /** `items` in a random order (a new array). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /**
   * An independent stream named `label`, derived from this stream's seed (not from its position), so adding draws
   * to one part of the simulation does not change the streams of the others.
   */
  fork(label: string): Rng {
    return new Rng((Math.imul(this.seed ^ 0x5bd1e995, 0x27d4eb2d) ^ hashLabel(label)) >>> 0);
  }

  /** This stream as the `Random` a node takes. */
  asRandom(): () => number {
    return () => this.next();
  }
}
