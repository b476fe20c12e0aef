/**
 * The watching node's side of `watch`: the app's watches, registered with the nodes that store what they watch, and
 * the notices those nodes send back, delivered once each (deliveries.ts).
 *
 * Where a watch is registered: a key's watch with the key's preference list (N nodes); a prefix's with every member,
 * since keys are placed by md5 and a prefix spans every partition. Each node gets one `watch` message holding the
 * whole set of targets it is to serve for this node, sent again every lease / 3 and on every view change, so that
 * watches follow their keys' partitions as owners join, leave and fail, and lapse at nodes that no longer own them.
 * A key watch whose owners changed in a new view may have missed a notice (an owner failed before sending it, or a
 * new owner had not heard of the watch yet): the key is read, and the read delivered if it brings something new. A
 * key watch is read once when it starts too, which closes the moment before its owners hold the registration.
 */
import { InvalidArgumentError, TooManyWatchesError } from '../errors.ts';
import type { Clock, Logger, TimerHandle, Timers } from '../env.ts';
import type { Ring } from '../ring/ring.ts';
import type { Version } from '../versions/version.ts';
import { MAX_WATCH_TARGETS, type WatchTarget } from '../wire/protocol.ts';
import { Deliveries, type DeliveriesOptions } from './deliveries.ts';
import { hasPrefix, keyId } from './registry.ts';

/** How long a node holds a registration unless it is sent again, ms. @default 30000 */
export const DEFAULT_WATCH_LEASE_MS = 30_000;
/** Most watches one node runs for its app. @default 1024 */
export const DEFAULT_MAX_WATCHES = MAX_WATCH_TARGETS;

/** A change of a watched key: its siblings as a get would return them (tombstones included). */
export interface WatchChange {
  readonly key: Uint8Array;
  readonly siblings: readonly Version[];
}

/** What the watcher needs of its node. */
export interface WatcherOptions {
  readonly self: string;
  /** Replication factor N: a key's watch goes to its first N owners. */
  readonly n: number;
  /** The ring of the current view. */
  readonly ring: () => Ring;
  /** Sends `to` the whole set of targets it is to serve for this node, held for `leaseMs`. */
  readonly send: (to: string, targets: readonly WatchTarget[], leaseMs: number) => void;
  /** Reads `key` as a get does: its siblings merged from a read quorum. */
  readonly read: (key: Uint8Array) => Promise<readonly Version[]>;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  /** How long a registration is held unless sent again, ms; it is sent again every third of it. @default 30000 */
  readonly leaseMs?: number;
  /** Most watches at once; one more fails with `ERR_TOO_MANY_WATCHES`. 1..1024. @default 1024 */
  readonly maxWatches?: number;
  readonly deliveries?: DeliveriesOptions;
}

interface Watch {
  readonly target: WatchTarget;
  readonly id: string;
  readonly listener: (change: WatchChange) => void;
}

/** One node's watches. */
export class Watcher {
  readonly #options: WatcherOptions;
  readonly #leaseMs: number;
  readonly #maxWatches: number;
  readonly #watches = new Set<Watch>();
  readonly #deliveries: Deliveries;
  /** Nodes holding a non-empty set of this node's, as last sent. */
  #registeredAt = new Set<string>();
  /** The owners each watched key was registered with, as last sent, to tell which keys changed hands. */
  #ownersOf = new Map<string, string>();
  #renewTimer: TimerHandle | undefined;
  #pending = false;
  /** Keys of watches started since the last registration, to read once it is sent. */
  #toRead: Uint8Array[] = [];
  #closed = false;

  constructor(options: WatcherOptions) {
    this.#options = options;
    this.#leaseMs = options.leaseMs ?? DEFAULT_WATCH_LEASE_MS;
    const max = options.maxWatches ?? DEFAULT_MAX_WATCHES;
    if (!Number.isInteger(max) || max < 1 || max > MAX_WATCH_TARGETS)
      throw new InvalidArgumentError(
        `maxWatches must be an integer from 1 to ${MAX_WATCH_TARGETS}, got ${String(max)}`,
      );
    this.#maxWatches = max;
    this.#deliveries = new Deliveries(options.deliveries);
  }

  /** Watches running now. */
  get size(): number {
    return this.#watches.size;
  }

