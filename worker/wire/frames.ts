/**
 * Splits encoded messages into data-channel frames and joins them again. Browsers cap one data-channel message
 * (Chromium at 256 KiB) while a replicate message may carry several 1 MiB values, so a message larger than one
 * chunk travels as numbered chunks. Small messages sent to one peer together may share a frame, a bundle, since each
 * data-channel message has a fixed cost. Channels are reliable and ordered and one sender writes a message's chunks
 * back to back, so a receiver holds at most one partial message per peer.
 *
 * Layout (big-endian): `0x00` + message, or `0x01` + u32 message id + u16 index + u16 count + part, or `0x02` +
 * (u32 length + message) repeated, at least once, each message at most {@link CHUNK_PAYLOAD_BYTES}.
 */

/** Bytes of message carried by one chunk. @default 65536 - header */
export const CHUNK_PAYLOAD_BYTES = 64 * 1024 - 9;

const WHOLE = 0x00;
const CHUNK = 0x01;
const BUNDLE = 0x02;
const CHUNK_HEADER = 9;
const LENGTH_BYTES = 4;

/** The largest frame written: a full chunk, 64 KiB. Bundles are packed up to it. */
export const MAX_FRAME_BYTES = CHUNK_PAYLOAD_BYTES + CHUNK_HEADER;

/** Splits one encoded message into frames, each at most `CHUNK_PAYLOAD_BYTES + 9` bytes. */
export function toFrames(message: Uint8Array, messageId: number, chunkBytes = CHUNK_PAYLOAD_BYTES): Uint8Array[] {
  if (message.byteLength <= chunkBytes) return [wholeFrame(message)];
  const count = Math.ceil(message.byteLength / chunkBytes);
  if (count > 0xffff) throw new RangeError(`a message of ${message.byteLength} bytes needs more than 65535 chunks`);
  const frames: Uint8Array[] = [];
  for (let index = 0; index < count; index++) {
    const part = message.subarray(index * chunkBytes, (index + 1) * chunkBytes);
    const frame = new Uint8Array(CHUNK_HEADER + part.byteLength);
    const view = new DataView(frame.buffer);
    view.setUint8(0, CHUNK);
    view.setUint32(1, messageId >>> 0);
    view.setUint16(5, index);
    view.setUint16(7, count);
    frame.set(part, CHUNK_HEADER);
    frames.push(frame);
  }
  return frames;
}

function wholeFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(message.byteLength + 1);
  frame[0] = WHOLE;
  frame.set(message, 1);
  return frame;
}

/** Builds one bundle frame carrying `messages` in order: at least one, each at most `CHUNK_PAYLOAD_BYTES`. */
export function toBundle(messages: readonly Uint8Array[]): Uint8Array {
  if (messages.length === 0) throw new RangeError('a bundle carries at least one message');
  let bytes = 1;
  for (const message of messages) {
    if (message.byteLength > CHUNK_PAYLOAD_BYTES) {
      throw new RangeError(`a message of ${message.byteLength} bytes is too large for a bundle`);
    }
    bytes += LENGTH_BYTES + message.byteLength;
  }
  const frame = new Uint8Array(bytes);
  const view = new DataView(frame.buffer);
  frame[0] = BUNDLE;
  let offset = 1;
  for (const message of messages) {
    view.setUint32(offset, message.byteLength);
    frame.set(message, offset + LENGTH_BYTES);
    offset += LENGTH_BYTES + message.byteLength;
  }
  return frame;
}

/**
 * Packs small messages (each at most `CHUNK_PAYLOAD_BYTES`) into as few frames as fit, keeping their order: bundles
 * of consecutive messages, each frame at most `maxFrameBytes`; a message alone in its frame goes as a whole frame.
 */
export function packFrames(messages: readonly Uint8Array[], maxFrameBytes = MAX_FRAME_BYTES): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let bytes = 1;
  const emit = (): void => {
    if (group.length === 1) frames.push(wholeFrame(group[0]!));
    else if (group.length > 1) frames.push(toBundle(group));
  };
  for (const message of messages) {
    if (message.byteLength > CHUNK_PAYLOAD_BYTES) {
      throw new RangeError(`a message of ${message.byteLength} bytes must go in chunks, not in a bundle`);
    }
    const need = LENGTH_BYTES + message.byteLength;
    if (group.length > 0 && bytes + need > maxFrameBytes) {
      emit();
      group = [];
      bytes = 1;
    }
    group.push(message);
    bytes += need;
  }
  emit();
  return frames;
}

