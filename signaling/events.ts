/**
 * The signalling protocol: every Socket.IO event between a node (the browser client) and the signalling server, as
 * typed event maps in socket.io's `Server<ListenEvents, EmitEvents>` pattern, with their payloads and
 * acknowledgements. This module has no runtime dependency on Node.js: the browser client imports it too.
 *
 * Every client → server event takes exactly one payload object and an acknowledgement callback; the server answers
 * every event through that callback with {@link Ack}: `{ ok: true, … }` or `{ ok: false, error: { code, message } }`.
 * A rejected event changes nothing on the server.
 */
import { toBase64url } from './base64url.ts';

/** The state of a member in a cluster view. */
export type MemberState =
  /** Heartbeating and unreported. */
  | 'alive'
  /**
   * Still in the view (and in the ring), but in doubt: its connection to the server dropped, a peer reported it
   * unreachable, or it went silent after announcing that its tab was hidden or frozen (see {@link LifecycleRequest}).
   * It either confirms itself (heartbeat, reconnection, reports expiring) or leaves the view.
   */
  | 'suspect';

/** One node in a cluster view. */
export interface ViewMember {
  /** The node id; matches `NODE_ID_PATTERN` from `worker/protocol.ts`. */
  readonly id: string;
  /** The node's failure domain (one per browser profile); same pattern as node ids. */
  readonly domain: string;
  /**
   * Where the node's ring tokens fall, chosen by the server from its secret, the cluster and the id (placement.ts):
   * rings mix it into every token, so that no node chooses its place on the ring. `''` from a server without a
   * secret: tokens then come from the id alone.
   */
  readonly placement: string;
  readonly state: MemberState;
  /**
   * Server time (ms since the Unix epoch) of this member's latest `join`. A new value means the node joined again
   * (a reload or a reconnection), so its peers should expect a new peer connection. A member that comes back from
   * silence by heartbeating keeps its value.
   */
  readonly joinedAt: number;
  /**
   * The first dot counter the node signed its versions from (`JoinRequest.signedFrom`); absent for a node that does
   * not sign. Its peers take a version of it without its signature, from anyone, only below this counter.
   */
  readonly signedFrom?: number;
}

/** A cluster's membership as the server sees it. */
export interface ClusterView {
  readonly cluster: string;
  /**
   * Grows with every change of this cluster's view. It is `max(last epoch the server gave any cluster + 1, server
   * time in ms)`: it grows across a cluster emptying and re-forming, and across server restarts as long as the server
   * clock does not step back. Compare epochs, do not count them.
   */
  readonly epoch: number;
  /** Sorted by `id`. */
  readonly members: readonly ViewMember[];
}

/**
 * What changed between two consecutive views of a cluster, as the server pushes it (the `view-delta` event): the
 * members new or changed since the view of epoch `prevEpoch`, and the ids of those gone from it. A node holding the
 * view of `prevEpoch` applies it to get the view of `epoch`; one holding another view asks for the whole view (a
 * heartbeat with its epoch, whose acknowledgement carries it). A change costs each member O(change), not O(members).
 */
export interface ViewDelta {
  readonly cluster: string;
  readonly epoch: number;
  readonly prevEpoch: number;
  /** Members added or changed, sorted by id. */
  readonly upserts: readonly ViewMember[];
  /** Ids of members gone from the view. */
  readonly removals: readonly string[];
}

/** Codes the signalling server answers with; the first five are the library's `ErrorCode`s. */
export type SignalingErrorCode =
  /** The payload failed validation, or the event is unknown. */
  | 'ERR_INVALID_ARGUMENT'
  /** A payload field is over its size limit (signal data, metrics entries). */
  | 'ERR_TOO_LARGE'
  /** The server has a secret and the join's token is missing, forged, expired, or for another cluster or node. */
  | 'ERR_UNAUTHORIZED'
  /**
   * The cluster already has `maxMembersPerCluster` members, or the join would take the server past a quota: its
   * clusters, or the clusters, node ids or connections of the join's client address or token. The message names it.
   */
  | 'ERR_CLUSTER_FULL'
  /** The connection sent more events than its token bucket allows; the event was dropped. */
  | 'ERR_RATE_LIMITED'
  /** The event needs a joined connection: join first (again after every reconnection). */
  | 'ERR_NOT_JOINED'
  /** The named node is not a connected member of the caller's view, or the caller itself is out of the view. */
  | 'ERR_NOT_MEMBER'
  /** The join speaks another {@link PROTOCOL_VERSION} than the server: the page runs another release of dynamesh. */
  | 'ERR_VERSION_MISMATCH';

