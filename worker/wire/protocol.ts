/**
 * The peer protocol: every message one node sends another, as one discriminated union on `type`. Frames are
 * MessagePack (see `codec.ts`); nothing here is trusted until `decodeMessage` has checked every field.
 * Every request carries a `requestId` chosen by its sender; the reply echoes it. A change that a node of the previous
 * release would refuse (a field added, removed or narrowed) raises `PROTOCOL_VERSION` in signaling/events.ts, so that
 * the server keeps the two releases out of one cluster.
 */
import type { ErrorCode } from '../errors.ts';
import type { VClock } from '../versions/vclock.ts';
import type { Version } from '../versions/version.ts';

/** Fields every message has. */
export interface Envelope {
  /** The sending node; must equal the transport's idea of the sender. */
  readonly from: string;
  /** Chosen by the requester, echoed by the reply; a non-negative safe integer. */
  readonly requestId: number;
}

/** Store `versions` (a key's whole sibling set as the sender knows it), as a replica or for `hintFor`. */
export interface ReplicateMessage extends Envelope {
  readonly type: 'replicate';
  readonly key: Uint8Array;
  readonly versions: readonly Version[];
  /** When not null, the receiver is a fallback holding the versions for this node (hinted handoff). */
  readonly hintFor: string | null;
  /** Ask the receiver for a durable write. */
  readonly durable: boolean;
  /**
   * The counter of the dot the sender issued for this very write, when it ships its own put as coordinator: the
   * version under (`from`, `fresh`), which must be among `versions`, is the one its node just made, and a replica
   * that holds another version under that dot (made up by someone else, since dots are never reused) replaces it.
   * Null when the sender ships versions it did not just issue: a read's repair, hinted handoff.
   */
  readonly fresh: number | null;
}

/** A replica stored what it was sent. */
export interface ReplicateAckMessage extends Envelope {
  readonly type: 'replicate-ack';
}

/** Send back the key's siblings. */
export interface ReadMessage extends Envelope {
  readonly type: 'read';
  readonly key: Uint8Array;
  /**
   * Answer only from a whole copy: an owner still fetching the key's partition refuses (`ERR_NOT_RESPONSIBLE`)
   * instead of completing its answer from a holder. Set by a fetching owner completing its own answer, so that two
   * fetching owners never ask each other in a circle.
   */
  readonly requireHeld: boolean;
}

/** The key's siblings at the replica, tombstones included, hinted versions it holds included. */
export interface ReadReplyMessage extends Envelope {
  readonly type: 'read-reply';
  readonly versions: readonly Version[];
}

/** A node outside the key's preference list asks one inside it to coordinate a put or a delete. */
export interface CoordinateMessage extends Envelope {
  readonly type: 'coordinate';
  readonly key: Uint8Array;
  /** The encoded value, or null for a delete. */
  readonly value: Uint8Array | null;
  readonly context: VClock;
  readonly w: number;
  readonly ifMatch: boolean;
  readonly durable: boolean;
}

/** Who took part in a write. */
export interface WireReceipt {
  readonly coordinator: string;
  /** Every node that acknowledged, the coordinator first when it did. */
  readonly acknowledged: readonly string[];
  /** The acknowledging nodes that stood in for an unreachable owner. */
  readonly fallbacks: readonly string[];
  /** Where hints are held: `holder` keeps versions meant for `target`. */
  readonly hints: readonly { readonly holder: string; readonly target: string }[];
}

/** The coordinator's answer to a {@link CoordinateMessage} that succeeded. */
export interface CoordinateReplyMessage extends Envelope {
  readonly type: 'coordinate-reply';
  /** The new version's clock: the context to put over it. */
  readonly context: VClock;
  readonly receipt: WireReceipt;
}

/** A request failed; `code` says why. */
export interface ErrorMessage extends Envelope {
  readonly type: 'error';
  readonly code: ErrorCode;
  readonly message: string;
  /** For `ERR_QUORUM`: replicas required. */
  readonly required: number | null;
  /** For `ERR_QUORUM`: replicas that acknowledged. */
  readonly acknowledged: number | null;
}

/** One key and its whole sibling set, as partition sync ships it. */
export interface SyncEntry {
  readonly key: Uint8Array;
  readonly versions: readonly Version[];
}

/**
 * Partition sync, step 1: the hashes of one level of the receiver's Merkle tree of `partition` (level 0 is the
 * root), at the given node indexes. Joins, re-replication, releases and anti-entropy all use it: a differing hash
 * is the only reason to descend.
 */
export interface SyncTreeMessage extends Envelope {
  readonly type: 'sync-tree';
  readonly partition: number;
  /** 0 (the root) to TREE_DEPTH (the leaves). */
  readonly level: number;
  /** Node indexes at that level, ascending and distinct, each below TREE_FANOUT ** level. */
  readonly indexes: readonly number[];
}

/** The hashes a {@link SyncTreeMessage} asked for. */
export interface SyncTreeReplyMessage extends Envelope {
  readonly type: 'sync-tree-reply';
  /** True when the replier holds a complete copy of the partition (it may serve as a transfer source). */
  readonly held: boolean;
  /** TREE_HASH_BYTES per requested index, in the order asked. */
  readonly hashes: Uint8Array;
}

