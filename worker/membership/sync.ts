/**
 * Partition sync between two nodes, both sides of it: compare Merkle trees level by level, descending only into
 * hashes that differ, then pull the keys of differing leaves, or push ours. Joins, re-replication after a failure,
 * releases and anti-entropy are all made of these steps; what differs between them is who is asked and what is
 * done with the answer (see rebalance.ts and antientropy.ts).
 */
import type { ByteBudget } from '../transport/budget.ts';
import { InvalidArgumentError, OverloadedError, QuorumError, UnauthorizedError } from '../errors.ts';
import type { Clock, Logger } from '../env.ts';
import { type PartitionTree, children, differing, leafOf } from './merkle.ts';
import type { Metrics } from '../metrics.ts';
import type { Outgoing, Peers } from '../transport/peers.ts';
import {
  DEFAULT_LIMITS,
  MAX_SYNC_ENTRIES,
  type ProtocolLimits,
  type SyncDropMessage,
  type SyncEntry,
  type SyncKeysMessage,
  type SyncPushMessage,
  type SyncTreeMessage,
  TREE_DEPTH,
  TREE_HASH_BYTES,
} from '../wire/protocol.ts';
import type { ProbeAnswer } from './holders.ts';
import type { Storage, StoredKey } from '../storage/storage.ts';
import { type Version, versionSize } from '../versions/version.ts';
import type { Corroboration } from './corroborate.ts';
import { type Fitted, carryingTimeout, entryWireBytes, fitEntry, messageRoom } from '../wire/fit.ts';

/** Most bytes of entries in one page of keys pulled or pushed by a transfer. */
export const SYNC_PAGE_BYTES = 64 * 1024;

/**
 * Most bytes of entries in one page of anti-entropy: each key is its own storage transaction, and a page is stored
 * in one go, so small pages keep the queue a foreground write may find ahead of it short.
 */
export const REPAIR_PAGE_BYTES = 8 * 1024;

/** What a key costs beyond its bytes, charged to the budget: its storage transaction and its tree update. */
const KEY_OVERHEAD_BYTES = 256;

/** Keys read from storage per scan step while gathering a page. */
const SCAN_STEP = 256;

/** What partition sync needs from its node. */
export interface SyncDeps {
  /** The node's storage, reporting its changes to the trees. */
  readonly storage: Storage;
  readonly peers: Peers;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly requestTimeout: number;
  /** Q, the number of ring partitions. */
  readonly partitions: number;
  /** The partition of a key. */
  partitionOf(key: Uint8Array): number;
  /** The wire limits of the cluster: no page holds a key beyond them (see fit.ts). @default DEFAULT_LIMITS */
  readonly limits?: ProtocolLimits;
  /** The Merkle tree of what this node stores for `partition`. */
  tree(partition: number): Promise<PartitionTree>;
  /** True when this node holds a complete copy of `partition`. */
  holds(partition: number): boolean;
  /** The clock of the serving allowance below. */
  readonly clock: Clock;
  /**
   * Bytes of `sync-keys` answers this node serves one peer per second, on average (a burst of two seconds' worth at
   * once); past it the peer is answered `ERR_OVERLOADED` until its allowance refills. Set well above what the
   * peers' own transfer and repair budgets ask for, so that only a peer pulling beyond them meets it.
   */
  readonly serveBytesPerSecond: number;
  /**
   * True when `node` may have this node collect tombstones of `partition`: it is the partition's first owner in this
   * node's view (or was, in a view replaced moments ago), the one node that decides a collection.
   */
  mayCollect(node: string, partition: number): boolean;
  /**
   * True when `node` may push keys of `partition` on its own word: it owns the partition in this node's view, or did
   * in a view of the last minutes, or told this node it holds it (an old owner releasing it).
   */
  mayWrite(node: string, partition: number): boolean;
  /**
   * True when `node` may pull keys of `partition`: it owns the partition in this node's view, or did in a view
   * replaced moments ago. Owners pull from each other (anti-entropy) and from holders (a new owner fetching).
   */
  mayPull(node: string, partition: number): boolean;
  /** Resolves at the next change of view, or after `ms`. */
  nextView(ms: number): Promise<void>;
  /** What the partition's other owners vouch for of versions `sender` pushed (see corroborate.ts). */
  corroborate(key: Uint8Array, versions: readonly Version[], sender: string, partition: number): Promise<Corroboration>;
}

