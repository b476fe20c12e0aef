/**
 * Values as the store's callers see them, and as the nodes store them: MessagePack of the value itself, so a
 * `Uint8Array` comes back a `Uint8Array`, a string a string, and other data as MessagePack decodes it.
 */
import { decode, encode } from '@msgpack/msgpack';
import { InvalidArgumentError } from '../worker/errors.ts';

/** What a store holds: bytes, text, or any data MessagePack encodes (objects, arrays, numbers, booleans, null). */
export type Value =
  Uint8Array | string | number | boolean | null | readonly Value[] | { readonly [key: string]: Value };

/** Encodes a value for storage; `ERR_INVALID_ARGUMENT` for what MessagePack cannot encode. */
export function encodeValue(value: Value): Uint8Array {
  if (value === undefined) throw new InvalidArgumentError('value must not be undefined');
  try {
    return encode(value, { ignoreUndefined: false });
  } catch (error) {
    throw new InvalidArgumentError(
      `value cannot be encoded: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
}

/** Decodes a stored value. */
export function decodeValue(bytes: Uint8Array): Value {
  return decode(bytes) as Value;
}
