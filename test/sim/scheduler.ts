/**
 * Virtual time for the simulation: events ordered by time, then by the order they were scheduled, and a loop that
 * runs them. Virtual time is whole milliseconds, so that events fall together: all events due at
 * one instant run as one batch, then the loop lets every microtask chain they started finish (see `run`) before
 * time moves on. Storage and node code are Promise-based, so without that drain a continuation would observe
 * a later virtual time than its cause.
 */
import type { Clock, TimerHandle, Timers } from '../../worker/env.ts';

/**
 * Something events belong to. A dead owner's events are dropped when they come due (a crashed node's timers); a
 * paused owner's wait until the pause ends (a frozen or throttled tab).
 */
export interface Owner {
  alive: boolean;
  /** Virtual ms until which the owner runs nothing. */
  pausedUntil?: number;
}

/** An owner that never dies: the clients', the network's and the fault driver's events. */
export const WORLD: Owner = Object.freeze({ alive: true });

/** One scheduled callback. Also the handle `Timers.setTimeout` returns. */
export interface SimEvent {
  time: number;
  readonly owner: Owner;
  callback: (() => void) | null;
}

/** Settled once: a reaction to it is the cheapest microtask (Node's `queueMicrotask` makes an async resource). */
const RESOLVED = Promise.resolve();

/** Batches between real event-loop turns, which let the process's own I/O and timers (a test runner's) run. */
const TURN_EVERY = 256;

/**
 * The virtual clock and event queue of one simulation run. Events wait in one bucket per virtual millisecond, in
 * the order they were scheduled, and a binary heap orders the buckets' times: many events share a millisecond, so
 * the heap stays small and a batch is one array.
 */
export class Scheduler {
  #now = 0;
  readonly #buckets = new Map<number, SimEvent[]>();
  /** Min-heap of the times that have a bucket. */
  readonly #times: number[] = [];
  #pending = 0;
  /** Callbacks run so far (cancelled and dropped ones excluded). */
  eventsRun = 0;
  /** Batches run so far, each followed by one microtask drain. */
  batches = 0;
  /** Errors thrown by event callbacks; node code must not throw from a timer or a delivery. */
  readonly errors: unknown[] = [];

  /** The current virtual time, ms since the start of the run. */
  get now(): number {
    return this.#now;
  }

  /** Events waiting, cancelled ones included until they come due. */
  get pending(): number {
    return this.#pending;
  }

  /** A clock reading this scheduler's virtual time. */
  readonly clock: Clock = { now: () => this.#now };

  /** Runs `callback` `delay` ms from now (whole ms, at least 0), unless `owner` has died by then. */
  schedule(delay: number, callback: () => void, owner: Owner = WORLD): SimEvent {
    const time = this.#now + (delay > 0 ? Math.ceil(delay) : 0);
    const event: SimEvent = { time, owner, callback };
    this.#defer(event, time);
    return event;
  }

  /** Cancels an event; cancelling one that has run or was cancelled does nothing. */
  cancel(event: SimEvent): void {
    event.callback = null;
  }

  /** A `Timers` facade whose timers belong to `owner`: when the owner dies, its timers never fire. */
  timersFor(owner: Owner): Timers {
    return {
      setTimeout: (callback: () => void, ms: number): TimerHandle => this.schedule(ms, callback, owner),
      clearTimeout: (handle: TimerHandle): void => {
        if (handle !== null && typeof handle === 'object' && 'callback' in handle) this.cancel(handle as SimEvent);
      },
    };
  }

  /** A promise that resolves `ms` virtual ms from now. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.schedule(ms, resolve));
  }

  /**
   * Runs events until `done()` holds (checked before every batch), virtual time would pass `until`, or nothing is
   * left to run. When it stops for `until`, the clock is set to `until`.
   * @returns Why it stopped.
   */
  run(done: () => boolean, until = Infinity): Promise<'done' | 'time' | 'idle'> {
    return new Promise((resolve, reject) => {
      // One batch per step, each step once every microtask chain the one before started has finished: `tick` runs
      // as a microtask, and a `process.nextTick` queued from inside a microtask runs only once V8 has emptied the
      // microtask queue (Node runs ticks between microtask checkpoints, never inside one), so the next step comes
      // after every chain, however long. A `setImmediate` turn does the same but costs an event-loop iteration (a
      // poll with zero timeout), and a run has tens of thousands of batches.
      const tick = (): void => void process.nextTick(step);
      const step = (): void => {
        try {
          if (done()) return resolve('done');
          const time = this.#times[0];
          if (time === undefined) return resolve('idle');
          if (time > until) {
            this.#now = until;
            return resolve('time');
          }
          this.#batch(time);
        } catch (error) {
          reject(error);
          return;
        }
        this.batches++;
        if (this.batches % TURN_EVERY === 0) setImmediate(step);
        else void RESOLVED.then(tick);
      };
      // The first step too: the end of a run calls this once per key it reads, each a turn of the event loop before.
      void RESOLVED.then(tick);
    });
  }

  /** Runs the events due at `time`, the earliest time with a bucket. */
  #batch(time: number): void {
    this.#popTime();
    const bucket = this.#buckets.get(time)!;
    // Events scheduled for this same instant while the batch runs go to a new bucket: the next batch.
    this.#buckets.delete(time);
    this.#now = time;
    this.#pending -= bucket.length;
    for (let i = 0; i < bucket.length; i++) {
      const event = bucket[i]!;
      const callback = event.callback;
      if (callback === null || !event.owner.alive) continue;
      const resume = event.owner.pausedUntil;
      if (resume !== undefined && resume > time) {
        this.#defer(event, resume);
        continue;
      }
      event.callback = null;
      this.eventsRun++;
      try {
        callback();
      } catch (error) {
        this.errors.push(error);
      }
    }
  }

  /** Runs everything due in the next `ms` virtual ms and leaves the clock `ms` later. */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    if ((await this.run(() => false, until)) === 'idle') this.#now = until;
  }

  /** Files an event under `time`; a deferred event keeps its handle, so clearTimeout still finds it. */
  #defer(event: SimEvent, time: number): void {
    event.time = time;
    let bucket = this.#buckets.get(time);
    if (bucket === undefined) {
      bucket = [];
      this.#buckets.set(time, bucket);
      this.#pushTime(time);
    }
    bucket.push(event);
    this.#pending++;
  }

  #pushTime(time: number): void {
    const heap = this.#times;
    let i = heap.length;
    heap.push(time);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p <= time) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = time;
  }

  #popTime(): void {
    const heap = this.#times;
    const last = heap.pop()!;
    const size = heap.length;
    if (size === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && heap[right]! < heap[left]! ? right : left;
      if (heap[child]! >= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}
