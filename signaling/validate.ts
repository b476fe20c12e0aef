/**
 * Hand-written validators for every client → server payload, and for the views the server sends its clients.
 * Socket.IO hands the server whatever JSON (or binary) a client sent; nothing acts on a payload before its validator
 * has returned `ok`. Unknown fields are refused, so a client bug surfaces as an error acknowledgement instead of being
 * silently ignored. No schema library: the payloads are few and flat, and a hand-written check states each limit
 * where it is enforced. This module has no runtime dependency on Node.js: the browser client validates views with it.
 */
import { NODE_ID_PATTERN } from '../worker/wire/protocol.ts';
import { isCounter } from '../worker/versions/vclock.ts';
import { MAX_PARTITIONS, isPartitionCount } from '../worker/ring/ring.ts';
import {
  CLUSTER_NAME_PATTERN,
  type ClusterView,
  LIFECYCLE_STATES,
  METRIC_NAME_PATTERN,
  type ClientEventName,
  type EmptyRequest,
  type HeartbeatRequest,
  type JoinRequest,
  type LifecycleRequest,
  type LifecycleState,
  type MetricsSnapshot,
  type ReportRequest,
  type FrameRequest,
  type SignalData,
  type SignalRequest,
  type ViewDelta,
  type ViewMember,
} from './events.ts';

/** The outcome of a validator: the typed payload, or why it was refused. */
export type Validation<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: 'ERR_INVALID_ARGUMENT' | 'ERR_TOO_LARGE'; readonly message: string };

/** The size limits payload validation enforces. */
export interface PayloadLimits {
  /** Largest `signal.data`, serialised as JSON, in bytes. @default 16384 */
  readonly maxSignalBytes: number;
  /** Most entries in a metrics snapshot. @default 64 */
  readonly maxMetricsEntries: number;
  /** Largest relayed `frame.data`, bytes. @default 16384 */
  readonly maxFrameBytes: number;
}

/** The payload limits used unless the server is configured otherwise. */
export const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = Object.freeze({
  maxSignalBytes: 16 * 1024,
  maxMetricsEntries: 64,
  maxFrameBytes: 16 * 1024,
});

/** Longest join token accepted, in characters; real tokens are about 100. */
export const MAX_TOKEN_LENGTH = 1024;

/** Deepest nesting accepted in `signal.data`; simple-peer's deepest message (a candidate) has depth 2. */
export const MAX_SIGNAL_DEPTH = 8;

/** True when `id` is a valid node id. */
export function isNodeId(id: unknown): id is string {
  return typeof id === 'string' && NODE_ID_PATTERN.test(id);
}

/** True when `name` is a valid cluster name (or failure domain). */
export function isClusterName(name: unknown): name is string {
  return typeof name === 'string' && CLUSTER_NAME_PATTERN.test(name);
}

/** Validates a `join` payload. */
export function validateJoin(input: unknown): Validation<JoinRequest> {
  const shape = checkObject(
    input,
    ['cluster', 'nodeId', 'domain'],
    ['protocol', 'token', 'proof', 'signedFrom', 'partitions'],
  );
  if (shape !== null) return invalid(`join: ${shape}`);
  const { cluster, nodeId, domain, protocol, token, proof, signedFrom, partitions } = input as Record<string, unknown>;
  if (!isClusterName(cluster)) return invalid('join: cluster must match [A-Za-z0-9_-]{1,64}');
  if (!isNodeId(nodeId)) return invalid('join: nodeId must match [A-Za-z0-9_-]{1,64}');
  if (!isClusterName(domain)) return invalid('join: domain must match [A-Za-z0-9_-]{1,64}');
  if (protocol !== undefined && !(Number.isSafeInteger(protocol) && (protocol as number) >= 1)) {
    return invalid('join: protocol must be a positive integer');
  }
  if (signedFrom !== undefined && !isCounter(signedFrom)) {
    return invalid('join: signedFrom must be a dot counter (an integer from 1 to 2^48)');
  }
  if (partitions !== undefined && !isPartitionCount(partitions)) {
    return invalid(`join: partitions must be a power of two from 1 to ${MAX_PARTITIONS}`);
  }
  if (token !== undefined) {
    if (typeof token !== 'string' || token.length === 0) return invalid('join: token must be a non-empty string');
    if (token.length > MAX_TOKEN_LENGTH) return invalid(`join: token is longer than ${MAX_TOKEN_LENGTH} characters`);
  }
  if (proof !== undefined) {
    const proofShape = checkObject(proof, ['publicKey', 'signature'], []);
    if (proofShape !== null) return invalid(`join: proof: ${proofShape}`);
    const { publicKey, signature } = proof as Record<string, unknown>;
    if (typeof publicKey !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(publicKey)) {
      return invalid('join: proof.publicKey must be a raw Ed25519 public key in base64url (43 characters)');
    }
    if (typeof signature !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(signature)) {
      return invalid('join: proof.signature must be an Ed25519 signature in base64url (86 characters)');
    }
  }
  return {
    ok: true,
    value: {
      cluster,
      nodeId,
      domain,
      ...(protocol !== undefined ? { protocol: protocol as number } : {}),
      ...(token !== undefined ? { token: token as string } : {}),
      ...(proof !== undefined ? { proof: proof as JoinRequest['proof'] & object } : {}),
      ...(signedFrom !== undefined ? { signedFrom: signedFrom as number } : {}),
      ...(partitions !== undefined ? { partitions } : {}),
    },
  };
}