/** Every code in {@link SignalingErrorCode}, for guards on the client. */
export const SIGNALING_ERROR_CODES: readonly SignalingErrorCode[] = Object.freeze([
  'ERR_INVALID_ARGUMENT',
  'ERR_TOO_LARGE',
  'ERR_UNAUTHORIZED',
  'ERR_CLUSTER_FULL',
  'ERR_RATE_LIMITED',
  'ERR_NOT_JOINED',
  'ERR_NOT_MEMBER',
  'ERR_VERSION_MISMATCH',
]);

/**
 * The version of the protocol the server, the tabs and their peer frames speak, raised with every change after which
 * one release cannot talk to another (a field of a peer message, an event's payload). The server admits only joins
 * of its own version, so that every member of a cluster speaks the same one: a tab still running an older release
 * after the server was upgraded (or a newer one before it was) is refused with `ERR_VERSION_MISMATCH` rather than
 * left to exchange frames its peers refuse.
 *
 * 2: a version may carry its author's proof (worker/versions/proof.ts); joins and views carry `signedFrom`.
 * 3: the partial mesh: members relay peer frames through the server (`frame`) to the peers they have no link to.
 * 4: watches and coverage queries: the peer messages `watch` (a watcher's registrations at a node), `notice` (a
 * change of a watched key), `keys` and `keys-reply` (store.keys).
 */
export const PROTOCOL_VERSION = 4;

/** A refused event. */
export interface ErrorAck {
  readonly ok: false;
  readonly error: { readonly code: SignalingErrorCode; readonly message: string };
}

/** The acknowledgement of an event: success with its fields, or {@link ErrorAck}. */
export type Ack<T extends object = object> = ({ readonly ok: true } & T) | ErrorAck;

/** Payload of `join`. */
export interface JoinRequest {
  /** The cluster to join: `[A-Za-z0-9_-]{1,64}`. A cluster exists while it has members. */
  readonly cluster: string;
  /** This node's id: `NODE_ID_PATTERN`. A second join with the same id takes the member over (see `superseded`). */
  readonly nodeId: string;
  /** This node's failure domain: same pattern as node ids. */
  readonly domain: string;
  /**
   * The {@link PROTOCOL_VERSION} the node speaks; a join without it comes from a release that predates protocol
   * versions. Only the server's own version is admitted.
   */
  readonly protocol?: number;
  /** Required when the server runs with a secret: a token minted for this cluster (see `signaling/token.ts`). */
  readonly token?: string;
  /**
   * The node's Ed25519 public key (raw, base64url) and its signature of the join (see `signaling/node-keys.ts`): the
   * first signed join binds the id to the key, and later joins of the id must be signed by it.
   */
  readonly proof?: { readonly publicKey: string; readonly signature: string };
  /**
   * For a node whose id derives from its key: the first dot counter it signed its versions from (its versions below
   * it were written unsigned, by an older release). The server puts it in the node's {@link ViewMember}.
   */
  readonly signedFrom?: number;
  /**
   * Q of the ring the node's stored data is partitioned in, when it holds any: the server refuses the join unless it
   * is the cluster's ({@link JoinAccepted.partitions}), since a node's records are filed by partition.
   */
  readonly partitions?: number;
}

/**
 * The form of a node id derived from the node's Ed25519 public key ({@link derivedNodeId}): `k` and 16 base64url
 * characters, 17 in all, where a minted random id has 12, so that the two forms never meet. The server admits a join
 * under such an id only when it is signed by the key the id is derived from, whatever it saw before.
 */
export const DERIVED_ID_PATTERN = /^k[A-Za-z0-9_-]{16}$/;

/**
 * The node id derived from `digest`, the SHA-256 of the node's raw 32-byte Ed25519 public key: `k` and the first 96
 * bits of the digest in base64url (short, since every dot and clock entry names a node): finding a key for a given
 * id costs about 2^96 tries.
 */
export function derivedNodeId(digest: Uint8Array): string {
  return `k${toBase64url(digest.subarray(0, 12))}`;
}

/**
 * What a node signs to join `cluster` as `nodeId` on the connection whose Socket.IO id is `connection` (chosen by the
 * server, so a signature is good for that connection only). See `JoinRequest.proof`.
 */
export function joinProofText(cluster: string, nodeId: string, connection: string): string {
  return `dynamesh-join/1\n${cluster}\n${nodeId}\n${connection}`;
}

