/**
 * Admission of an app's requests into the node: at most `maxActive` run at once, the rest wait their turn in
 * order, and past `maxWaiting` waiting a request is refused at once with `ERR_OVERLOADED` instead of joining a line
 * it could not get through in time. A burst of thousands of puts thus reaches the replicas as a steady stream they
 * can keep up with, instead of all at once, where their replies would queue behind each other past any timeout and
 * healthy replicas would look failed. Time spent waiting here is not counted against any replica.
 */
import { OverloadedError } from './errors.ts';

/** Options of {@link Admission}. */
export interface AdmissionOptions {
  /** Requests running at once, at most. */
  readonly maxActive: number;
  /** Requests waiting, at most; one more is refused with `ERR_OVERLOADED`. */
  readonly maxWaiting: number;
}

/** A FIFO gate of requests. */
export class Admission {
  readonly #options: AdmissionOptions;
  #active = 0;
  /** Starts of waiting requests, oldest first from `#head`. */
  #waiting: (() => void)[] = [];
  #head = 0;

  constructor(options: AdmissionOptions) {
    if (!(options.maxActive >= 1) || !(options.maxWaiting >= 0)) {
      throw new RangeError('maxActive must be ≥ 1 and maxWaiting ≥ 0');
    }
    this.#options = options;
  }

  /** Requests running now. */
  get active(): number {
    return this.#active;
  }

  /** Requests waiting now. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /** Runs `run` once admitted; refuses with `ERR_OVERLOADED` when too many wait already. */
  async run<T>(run: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#options.maxActive) {
      if (this.waiting >= this.#options.maxWaiting) {
        throw new OverloadedError(
          `the node has ${this.#active} requests running and ${this.waiting} waiting, its bound ` +
            `(${this.#options.maxWaiting} waiting); nothing was done: retry later, or issue fewer requests at once`,
        );
      }
      await new Promise<void>((start) => this.#waiting.push(start));
    } else this.#active++;
    try {
      return await run();
    } finally {
      this.#next();
    }
  }

  /** A request ended: the oldest waiting one takes its place. */
  #next(): void {
    if (this.#head < this.#waiting.length) {
      const start = this.#waiting[this.#head]!;
      this.#waiting[this.#head++] = undefined as unknown as () => void;
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      start();
    } else this.#active--;
  }
}
