/**
 * Join damping: a node id that joins again and again (a socket flapping at 50 Hz), or an address that joins id after
 * id, makes every tab of the cluster rebuild its ring and open peer connections at each view. Each key (a node id of
 * a cluster, a client address) gets a token bucket of joins: a burst of them at once, then one per `refillMs`; a
 * join finding the bucket empty is refused with how long to wait. Honest tabs join once, and again after a lost
 * connection or a reload: far under the bucket.
 */

/** The shape of one key's allowance. */
export interface DampingOptions {
  /** Joins a key may make at once. */
  readonly burst: number;
  /** Ms per join regained. */
  readonly refillMs: number;
  /** Most keys remembered; past it, keys whose bucket is full again are forgotten. @default 100000 */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets of joins, by key. */
export class JoinDamper {
  readonly #options: DampingOptions;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: DampingOptions) {
    if (!(options.burst >= 1) || !(options.refillMs > 0)) throw new RangeError('damping needs burst ≥ 1, refillMs > 0');
    this.#options = options;
  }

  /** Takes a join for `key` at `now`: 0 when admitted, else the ms until the next join would be. */
  admit(key: string, now: number): number {
    const { burst, refillMs } = this.#options;
    const bucket = this.#buckets.get(key) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) / refillMs);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.#buckets.set(key, bucket);
      return Math.ceil((1 - bucket.tokens) * refillMs);
    }
    bucket.tokens -= 1;
    this.#buckets.set(key, bucket);
    if (this.#buckets.size > (this.#options.maxKeys ?? 100_000)) this.#forgetIdle(now);
    return 0;
  }

  /** Forgets the keys whose bucket has filled up again: remembering them changes nothing. */
  #forgetIdle(now: number): void {
    const { burst, refillMs } = this.#options;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) / refillMs >= burst) this.#buckets.delete(key);
    }
  }
}
