/**
 * A simulated network between simulated nodes. Each node incarnation gets its own `Transport`; frames are copied
 * on send (into shared blocks, see SLAB_BYTES) and delivered through the scheduler after a random latency (a base
 * plus an exponential tail), unless lost, blocked by a partition, or addressed to an incarnation that has crashed
 * since.
 *
 * Links are FIFO like the reliable, ordered data channels a tab uses, unless reordering is on, when every frame's
 * delay is independent. Loss and duplication are per frame. A partition gives each node a side; nodes talk when
 * they are on the same side or one of them is a bridge (side `bridge` talks to everyone), which also models the
 * non-transitive reachability of a bridged partition. Reachability is checked when a frame arrives, so frames in
 * flight when a partition starts are cut off too.
 */
import type { Transport } from '../../worker/env.ts';
import type { Rng } from './random.ts';
import type { Owner, Scheduler } from './scheduler.ts';

/** Where a frame is handed on arrival. */
export type Receiver = (from: string, frame: Uint8Array) => void;

/** Latency and fault settings; all can be changed while the run goes on. */
export interface NetworkConditions {
  /** Fixed part of a frame's delay, ms. @default 1 */
  baseLatency: number;
  /** Mean of the exponential part of a frame's delay, ms. @default 2 */
  latencyTail: number;
  /** Probability that a frame is dropped. @default 0 */
  lossRate: number;
  /** Probability that a frame is delivered twice (each copy with its own delay). @default 0 */
  duplicateRate: number;
  /** When true, frames on one link may overtake each other. @default false */
  reorder: boolean;
}

/** The side of a partition a node is on; `bridge` reaches both sides. */
export type Side = 'a' | 'b' | 'bridge';

/** Counters of what the network did. */
export interface NetworkStats {
  sent: number;
  delivered: number;
  bytes: number;
  lost: number;
  duplicated: number;
  blocked: number;
  /** Frames dropped because their sender or receiver incarnation had crashed. */
  dead: number;
}

/** A frame waiting for its paused receiver. */
interface Held {
  readonly from: string;
  readonly incarnation: number;
  readonly frame: Uint8Array;
}

/** One direction of a link: when its last frame arrives, so that an ordered link never lets one overtake. */
interface Link {
  last: number;
}

interface Endpoint {
  readonly owner: Owner;
  readonly receive: Receiver;
  readonly incarnation: number;
}

/**
 * Copies of frames up to SLAB_BYTES / 16 are cut from shared blocks of SLAB_BYTES, as Node cuts small Buffers from a
 * pool: a copy is still the receiver's own bytes, which the sender can no longer reach, but it costs no ArrayBuffer
 * of its own (an allocation and a backing store for the collector to sweep, which cost more than the copy itself).
 */
const SLAB_BYTES = 64 * 1024;

/** The default conditions: a quiet LAN. */
export const QUIET: Readonly<NetworkConditions> = Object.freeze({
  baseLatency: 1,
  latencyTail: 2,
  lossRate: 0,
  duplicateRate: 0,
  reorder: false,
});