/** What {@link Reassembler.push} made of a frame: every message it completed, in order, or none. */
export type FrameOutcome =
  | { readonly kind: 'messages'; readonly messages: readonly Uint8Array[] }
  | { readonly kind: 'partial' }
  | { readonly kind: 'invalid'; readonly reason: string };

/** Joins the frames of one peer's channel back into messages, refusing anything over `maxMessageBytes`. */
export class Reassembler {
  readonly #maxMessageBytes: number;
  #partial: { id: number; count: number; next: number; parts: Uint8Array[]; bytes: number } | null = null;

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** Takes the next frame of the channel. */
  push(frame: Uint8Array): FrameOutcome {
    if (frame.byteLength === 0) return { kind: 'invalid', reason: 'empty frame' };
    if (frame[0] === WHOLE) {
      if (this.#partial !== null) {
        this.#partial = null;
        return { kind: 'invalid', reason: 'a whole message interrupted a chunked one' };
      }
      if (frame.byteLength - 1 > this.#maxMessageBytes) return { kind: 'invalid', reason: 'message too large' };
      return { kind: 'messages', messages: [frame.subarray(1)] };
    }
    if (frame[0] === BUNDLE) {
      if (this.#partial !== null) {
        this.#partial = null;
        return { kind: 'invalid', reason: 'a bundle interrupted a chunked message' };
      }
      return this.#unbundle(frame);
    }
    if (frame[0] !== CHUNK || frame.byteLength <= CHUNK_HEADER)
      return { kind: 'invalid', reason: 'unknown frame kind' };
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const id = view.getUint32(1);
    const index = view.getUint16(5);
    const count = view.getUint16(7);
    const part = frame.subarray(CHUNK_HEADER);
    if (count < 2 || index >= count) return this.#fail('bad chunk numbering');
    if (index === 0) {
      const interrupted = this.#partial !== null;
      this.#partial = { id, count, next: 0, parts: [], bytes: 0 };
      if (interrupted) {
        this.#append(part);
        return { kind: 'invalid', reason: 'a chunked message was interrupted' };
      }
    }
    const partial = this.#partial;
    if (partial === null || partial.id !== id || partial.count !== count || partial.next !== index) {
      return this.#fail('chunk out of sequence');
    }
    if (partial.bytes + part.byteLength > this.#maxMessageBytes) return this.#fail('message too large');
    this.#append(part);
    if (partial.next < partial.count) return { kind: 'partial' };
    this.#partial = null;
    const message = new Uint8Array(partial.bytes);
    let offset = 0;
    for (const p of partial.parts) {
      message.set(p, offset);
      offset += p.byteLength;
    }
    return { kind: 'messages', messages: [message] };
  }

  /** Splits a bundle into its messages, all of them or, if any part is malformed, none. */
  #unbundle(frame: Uint8Array): FrameOutcome {
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const messages: Uint8Array[] = [];
    let offset = 1;
    while (offset < frame.byteLength) {
      if (frame.byteLength - offset < LENGTH_BYTES) return { kind: 'invalid', reason: 'bundle cut inside a length' };
      const length = view.getUint32(offset);
      offset += LENGTH_BYTES;
      if (length > this.#maxMessageBytes) return { kind: 'invalid', reason: 'message too large in a bundle' };
      if (length > frame.byteLength - offset) return { kind: 'invalid', reason: 'bundle cut inside a message' };
      messages.push(frame.subarray(offset, offset + length));
      offset += length;
    }
    if (messages.length === 0) return { kind: 'invalid', reason: 'empty bundle' };
    return { kind: 'messages', messages };
  }

  #append(part: Uint8Array): void {
    const partial = this.#partial!;
    partial.parts.push(part);
    partial.bytes += part.byteLength;
    partial.next++;
  }

  #fail(reason: string): FrameOutcome {
    this.#partial = null;
    return { kind: 'invalid', reason };
  }
}
