/**
 * The peer protocol: every message one node sends another, as one discriminated union on `type`. Frames are
 * MessagePack (see `codec.ts`); nothing here is trusted until `decodeMessage` has checked every field.
 * Every request carries a `requestId` chosen by its sender; the reply echoes it.
 */
import type { ErrorCode } from './errors.ts';
import type { VClock } from './vclock.ts';
import type { Version } from './version.ts';

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
}

/** A replica stored what it was sent. */
export interface ReplicateAckMessage extends Envelope {
  readonly type: 'replicate-ack';
}

/** Send back the key's siblings. */
export interface ReadMessage extends Envelope {
  readonly type: 'read';
  readonly key: Uint8Array;
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

/** Every message between peers. */
export type PeerMessage =
  | ReplicateMessage
  | ReplicateAckMessage
  | ReadMessage
  | ReadReplyMessage
  | CoordinateMessage
  | CoordinateReplyMessage
  | ErrorMessage;

/** The message types, for counters and exhaustive switches. */
export type PeerMessageType = PeerMessage['type'];

/** The size and shape limits the decoder enforces. */
export interface ProtocolLimits {
  /** Largest key in bytes. @default 1024 */
  readonly maxKeyBytes: number;
  /** Largest encoded value in bytes. @default 1048576 */
  readonly maxValueBytes: number;
  /** Most siblings in one message. @default 64 */
  readonly maxSiblings: number;
  /** Largest frame in bytes. @default 16777216 */
  readonly maxFrameBytes: number;
}

/** The limits used unless a node is configured otherwise. */
export const DEFAULT_LIMITS: ProtocolLimits = Object.freeze({
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  maxSiblings: 64,
  maxFrameBytes: 16 * 1024 * 1024,
});

/** Longest node id, in characters; ids are `[A-Za-z0-9_-]`. */
export const MAX_NODE_ID_LENGTH = 64;

/** The pattern every node id matches. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
