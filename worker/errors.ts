/**
 * Errors that cross the worker boundary. Every error has a stable `code`; guards check `code`, never `instanceof`
 * alone, because structured clone turns class instances into plain errors on the way out of a worker.
 */

/** Every stable error code that dynamesh reports. */
export type ErrorCode =
  | 'ERR_QUORUM'
  | 'ERR_OVERLOADED'
  | 'ERR_TIMEOUT'
  | 'ERR_STALE_CONTEXT'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_TOO_LARGE'
  | 'ERR_TOO_MANY_SIBLINGS'
  | 'ERR_CLOSED'
  | 'ERR_UNAUTHORIZED'
  | 'ERR_MALFORMED_FRAME'
  | 'ERR_NOT_RESPONSIBLE'
  | 'ERR_STORAGE'
  | 'ERR_CLUSTER_FULL'
  | 'ERR_RATE_LIMITED'
  | 'ERR_NOT_JOINED'
  | 'ERR_NOT_MEMBER'
  | 'ERR_VERSION_MISMATCH'
  | 'ERR_TOO_MANY_WATCHES';

/** Every error code, for validation of codes that arrive over the wire. */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  'ERR_QUORUM',
  'ERR_OVERLOADED',
  'ERR_TIMEOUT',
  'ERR_STALE_CONTEXT',
  'ERR_INVALID_ARGUMENT',
  'ERR_TOO_LARGE',
  'ERR_TOO_MANY_SIBLINGS',
  'ERR_CLOSED',
  'ERR_UNAUTHORIZED',
  'ERR_MALFORMED_FRAME',
  'ERR_NOT_RESPONSIBLE',
  'ERR_STORAGE',
  'ERR_CLUSTER_FULL',
  'ERR_RATE_LIMITED',
  'ERR_NOT_JOINED',
  'ERR_NOT_MEMBER',
  'ERR_VERSION_MISMATCH',
  'ERR_TOO_MANY_WATCHES',
]);

/** Base class of every error dynamesh throws. */
export class DynameshError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'DynameshError';
  }
}

/** Fewer replicas acknowledged than the request required. */
export class QuorumError extends DynameshError {
  readonly required: number;
  readonly acknowledged: number;
  constructor(message: string, required: number, acknowledged: number, options?: { cause?: unknown }) {
    super('ERR_QUORUM', `${message}: ${acknowledged} of ${required} required replicas answered`, options);
    this.name = 'QuorumError';
    this.required = required;
    this.acknowledged = acknowledged;
  }
}

/** A request did not complete within its deadline. */
export class TimeoutError extends DynameshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_TIMEOUT', message, options);
    this.name = 'TimeoutError';
  }
}

/** A conditional put (`ifMatch`) found a stored version that its context does not descend. */
export class StaleContextError extends DynameshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STALE_CONTEXT', message, options);
    this.name = 'StaleContextError';
  }
}

/** A caller passed a bad key, value, quorum or context. */
export class InvalidArgumentError extends DynameshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_ARGUMENT', message, options);
    this.name = 'InvalidArgumentError';
  }
}

/**
 * A key or value exceeds its configured size limit, or a put would leave a key's siblings larger in bytes than
 * `maxSiblingSetBytes` allows. `advice`, when given, ends the message (which bound, what to do instead).
 */
export class TooLargeError extends DynameshError {
  readonly limit: number;
  readonly size: number;
  constructor(what: string, size: number, limit: number, advice?: string) {
    super(
      'ERR_TOO_LARGE',
      `${what} is ${size} bytes, over the limit of ${limit} bytes${advice === undefined ? '' : ` ${advice}`}`,
    );
    this.name = 'TooLargeError';
    this.limit = limit;
    this.size = size;
  }
}

/**
 * A put would leave more siblings of its key than `maxSiblings` allows (puts without a context, or over an old
 * one, each add a sibling). Nothing was stored; read the key and put with its context, which resolves them.
 */
