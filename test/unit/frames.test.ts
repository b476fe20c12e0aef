/**
 * Frames of the peer links: whole messages, chunks of large ones, and bundles of small ones, built by the pure
 * helpers and joined again by the Reassembler.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CHUNK_PAYLOAD_BYTES,
  MAX_FRAME_BYTES,
  Reassembler,
  type FrameOutcome,
  packFrames,
  toBundle,
  toFrames,
} from '../../worker/wire/frames.ts';

function bytes(length: number, fill: number): Uint8Array {
  return new Uint8Array(length).fill(fill);
}

function messagesOf(outcome: FrameOutcome): Uint8Array[] {
  assert.equal(outcome.kind, 'messages', outcome.kind === 'invalid' ? outcome.reason : outcome.kind);
  return outcome.kind === 'messages' ? [...outcome.messages] : [];
}

function invalidReason(outcome: FrameOutcome): string {
  assert.equal(outcome.kind, 'invalid');
  return outcome.kind === 'invalid' ? outcome.reason : '';
}

/** A bundle header byte followed by the given u32 lengths and bytes, however inconsistent. */
function rawBundle(...parts: (number | Uint8Array)[]): Uint8Array {
  const out: number[] = [0x02];
  for (const part of parts) {
    if (typeof part === 'number') out.push(part >>> 24, (part >>> 16) & 0xff, (part >>> 8) & 0xff, part & 0xff);
    else out.push(...part);
  }
  return new Uint8Array(out);
}

describe('frames', () => {
  it('round-trips several messages, an empty one among them, through one bundle in order', () => {
    const sent = [bytes(3, 1), new Uint8Array(0), bytes(CHUNK_PAYLOAD_BYTES, 2), bytes(1, 3)];
    const frame = toBundle(sent);
    assert.equal(frame[0], 0x02);
    assert.deepEqual(messagesOf(new Reassembler(1 << 20).push(frame)), sent);
  });

  it('refuses malformed bundles as invalid, never yielding part of their messages', () => {
    const cases: [string, Uint8Array][] = [
      ['no messages', rawBundle()],
      ['a length cut short', rawBundle(2, bytes(2, 9), new Uint8Array([0, 0]))],
      ['a message cut short', rawBundle(2, bytes(2, 9), 5, bytes(4, 9))],
      ['a message over maxMessageBytes', rawBundle(2, bytes(2, 9), 101, bytes(101, 9))],
    ];
    for (const [what, frame] of cases) {
      const outcome = new Reassembler(100).push(frame);
      assert.equal(outcome.kind, 'invalid', `accepted a bundle with ${what}`);
    }
  });

  it('refuses a bundle that interrupts a chunked message, and takes the next frame afresh', () => {
    const reassembler = new Reassembler(1 << 20);
    const chunks = toFrames(bytes(2 * CHUNK_PAYLOAD_BYTES + 1, 4), 7);
    assert.equal(reassembler.push(chunks[0]!).kind, 'partial');
    assert.match(invalidReason(reassembler.push(toBundle([bytes(2, 1), bytes(2, 2)]))), /interrupted a chunked/);
    assert.deepEqual(messagesOf(reassembler.push(toBundle([bytes(2, 1), bytes(2, 2)]))), [bytes(2, 1), bytes(2, 2)]);
  });

  it('packs small messages in order into frames of at most 64 KiB, a lone one as a whole frame', () => {
    const sent = Array.from({ length: 40 }, (_, i) => bytes(4000, i));
    const frames = packFrames(sent);
    assert.equal(frames.length, 3);
    for (const frame of frames) assert.ok(frame.byteLength <= MAX_FRAME_BYTES);
    const reassembler = new Reassembler(1 << 20);
    assert.deepEqual(
      frames.flatMap((frame) => messagesOf(reassembler.push(frame))),
      sent,
    );
    const lone = packFrames([bytes(5, 1)]);
    assert.deepEqual(lone, [new Uint8Array([0x00, 1, 1, 1, 1, 1])]);
    assert.deepEqual(packFrames([]), []);
  });
});
