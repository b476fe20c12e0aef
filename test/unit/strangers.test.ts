import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HeldFrames, STRANGER_HOLD_MS } from '../../worker/membership/strangers.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';

function ack(from: string, requestId = 1): PeerMessage {
  return { type: 'replicate-ack', from, requestId };
}

describe('HeldFrames', () => {
  it('releases the messages of senders that became members, in arrival order, and keeps the others', () => {
    const held = new HeldFrames();
    const none = (): void => assert.fail('nothing expires');
    held.hold(ack('a', 1), 10, 0, none);
    held.hold(ack('b', 2), 10, 0, none);
    held.hold(ack('a', 3), 10, 0, none);
    assert.deepEqual(
      held.release((id) => id === 'a', 1, none).map((m) => m.requestId),
      [1, 3],
    );
    assert.deepEqual(
      held.release(() => true, 2, none).map((m) => m.requestId),
      [2],
    );
  });

  it('drops and counts what waited longer than the hold', () => {
    const held = new HeldFrames();
    let dropped = 0;
    held.hold(ack('a'), 10, 0, (n) => (dropped += n));
    assert.deepEqual(
      held.release(
        () => true,
        STRANGER_HOLD_MS + 1,
        (n) => (dropped += n),
      ),
      [],
    );
    assert.equal(dropped, 1);
  });

  it('holds no more than 1 MiB of frames', () => {
    const held = new HeldFrames();
    assert.equal(
      held.hold(ack('a'), 1024 * 1024, 0, () => {}),
      true,
    );
    assert.equal(
      held.hold(ack('a'), 1, 0, () => {}),
      false,
    );
  });

  it('holds no more than 256 messages', () => {
    const held = new HeldFrames();
    for (let i = 0; i < 256; i++)
      assert.equal(
        held.hold(ack('a', i), 1, 0, () => {}),
        true,
      );
    assert.equal(
      held.hold(ack('a', 256), 1, 0, () => {}),
      false,
    );
  });
});