/** Partition sync, step 2: the keys (with their siblings) of some leaves of `partition`, one page at a time. */
export interface SyncKeysMessage extends Envelope {
  readonly type: 'sync-keys';
  readonly partition: number;
  /** Leaf indexes, ascending and distinct, each below TREE_LEAVES. */
  readonly leaves: readonly number[];
  /** Continue after this key, in the partition's key order; null for the first page. */
  readonly after: Uint8Array | null;
  /** The most bytes of entries the requester wants in the reply (at least one entry is always sent). */
  readonly maxBytes: number;
}

/** One page of keys of the asked leaves. */
export interface SyncKeysReplyMessage extends Envelope {
  readonly type: 'sync-keys-reply';
  readonly entries: readonly SyncEntry[];
  /** The key to continue after, or null when the asked leaves have been sent whole. */
  readonly next: Uint8Array | null;
}

/** Partition sync, push: merge these keys into the main store (anti-entropy repair, release to a new owner). */
export interface SyncPushMessage extends Envelope {
  readonly type: 'sync-push';
  readonly partition: number;
  readonly entries: readonly SyncEntry[];
}

/**
 * Tombstone collection: the partition's first owner found these tombstones held by every owner past their grace
 * period; remove each key whose stored versions are exactly these. Acknowledged with `replicate-ack`.
 */
export interface SyncDropMessage extends Envelope {
  readonly type: 'sync-drop';
  readonly partition: number;
  /** Keys with their versions, every one a tombstone. */
  readonly entries: readonly SyncEntry[];
}

/** One thing a watcher asks to be told of: the key `key`, or every key that starts with `key` when `prefix`. */
export interface WatchTarget {
  readonly key: Uint8Array;
  readonly prefix: boolean;
}

/**
 * A watcher's whole set of watches that the receiver is to serve: it replaces the set the sender registered before
 * (an empty set ends them) and lapses after `leaseMs` unless sent again. One-way, never answered: the watcher renews
 * it well within the lease and sends it again on every view change, so a lost one costs one renewal period.
 */
export interface WatchMessage extends Envelope {
  readonly type: 'watch';
  readonly targets: readonly WatchTarget[];
  /** How long the receiver holds the set, ms, {@link MIN_WATCH_LEASE_MS}..{@link MAX_WATCH_LEASE_MS}. */
  readonly leaseMs: number;
}

/**
 * An owner of `key`'s partition stored a change of it: the key's siblings as stored now (tombstones included), for
 * the watchers it holds a watch of. One-way, never answered.
 */
export interface NoticeMessage extends Envelope {
  readonly type: 'notice';
  readonly key: Uint8Array;
  readonly versions: readonly Version[];
}

/** One partition a {@link KeysMessage} asks for, and the key to continue after (null: from the prefix's start). */
export interface KeysAsk {
  readonly partition: number;
  readonly after: Uint8Array | null;
}

/**
 * A coverage query (`keys`): the live keys under `prefix` of each asked partition that the receiver holds whole. Any
 * member may ask (it is a read); one message per peer lists every partition asked of it.
 */
export interface KeysMessage extends Envelope {
  readonly type: 'keys';
  /** Ascending by partition, each partition once, at most {@link MAX_KEYS_ASKS}. */
  readonly asks: readonly KeysAsk[];
  /** Keys under this prefix only; empty for every key. */
  readonly prefix: Uint8Array;
  /** Most keys per partition, 1 to {@link MAX_KEYS_PER_PARTITION}. */
  readonly limit: number;
}

/** The live keys of one partition after the asked key, ascending. */
export interface KeysPage {
  readonly partition: number;
  readonly keys: readonly Uint8Array[];
  /** False when the partition holds no further live key under the prefix. */
  readonly more: boolean;
}

/**
 * The answer to a {@link KeysMessage}: a page for each asked partition it answered, and the asked partitions it does
 * not hold whole (ask another owner). Asked partitions in neither list did not fit this reply: ask again.
 */
export interface KeysReplyMessage extends Envelope {
  readonly type: 'keys-reply';
  /** Ascending by partition, each an asked one. */
  readonly pages: readonly KeysPage[];
  /** Ascending, each an asked one. */
  readonly refused: readonly number[];
}

/** Every message between peers. */
export type PeerMessage =
  | ReplicateMessage
  | ReplicateAckMessage
  | ReadMessage
  | ReadReplyMessage
  | CoordinateMessage
  | CoordinateReplyMessage
  | SyncTreeMessage
  | SyncTreeReplyMessage
  | SyncKeysMessage
  | SyncKeysReplyMessage
  | SyncPushMessage
  | SyncDropMessage
  | WatchMessage
  | NoticeMessage
  | KeysMessage
  | KeysReplyMessage
  | ErrorMessage;

/** The message types, for counters and exhaustive switches. */
export type PeerMessageType = PeerMessage['type'];

