/**
 * Messages from nodes not (yet) in this node's view, held for a moment instead of dropped. Views reach the tabs of a
 * cluster over their own signalling connections, a few ms apart, while a peer connection that outlived an earlier
 * view (a failed tab back in the view) carries frames at once: a request a peer sends as soon as it has the new
 * view can arrive before this node has it. Dropped, it would time out and the sender would suspect this node.
 * Held, it is handled when the view that names its sender arrives, or dropped after {@link STRANGER_HOLD_MS}.
 * Bounded in count and bytes, so that nobody outside the view can make this node keep much.
 */
import type { PeerMessage } from '../wire/protocol.ts';

/** How long a message from a node outside the view is held for a view that names it, ms. */
export const STRANGER_HOLD_MS = 1000;
/** Most messages held at once. */
const MAX_HELD = 256;
/** Most bytes of frames held at once. */
const MAX_HELD_BYTES = 1024 * 1024;

interface Held {
  readonly message: PeerMessage;
  readonly bytes: number;
  readonly until: number;
}

/** The messages held for a later view, oldest first. */
export class HeldFrames {
  readonly #held: Held[] = [];
  #bytes = 0;

  /**
   * Holds `message` (whose frame took `bytes`) until `now + STRANGER_HOLD_MS`; false when it cannot be held, and
   * the caller drops it. Expired messages are dropped first; the count of those is returned through `onDrop`.
   */
  hold(message: PeerMessage, bytes: number, now: number, onDrop: (count: number) => void): boolean {
    this.#expire(now, onDrop);
    if (this.#held.length >= MAX_HELD || this.#bytes + bytes > MAX_HELD_BYTES) return false;
    this.#held.push({ message, bytes, until: now + STRANGER_HOLD_MS });
    this.#bytes += bytes;
    return true;
  }

  /** Takes the held messages whose senders are members now, in arrival order; expired ones are dropped. */
  release(isMember: (id: string) => boolean, now: number, onDrop: (count: number) => void): PeerMessage[] {
    this.#expire(now, onDrop);
    const out: PeerMessage[] = [];
    let kept = 0;
    for (const held of this.#held) {
      if (isMember(held.message.from)) {
        out.push(held.message);
        this.#bytes -= held.bytes;
      } else this.#held[kept++] = held;
    }
    this.#held.length = kept;
    return out;
  }

  #expire(now: number, onDrop: (count: number) => void): void {
    let expired = 0;
    while (expired < this.#held.length && this.#held[expired]!.until < now) {
      this.#bytes -= this.#held[expired]!.bytes;
      expired++;
    }
    if (expired === 0) return;
    this.#held.splice(0, expired);
    onDrop(expired);
  }
}