/** How long a push this node's view does not allow waits for a newer view, ms. */
const VIEW_WAIT_MS = 1000;
/** Keys of one pushed page whose owners are asked at once, when its sender needs them to vouch for it. */
const VOUCH_CONCURRENCY = 64;

/** What comparing trees with a peer found. */
export interface Comparison {
  /** The peer holds a complete copy of the partition. */
  readonly held: boolean;
  /** Leaves whose hashes differ, ascending; empty when the trees are equal. */
  readonly leaves: number[];
}

/** The bytes an entry takes on the wire, roughly. */
export function entrySize(entry: SyncEntry): number {
  let size = entry.key.byteLength + KEY_OVERHEAD_BYTES;
  for (const v of entry.versions) size += versionSize(v);
  return size;
}

/** Both sides of partition sync for one node. */
export class PartitionSync {
  readonly #deps: SyncDeps;
  /** What each peer may still be served of `sync-keys` answers, in bytes, as of `at`. */
  readonly #served = new Map<string, { bytes: number; at: number }>();

  constructor(deps: SyncDeps) {
    this.#deps = deps;
  }

  /** The Merkle tree of what this node stores for `partition`. */
  tree(partition: number): Promise<PartitionTree> {
    return this.#deps.tree(partition);
  }

  // ---- serving peers ----

  /** Answers a `sync-tree` request with the asked hashes of this node's tree. */
  async serveTree(message: SyncTreeMessage): Promise<Outgoing> {
    this.#checkPartition(message.partition);
    const tree = await this.#deps.tree(message.partition);
    return {
      type: 'sync-tree-reply',
      held: this.#deps.holds(message.partition),
      hashes: tree.hashes(message.level, message.indexes),
    };
  }

  /**
   * Answers a `sync-keys` request with one page of the keys of the asked leaves: at most the bytes asked for, and
   * never more than {@link SYNC_PAGE_BYTES} (plus the one key a page always holds), whatever a peer asks, so that a
   * small request cannot draw a large answer; and only to an owner of the partition (`ERR_UNAUTHORIZED` otherwise).
   */
  async serveKeys(message: SyncKeysMessage): Promise<Outgoing> {
    this.#checkPartition(message.partition);
    if (!this.#deps.mayPull(message.from, message.partition)) {
      // A new owner's view may be ahead of this node's: it is weighed again under the next view, if one comes.
      await this.#newerView();
      if (!this.#deps.mayPull(message.from, message.partition)) {
        this.#deps.metrics.count('unauthorizedMessages');
        throw new UnauthorizedError(`${message.from} does not own partition ${message.partition}: it may not pull it`);
      }
    }
    const allowance = this.#allowance(message.from);
    if (allowance.bytes <= 0) {
      this.#deps.metrics.count('peerRequestsRefused');
      throw new OverloadedError(`${message.from} pulls keys faster than ${this.#deps.serveBytesPerSecond} bytes/s`);
    }
    const leaves = new Set(message.leaves);
    const maxBytes = Math.min(message.maxBytes, SYNC_PAGE_BYTES);
    const page = await this.#page(message.partition, leaves, message.after, maxBytes, 'reply');
    allowance.bytes -= page.entries.reduce((sum, e) => sum + entrySize(e), 0);
    this.#deps.metrics.count('syncKeysServed', page.entries.length);
    return { type: 'sync-keys-reply', entries: page.entries, next: page.next };
  }

