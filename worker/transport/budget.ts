/**
 * A token bucket of bytes per second, for the background work of a node (partition transfers, anti-entropy): it
 * may spend at most `rate` bytes a second, with bursts of one second's worth, so that foreground requests keep the
 * data channels and the storage to themselves most of the time.
 */
import type { Clock, Timers } from '../env.ts';

/** A byte budget refilled at a fixed rate. */
export class ByteBudget {
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #rate: number;
  readonly #gate: (() => Promise<void>) | undefined;
  #tokens: number;
  #at: number;

  /**
   * `rate` bytes per second, a positive finite number. `gate`, when given, is awaited before every spending too:
   * anti-entropy passes one that waits for a pause in foreground requests.
   */
  constructor(rate: number, clock: Clock, timers: Timers, gate?: () => Promise<void>) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`byte rate must be positive, got ${String(rate)}`);
    this.#clock = clock;
    this.#timers = timers;
    this.#rate = rate;
    this.#gate = gate;
    this.#tokens = rate;
    this.#at = clock.now();
  }

  /** Bytes per second. */
  get rate(): number {
    return this.#rate;
  }

  /** Bytes that may be spent now without waiting. */
  available(): number {
    this.#refill();
    return Math.max(0, this.#tokens);
  }

  /**
   * Records `bytes` spent. Spending may go below zero (a reply is larger than asked for): the debt is paid by the
   * next {@link ready}.
   */
  spend(bytes: number): void {
    this.#refill();
    this.#tokens -= bytes;
  }

  /** Resolves once at least `bytes` (capped at one second's worth) may be spent. */
  async ready(bytes: number): Promise<void> {
    if (this.#gate !== undefined) await this.#gate();
    const want = Math.min(bytes, this.#rate);
    for (;;) {
      this.#refill();
      if (this.#tokens >= want) return;
      const waitMs = Math.max(1, Math.ceil(((want - this.#tokens) / this.#rate) * 1000));
      await new Promise<void>((resolve) => this.#timers.setTimeout(resolve, waitMs));
    }
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = now - this.#at;
    if (elapsed <= 0) {
      // A wall clock set back: refill from now on instead of waiting for it to come back to where it was.
      if (elapsed < 0) this.#at = now;
      return;
    }
    this.#at = now;
    this.#tokens = Math.min(this.#rate, this.#tokens + (elapsed / 1000) * this.#rate);
  }
}
