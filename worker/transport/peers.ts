/**
 * Requests to peers and their replies: request ids, per-request timeouts, and link-level failure detection. A peer
 * that lets a request time out is suspected for a while, so that the next requests go straight to a fallback instead
 * of waiting out the same timeout again; any frame from it clears the suspicion. A busy peer is not a failed one:
 * while it keeps answering and other requests to it are still waiting, a request's deadline is put off (bounded),
 * so that a burst queues instead of failing for want of replicas.
 *
 * Timeouts share one timer, armed for the earliest deadline of the requests waiting: nearly every request is answered
 * long before its deadline, and a timer per request would be set and cleared for nothing (in the simulation each one
 * is an event that outlives its request by the whole timeout).
 */
import type { Clock, Timers, TimerHandle } from '../env.ts';
import type { PeerMessage } from '../wire/protocol.ts';

/** A message as a sender writes it: the envelope is filled in by {@link Peers}. */
export type Outgoing = PeerMessage extends infer M
  ? M extends PeerMessage
    ? Omit<M, 'from' | 'requestId'>
    : never
  : never;

/** The replies a request can get. */
export type Reply = Extract<
  PeerMessage,
  {
    type:
      | 'replicate-ack'
      | 'read-reply'
      | 'coordinate-reply'
      | 'sync-tree-reply'
      | 'sync-keys-reply'
      | 'keys-reply'
      | 'error';
  }
>;

/** True when `message` answers a request (see {@link Peers.settle}) rather than asking something. */
export function isReply(message: PeerMessage): message is Reply {
  const type = message.type;
  return (
    type === 'replicate-ack' ||
    type === 'read-reply' ||
    type === 'coordinate-reply' ||
    type === 'sync-tree-reply' ||
    type === 'sync-keys-reply' ||
    type === 'keys-reply' ||
    type === 'error'
  );
}

/**
 * Takes the outcome of a request made with {@link Peers.send}: its reply, or null once it timed out or the node
 * closed. Called exactly once, never from inside `send`, and must not throw.
 */
export interface ReplyHandler {
  onReply(reply: Reply | null): void;
}

/** A promise's resolve as a handler, for {@link Peers.request}. */
class Resolver implements ReplyHandler {
  readonly onReply: (reply: Reply | null) => void;
  constructor(resolve: (reply: Reply | null) => void) {
    this.onReply = resolve;
  }
}

/** Ids of requests made with one timeout, in the order they were made (so by deadline); `head` is the first left. */
interface TimeoutQueue {
  ids: number[];
  head: number;
}

interface Pending {
  readonly to: string;
  readonly handler: ReplyHandler;
  readonly timeoutMs: number;
  /** When the request times out, on the clock. */
  deadline: number;
  /** Times the deadline was put off because the peer was still sending (see {@link Peers.progress}). */
  extensions: number;
  /** The key of a read, whose reply's versions are checked against it (provenance.ts). */
  readonly key: Uint8Array | undefined;
}

/**
 * Most times a request's deadline is put off while its peer keeps sending chunks of a large message, or keeps
 * answering while other requests wait in line with it: 16 timeouts in all, 8 s at the default 500 ms, time for the
 * largest legal reply at the floor rate of wire/fit.ts.
 */
const MAX_EXTENSIONS = 15;

/** Most ms a request's deadline is put off, in all, for a peer busy with other requests. */
const MAX_BUSY_MS = 8000;

/**
 * What a node knows of one peer, in one record rather than a map per fact: every frame updates some of it, and one
 * lookup costs less than several. Kept for every peer met, as the time each was last heard from always was.
 */
interface PeerState {
  /** Until when the peer is suspected, on the clock; undefined when it is not. */
  suspectedUntil: number | undefined;
  /** When the peer last delivered a chunk of a message still in transit, on the clock. */
  progressAt: number | undefined;
  /** When the peer was last heard from, on the clock. */
  heardAt: number | undefined;
  /** Requests waiting for the peer's reply. */
  outstanding: number;
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
  readonly #states = new Map<string, PeerState>();
  #nextRequestId: number;
  #closed = false;
  /**
   * Requests by timeout: within one queue deadlines only grow, so a sweep looks at each queue's first requests only.
   * Answered requests leave their queue when a sweep reaches them.
   */
  readonly #queues = new Map<number, TimeoutQueue>();
  /** The shared timeout timer, and the deadline it is armed for (Infinity when none is). */
  #timer: TimerHandle | undefined;
  #timerAt = Infinity;

  constructor(options: PeersOptions) {
    this.#options = options;
    // A random start, so that a late reply meant for an earlier incarnation of this node cannot settle a request of
    // this one that happens to reuse its id.
    this.#nextRequestId = Math.floor(options.random() * 2 ** 40);
  }

  /** Sends `message` to `to` and resolves with its reply, or with null after `timeoutMs` or on close. */
  request(to: string, message: Outgoing, timeoutMs: number): Promise<Reply | null> {
    return new Promise<Reply | null>((resolve) => this.send(to, message, timeoutMs, new Resolver(resolve)));
  }