/** Validates a `heartbeat` payload. */
export function validateHeartbeat(input: unknown): Validation<HeartbeatRequest> {
  const shape = checkObject(input, [], ['epoch']);
  if (shape !== null) return invalid(`heartbeat: ${shape}`);
  const { epoch } = input as Record<string, unknown>;
  if (epoch === undefined) return { ok: true, value: {} };
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 0) {
    return invalid('heartbeat: epoch must be a non-negative safe integer');
  }
  return { ok: true, value: { epoch: epoch as number } };
}

/** Validates a `lifecycle` payload: `{ state }`, one of {@link LIFECYCLE_STATES}. */
export function validateLifecycle(input: unknown): Validation<LifecycleRequest> {
  const shape = checkObject(input, ['state'], []);
  if (shape !== null) return invalid(`lifecycle: ${shape}`);
  const { state } = input as Record<string, unknown>;
  if (typeof state !== 'string' || !(LIFECYCLE_STATES as readonly string[]).includes(state)) {
    return invalid(`lifecycle: state must be one of ${LIFECYCLE_STATES.map((s) => `'${s}'`).join(', ')}`);
  }
  return { ok: true, value: { state: state as LifecycleState } };
}

/** Validates a `signal` payload: `data` must be a JSON object within `limits.maxSignalBytes`. */
export function validateSignal(
  input: unknown,
  limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS,
): Validation<SignalRequest> {
  const shape = checkObject(input, ['to', 'data'], []);
  if (shape !== null) return invalid(`signal: ${shape}`);
  const { to, data } = input as Record<string, unknown>;
  if (!isNodeId(to)) return invalid('signal: to must be a node id');
  if (!isPlainObject(data)) return invalid('signal: data must be an object');
  const json = checkJson(data, 0);
  if (json !== null) return invalid(`signal: data ${json}`);
  const bytes = utf8Length(JSON.stringify(data));
  if (bytes > limits.maxSignalBytes) {
    return tooLarge(`signal: data is ${bytes} bytes, over the limit of ${limits.maxSignalBytes}`);
  }
  return { ok: true, value: { to, data: data as SignalData } };
}

/** Validates a `frame` payload: `{ to, data }`, `data` binary (a Buffer on the server), 1 to `maxFrameBytes` bytes. */
export function validateFrame(
  input: unknown,
  limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS,
): Validation<FrameRequest> {
  const shape = checkObject(input, ['to', 'data'], []);
  if (shape !== null) return invalid(`frame: ${shape}`);
  const { to, data } = input as Record<string, unknown>;
  if (!isNodeId(to)) return invalid('frame: to must be a node id');
  if (!(data instanceof Uint8Array) && !(data instanceof ArrayBuffer)) return invalid('frame: data must be binary');
  if (data.byteLength === 0) return invalid('frame: data is empty');
  if (data.byteLength > limits.maxFrameBytes) {
    return tooLarge(`frame: data is ${data.byteLength} bytes, over the limit of ${limits.maxFrameBytes}`);
  }
  return { ok: true, value: { to, data } };
}