/** The simulated network of one run. */
export class Network {
  readonly conditions: NetworkConditions;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, bytes: 0, lost: 0, duplicated: 0, blocked: 0, dead: 0 };
  readonly #scheduler: Scheduler;
  readonly #rng: Rng;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #incarnations = new Map<string, number>();
  /** By sender, then receiver: the link (an object, so that a frame updates it without another lookup). */
  readonly #links = new Map<string, Map<string, Link>>();
  #sides: ReadonlyMap<string, Side> | null = null;
  /** By receiver: frames that arrived while it was paused, in arrival order. */
  readonly #held = new Map<string, Held[]>();
  /** The block that copies of small frames are cut from, and where the next copy starts in it. */
  #slab = new Uint8Array(SLAB_BYTES);
  #slabAt = 0;

  constructor(scheduler: Scheduler, rng: Rng, conditions: Partial<NetworkConditions> = {}) {
    this.#scheduler = scheduler;
    this.#rng = rng;
    this.conditions = { ...QUIET, ...conditions };
  }

  /**
   * Connects a new incarnation of node `id`, replacing any earlier one: frames sent to the earlier one and still in
   * flight are dropped, as its connections died with it.
   * @returns The transport the incarnation sends with; it sends nothing once `owner` is dead.
   */
  attach(id: string, owner: Owner, receive: Receiver): Transport {
    const incarnation = (this.#incarnations.get(id) ?? 0) + 1;
    this.#incarnations.set(id, incarnation);
    this.#endpoints.set(id, { owner, receive, incarnation });
    let links = this.#links.get(id);
    if (links === undefined) this.#links.set(id, (links = new Map()));
    const outgoing = links;
    return { send: (to, frame) => this.#send(id, owner, outgoing, to, frame) };
  }

  /** Disconnects node `id` (a crash): nothing more reaches it until it is attached again. */
  detach(id: string): void {
    this.#endpoints.delete(id);
  }

  /** Splits the nodes: each listed node gets its side, unlisted nodes are on side `a`. */
  partition(sides: ReadonlyMap<string, Side>): void {
    this.#sides = sides;
  }

  /** Removes any partition. */
  heal(): void {
    this.#sides = null;
  }

  /** The current partition, or null. */
  get sides(): ReadonlyMap<string, Side> | null {
    return this.#sides;
  }

  /**
   * Hands node `id` the frames that arrived while it was paused, in order, if its pause is over (a resumed tab
   * reading its channels). Called when a pause ends early; a pause that runs its course flushes by itself.
   */
  flush(id: string): void {
    const queue = this.#held.get(id);
    if (queue === undefined) return;
    const resume = this.#endpoints.get(id)?.owner.pausedUntil;
    if (resume !== undefined && resume > this.#scheduler.now) {
      this.#flushAt(id, resume);
      return;
    }
    this.#held.delete(id);
    for (const held of queue) this.#deliver(held.from, id, held.incarnation, held.frame);
  }

  #flushAt(id: string, time: number): void {
    this.#scheduler.schedule(Math.max(0, time - this.#scheduler.now), () => this.flush(id));
  }

  /** True when frames from `a` reach `b` under the current partition. */
  canTalk(a: string, b: string): boolean {
    const sides = this.#sides;
    if (sides === null) return true;
    const sa = sides.get(a) ?? 'a';
    const sb = sides.get(b) ?? 'a';
    return sa === sb || sa === 'bridge' || sb === 'bridge';
  }

  #send(from: string, owner: Owner, links: Map<string, Link>, to: string, frame: Uint8Array): void {
    this.stats.sent++;
    if (!owner.alive) {
      this.stats.dead++;
      return;
    }
    const c = this.conditions;
    if (this.#rng.chance(c.lossRate)) {
      this.stats.lost++;
      return;
    }
    const target = this.#endpoints.get(to);
    if (target === undefined) {
      this.stats.dead++;
      return;
    }
    const copies = this.#rng.chance(c.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    const now = this.#scheduler.now;
    let link = links.get(to);
    if (link === undefined) links.set(to, (link = { last: 0 }));
    for (let i = 0; i < copies; i++) {
      const bytes = this.#copy(frame);
      let at = now + Math.max(1, Math.ceil(c.baseLatency + this.#rng.exponential(c.latencyTail)));
      if (!c.reorder && at < link.last) at = link.last;
      if (at > link.last) link.last = at;
      this.#scheduler.schedule(at - now, () => this.#deliver(from, to, target.incarnation, bytes));
    }
  }

  /** A copy of `frame` that nothing else holds: see SLAB_BYTES. */
  #copy(frame: Uint8Array): Uint8Array {
    const n = frame.byteLength;
    if (n > SLAB_BYTES / 16) return frame.slice();
    let at = this.#slabAt;
    if (at + n > SLAB_BYTES) {
      this.#slab = new Uint8Array(SLAB_BYTES);
      at = 0;
    }
    const bytes = this.#slab.subarray(at, at + n);
    bytes.set(frame);
    // The next copy starts 8-byte aligned, so that no two copies share a word.
    this.#slabAt = (at + n + 7) & ~7;
    return bytes;
  }

  #deliver(from: string, to: string, incarnation: number, frame: Uint8Array): void {
    const target = this.#endpoints.get(to);
    if (target === undefined || target.incarnation !== incarnation || !target.owner.alive) {
      this.stats.dead++;
      return;
    }
    if (!this.canTalk(from, to)) {
      this.stats.blocked++;
      return;
    }
    const resume = target.owner.pausedUntil;
    const queue = this.#held.get(to);
    if (queue !== undefined || (resume !== undefined && resume > this.#scheduler.now)) {
      // A frozen tab reads its channels once it runs again; frames queue meanwhile, and frames arriving while the
      // queue drains go behind it, so that a link stays in order however the pause ends.
      if (queue === undefined) {
        this.#held.set(to, [{ from, incarnation, frame }]);
        this.#flushAt(to, resume ?? this.#scheduler.now);
      } else queue.push({ from, incarnation, frame });
      return;
    }
    this.stats.delivered++;
    this.stats.bytes += frame.byteLength;
    target.receive(from, frame);
  }
}