  /**
   * Sends `message` to `to` and hands its reply to `handler`, or null after `timeoutMs` or on close: what
   * {@link request} does without a promise, for the hot paths that make several requests per operation.
   */
  send(to: string, message: Outgoing, timeoutMs: number, handler: ReplyHandler): void {
    if (this.#closed) {
      queueMicrotask(() => handler.onReply(null));
      return;
    }
    const requestId = this.#nextRequestId++;
    const full = withEnvelope(message, this.#options.self, requestId);
    const now = this.#options.clock.now();
    const deadline = now + timeoutMs;
    const key = message.type === 'read' ? message.key : undefined;
    this.#pending.set(requestId, { to, handler, timeoutMs, deadline, extensions: 0, key });
    this.#state(to).outstanding++;
    let queue = this.#queues.get(timeoutMs);
    if (queue === undefined) this.#queues.set(timeoutMs, (queue = { ids: [], head: 0 }));
    queue.ids.push(requestId);
    if (deadline < this.#timerAt) this.#arm(deadline, now);
    this.#options.send(to, full);
  }

  #arm(deadline: number, now: number): void {
    const timers = this.#options.timers;
    if (this.#timer !== undefined) timers.clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = timers.setTimeout(() => this.#sweep(), Math.max(0, deadline - now));
  }

  /** Times out every request whose deadline has come, in the order they were made, and arms for the next one. */
  #sweep(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#options.clock.now();
    let due: number[] | undefined;
    let next = Infinity;
    const several = this.#queues.size > 1;
    for (const [timeoutMs, queue] of this.#queues) {
      const ids = queue.ids;
      let head = queue.head;
      for (; head < ids.length; head++) {
        const pending = this.#pending.get(ids[head]!);
        if (pending === undefined) continue;
        // A deadline further off than a whole timeout means the clock went back: the wait restarts, never unbounded.
        if (pending.deadline - now > pending.timeoutMs) pending.deadline = now + pending.timeoutMs;
        if (pending.deadline > now) {
          if (pending.deadline < next) next = pending.deadline;
          break;
        }
        const peer = this.#state(pending.to);
        const progress = peer.progressAt;
        if (progress !== undefined && now - progress < pending.timeoutMs && pending.extensions < MAX_EXTENSIONS) {
          // The peer is still sending a large message, most likely this reply: another timeout from now, queued
          // last, where deadlines of this queue are latest.
          pending.deadline = now + pending.timeoutMs;
          pending.extensions++;
          ids.push(ids[head]!);
          continue;
        }
        const heard = peer.heardAt;
        if (
          heard !== undefined &&
          now - heard < pending.timeoutMs &&
          peer.outstanding > 1 &&
          (pending.extensions + 1) * pending.timeoutMs <= MAX_BUSY_MS &&
          pending.extensions < MAX_EXTENSIONS
        ) {
          // Busy, not failed: the peer is answering, and other requests wait in line with this one. Its timeout
          // follows the work queued ahead of it instead of refusing what a slower moment would have served.
          pending.deadline = now + pending.timeoutMs;
          pending.extensions++;
          ids.push(ids[head]!);
          continue;
        }
        (due ??= []).push(ids[head]!);
      }
      if (head === ids.length) {
        // Timeouts vary with what a request carries (fit.ts): an emptied queue goes, or they would pile up.
        this.#queues.delete(timeoutMs);
      } else if (head > 64 && head * 2 > ids.length) {
        queue.ids = ids.slice(head);
        queue.head = 0;
      } else {
        queue.head = head;
      }
    }
    if (next !== Infinity) this.#arm(next, now);
    if (due === undefined) return;
    // Request ids grow in the order requests are made: ties between queues expire in that order too.
    if (several) due.sort((a, b) => a - b);
    const expired: ReplyHandler[] = [];
    for (const requestId of due) {
      const pending = this.#pending.get(requestId)!;
      this.#pending.delete(requestId);
      this.#settled(pending.to);
      this.suspect(pending.to);
      this.#options.onTimeout?.(pending.to);
      expired.push(pending.handler);
    }
    callAll(expired);
  }

  /** Sends a reply to request `requestId` of `to`. */
  reply(to: string, requestId: number, message: Outgoing): void {
    if (this.#closed) return;
    this.#options.send(to, withEnvelope(message, this.#options.self, requestId));
  }

  /** The key a read still waiting for its reply asked for; undefined for another request, or none waiting. */
  keyOf(requestId: number): Uint8Array | undefined {
    return this.#pending.get(requestId)?.key;
  }

  /** Whether request `requestId` to `to` still waits for its reply. */
  waiting(to: string, requestId: number): boolean {
    return this.#pending.get(requestId)?.to === to;
  }

  /** Hands a reply to the request waiting for it. Returns false when none waits (late, duplicated or forged). */
  settle(reply: Reply): boolean {
    const pending = this.#pending.get(reply.requestId);
    if (pending === undefined || pending.to !== reply.from) return false;
    this.#pending.delete(reply.requestId);
    this.#settled(pending.to);
    pending.handler.onReply(reply);
    return true;
  }

  /**
   * Records that a chunk of a message from `id` arrived and more are to come: requests waiting for `id` then get
   * more time when their deadline comes, since a large reply can take longer than a timeout to travel.
   */
  progress(id: string): void {
    if (this.#closed) return;
    this.#state(id).progressAt = this.#options.clock.now();
  }

  /** Records that `id` just spoke, which clears any suspicion of it. */
  heard(id: string): void {
    const peer = this.#state(id);
    peer.suspectedUntil = undefined;
    peer.heardAt = this.#options.clock.now();
  }

  /** One request to `to` is no longer waiting. */
  #settled(to: string): void {
    const peer = this.#state(to);
    if (peer.outstanding > 0) peer.outstanding--;
  }

  /** Suspects `id` for the configured time. */
  suspect(id: string): void {
    this.#state(id).suspectedUntil = this.#options.clock.now() + this.#options.suspicionMs;
  }

  /** Whether `id` spoke within the last `ms` (any frame from it). */
  heardWithin(id: string, ms: number): boolean {
    const heard = this.#states.get(id)?.heardAt;
    return heard !== undefined && this.#options.clock.now() - heard < ms;
  }

  /** True while `id` is suspected. */
  isSuspected(id: string): boolean {
    const peer = this.#states.get(id);
    if (peer?.suspectedUntil === undefined) return false;
    if (peer.suspectedUntil <= this.#options.clock.now()) {
      peer.suspectedUntil = undefined;
      return false;
    }
    return true;
  }

  /** The record of peer `id`, made on first need. */
  #state(id: string): PeerState {
    let peer = this.#states.get(id);
    if (peer === undefined) {
      peer = { suspectedUntil: undefined, progressAt: undefined, heardAt: undefined, outstanding: 0 };
      this.#states.set(id, peer);
    }
    return peer;
  }

  /** Requests still waiting for replies. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Resolves every waiting request with null and refuses new ones. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#options.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const handlers = Array.from(this.#pending.values(), (pending) => pending.handler);
    this.#pending.clear();
    this.#queues.clear();
    for (const peer of this.#states.values()) peer.outstanding = 0;
    callAll(handlers);
  }
}

/** Hands null to every handler, even when one throws; the first error is rethrown once all have been called. */
function callAll(handlers: readonly ReplyHandler[]): void {
  let failure: { error: unknown } | undefined;
  for (const handler of handlers) {
    try {
      handler.onReply(null);
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure !== undefined) throw failure.error;
}

/**
 * `message` with its envelope, as a new object of exactly its type's fields. Written out per type rather than as a
 * spread: a spread over a dozen message shapes is a megamorphic copy that costs more than encoding the message.
 */
function withEnvelope(m: Outgoing, from: string, requestId: number): PeerMessage {
  switch (m.type) {
    case 'replicate':
      return {
        type: m.type,
        from,
        requestId,
        key: m.key,
        versions: m.versions,
        hintFor: m.hintFor,
        durable: m.durable,
        fresh: m.fresh,
      };
    case 'replicate-ack':
      return { type: m.type, from, requestId };
    case 'read':
      return { type: m.type, from, requestId, key: m.key, requireHeld: m.requireHeld };
    case 'read-reply':
      return { type: m.type, from, requestId, versions: m.versions };
    case 'coordinate':
      return {
        type: m.type,
        from,
        requestId,
        key: m.key,
        value: m.value,
        context: m.context,
        w: m.w,
        ifMatch: m.ifMatch,
        durable: m.durable,
      };
    case 'coordinate-reply':
      return { type: m.type, from, requestId, context: m.context, receipt: m.receipt };
    case 'error':
      return {
        type: m.type,
        from,
        requestId,
        code: m.code,
        message: m.message,
        required: m.required,
        acknowledged: m.acknowledged,
      };
    case 'sync-tree':
      return { type: m.type, from, requestId, partition: m.partition, level: m.level, indexes: m.indexes };
    case 'sync-tree-reply':
      return { type: m.type, from, requestId, held: m.held, hashes: m.hashes };
    case 'sync-keys':
      return {
        type: m.type,
        from,
        requestId,
        partition: m.partition,
        leaves: m.leaves,
        after: m.after,
        maxBytes: m.maxBytes,
      };
    case 'sync-keys-reply':
      return { type: m.type, from, requestId, entries: m.entries, next: m.next };
    case 'sync-push':
    case 'sync-drop':
      return { type: m.type, from, requestId, partition: m.partition, entries: m.entries };
    case 'watch':
      return { type: m.type, from, requestId, targets: m.targets, leaseMs: m.leaseMs };
    case 'notice':
      return { type: m.type, from, requestId, key: m.key, versions: m.versions };
    case 'keys':
      return { type: m.type, from, requestId, asks: m.asks, prefix: m.prefix, limit: m.limit };
    case 'keys-reply':
      return { type: m.type, from, requestId, pages: m.pages, refused: m.refused };
  }
}