/** The limits a server enforces, told to every node in its join acknowledgement. */
export interface SignalingLimits {
  readonly maxMembersPerCluster: number;
  /** Largest Socket.IO message; a bigger one closes the connection. */
  readonly maxPayloadBytes: number;
  /** Largest `signal.data`, as JSON, in bytes. */
  readonly maxSignalBytes: number;
  /** Largest `frame.data` relayed, in bytes: nodes chunk the messages they relay to it. */
  readonly maxFrameBytes: number;
  /** Sustained `frame` events per second per connection, counted apart from every other event. */
  readonly maxFramesPerSecond: number;
  /** Most entries in a `metrics` snapshot. */
  readonly maxMetricsEntries: number;
  /** Sustained events per second per connection. */
  readonly maxEventsPerSecond: number;
  /** Events a connection may send at once before the sustained rate applies. */
  readonly maxEventBurst: number;
}

/** Success fields of the `join` acknowledgement. */
export interface JoinAccepted {
  /** The view including the new member; the same view is also pushed as a `view` event. */
  readonly view: ClusterView;
  /** Send `heartbeat` this often, in ms. */
  readonly heartbeatInterval: number;
  /** A member silent for this long, in ms, leaves the view until it heartbeats again. */
  readonly heartbeatTimeout: number;
  readonly limits: SignalingLimits;
  /**
   * Q, the cluster's ring partitions (a power of two): a cluster setting, chosen for the largest size the cluster will
   * reach, the same for every member and for the cluster's whole life.
   */
  readonly partitions: number;
}

/** Acknowledgement of `join`. */
export type JoinAck = Ack<JoinAccepted>;

/** Payload of `heartbeat`. */
export interface HeartbeatRequest {
  /** The epoch of the latest view this node has; when it is not current, the acknowledgement carries the view. */
  readonly epoch?: number;
}

/** Acknowledgement of `heartbeat`. */
export type HeartbeatAck = Ack<{
  /** The current epoch of the caller's cluster. */
  readonly epoch: number;
  /** The current view when the request's epoch differs from it (a missed push), else null. */
  readonly view: ClusterView | null;
}>;

/**
 * Payload of `signal`: WebRTC signalling data (an offer, answer, ICE candidate or renegotiation request, as
 * simple-peer emits them) for one member of the caller's cluster. The server does not read `data`; it checks that
 * it is a JSON object of at most `maxSignalBytes`.
 */
export interface SignalRequest {
  /** The receiving node's id. */
  readonly to: string;
  readonly data: SignalData;
}

/** Opaque WebRTC signalling data: a JSON object. */
export type SignalData = { readonly [key: string]: unknown };

/** Acknowledgement of `signal`: success means the server handed it to the receiver's connection. */
export type SignalAck = Ack;

/** A `signal` relayed by the server, received by the member it was sent to. */
export interface RelayedSignal {
  /** The sending node's id, as the server knows it from its join. */
  readonly from: string;
  readonly data: SignalData;
}

/**
 * Payload of `frame`: one peer frame (worker/wire/frames.ts) for a member of the caller's cluster that the caller has
 * no open peer connection to (the partial mesh links only some peers). The server does not read `data`; it checks
 * that it is binary, 1 to `maxFrameBytes` bytes, and relays it as a {@link RelayedFrame}. Sent without an
 * acknowledgement, best effort as a data channel is: a refused frame is dropped, counted and logged at the server.
 */
export interface FrameRequest {
  /** The receiving node's id. */
  readonly to: string;
  readonly data: Uint8Array | ArrayBuffer;
}

/** A `frame` relayed by the server, received by the member it was sent to. */
export interface RelayedFrame {
  /** The sending node's id, as the server knows it from its join: the receiver takes the frame as that node's. */
  readonly from: string;
  readonly data: ArrayBuffer | Uint8Array;
}

/**
 * What a node says of its tab, from the Page Lifecycle API: `hidden` (`visibilitychange` to hidden), `frozen`
 * (`freeze`, or `pagehide` into the back/forward cache), `active` (visible again, `resume`, `pageshow`).
 */
export type LifecycleState = 'active' | 'hidden' | 'frozen';

/** Every {@link LifecycleState}. */
export const LIFECYCLE_STATES: readonly LifecycleState[] = Object.freeze(['active', 'hidden', 'frozen']);

/**
 * Payload of `lifecycle`: the node's tab changed state. A member that announced `hidden` or `frozen` and then falls
 * silent is kept in the view as `suspect` for the server's `suspectGrace` after `heartbeatTimeout`, instead of
 * leaving it, so its partitions do not move while the browser holds the tab still. The announcement lasts until
 * `active` or a closed connection. It also counts as a heartbeat.
 */
export interface LifecycleRequest {
  readonly state: LifecycleState;
}

/** Acknowledgement of `lifecycle`. */
export type LifecycleAck = Ack;

/** Payload of `report-unreachable`: the caller cannot reach `nodeId` over its peer connection. */
export interface ReportRequest {
  readonly nodeId: string;
}

