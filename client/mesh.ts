/**
 * The peer connections of a tab, living on the main thread because workers have no `RTCPeerConnection`: a partial
 * mesh. The worker's link policy (worker/transport/link-policy.ts) plans which peers to link, by priority, and the
 * mesh opens connections to them and closes the others, never holding more than `maxLinks` at once; frames for the
 * peers without one go through the signalling server's relay meanwhile. simple-peer owns offer, answer and ICE; the
 * side with the smaller id initiates, so two members never offer to each other at once, and the other side asks it
 * to (a `want` signal). A side at its bound answers an offer or a `want` with `refuse`, and a side letting an idle
 * connection go says `close`: the other then offers no connection for `refusalBackoff`, instead of reporting the
 * peer unreachable or trying again at once (each try spends one of the 500 connections Chromium allows a tab). Asking
 * spends none, so a side that plans a peer it backs off from still asks it, every {@link BACKOFF_ASK_MS}: the smaller
 * side with a `want` the other answers with its own when it plans the asker too and has room, and a `want` from a peer
 * lifts the backoff from it.
 * The data plane reaches the worker in one of two ways:
 * - `transfer`: a negotiated data channel is created on the same connection and transferred to the worker in the
 *   task that created it, so frames go straight from worker to worker;
 * - `relay`: the main thread moves opaque frames between that channel and a `MessagePort` of the worker.
 * Every connection carries a random connection id in its signals, so that signals of a connection that was since
 * replaced (a reload, a reconnection) are told apart from the current one. Offers and answers carry the node's signed
 * certificate fingerprint, and a peer's are checked before they are applied (peer-auth.ts), so that nobody, the
 * signalling server included, can stand in the middle of a connection to a node whose id is derived from its key.
 */
import * as Comlink from 'comlink';
import SimplePeer from 'simple-peer/simplepeer.min.js';
import type { SignalData } from '../signaling/events.ts';
import { DEFAULT_MAX_LINKS } from '../worker/transport/link-policy.ts';
import { randomId } from './identity.ts';
import { type PeerAuth, refusalOf, sdpFingerprints } from './peer-auth.ts';

/**
 * A WebRTC implementation given to simple-peer where the platform has none (`@roamhq/wrtc`'s default export), typed
 * here by its parts so that the library's types need not name simple-peer's.
 */
export interface WebRtcImplementation {
  readonly RTCPeerConnection: unknown;
  readonly RTCSessionDescription: unknown;
  readonly RTCIceCandidate: unknown;
}

/** How frames reach the worker. */
export type DataPlane = 'transfer' | 'relay';

/** The state of the connection to one peer. */
export type PeerState = 'connecting' | 'connected' | 'closed';

/**
 * What the mesh hands the node its links through: in a tab, comlink's remote of the worker's `NodeHost`; in the
 * always-on node (Node.js), the `NodeHost` itself.
 */
export interface MeshHost {
  attachChannel(peer: string, channel: RTCDataChannel): unknown;
  attachPort(peer: string, port: MessagePort): unknown;
  detach(peer: string): unknown;
}

/** Options of {@link Mesh}. */
export interface MeshOptions {
  readonly self: string;
  /** The cluster, part of what a certificate fingerprint is signed over. */
  readonly cluster: string;
  readonly host: MeshHost;
  /** The WebRTC implementation where there is no global one (Node.js: `@roamhq/wrtc`); absent, the browser's. */
  readonly wrtc?: WebRtcImplementation;
  readonly dataPlane: DataPlane;
  /** Sends signalling data to a member through the server. */
  readonly signal: (to: string, data: SignalData) => void;
  /** A connection changed state. */
  readonly onPeerState?: (peer: string, state: PeerState) => void;
  /** A connection failed to come up in time or broke. */
  readonly onUnreachable?: (peer: string) => void;
  /** How long a connection may take to come up before it is replaced, ms. @default 15000 */
  readonly connectTimeout?: number;
  /** Wait before replacing a broken connection, ms. @default 1000 */
  readonly retryDelay?: number;
  /** A peer's offer or answer was refused (see peer-auth.ts): the connection is dropped and tried again later. */
  readonly onRefused?: (peer: string, reason: string) => void;
  /** Most connections open (or opening) at once; set the worker's link policy to the same. @default 64 */
  readonly maxLinks?: number;
  /** Ms before asking again a peer that refused a connection or closed one. @default 60000 */
  readonly refusalBackoff?: number;
}

/**
 * Connections a tab makes in all, at most: Chromium allows a tab 500 peer connections over its lifetime. Past this
 * the tab makes no more, and its frames go through the signalling relay.
 */