/** Validates a `report-unreachable` payload. */
export function validateReport(input: unknown): Validation<ReportRequest> {
  const shape = checkObject(input, ['nodeId'], []);
  if (shape !== null) return invalid(`report-unreachable: ${shape}`);
  const { nodeId } = input as Record<string, unknown>;
  if (!isNodeId(nodeId)) return invalid('report-unreachable: nodeId must be a node id');
  return { ok: true, value: { nodeId } };
}

/** Validates a `metrics` snapshot: a flat object of finite numbers with Prometheus-safe names. */
export function validateMetrics(
  input: unknown,
  limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS,
): Validation<MetricsSnapshot> {
  if (!isPlainObject(input)) return invalid('metrics: the snapshot must be an object');
  const names = Object.keys(input);
  if (names.length > limits.maxMetricsEntries) {
    return tooLarge(`metrics: ${names.length} entries, over the limit of ${limits.maxMetricsEntries}`);
  }
  const values: Record<string, number> = {};
  for (const name of names) {
    if (!METRIC_NAME_PATTERN.test(name))
      return invalid(`metrics: name ${quote(name)} must match [A-Za-z_][A-Za-z0-9_]*`);
    const value = input[name];
    if (typeof value !== 'number' || !Number.isFinite(value))
      return invalid(`metrics: ${name} must be a finite number`);
    values[name] = value;
  }
  return { ok: true, value: values };
}

/** Validates the payload of events that carry none (`leave`, `get-metrics`): an empty object. */
export function validateEmpty(input: unknown, event: 'leave' | 'get-metrics'): Validation<EmptyRequest> {
  const shape = checkObject(input, [], []);
  if (shape !== null) return invalid(`${event}: ${shape}`);
  return { ok: true, value: {} };
}

/** The validator of each client event, by name. */
export const VALIDATORS: {
  readonly [E in ClientEventName]: (input: unknown, limits: PayloadLimits) => Validation<unknown>;
} = Object.freeze({
  join: (input) => validateJoin(input),
  heartbeat: (input) => validateHeartbeat(input),
  lifecycle: (input) => validateLifecycle(input),
  signal: (input, limits) => validateSignal(input, limits),
  frame: (input, limits) => validateFrame(input, limits),
  'report-unreachable': (input) => validateReport(input),
  metrics: (input, limits) => validateMetrics(input, limits),
  'get-metrics': (input) => validateEmpty(input, 'get-metrics'),
  leave: (input) => validateEmpty(input, 'leave'),
});

/** Most members a view may list: above any cluster the server admits (`maxMembersPerCluster`). */
export const MAX_VIEW_MEMBERS = 4096;

/** Characters of a member's placement: the server's base64url HMAC (placement.ts), or '' from an open server. */
const PLACEMENT_PATTERN = /^[A-Za-z0-9_-]{0,64}$/;

/**
 * Validates a view the server sent (with a join's or a heartbeat's acknowledgement, or as a `view` event), before
 * the client acts on it: a view builds every ring and peer connection of the tab, so a malformed one (a server of
 * another build, a proxy mangling frames) is refused whole rather than half applied.
 */
export function validateView(input: unknown): Validation<ClusterView> {
  const shape = checkObject(input, ['cluster', 'epoch', 'members'], []);
  if (shape !== null) return invalid(`view: ${shape}`);
  const { cluster, epoch, members } = input as Record<string, unknown>;
  if (!isClusterName(cluster)) return invalid('view: cluster must match [A-Za-z0-9_-]{1,64}');
  if (!Number.isSafeInteger(epoch) || (epoch as number) < 0) return invalid('view: epoch must be an integer ≥ 0');
  if (!Array.isArray(members)) return invalid('view: members must be a list');
  if (members.length > MAX_VIEW_MEMBERS) return invalid(`view: more than ${MAX_VIEW_MEMBERS} members`);
  const ids = new Set<string>();
  for (const [i, member] of members.entries()) {
    const fields = checkObject(member, ['id', 'domain', 'placement', 'state', 'joinedAt'], ['signedFrom']);
    if (fields !== null) return invalid(`view: members[${i}]: ${fields}`);
    const { id, domain, placement, state, joinedAt, signedFrom } = member as Record<string, unknown>;
    if (!isNodeId(id)) return invalid(`view: members[${i}].id must match [A-Za-z0-9_-]{1,64}`);
    if (ids.has(id)) return invalid(`view: ${id} is listed twice`);
    ids.add(id);
    if (!isClusterName(domain)) return invalid(`view: members[${i}].domain must match [A-Za-z0-9_-]{1,64}`);
    if (typeof placement !== 'string' || !PLACEMENT_PATTERN.test(placement)) {
      return invalid(`view: members[${i}].placement must match [A-Za-z0-9_-]{0,64}`);
    }
    if (state !== 'alive' && state !== 'suspect') return invalid(`view: members[${i}].state must be alive or suspect`);
    if (typeof joinedAt !== 'number' || !Number.isFinite(joinedAt) || joinedAt < 0) {
      return invalid(`view: members[${i}].joinedAt must be a time in ms`);
    }
    if (signedFrom !== undefined && !isCounter(signedFrom)) {
      return invalid(`view: members[${i}].signedFrom must be a dot counter (an integer from 1 to 2^48)`);
    }
  }
  return { ok: true, value: input as ClusterView };
}