export class TooManySiblingsError extends DynameshError {
  /** The most siblings a put may leave. */
  readonly limit: number;
  /** The siblings the put would have left. */
  readonly count: number;
  constructor(count: number, limit: number, message?: string) {
    super(
      'ERR_TOO_MANY_SIBLINGS',
      message ??
        `this put would leave ${count} siblings of the key, over the limit of ${limit} (maxSiblings); nothing was ` +
          'stored: read the key and put with the context of that read, which resolves its siblings',
    );
    this.name = 'TooManySiblingsError';
    this.limit = limit;
    this.count = count;
  }
}

/** The node is past its bound of waiting requests; nothing was done: retry later, or issue fewer at once. */
export class OverloadedError extends DynameshError {
  constructor(message: string) {
    super('ERR_OVERLOADED', message);
    this.name = 'OverloadedError';
  }
}

/** A watch would take a node past its bound of watches (`maxWatches`); nothing was registered. */
export class TooManyWatchesError extends DynameshError {
  constructor(message: string) {
    super('ERR_TOO_MANY_WATCHES', message);
    this.name = 'TooManyWatchesError';
  }
}

/** The node or store has been closed. */
export class ClosedError extends DynameshError {
  constructor(message = 'the node is closed', options?: { cause?: unknown }) {
    super('ERR_CLOSED', message, options);
    this.name = 'ClosedError';
  }
}

/** Credentials were missing, wrong or expired. */
export class UnauthorizedError extends DynameshError {
  constructor(message: string) {
    super('ERR_UNAUTHORIZED', message);
    this.name = 'UnauthorizedError';
  }
}

/** A peer frame failed validation; nothing it carried was acted on. */
export class MalformedFrameError extends DynameshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MALFORMED_FRAME', message, options);
    this.name = 'MalformedFrameError';
  }
}

/** The storage engine failed (IndexedDB quota, aborted transaction, …). */
export class StorageError extends DynameshError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_STORAGE', message, options);
    this.name = 'StorageError';
  }
}

/** A node was asked to coordinate a key it is not responsible for in its view of the ring. */
export class NotResponsibleError extends DynameshError {
  constructor(message: string) {
    super('ERR_NOT_RESPONSIBLE', message);
    this.name = 'NotResponsibleError';
  }
}

/** Rebuilds the error a peer reported, as the subclass of its code. */
export function errorFromCode(
  code: ErrorCode,
  message: string,
  quorum?: { required: number; acknowledged: number },
): DynameshError {
  switch (code) {
    case 'ERR_QUORUM': {
      const error = new QuorumError('quorum not reached', quorum?.required ?? 0, quorum?.acknowledged ?? 0);
      error.message = message;
      return error;
    }
    case 'ERR_TIMEOUT':
      return new TimeoutError(message);
    case 'ERR_STALE_CONTEXT':
      return new StaleContextError(message);
    case 'ERR_INVALID_ARGUMENT':
      return new InvalidArgumentError(message);
    case 'ERR_CLOSED':
      return new ClosedError(message);
    case 'ERR_UNAUTHORIZED':
      return new UnauthorizedError(message);
    case 'ERR_MALFORMED_FRAME':
      return new MalformedFrameError(message);
    case 'ERR_NOT_RESPONSIBLE':
      return new NotResponsibleError(message);
    case 'ERR_STORAGE':
      return new StorageError(message);
    case 'ERR_TOO_MANY_SIBLINGS': {
      // The counts travel in the message only (see TooManySiblingsError); 0 when it does not name them.
      const counts = /(\d+) siblings of the key, over the limit of (\d+)/.exec(message);
      return new TooManySiblingsError(Number(counts?.[1] ?? 0), Number(counts?.[2] ?? 0), message);
    }
    case 'ERR_OVERLOADED':
      return new OverloadedError(message);
    case 'ERR_TOO_MANY_WATCHES':
      return new TooManyWatchesError(message);
    case 'ERR_TOO_LARGE':
    case 'ERR_CLUSTER_FULL':
    case 'ERR_RATE_LIMITED':
    case 'ERR_NOT_JOINED':
    case 'ERR_NOT_MEMBER':
    case 'ERR_VERSION_MISMATCH':
      return new DynameshError(code, message);
  }
}

/** True when `error` is a dynamesh error with `code`, whether or not it crossed a worker boundary. */
export function hasErrorCode(error: unknown, code: ErrorCode): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