  /**
   * Merges pushed keys into the main store. Every key must belong to the named partition. From a node that may not
   * write the partition (see {@link SyncDeps.mayWrite}), only what the other owners vouch for is merged, and the push
   * is refused when they do not vouch for all of it (`ERR_UNAUTHORIZED`, or `ERR_QUORUM` when one did not answer).
   */
  async servePush(message: SyncPushMessage): Promise<Outgoing> {
    this.#checkPartition(message.partition);
    this.#checkEntries(message.partition, message.entries);
    const { partition, from } = message;
    let entries: readonly SyncEntry[] = message.entries;
    let refusal: Error | null = null;
    if (!this.#deps.mayWrite(from, partition)) {
      ({ entries, refusal } = await this.#vouched(message));
      // A pusher this node's view does not know as an owner yet may be one in a newer view.
      if (refusal !== null) await this.#newerView();
      if (refusal !== null && this.#deps.mayWrite(from, partition)) {
        entries = message.entries;
        refusal = null;
      }
    }
    // One transaction for the page: a transaction per key would queue foreground writes behind each of them.
    const results = entries.length > 0 ? await this.#deps.storage.applyMany(partition, entries) : [];
    const changed = results.filter((r) => r.changed).length;
    if (changed > 0) this.#deps.metrics.count('keysRepaired', changed);
    if (refusal !== null) throw refusal;
    return { type: 'replicate-ack' };
  }

  /**
   * Resolves at the next view, or after {@link VIEW_WAIT_MS} but within half the sender's timeout, so that it still
   * hears a refusal: a request this node's view does not allow may come from a node whose view is newer.
   */
  #newerView(): Promise<void> {
    return this.#deps.nextView(Math.min(VIEW_WAIT_MS, this.#deps.requestTimeout / 2));
  }

  /** What the owners vouch for of a pushed page, and the refusal its other entries earn, if any. */
  async #vouched(message: SyncPushMessage): Promise<{ entries: SyncEntry[]; refusal: Error | null }> {
    const { partition, from } = message;
    const entries: SyncEntry[] = [];
    let unvouched = 0;
    /** A key some of whose versions are unvouched while an owner asked about it did not answer. */
    let silent: Corroboration | undefined;
    for (let i = 0; i < message.entries.length; i += VOUCH_CONCURRENCY) {
      const chunk = message.entries.slice(i, i + VOUCH_CONCURRENCY);
      const found = await Promise.all(chunk.map((e) => this.#deps.corroborate(e.key, e.versions, from, partition)));
      found.forEach((f, k) => {
        // A key's versions are merged all or none: a copy holding a coordinator's later dot of the key without its
        // earlier one would answer reads with a clock claiming a write it never saw.
        if (f.vouched.length > 0 && f.unvouched.length === 0) entries.push({ key: chunk[k]!.key, versions: f.vouched });
        unvouched += f.unvouched.length;
        if (f.unvouched.length > 0 && f.answered < f.asked) silent ??= f;
      });
    }
    if (unvouched === 0) return { entries, refusal: null };
    if (silent !== undefined) {
      const why = `owners of partition ${partition} did not answer to vouch for ${from}'s push`;
      return { entries, refusal: new QuorumError(why, silent.asked, silent.answered) };
    }
    this.#deps.metrics.count('unauthorizedMessages');
    const refusal = new UnauthorizedError(
      `${from} does not own partition ${partition}, and no owner holds ${unvouched} of the versions it pushed`,
    );
    return { entries, refusal };
  }

  /**
   * Collects tombstones the partition's first owner found held by every owner past their grace: each key is
   * removed only if what is stored is exactly the sent tombstones, so a later write is never lost to it. From any
   * other node it is refused with `ERR_UNAUTHORIZED`, removing nothing.
   */
  async serveDrop(message: SyncDropMessage): Promise<Outgoing> {
    this.#checkPartition(message.partition);
    if (!this.#deps.mayCollect(message.from, message.partition)) {
      this.#deps.metrics.count('unauthorizedMessages');
      throw new UnauthorizedError(`${message.from} is not the first owner of partition ${message.partition}`);
    }
    this.#checkEntries(message.partition, message.entries);
    for (const entry of message.entries) {
      if (entry.versions.some((v) => v.value !== null))
        throw new InvalidArgumentError('sync-drop may only name keys whose every version is a tombstone');
    }
    let collected = 0;
    for (const entry of message.entries) {
      const stored = await this.#deps.storage.get(entry.key);
      if (stored.length === 0) continue;
      if (await this.#deps.storage.deleteIfUnchanged(entry.key, entry.versions)) collected++;
    }
    if (collected > 0) this.#deps.metrics.count('tombstonesCollected', collected);
    return { type: 'replicate-ack' };
  }

  /** `peer`'s allowance of bytes served, refilled up to now. */
  #allowance(peer: string): { bytes: number } {
    const { clock, serveBytesPerSecond: rate } = this.#deps;
    const now = clock.now();
    let allowance = this.#served.get(peer);
    if (allowance === undefined) this.#served.set(peer, (allowance = { bytes: 2 * rate, at: now }));
    allowance.bytes = Math.min(2 * rate, allowance.bytes + ((now - allowance.at) * rate) / 1000);
    allowance.at = now;
    return allowance;
  }

  // ---- asking peers ----

  /**
   * Asks `peer` for its root of `partition` only: whether it holds the partition, and its root. Null when it did
   * not answer. Without a budget it is not charged: requests waiting for the answer must not queue behind transfers.
   */
  async probe(peer: string, partition: number, budget?: ByteBudget): Promise<ProbeAnswer | null> {
    await budget?.ready(72);
    const reply = await this.#deps.peers.request(
      peer,
      { type: 'sync-tree', partition, level: 0, indexes: [0] },
      this.#deps.requestTimeout,
    );
    if (reply?.type !== 'sync-tree-reply' || reply.hashes.byteLength !== TREE_HASH_BYTES) return null;
    budget?.spend(72);
    return { held: reply.held, root: reply.hashes };
  }