  /**
   * Starts a watch of `target` (a non-empty key, checked by the caller); returns the function that ends it.
   * @throws TooManyWatchesError when `maxWatches` watches run already.
   */
  watch(target: WatchTarget, listener: (change: WatchChange) => void): () => void {
    if (this.#watches.size >= this.#maxWatches)
      throw new TooManyWatchesError(`${this.#watches.size} watches run already, the most this node allows`);
    const watch: Watch = {
      target: { key: target.key.slice(), prefix: target.prefix },
      id: keyId(target.key),
      listener,
    };
    this.#watches.add(watch);
    // Read once registered: the read follows the registration to each owner on the same ordered link, so a write
    // either is in what the read finds or comes after the registration and is told.
    if (!target.prefix) this.#toRead.push(watch.target.key);
    this.#schedule();
    return () => {
      if (!this.#watches.delete(watch)) return;
      this.#deliveries.retain((id) => this.#covered(id));
      this.#schedule();
    };
  }

  /** The view changed: registrations go where the watched keys now live, and keys that changed hands are read. */
  viewChanged(): void {
    if (this.#watches.size > 0 || this.#registeredAt.size > 0) this.#register();
  }

  /**
   * This node may have missed notices without any change of view (its page lost the signalling server and came back,
   * its links were down): sends every registration again and reads every watched key.
   */
  resync(): void {
    if (this.#closed || this.#watches.size === 0) return;
    this.#register();
    const read = new Set<string>();
    for (const watch of this.#watches) {
      if (watch.target.prefix || read.has(watch.id)) continue;
      read.add(watch.id);
      this.#readNow(watch.target.key);
    }
  }

  /** Takes a notice of `key`'s stored siblings, from a node the caller checked owns the key. */
  notice(key: Uint8Array, versions: readonly Version[]): void {
    if (this.#watches.size === 0) return;
    const matching = this.#matching(key);
    if (matching.length === 0) return;
    const siblings = this.#deliveries.offer(key, versions);
    if (siblings === null) return;
    const change: WatchChange = { key, siblings };
    for (const watch of matching) {
      try {
        watch.listener(change);
      } catch (error) {
        this.#options.logger.warn({ error: String(error) }, 'a watch listener threw');
      }
    }
  }

  /** Ends every watch's registrations' renewal; the nodes holding them let them lapse. */
  close(): void {
    this.#closed = true;
    if (this.#renewTimer !== undefined) this.#options.timers.clearTimeout(this.#renewTimer);
  }

  #matching(key: Uint8Array): Watch[] {
    const out: Watch[] = [];
    let id: string | undefined;
    for (const watch of this.#watches) {
      if (watch.target.prefix) {
        if (hasPrefix(key, watch.target.key)) out.push(watch);
      } else if (watch.id === (id ??= keyId(key))) out.push(watch);
    }
    return out;
  }

  #covered(id: string): boolean {
    for (const watch of this.#watches) if (watch.target.prefix ? id.startsWith(watch.id) : id === watch.id) return true;
    return false;
  }

  /** Registers once after the current task: a page starting many watches at once sends one set per node. */
  #schedule(): void {
    if (this.#pending || this.#closed) return;
    this.#pending = true;
    void Promise.resolve().then(() => {
      this.#pending = false;
      this.#register();
      const keys = this.#toRead;
      this.#toRead = [];
      for (const key of keys) this.#readNow(key);
    });
  }

  /** Sends every node its set of targets (an empty one to nodes that held one and hold none now). */
  #register(): void {
    if (this.#closed) return;
    const { self, n } = this.#options;
    const ring = this.#options.ring();
    const sets = new Map<string, Map<string, WatchTarget>>();
    const add = (node: string, target: WatchTarget, id: string): void => {
      if (node === self) return;
      let set = sets.get(node);
      if (set === undefined) sets.set(node, (set = new Map()));
      set.set(`${target.prefix ? 'p' : 'k'}${id}`, target);
    };
    const ownersOf = new Map<string, string>();
    const suspect: Uint8Array[] = [];
    for (const watch of this.#watches) {
      if (watch.target.prefix) {
        for (const member of ring.members) add(member.id, watch.target, watch.id);
        continue;
      }
      const owners = ring.preferenceList(ring.partitionOf(watch.target.key), n);
      for (const owner of owners) add(owner, watch.target, watch.id);
      const joined = owners.join(',');
      const before = this.#ownersOf.get(watch.id);
      if (before !== undefined && before !== joined && !ownersOf.has(watch.id)) suspect.push(watch.target.key);
      ownersOf.set(watch.id, joined);
    }
    this.#ownersOf = ownersOf;
    for (const [node, set] of sets) this.#options.send(node, [...set.values()], this.#leaseMs);
    for (const node of this.#registeredAt) if (!sets.has(node)) this.#options.send(node, [], this.#leaseMs);
    this.#registeredAt = new Set(sets.keys());
    for (const key of suspect) this.#readNow(key);
    if (this.#renewTimer !== undefined) this.#options.timers.clearTimeout(this.#renewTimer);
    this.#renewTimer =
      this.#registeredAt.size === 0
        ? undefined
        : this.#options.timers.setTimeout(() => this.#register(), Math.floor(this.#leaseMs / 3));
  }

  /** Reads `key` and delivers what it finds that is new: a notice may have been missed. */
  #readNow(key: Uint8Array): void {
    this.#options
      .read(key)
      .then((siblings) => {
        if (!this.#closed) this.notice(key, siblings);
      })
      .catch((error: unknown) =>
        this.#options.logger.warn({ error: String(error) }, 'a watched key could not be read after a change of view'),
      );
  }
}
