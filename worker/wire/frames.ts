/**
 * Splits encoded messages into data-channel frames and joins them again. Browsers cap one data-channel message
 * (Chromium at 256 KiB) while a replicate message may carry several 1 MiB values, so a message larger than one
 * chunk travels as numbered chunks. Channels are reliable and ordered and one sender writes a message's chunks
 * back to back, so a receiver holds at most one partial message per peer.
 *
 * Layout: `0x00` + message, or `0x01` + u32 message id + u16 index + u16 count + part (big-endian).
 */

/** Bytes of message carried by one chunk. @default 65536 - header */
export const CHUNK_PAYLOAD_BYTES = 64 * 1024 - 9;

const WHOLE = 0x00;
const CHUNK = 0x01;
const CHUNK_HEADER = 9;

/** Splits one encoded message into frames, each at most `CHUNK_PAYLOAD_BYTES + 9` bytes. */
export function toFrames(message: Uint8Array, messageId: number, chunkBytes = CHUNK_PAYLOAD_BYTES): Uint8Array[] {
  if (message.byteLength <= chunkBytes) {
    const frame = new Uint8Array(message.byteLength + 1);
    frame[0] = WHOLE;
    frame.set(message, 1);
    return [frame];
  }
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

/** What {@link Reassembler.push} made of a frame. */
export type FrameOutcome =
  | { readonly kind: 'message'; readonly message: Uint8Array }
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
      return { kind: 'message', message: frame.subarray(1) };
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
    return { kind: 'message', message };
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
