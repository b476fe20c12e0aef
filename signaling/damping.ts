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
  /** Most keys remembered; past it, the one whose last join is oldest is forgotten. @default 100000 */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token buckets of joins, by key. */
export class JoinDamper {
  readonly #options: DampingOptions;
  /** Buckets by key, the longest remembered first. */
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: DampingOptions) {
    if (!(options.burst >= 1) || !(options.refillMs > 0)) throw new RangeError('damping needs burst ≥ 1, refillMs > 0');
    this.#options = options;
  }

  /** The ms until `key` may join at `now`: 0 when it may now. Takes nothing. */
  wait(key: string, now: number): number {
    const tokens = this.#tokens(key, now);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.#options.refillMs);
  }

  /** Takes a join for `key` at `now` (call it once {@link JoinDamper.wait} said 0, for every damper asked). */
  take(key: string, now: number): void {
    const bucket = { tokens: Math.max(0, this.#tokens(key, now) - 1), at: now };
    this.#buckets.delete(key);
    this.#buckets.set(key, bucket);
    // Forgetting the key remembered longest may give it a full bucket early: a bounded gift, against unbounded memory.
    if (this.#buckets.size > (this.#options.maxKeys ?? 100_000)) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
  }

  #tokens(key: string, now: number): number {
    const { burst, refillMs } = this.#options;
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return burst;
    return Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) / refillMs);
  }
}