  /**
   * Compares this node's tree of `partition` with `peer`'s, descending only where hashes differ. Null when the
   * peer did not answer or refused.
   */
  async compare(peer: string, partition: number, budget: ByteBudget): Promise<Comparison | null> {
    const mine = await this.#deps.tree(partition);
    let indexes = [0];
    let held = false;
    for (let level = 0; level <= TREE_DEPTH; level++) {
      await budget.ready(64 + indexes.length * 8);
      const reply = await this.#deps.peers.request(
        peer,
        { type: 'sync-tree', partition, level, indexes },
        this.#deps.requestTimeout,
      );
      if (reply?.type !== 'sync-tree-reply' || reply.hashes.byteLength !== indexes.length * 8) return null;
      budget.spend(64 + reply.hashes.byteLength);
      this.#deps.metrics.count('syncBytes', 64 + reply.hashes.byteLength);
      held = reply.held;
      const differ = differing(mine.hashes(level, indexes), reply.hashes).map((i) => indexes[i]!);
      if (differ.length === 0) return { held, leaves: [] };
      if (level === TREE_DEPTH) return { held, leaves: differ };
      indexes = differ.flatMap((i) => children(i));
    }
    return { held, leaves: [] };
  }

  /**
   * Pulls every key of `leaves` from `peer` and merges it into the main store, page by page within `budget`.
   * `onPage` hears the fraction of leaves done. False when the peer stopped answering.
   */
  async pull(
    peer: string,
    partition: number,
    leaves: readonly number[],
    budget: ByteBudget,
    onPage?: (fraction: number) => void,
    pageBytes: number = SYNC_PAGE_BYTES,
  ): Promise<boolean> {
    const { storage, peers, metrics } = this.#deps;
    let after: Uint8Array | null = null;
    for (;;) {
      await budget.ready(pageBytes);
      const maxBytes = Math.max(1024, Math.min(pageBytes, Math.floor(budget.available())));
      const reply = await peers.request(
        peer,
        { type: 'sync-keys', partition, leaves: [...leaves], after, maxBytes },
        this.#deps.requestTimeout * 4,
      );
      if (reply?.type !== 'sync-keys-reply') return false;
      let bytes = 64;
      for (const entry of reply.entries) {
        if (this.#deps.partitionOf(entry.key) !== partition) {
          this.#deps.logger.warn({ peer, partition }, 'sync-keys reply holds a key of another partition');
          return false;
        }
        bytes += entrySize(entry);
      }
      const changed = (await storage.applyMany(partition, reply.entries)).filter((r) => r.changed).length;
      budget.spend(bytes);
      metrics.count('syncBytes', bytes);
      if (changed > 0) metrics.count('keysRepaired', changed);
      if (reply.next === null) {
        onPage?.(1);
        return true;
      }
      if (after !== null && compareBytes(reply.next, after) <= 0) return false;
      after = reply.next;
      onPage?.(keyFraction(reply.next));
    }
  }

  /** Pushes `entries` to `peer` in pages within `budget`; true once every page was acknowledged. */
  async push(
    peer: string,
    partition: number,
    entries: readonly SyncEntry[],
    budget: ByteBudget,
    pageBytes: number = SYNC_PAGE_BYTES,
  ): Promise<boolean> {
    for (const page of this.#pages(entries, pageBytes)) {
      const bytes = 64 + page.reduce((sum, e) => sum + entrySize(e), 0);
      await budget.ready(bytes);
      const reply = await this.#deps.peers.request(
        peer,
        { type: 'sync-push', partition, entries: page },
        carryingTimeout(
          this.#deps.requestTimeout * 4,
          page.flatMap((e) => e.versions),
        ),
      );
      if (reply?.type !== 'replicate-ack') return false;
      budget.spend(bytes);
      this.#deps.metrics.count('syncBytes', bytes);
    }
    return true;
  }

  /** Asks `peer` to collect the given tombstones; true when it acknowledged. */
  async drop(peer: string, partition: number, entries: readonly SyncEntry[], budget: ByteBudget): Promise<boolean> {
    for (const page of this.#pages(entries, SYNC_PAGE_BYTES)) {
      const bytes = 64 + page.reduce((sum, e) => sum + entrySize(e), 0);
      await budget.ready(bytes);
      const reply = await this.#deps.peers.request(
        peer,
        { type: 'sync-drop', partition, entries: page },
        this.#deps.requestTimeout * 4,
      );
      if (reply?.type !== 'replicate-ack') return false;
      budget.spend(bytes);
    }
    return true;
  }

  /**
   * This node's keys of `leaves` (every leaf when null) in `partition`, one page at a time: every key that can be
   * pushed whole. A key holding a version no peer's decoder accepts is left out (counted and logged), so that a
   * release never deletes what it could not hand over, and the rest of the partition moves on without it.
   */
  async *scan(partition: number, leaves: ReadonlySet<number> | null): AsyncGenerator<StoredKey[]> {
    let after: Uint8Array | null = null;
    for (;;) {
      const page = await this.#page(partition, leaves, after, SYNC_PAGE_BYTES, 'scan');
      if (page.keys.length > 0) yield page.keys;
      if (page.next === null) return;
      after = page.next;
    }
  }

  /**
   * Gathers up to `maxBytes` of the keys of `leaves` after `after` (at least one key when any is left), each fitted
   * to the wire limits (see fit.ts). For a `reply` every entry travels in one message, so a key too large for one
   * sends the part that fits; for a `scan` only the keys that can be pushed whole are listed.
   */
  async #page(
    partition: number,
    leaves: ReadonlySet<number> | null,
    after: Uint8Array | null,
    maxBytes: number,
    use: 'reply' | 'scan',
  ): Promise<{ keys: StoredKey[]; entries: SyncEntry[]; next: Uint8Array | null }> {
    const limits = this.#deps.limits ?? DEFAULT_LIMITS;
    const room = messageRoom(limits);
    const keys: StoredKey[] = [];
    const entries: SyncEntry[] = [];
    let bytes = 0;
    let wire = 0;
    let cursor = after;
    /** The last key this page took or passed over: the next page continues after it. */
    let last: Uint8Array | null = null;
    for (;;) {
      const batch = await this.#deps.storage.scanPartition(
        partition,
        cursor === null ? { limit: SCAN_STEP } : { after: cursor, limit: SCAN_STEP },
      );
      for (const stored of batch) {
        cursor = stored.key;
        if (leaves !== null && !leaves.has(leafOf(stored.key, this.#deps.partitions))) continue;
        const entry: SyncEntry = { key: stored.key, versions: stored.siblings };
        const size = entrySize(entry);
        const fitted = fitEntry(entry, limits, use === 'reply' ? room : Infinity);
        if (
          entries.length > 0 &&
          (bytes + size > maxBytes ||
            entries.length + fitted.parts.length > MAX_SYNC_ENTRIES ||
            (use === 'reply' && wire + fitted.bytes > room))
        ) {
          // This key starts the next page: continue after the one before it.
          return { keys, entries, next: last };
        }
        last = stored.key;
        // A scanned key is split when it is pushed (see #pages), and counted there.
        this.#report(partition, entry, fitted, use === 'reply');
        if (use === 'scan' && fitted.withheld > 0) continue;
        keys.push(stored);
        for (const part of fitted.parts) entries.push(part);
        bytes += size;
        wire += fitted.bytes;
      }
      if (batch.length < SCAN_STEP) return { keys, entries, next: null };
    }
  }

  /**
   * `entries` cut into pages of at most `pageBytes` and MAX_SYNC_ENTRIES (at least one entry each), every key
   * fitted to the wire limits: a key too large for one message is pushed in parts over several.
   */
  #pages(entries: readonly SyncEntry[], pageBytes: number): SyncEntry[][] {
    const limits = this.#deps.limits ?? DEFAULT_LIMITS;
    const room = messageRoom(limits);
    const out: SyncEntry[][] = [];
    let page: SyncEntry[] = [];
    let bytes = 0;
    let wire = 0;
    for (const entry of entries) {
      const fitted = fitEntry(entry, limits);
      this.#report(null, entry, fitted, true);
      for (const part of fitted.parts) {
        const size = entrySize(part);
        const partWire = fitted.parts.length === 1 ? fitted.bytes : entryWireBytes(part);
        if (
          page.length > 0 &&
          (bytes + size > pageBytes || page.length >= MAX_SYNC_ENTRIES || wire + partWire > room)
        ) {
          out.push(page);
          page = [];
          bytes = 0;
          wire = 0;
        }
        page.push(part);
        bytes += size;
        wire += partWire;
      }
    }
    if (page.length > 0) out.push(page);
    return out;
  }

  /** Counts and logs a key that did not fit the wire limits as it was. */
  #report(partition: number | null, entry: SyncEntry, fitted: Fitted, split: boolean): void {
    const { metrics, logger } = this.#deps;
    if (fitted.withheld > 0) {
      metrics.count('syncKeysWithheld');
      logger.warn(
        {
          partition: partition ?? this.#deps.partitionOf(entry.key),
          key: hex(entry.key),
          versions: entry.versions.length,
          withheld: fitted.withheld,
        },
        'partition sync withholds versions of a key that peers cannot decode or one message cannot carry',
      );
    } else if (split && fitted.parts.length > 1) {
      metrics.count('syncKeysSplit');
    }
  }

  #checkPartition(partition: number): void {
    if (partition >= this.#deps.partitions)
      throw new InvalidArgumentError(`partition ${partition} is outside the ring of ${this.#deps.partitions}`);
  }

  #checkEntries(partition: number, entries: readonly SyncEntry[]): void {
    for (const entry of entries) {
      if (this.#deps.partitionOf(entry.key) !== partition)
        throw new InvalidArgumentError(`a key sent for partition ${partition} belongs to another partition`);
    }
  }
}

/** A key's first bytes as hex, for logs. */
function hex(key: Uint8Array): string {
  let out = '';
  for (let i = 0; i < Math.min(key.length, 32); i++) out += key[i]!.toString(16).padStart(2, '0');
  return key.length > 32 ? `${out}…` : out;
}

/** Lexicographic order of byte strings, the order partitions are scanned in. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** A rough fraction of a pull done, from the key it has reached: partitions are scanned in key byte order. */
function keyFraction(next: Uint8Array): number {
  return next.length === 0 ? 0 : Math.min(0.99, (next[0]! + 1) / 256);
}
