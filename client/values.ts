/**
 * Values as the store's callers see them, and as the nodes store them: MessagePack of the value itself, so a
 * `Uint8Array` comes back a `Uint8Array`, a string a string, and other data as MessagePack decodes it.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { InvalidArgumentError } from '../worker/errors.ts';

/** What a store holds: bytes, text, or any data MessagePack encodes (objects, arrays, numbers, booleans, null). */
export type Value =
  Uint8Array | string | number | boolean | null | readonly Value[] | { readonly [key: string]: Value };

// One of each, reused: `encode()` and `decode()` make a new one (and its buffers) per call, which costs more than
// encoding a small value. Both are safe to re-enter.
const encoder = new Encoder({ ignoreUndefined: false });
const decoder = new Decoder();

/** Encodes a value for storage; `ERR_INVALID_ARGUMENT` for what MessagePack cannot encode. */
export function encodeValue(value: Value): Uint8Array {
  if (value === undefined) throw new InvalidArgumentError('value must not be undefined');
  try {
    return encoder.encode(value);
  } catch (error) {
    throw new InvalidArgumentError(
      `value cannot be encoded: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
}

/** Decodes a stored value; throws when `bytes` are not one whole MessagePack value. */
export function decodeValue(bytes: Uint8Array): Value {
  return decoder.decode(bytes) as Value;
}

// A registered symbol, so that the guard also knows values made by another copy of this module (two bundles).
const UNDECODABLE = Symbol.for('dynamesh.UndecodableValue');

/**
 * A stored sibling that this client cannot decode: not one whole MessagePack value (written by other software
 * through the node API, or by a newer client's encoding). Its raw bytes come back instead of the value, so a read
 * still returns every sibling and the context that supersedes them all.
 */
export class UndecodableValue {
  /** The stored bytes, as they are. */
  readonly bytes: Uint8Array;
  /** Why decoding failed. */
  readonly reason: string;
  readonly [UNDECODABLE] = true;

  constructor(bytes: Uint8Array, reason: string) {
    this.bytes = bytes;
    this.reason = reason;
  }
}

/** What a read returns for one sibling: its value, or its raw bytes when this client cannot decode them. */
export type ReadValue = Value | UndecodableValue;

/** True when `value` is a sibling this client could not decode (see {@link UndecodableValue}). */
export function isUndecodable(value: unknown): value is UndecodableValue {
  return (
    value instanceof UndecodableValue ||
    (typeof value === 'object' && value !== null && (value as { [UNDECODABLE]?: unknown })[UNDECODABLE] === true)
  );
}

/** Decodes a stored sibling, never throwing: one it cannot decode comes back as an {@link UndecodableValue}. */
export function readValue(bytes: Uint8Array): ReadValue {
  try {
    return decoder.decode(bytes) as Value;
  } catch (error) {
    return new UndecodableValue(bytes, error instanceof Error ? error.message : String(error));
  }
}