/** Acknowledgement of `report-unreachable`: what the server made of the reported member. */
export type ReportAck = Ack<{
  /** `suspect`: now in doubt, must confirm itself; `removed`: taken out of the view. */
  readonly state: 'suspect' | 'removed';
}>;

/**
 * Payload of `metrics`: a node's counters and gauges, a flat object of finite numbers keyed by Prometheus-safe names
 * (`[A-Za-z_][A-Za-z0-9_]{0,63}`), at most `maxMetricsEntries` of them. Each snapshot replaces the previous one.
 */
export type MetricsSnapshot = { readonly [name: string]: number };

/** Acknowledgement of `metrics`. */
export type MetricsAck = Ack;

/** A node's latest pushed metrics. */
export interface NodeMetrics {
  /** Server time (ms) of the push. */
  readonly at: number;
  readonly values: MetricsSnapshot;
}

/** Payload of `get-metrics` and `leave`: an empty object. */
export type EmptyRequest = Record<string, never>;

/** Acknowledgement of `get-metrics`: the latest snapshot of every member of the caller's cluster that pushed one. */
export type GetMetricsAck = Ack<{ readonly metrics: { readonly [nodeId: string]: NodeMetrics } }>;

/** Acknowledgement of `leave`. Leaving when not joined succeeds too. */
export type LeaveAck = Ack;

/** Sent to a connection whose member was taken over by a newer `join` with the same cluster and node id. */
export interface SupersededNotice {
  readonly cluster: string;
  readonly nodeId: string;
}

/** Events a node sends the server (the server's listen events, the client's emit events). */
export interface ClientToServerEvents {
  /** Join a cluster as a node. One membership per connection; join again after every reconnection. */
  join: (request: JoinRequest, ack: (response: JoinAck) => void) => void;
  /** Proof of life, every `heartbeatInterval` ms after joining. */
  heartbeat: (request: HeartbeatRequest, ack: (response: HeartbeatAck) => void) => void;
  /** The node's tab turned hidden, frozen or active again (Page Lifecycle); see {@link LifecycleRequest}. */
  lifecycle: (request: LifecycleRequest, ack: (response: LifecycleAck) => void) => void;
  /** WebRTC signalling for one member of the caller's cluster, delivered to it as a `signal` event. */
  signal: (request: SignalRequest, ack: (response: SignalAck) => void) => void;
  /** A peer frame for one member of the caller's cluster, delivered to it as a `frame` event; no acknowledgement. */
  frame: (request: FrameRequest, ack?: (response: Ack) => void) => void;
  /** The caller cannot reach a member over its peer connection. */
  'report-unreachable': (request: ReportRequest, ack: (response: ReportAck) => void) => void;
  /** Replace this node's metrics snapshot on the server. */
  metrics: (snapshot: MetricsSnapshot, ack: (response: MetricsAck) => void) => void;
  /** Read the metrics every member of the caller's cluster pushed. */
  'get-metrics': (request: EmptyRequest, ack: (response: GetMetricsAck) => void) => void;
  /** Leave the cluster now (rather than after `heartbeatTimeout` of silence). */
  leave: (request: EmptyRequest, ack: (response: LeaveAck) => void) => void;
}

/** Events the server sends a node. */
export interface ServerToClientEvents {
  /**
   * The caller's whole cluster view. The server itself sends it only in acknowledgements (join, a heartbeat naming
   * another epoch) and pushes changes as `view-delta`; a client takes this event too.
   */
  view: (view: ClusterView) => void;
  /**
   * What changed in the caller's cluster view, after every change; also sent to joined connections that are out of
   * the view. See {@link ViewDelta}.
   */
  'view-delta': (delta: ViewDelta) => void;
  /** WebRTC signalling from another member. */
  signal: (message: RelayedSignal) => void;
  /** A peer frame from another member that has no open peer connection to this one. */
  frame: (message: RelayedFrame) => void;
  /** This connection no longer holds its membership: another connection joined with the same node id. */
  superseded: (notice: SupersededNotice) => void;
}

/** The names of the events a node sends. */
export type ClientEventName = keyof ClientToServerEvents;

/** Every {@link ClientEventName}. */
export const CLIENT_EVENT_NAMES: readonly ClientEventName[] = Object.freeze([
  'join',
  'heartbeat',
  'lifecycle',
  'signal',
  'frame',
  'report-unreachable',
  'metrics',
  'get-metrics',
  'leave',
]);

/** The pattern cluster names and failure domains match (the same as node ids). */
export const CLUSTER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** The pattern metric names in a {@link MetricsSnapshot} match. */
export const METRIC_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
