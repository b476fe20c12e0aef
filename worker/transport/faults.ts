/**
 * Fault injection in the node's own transport. A browser cannot cut an established data channel from outside
 * (Playwright's `setOffline` leaves data channels up), so partitions, loss and latency between tabs are decided
 * here, at the one place every message of the node passes, in and out.
 *
 * Decisions are made per message, not per frame: a message cut into chunks is dropped or held whole. Real data
 * channels are reliable and ordered, so they never lose one chunk of a message; losing one here would look to the
 * receiver like a malformed frame from an honest peer instead of like a lost message.
 *
 * Pure state and decisions: randomness, clock and timers come in as parameters, so that tests run it in virtual time.
 */
import type { Clock, Random, TimerHandle, Timers } from '../env.ts';
import { InvalidArgumentError } from '../errors.ts';

/** The longest delay {@link Faults.setDelay} accepts, ms. */
export const MAX_FAULT_DELAY_MS = 60_000;

/** The faults in force and what they did. */
export interface FaultState {
  /** Node ids cut off from this node; this node's own id means cut off from everyone. Sorted. */
  readonly isolated: string[];
  /** Probability in [0, 1] that a message in or out is dropped. */
  readonly dropRate: number;
  /** Ms each outgoing message is held before it is sent. */
  readonly delayMs: number;
  /** Messages dropped by isolation or by the drop rate, in and out. */
  readonly dropped: number;
  /** Outgoing messages held by the delay. */
  readonly delayed: number;
}

/** What {@link Faults} needs from the place it runs in. */
export interface FaultsOptions {
  /** This node's id: isolating it cuts the node from every peer. */
  readonly self: string;
  /** Draws the drop-rate decisions. */
  readonly random: Random;
  readonly clock: Clock;
  /** Hold delayed messages. */
  readonly timers: Timers;
}

/** A message held by the delay. */
interface Held {
  readonly due: number;
  readonly deliver: () => void;
}

/** The held messages of one peer, in sending order, and the timer that releases the head. */
interface PeerQueue {
  readonly held: Held[];
  timer: TimerHandle | undefined;
}

/** Checks a node id list for {@link Faults.isolate}; throws `ERR_INVALID_ARGUMENT` otherwise. */
export function validateNodeIds(nodeIds: unknown): asserts nodeIds is readonly string[] {
  if (!Array.isArray(nodeIds)) throw new InvalidArgumentError('nodeIds must be an array of node ids');
  for (const id of nodeIds as unknown[]) {
    if (typeof id !== 'string' || id === '') throw new InvalidArgumentError('nodeIds must hold non-empty strings');
  }
}

/** Checks a drop rate for {@link Faults.setDropRate}: a number in [0, 1]. */
export function validateDropRate(p: unknown): asserts p is number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    throw new InvalidArgumentError(`the drop rate must be a number from 0 to 1, not ${String(p)}`);
  }
}

/** Checks a delay for {@link Faults.setDelay}: a finite number of ms in [0, {@link MAX_FAULT_DELAY_MS}]. */
export function validateDelay(ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_FAULT_DELAY_MS)) {
    throw new InvalidArgumentError(
      `the delay must be a number of ms from 0 to ${MAX_FAULT_DELAY_MS}, not ${String(ms)}`,
    );
  }
}

/** The faults of one node: isolation from chosen peers, random loss, and a fixed delay on what it sends. */
export class Faults {
  readonly #options: FaultsOptions;
  readonly #isolated = new Set<string>();
  readonly #queues = new Map<string, PeerQueue>();
  #dropRate = 0;
  #delayMs = 0;
  #dropped = 0;
  #delayed = 0;

  constructor(options: FaultsOptions) {
    this.#options = options;
  }

  /**
   * Cuts this node from `nodeIds`, on top of those already cut: every message to or from them is dropped, including
   * messages still held by the delay. Including this node's own id cuts it from every peer.
   */
  isolate(nodeIds: readonly string[]): void {
    validateNodeIds(nodeIds);
    for (const id of nodeIds) this.#isolated.add(id);
  }