/**
 * Validates a `view-delta` the server pushed: its members as {@link validateView} checks a view's (the view it leads
 * to is checked whole again once applied).
 */
export function validateViewDelta(input: unknown): Validation<ViewDelta> {
  const shape = checkObject(input, ['cluster', 'epoch', 'prevEpoch', 'upserts', 'removals'], []);
  if (shape !== null) return invalid(`view-delta: ${shape}`);
  const { cluster, epoch, prevEpoch, upserts, removals } = input as Record<string, unknown>;
  if (!Number.isSafeInteger(prevEpoch) || (prevEpoch as number) < 0) {
    return invalid('view-delta: prevEpoch must be an integer ≥ 0');
  }
  if (!Array.isArray(removals) || removals.length > MAX_VIEW_MEMBERS || !removals.every(isNodeId)) {
    return invalid(`view-delta: removals must be a list of at most ${MAX_VIEW_MEMBERS} node ids`);
  }
  // The upserts have a view's shape: check them as one.
  const members = validateView({ cluster, epoch, members: upserts });
  if (!members.ok) return invalid(members.message.replace(/^view:/, 'view-delta:'));
  return { ok: true, value: input as ViewDelta };
}

/** The members of the view `delta` leads to from `members` (both sorted by id, as views are). */
export function applyViewDelta(members: readonly ViewMember[], delta: ViewDelta): ViewMember[] {
  const byId = new Map(members.map((member) => [member.id, member]));
  for (const id of delta.removals) byId.delete(id);
  for (const member of delta.upserts) byId.set(member.id, member);
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function invalid(message: string): Validation<never> {
  return { ok: false, code: 'ERR_INVALID_ARGUMENT', message };
}

function tooLarge(message: string): Validation<never> {
  return { ok: false, code: 'ERR_TOO_LARGE', message };
}

/** Objects as JSON decoding makes them; Socket.IO's binary attachments (Buffers) and arrays are not. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Null when `input` is an object with every required key and no key outside required and optional. */
function checkObject(input: unknown, required: readonly string[], optional: readonly string[]): string | null {
  if (!isPlainObject(input)) return 'the payload must be an object';
  for (const key of required) {
    if (!Object.hasOwn(input, key)) return `${key} is missing`;
  }
  for (const key of Object.keys(input)) {
    if (!required.includes(key) && !optional.includes(key)) return `unknown field ${quote(key)}`;
  }
  return null;
}

/** Null when `value` is JSON (no binary, no non-finite number) nested at most {@link MAX_SIGNAL_DEPTH} deep. */
function checkJson(value: unknown, depth: number): string | null {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : 'holds a non-finite number';
    case 'object': {
      if (value === null) return null;
      if (depth >= MAX_SIGNAL_DEPTH) return `is nested deeper than ${MAX_SIGNAL_DEPTH}`;
      if (Array.isArray(value)) {
        for (const item of value) {
          const error = checkJson(item, depth + 1);
          if (error !== null) return error;
        }
        return null;
      }
      if (!isPlainObject(value)) return 'holds binary or a non-JSON object';
      for (const key of Object.keys(value)) {
        const error = checkJson(value[key], depth + 1);
        if (error !== null) return error;
      }
      return null;
    }
    default:
      return `holds a ${typeof value}`;
  }
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}