export const MAX_CONNECTIONS_PER_TAB = 450;

/**
 * Ms a connection the plan leaves out is kept after it was made: a peer that just opened one to this tab, to send to
 * it, may be in this tab's next plan once its first frames count as use.
 */
const UNPLANNED_GRACE_MS = 5000;

/** Ms between asks to a planned peer this tab backs off from (see the module comment). */
const BACKOFF_ASK_MS = 5000;

/** The node's own DTLS certificate and what vouches for it, or nulls where the browser cannot make them. */
export interface MeshCredentials {
  readonly certificate: RTCCertificate | null;
  readonly auth: PeerAuth | null;
  /**
   * Where no lasting certificate can be made (`@roamhq/wrtc` has no `generateCertificate`, so each connection makes
   * its own): vouches for the SHA-256 `fingerprint` of one description's certificate, signed as `auth` is. Used
   * when `auth` is null.
   */
  readonly vouch?: (fingerprint: string) => Promise<PeerAuth>;
}

/** The negotiated data channel id of the worker's data plane; simple-peer's own channel takes 0 or 1. */
const DATA_CHANNEL_ID = 512;

interface Connection {
  readonly peer: SimplePeer.Instance;
  readonly initiator: boolean;
  /** The connection id; a non-initiator learns it from the first signal. */
  conn: string | null;
  state: PeerState;
  /** The member's `joinedAt` when this connection was made: a new one means the member restarted. */
  readonly joinedAt: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  port: MessagePort | undefined;
  /** The peer's signals, applied one after another: a description waits for its check, candidates after it too. */
  applied: Promise<void>;
  /** Our signals, sent one after another: a description may wait for its fingerprint to be signed. */
  sent: Promise<void>;
  /** When the connection was made (ms, Date.now). */
  readonly createdAt: number;
}

/** A signal about the connection itself rather than one of simple-peer's (see the module comment). */
type LinkControl = 'want' | 'refuse' | 'close';

interface SignalEnvelope {
  readonly conn: string;
  readonly payload: SimplePeer.SignalData;
  /** On offers and answers: the sender's signed certificate fingerprint. */
  readonly auth?: PeerAuth;
}

/** Detects whether this browser can transfer an `RTCDataChannel` to a worker (Chromium ≥ 130, Safari). */
export function canTransferDataChannels(): boolean {
  if (typeof RTCPeerConnection === 'undefined') return false;
  const pc = new RTCPeerConnection();
  const { port1, port2 } = new MessageChannel();
  try {
    const channel = pc.createDataChannel('probe', { negotiated: true, id: 0 });
    port1.postMessage(channel, [channel as unknown as Transferable]);
    return true;
  } catch {
    return false;
  } finally {
    port1.close();
    port2.close();
    pc.close();
  }
}

/** The tab's connections to the other members. */
export class Mesh {
  readonly #options: MeshOptions;
  readonly #connections = new Map<string, Connection>();
  /** Members of the latest view and their `joinedAt`. */
  #members = new Map<string, number>();
  #closed = false;
  #credentials: MeshCredentials = { certificate: null, auth: null };
  /** The worker's latest plan, by priority; null until the first. */
  #plan: string[] | null = null;
  /** Peers that refused or closed a connection, and until when (Date.now) they are not asked again. */
  readonly #backoff = new Map<string, number>();
  /** When each peer with a larger id was last asked for a connection. */
  readonly #asked = new Map<string, number>();
  /** Connections made so far (see {@link MAX_CONNECTIONS_PER_TAB}). */
  #made = 0;
  #applyTimer: ReturnType<typeof setTimeout> | undefined;
  /** When {@link Mesh.#applyTimer} fires (Date.now). */
  #applyAt = Infinity;
  /** Peers whose connection this tab closed because its plan left them out, and when. */
  readonly #dismissed = new Map<string, number>();

  constructor(options: MeshOptions) {
    this.#options = options;
  }

  /** Sets the certificate the connections made from now on use, and what vouches for it. */
  authenticate(credentials: MeshCredentials): void {
    this.#credentials = credentials;
  }

