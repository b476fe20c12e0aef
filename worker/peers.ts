/**
 * Requests to peers and their replies: request ids, per-request timeouts, and link-level failure detection. A peer
 * that lets a request time out is suspected for a while, so that the next requests go straight to a fallback instead
 * of waiting out the same timeout again; any frame from it clears the suspicion.
 */
import type { Clock, Timers, TimerHandle } from './env.ts';
import type { PeerMessage } from './protocol.ts';

/** A message as a sender writes it: the envelope is filled in by {@link Peers}. */
export type Outgoing = PeerMessage extends infer M
  ? M extends PeerMessage
    ? Omit<M, 'from' | 'requestId'>
    : never
  : never;

/** The replies a request can get. */
export type Reply = Extract<PeerMessage, { type: 'replicate-ack' | 'read-reply' | 'coordinate-reply' | 'error' }>;

interface Pending {
  readonly to: string;
  readonly resolve: (reply: Reply | null) => void;
  readonly timer: TimerHandle;
}

/** Options of {@link Peers}. */
export interface PeersOptions {
  readonly self: string;
  readonly clock: Clock;
  readonly timers: Timers;
  /** Uniform randomness in [0, 1), for the first request id. */
  readonly random: () => number;
  /** Sends one encoded message. */
  readonly send: (to: string, message: PeerMessage) => void;
  /** How long a peer stays suspected after a timeout, in ms. */
  readonly suspicionMs: number;
  /** Called when a request to `to` times out. */
  readonly onTimeout?: (to: string) => void;
}

/** Request/reply bookkeeping and link-level suspicion. */
export class Peers {
  readonly #options: PeersOptions;
  readonly #pending = new Map<number, Pending>();
  readonly #suspectedUntil = new Map<string, number>();
  #nextRequestId: number;
  #closed = false;

  constructor(options: PeersOptions) {
    this.#options = options;
    // A random start, so that a late reply meant for an earlier incarnation of this node cannot settle a request of
    // this one that happens to reuse its id.
    this.#nextRequestId = Math.floor(options.random() * 2 ** 40);
  }

  /** Sends `message` to `to` and resolves with its reply, or with null after `timeoutMs` or on close. */
  request(to: string, message: Outgoing, timeoutMs: number): Promise<Reply | null> {
    if (this.#closed) return Promise.resolve(null);
    const requestId = this.#nextRequestId++;
    return new Promise<Reply | null>((resolve) => {
      const timer = this.#options.timers.setTimeout(() => {
        if (this.#pending.delete(requestId)) {
          this.suspect(to);
          this.#options.onTimeout?.(to);
          resolve(null);
        }
      }, timeoutMs);
      this.#pending.set(requestId, { to, resolve, timer });
      this.#options.send(to, { ...message, from: this.#options.self, requestId } as PeerMessage);
    });
  }

  /** Sends a reply to request `requestId` of `to`. */
  reply(to: string, requestId: number, message: Outgoing): void {
    if (this.#closed) return;
    this.#options.send(to, { ...message, from: this.#options.self, requestId } as PeerMessage);
  }

  /** Hands a reply to the request waiting for it. Returns false when none waits (late, duplicated or forged). */
  settle(reply: Reply): boolean {
    const pending = this.#pending.get(reply.requestId);
    if (pending === undefined || pending.to !== reply.from) return false;
    this.#pending.delete(reply.requestId);
    this.#options.timers.clearTimeout(pending.timer);
    pending.resolve(reply);
    return true;
  }

  /** Records that `id` just spoke, which clears any suspicion of it. */
  heard(id: string): void {
    this.#suspectedUntil.delete(id);
  }

  /** Suspects `id` for the configured time. */
  suspect(id: string): void {
    this.#suspectedUntil.set(id, this.#options.clock.now() + this.#options.suspicionMs);
  }

  /** True while `id` is suspected. */
  isSuspected(id: string): boolean {
    const until = this.#suspectedUntil.get(id);
    if (until === undefined) return false;
    if (until <= this.#options.clock.now()) {
      this.#suspectedUntil.delete(id);
      return false;
    }
    return true;
  }

  /** Requests still waiting for replies. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Resolves every waiting request with null and refuses new ones. */
  close(): void {
    this.#closed = true;
    for (const pending of this.#pending.values()) {
      this.#options.timers.clearTimeout(pending.timer);
      pending.resolve(null);
    }
    this.#pending.clear();
  }
}