  /** Ends every fault: no isolation, no loss, no delay. Held messages go out now, in their order. */
  heal(): void {
    this.#isolated.clear();
    this.#dropRate = 0;
    this.#delayMs = 0;
    for (const peer of [...this.#queues.keys()]) this.#release(peer, Infinity);
  }

  /** Drops each message in or out with probability `p`, from 0 to 1. */
  setDropRate(p: number): void {
    validateDropRate(p);
    this.#dropRate = p;
  }

  /**
   * Holds each message sent from now on `ms` before it goes out, from 0 to {@link MAX_FAULT_DELAY_MS}. Messages to
   * one peer keep their order: after the delay shrinks, a new message still waits behind those already held.
   */
  setDelay(ms: number): void {
    validateDelay(ms);
    this.#delayMs = ms;
  }

  /** Whether the link between this node and `peer` is cut. */
  isCut(peer: string): boolean {
    return this.#isolated.size > 0 && (this.#isolated.has(peer) || this.#isolated.has(this.#options.self));
  }

  /** Sends one message to `to` through the faults: `deliver` runs now, after the delay, or never. */
  outgoing(to: string, deliver: () => void): void {
    if (this.#drops(to)) return;
    const queue = this.#queues.get(to);
    if (this.#delayMs === 0 && queue === undefined) {
      deliver();
      return;
    }
    const now = this.#options.clock.now();
    const tail = queue?.held[queue.held.length - 1];
    const due = Math.max(now + this.#delayMs, tail?.due ?? 0);
    this.#delayed++;
    if (queue === undefined) {
      this.#queues.set(to, { held: [{ due, deliver }], timer: undefined });
      this.#arm(to);
    } else {
      queue.held.push({ due, deliver });
    }
  }

  /** Whether a message that arrived from `from` reaches the node. */
  admits(from: string): boolean {
    return !this.#drops(from);
  }

  /** The faults in force and the counts so far. */
  state(): FaultState {
    return {
      isolated: [...this.#isolated].sort(),
      dropRate: this.#dropRate,
      delayMs: this.#delayMs,
      dropped: this.#dropped,
      delayed: this.#delayed,
    };
  }

  /** Cancels the delay's timers and forgets the held messages, which are never sent. */
  close(): void {
    for (const queue of this.#queues.values()) {
      if (queue.timer !== undefined) this.#options.timers.clearTimeout(queue.timer);
    }
    this.#queues.clear();
  }

  #drops(peer: string): boolean {
    if (this.isCut(peer) || (this.#dropRate > 0 && this.#options.random() < this.#dropRate)) {
      this.#dropped++;
      return true;
    }
    return false;
  }

  /** Schedules the release of `peer`'s head message. */
  #arm(peer: string): void {
    const queue = this.#queues.get(peer);
    const head = queue?.held[0];
    if (queue === undefined || head === undefined) return;
    const wait = Math.max(0, head.due - this.#options.clock.now());
    queue.timer = this.#options.timers.setTimeout(() => {
      queue.timer = undefined;
      this.#release(peer, this.#options.clock.now());
    }, wait);
  }

  /** Sends `peer`'s held messages due by `until`, in order, and re-arms for the rest. */
  #release(peer: string, until: number): void {
    const queue = this.#queues.get(peer);
    if (queue === undefined) return;
    if (queue.timer !== undefined) {
      this.#options.timers.clearTimeout(queue.timer);
      queue.timer = undefined;
    }
    let count = 0;
    while (count < queue.held.length && queue.held[count]!.due <= until) count++;
    const ready = queue.held.splice(0, count);
    if (queue.held.length === 0) this.#queues.delete(peer);
    else this.#arm(peer);
    for (const message of ready) {
      // A partition that began while the message was held cuts it too, like a cable pulled with packets in flight.
      if (this.isCut(peer)) this.#dropped++;
      else message.deliver();
    }
  }
}