  /** The state of every connection. */
  states(): Record<string, PeerState> {
    return Object.fromEntries([...this.#connections].map(([id, c]) => [id, c.state]));
  }

  /** Whether the worker has planned, and every planned peer in `alive` is connected or has refused for now. */
  settled(alive: ReadonlySet<string>): boolean {
    if (this.#plan === null) return false;
    const now = Date.now();
    return this.#plan.every(
      (id) => !alive.has(id) || this.#connections.get(id)?.state === 'connected' || this.#backingOff(id, now),
    );
  }

  /** Drops the connections of members that left and replaces those of restarted ones. */
  update(members: readonly { id: string; joinedAt: number }[]): void {
    if (this.#closed) return;
    this.#members = new Map(members.filter((m) => m.id !== this.#options.self).map((m) => [m.id, m.joinedAt]));
    for (const [id, connection] of this.#connections) {
      const joinedAt = this.#members.get(id);
      if (joinedAt === undefined) this.#drop(id, connection);
      else if (joinedAt !== connection.joinedAt) this.#drop(id, connection);
    }
    for (const id of this.#backoff.keys()) if (!this.#members.has(id)) this.#backoff.delete(id);
    for (const id of this.#dismissed.keys()) if (!this.#members.has(id)) this.#dismissed.delete(id);
    this.#apply();
  }

  /** Takes the worker's plan: the peers to link, by priority (worker/transport/link-policy.ts). */
  plan(peers: readonly string[]): void {
    if (this.#closed) return;
    this.#plan = [...peers];
    this.#apply();
  }

  /**
   * Opens or asks for connections to planned peers, in order, while under the bound; closes connections the plan
   * left out once they are older than {@link UNPLANNED_GRACE_MS}.
   */
  #apply(): void {
    clearTimeout(this.#applyTimer);
    this.#applyTimer = undefined;
    this.#applyAt = Infinity;
    if (this.#closed || this.#plan === null) return;
    const now = Date.now();
    const max = this.#options.maxLinks ?? DEFAULT_MAX_LINKS;
    const planned = new Set(this.#plan);
    for (const [id, connection] of this.#connections) {
      if (planned.has(id)) continue;
      const age = now - connection.createdAt;
      if (age >= UNPLANNED_GRACE_MS) {
        this.#close(id, connection);
        this.#dismissed.set(id, now);
      } else this.#arm(UNPLANNED_GRACE_MS - age);
    }
    for (const id of this.#plan) {
      if (this.#connections.size >= max) break;
      if (this.#connections.has(id) || !this.#members.has(id)) continue;
      const backingOff = this.#backingOff(id, now);
      if (this.#options.self < id && !backingOff) {
        if (this.#made < MAX_CONNECTIONS_PER_TAB) this.#connect(id, null);
        continue;
      }
      const interval = backingOff ? BACKOFF_ASK_MS : (this.#options.retryDelay ?? 1000);
      const since = now - (this.#asked.get(id) ?? -Infinity);
      if (since >= interval) {
        this.#asked.set(id, now);
        this.#control(id, 'want', null);
        if (backingOff) this.#arm(interval);
      } else if (backingOff) this.#arm(interval - since);
    }
  }

  /** Runs {@link Mesh.#apply} in `delay` ms, unless it is due sooner. */
  #arm(delay: number): void {
    const at = Date.now() + delay;
    if (at >= this.#applyAt) return;
    clearTimeout(this.#applyTimer);
    this.#applyAt = at;
    this.#applyTimer = setTimeout(() => this.#apply(), delay);
  }

  #backingOff(id: string, now: number): boolean {
    const until = this.#backoff.get(id);
    return until !== undefined && until > now;
  }

  /** Whether this tab may take one more connection (an offer, or a peer's `want`). */
  #hasRoom(): boolean {
    return (
      this.#connections.size < (this.#options.maxLinks ?? DEFAULT_MAX_LINKS) && this.#made < MAX_CONNECTIONS_PER_TAB
    );
  }

  /**
   * Whether this tab takes a connection to `peer` now (its offer, or its `want`): when it has room, unless the plan
   * leaves `peer` out and this tab closed a connection to it as unplanned within `refusalBackoff` (it would only close
   * this one too, spending a connection on each side each time).
   */
  #mayTake(peer: string): boolean {
    if (!this.#hasRoom()) return false;
    if (this.#plan?.includes(peer) === true) return true;
    return (this.#dismissed.get(peer) ?? -Infinity) <= Date.now() - this.#refusalBackoff();
  }

  #refusalBackoff(): number {
    return this.#options.refusalBackoff ?? 60_000;
  }

  /** A connection to `peer` was taken that the plan may leave out: it is closed after the grace unless planned. */
  #accepted(peer: string): void {
    if (this.#plan?.includes(peer) !== true) this.#arm(UNPLANNED_GRACE_MS);
  }

  #control(to: string, link: LinkControl, conn: string | null): void {
    this.#options.signal(to, (conn === null ? { link } : { link, conn }) as SignalData);
  }

  /** Takes a peer's `want`, `refuse` or `close`. */
  #onControl(from: string, link: LinkControl, conn: unknown): void {
    if (!this.#members.has(from)) return;
    const connection = this.#connections.get(from);
    if (link === 'want') {
      // The peer asks now: what it refused or closed before no longer holds this tab back.
      this.#backoff.delete(from);
      if (connection !== undefined) return;
      if (this.#options.self > from) {
        // The side that opens asks while it backs off from this tab: it may go ahead when this tab wants it too.
        if (this.#plan?.includes(from) === true && this.#mayTake(from)) this.#control(from, 'want', null);
        return;
      }
      if (this.#mayTake(from)) {
        this.#connect(from, null);
        this.#accepted(from);
      } else this.#control(from, 'refuse', null);
      return;
    }
    this.#backoff.set(from, Date.now() + this.#refusalBackoff());
    if (connection !== undefined && (typeof conn !== 'string' || conn === connection.conn))
      this.#drop(from, connection);
  }

  /** Closes a connection this tab no longer wants, telling the peer so that it does not try again at once. */
  #close(id: string, connection: Connection): void {
    this.#control(id, 'close', connection.conn);
    this.#drop(id, connection);
  }

  /** Hands a relayed signal to the connection it belongs to. */
  handleSignal(from: string, data: SignalData): void {
    if (this.#closed) return;
    const link = data['link'];
    if (link === 'want' || link === 'refuse' || link === 'close') {
      this.#onControl(from, link, data['conn']);
      return;
    }
    if (!isEnvelope(data)) return;
    let connection = this.#connections.get(from);
    const initiator = this.#options.self < from;
    if (initiator) {
      // Only answers to our current offer count; anything else belongs to a connection we replaced.
      if (connection === undefined || connection.conn !== data.conn) return;
    } else if (connection === undefined || (connection.conn !== null && connection.conn !== data.conn)) {
      // A new offer from the initiator: it replaced its connection, so we replace ours. A new one past the bound is
      // refused: the initiator's frames keep going through the relay.
      if (connection !== undefined) this.#drop(from, connection);
      else if (!this.#members.has(from)) return;
      else if (!this.#mayTake(from)) {
        this.#control(from, 'refuse', data.conn);
        return;
      }
      this.#backoff.delete(from);
      connection = this.#connect(from, data.conn);
      this.#accepted(from);
    } else if (connection.conn === null) {
      connection.conn = data.conn;
    }
    const current = connection;
    const { payload } = data;
    const sdp = (payload as { sdp?: unknown }).sdp;
    current.applied = current.applied.then(async () => {
      if (typeof sdp === 'string') {
        const refusal = await refusalOf(this.#options.cluster, from, sdp, data.auth);
        if (this.#connections.get(from) !== current) return;
        if (refusal !== null) {
          this.#options.onRefused?.(from, refusal);
          this.#retry(from, current, false);
          return;
        }
      }
      if (this.#connections.get(from) !== current) return;
      try {
        current.peer.signal(payload);
      } catch {
        this.#replace(from, current);
      }
    });
    // A callback that throws must not stop the signals after it, nor surface as an unhandled rejection.
    current.applied = current.applied.catch(() => {
      if (this.#connections.get(from) === current) this.#replace(from, current);
    });
  }

  /** Closes every connection. Idempotent. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#applyTimer);
    this.#applyAt = Infinity;
    for (const [id, connection] of this.#connections) this.#drop(id, connection);
  }

  #connect(id: string, conn: string | null): Connection {
    const { self, host, dataPlane } = this.#options;
    const initiator = self < id;
    const { certificate, auth, vouch } = this.#credentials;
    const config: RTCConfiguration = {
      iceServers: [],
      ...(certificate === null ? {} : { certificates: [certificate] }),
    };
    const wrtc = this.#options.wrtc;
    const peer = new SimplePeer({
      initiator,
      trickle: true,
      config,
      ...(wrtc === undefined ? {} : { wrtc: wrtc as unknown as NonNullable<SimplePeer.Options['wrtc']> }),
    });
    this.#made++;
    const connection: Connection = {
      createdAt: Date.now(),
      peer,
      initiator,
      conn: initiator ? randomId() : conn,
      state: 'connecting',
      joinedAt: this.#members.get(id) ?? 0,
      timer: undefined,
      port: undefined,
      applied: Promise.resolve(),
      sent: Promise.resolve(),
    };
    this.#connections.set(id, connection);
    // Both data planes carry frames on the same negotiated channel, so a tab that transfers and a tab that relays
    // (a browser that cannot transfer) still talk to each other; simple-peer's own channel only signals liveness.
    const pc = (peer as unknown as { _pc: RTCPeerConnection })._pc;
    const channel = pc.createDataChannel('dynamesh', { negotiated: true, id: DATA_CHANNEL_ID });
    if (dataPlane === 'transfer') {
      // Must happen in the task that created the channel, before anything is sent on it.
      void host.attachChannel(id, Comlink.transfer(channel, [channel as unknown as Transferable]));
    } else {
      this.#relay(id, connection, channel);
    }
    /** What vouches for the certificate a description names; null for a candidate, or when nothing can. */
    const authOf = async (sdp: unknown): Promise<PeerAuth | null> => {
      if (typeof sdp !== 'string') return null;
      if (auth !== null || vouch === undefined) return auth;
      const sha256 = sdpFingerprints(sdp).find((f) => f.startsWith('sha-256 '));
      return sha256 === undefined ? null : vouch(sha256.slice('sha-256 '.length));
    };
    peer.on('signal', (payload: SimplePeer.SignalData) => {
      connection.sent = connection.sent
        .then(async () => {
          const described = await authOf((payload as { sdp?: unknown }).sdp);
          if (this.#connections.get(id) !== connection || connection.conn === null) return;
          const envelope: SignalEnvelope = {
            conn: connection.conn,
            payload,
            ...(described ? { auth: described } : {}),
          };
          this.#options.signal(id, envelope as unknown as SignalData);
        })
        // A description that cannot be vouched for goes unsent: the peer would refuse it, and the connection times out.
        .catch(() => {});
    });
    peer.on('connect', () => {
      if (this.#connections.get(id) !== connection) return;
      clearTimeout(connection.timer);
      connection.state = 'connected';
      this.#options.onPeerState?.(id, 'connected');
    });
    const broken = (): void => {
      if (this.#connections.get(id) !== connection) return;
      this.#retry(id, connection, true);
    };
    peer.on('close', broken);
    peer.on('error', broken);
    connection.timer = setTimeout(broken, this.#options.connectTimeout ?? 15_000);
    this.#options.onPeerState?.(id, 'connecting');
    return connection;
  }

  /** Moves frames between the data channel and a port of the worker, without decoding them. */
  #relay(id: string, connection: Connection, channel: RTCDataChannel): void {
    const { port1, port2 } = new MessageChannel();
    connection.port = port1;
    channel.binaryType = 'arraybuffer';
    const pending: ArrayBuffer[] = [];
    port1.onmessage = (event: MessageEvent<ArrayBuffer>) => {
      if (channel.readyState === 'open') channel.send(event.data);
      else if (channel.readyState === 'connecting' && pending.length < 1024) pending.push(event.data);
    };
    channel.onopen = () => {
      for (const frame of pending.splice(0)) channel.send(frame);
      // Only now: until the channel is open the worker sends this peer's frames through the signalling relay.
      if (this.#connections.get(id) === connection) {
        void this.#options.host.attachPort(id, Comlink.transfer(port2, [port2]));
      }
    };
    channel.onmessage = (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) port1.postMessage(event.data, [event.data]);
      else port1.postMessage(event.data);
    };
  }

  /**
   * Drops a failed connection and, after `retryDelay`, plans again (and reports the peer unreachable when `report`),
   * unless the peer said meanwhile that it closed the connection on purpose or refused it: its `close` travels
   * through the server and can come after the break.
   */
  #retry(id: string, connection: Connection, report: boolean): void {
    this.#drop(id, connection);
    setTimeout(() => {
      if (this.#closed || !this.#members.has(id) || this.#backingOff(id, Date.now())) return;
      if (report) this.#options.onUnreachable?.(id);
      this.#apply();
    }, this.#options.retryDelay ?? 1000);
  }

  /** Drops a connection whose signalling failed and makes it again at once, when it is still planned. */
  #replace(id: string, connection: Connection): void {
    this.#drop(id, connection);
    this.#apply();
  }

  #drop(id: string, connection: Connection): void {
    if (this.#connections.get(id) === connection) {
      this.#connections.delete(id);
      void this.#options.host.detach(id);
    }
    clearTimeout(connection.timer);
    connection.state = 'closed';
    connection.port?.close();
    connection.peer.destroy();
    this.#options.onPeerState?.(id, 'closed');
  }
}

function isEnvelope(data: SignalData): data is SignalData & SignalEnvelope {
  return typeof data['conn'] === 'string' && typeof data['payload'] === 'object' && data['payload'] !== null;
}