/** Children per inner node of a partition's Merkle tree. */
export const TREE_FANOUT = 8;
/** Levels below the root: the leaves are level TREE_DEPTH. */
export const TREE_DEPTH = 2;
/** Leaves per partition tree: TREE_FANOUT ** TREE_DEPTH. */
export const TREE_LEAVES = 64;
/** Bytes of one tree hash on the wire. */
export const TREE_HASH_BYTES = 8;
/** Most targets in one {@link WatchMessage}: the watches one watcher may hold at one node. */
export const MAX_WATCH_TARGETS = 1024;
/** Shortest lease of a {@link WatchMessage}, ms. */
export const MIN_WATCH_LEASE_MS = 1000;
/** Longest lease of a {@link WatchMessage}, ms. */
export const MAX_WATCH_LEASE_MS = 600_000;
/** Most entries in one sync-keys reply or sync-push. */
export const MAX_SYNC_ENTRIES = 1024;
/** Most partitions one `keys` message asks for. */
export const MAX_KEYS_ASKS = 1024;
/** Most keys of one partition in a `keys-reply` (and most a `keys` message may ask per partition). */
export const MAX_KEYS_PER_PARTITION = 1000;

/**
 * The size and shape limits the decoder enforces. They sit far above the {@link KeyBounds} that puts are held to
 * (see {@link limitsFor}), so that every message can carry any key that was legal to store.
 */
export interface ProtocolLimits {
  /** Largest key in bytes. @default 1024 */
  readonly maxKeyBytes: number;
  /** Largest encoded value in bytes. @default 1048576 */
  readonly maxValueBytes: number;
  /**
   * Most siblings of one key in one message: a wire limit, {@link WIRE_HEADROOM} times above the store's
   * `maxSiblings` at least. @default 1024
   */
  readonly maxSiblings: number;
  /** Largest message in bytes (it travels in chunks, see frames.ts). @default 75497472 (72 MiB) */
  readonly maxFrameBytes: number;
}

/**
 * What a put may leave of its key, checked atomically with the write (`Storage.write`): a put that would cross a
 * bound fails (`ERR_TOO_MANY_SIBLINGS`, `ERR_TOO_LARGE`) and stores nothing, unless it shrinks the set.
 */
export interface KeyBounds {
  /** Most siblings a put may leave of its key, tombstones included. @default 32 */
  readonly maxSiblings: number;
  /**
   * Most bytes a put may leave of its key's whole sibling set (the key, every sibling's value and clock, as
   * `StorageStats.bytes` counts them). @default 4194304 (4 MiB)
   */
  readonly maxSiblingSetBytes: number;
}

/** The bounds used unless a node is configured otherwise. */
export const DEFAULT_KEY_BOUNDS: KeyBounds = Object.freeze({
  maxSiblings: 32,
  maxSiblingSetBytes: 4 * 1024 * 1024,
});

/**
 * How many times a key's bounds the wire limits hold at least. A set grows past its bounds only when sets that
 * different coordinators each accepted within them are merged (during a partition, or while a view changes); a key
 * has at most N ≤ 16 coordinators in one view.
 */
export const WIRE_HEADROOM = 16;

/**
 * Bytes the encoding of one version takes beyond what its stored size counts, at most: map keys and headers of
 * its dot and of a full context of 64-character node ids (about 1.2 KiB).
 */
export const VERSION_WIRE_OVERHEAD = 2048;

/** Bytes of a message besides its key's versions, at most: envelope, key, receipt, error text. */
export const MESSAGE_OVERHEAD = 64 * 1024;

/** The limits used unless a node is configured otherwise; they hold {@link DEFAULT_KEY_BOUNDS} (see {@link limitsFor}). */
export const DEFAULT_LIMITS: ProtocolLimits = Object.freeze({
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  maxSiblings: 1024,
  maxFrameBytes: 72 * 1024 * 1024,
});

/**
 * The wire limits for a node whose puts keep `bounds`: `limits` (each defaulting to {@link DEFAULT_LIMITS}) raised
 * where needed so that a sibling set {@link WIRE_HEADROOM} times over every bound still fits one message.
 */
export function limitsFor(bounds: Partial<KeyBounds> = {}, limits: Partial<ProtocolLimits> = {}): ProtocolLimits {
  const maxSiblings = bounds.maxSiblings ?? DEFAULT_KEY_BOUNDS.maxSiblings;
  const maxSetBytes = bounds.maxSiblingSetBytes ?? DEFAULT_KEY_BOUNDS.maxSiblingSetBytes;
  const base = { ...DEFAULT_LIMITS, ...limits };
  return {
    ...base,
    maxSiblings: Math.max(base.maxSiblings, WIRE_HEADROOM * maxSiblings),
    maxFrameBytes: Math.max(
      base.maxFrameBytes,
      WIRE_HEADROOM * (maxSetBytes + maxSiblings * VERSION_WIRE_OVERHEAD) + MESSAGE_OVERHEAD,
    ),
  };
}

/** Longest node id, in characters; ids are `[A-Za-z0-9_-]`. */
export const MAX_NODE_ID_LENGTH = 64;

/** The pattern every node id matches. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
