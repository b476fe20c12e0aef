/**
 * What a node needs from the place it runs in. A tab passes the real clock, timers and data channels; the
 * simulation passes virtual ones, so that the same node code runs in both.
 */

/** Wall-clock time source. */
export interface Clock {
  /** Milliseconds since the epoch (or since the simulation began). */
  now(): number;
}

/** An opaque handle of a scheduled callback. */
export type TimerHandle = unknown;

/** Timer source. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Uniform random numbers in [0, 1). */
export type Random = () => number;

/**
 * Sends frames to peers. Delivery is best effort: a frame may be lost, delayed or reordered, and `send` never
 * reports failure; the node's own timeouts notice. Frames from peers enter through `DynamoNode.receive`.
 */
export interface Transport {
  send(to: string, frame: Uint8Array): void;
}

/** A pino-compatible logger subset. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The real clock and timers of a tab or of Node. */
export const systemClock: Clock = { now: () => Date.now() };

/** The real timers of a tab, a worker or Node. */
export const systemTimers: Timers = {
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
