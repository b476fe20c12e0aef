/**
 * The peer connections of a tab: one simple-peer connection per other member, living on the main thread because
 * workers have no `RTCPeerConnection`. simple-peer owns offer, answer and ICE; the side with the smaller id
 * initiates, so two members never offer to each other at once. The data plane reaches the worker in one of two ways:
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
import { randomId } from './identity.ts';
import { type PeerAuth, refusalOf, sdpFingerprints } from './peer-auth.ts';

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
  readonly wrtc?: NonNullable<SimplePeer.Options['wrtc']>;
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
}

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
}

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

  /** Connects to new members, replaces connections of restarted ones, and drops those that left. */
  update(members: readonly { id: string; joinedAt: number }[]): void {
    if (this.#closed) return;
    this.#members = new Map(members.filter((m) => m.id !== this.#options.self).map((m) => [m.id, m.joinedAt]));
    for (const [id, connection] of this.#connections) {
      const joinedAt = this.#members.get(id);
      if (joinedAt === undefined) this.#drop(id, connection);
      else if (joinedAt !== connection.joinedAt) this.#replace(id);
    }
    for (const id of this.#members.keys()) {
      if (!this.#connections.has(id)) this.#connect(id, null);
    }
  }

  /** Hands a relayed signal to the connection it belongs to. */
  handleSignal(from: string, data: SignalData): void {
    if (this.#closed || !isEnvelope(data)) return;
    let connection = this.#connections.get(from);
    const initiator = this.#options.self < from;
    if (initiator) {
      // Only answers to our current offer count; anything else belongs to a connection we replaced.
      if (connection === undefined || connection.conn !== data.conn) return;
    } else if (connection === undefined || (connection.conn !== null && connection.conn !== data.conn)) {
      // A new offer from the initiator: it replaced its connection, so we replace ours.
      if (connection !== undefined) this.#drop(from, connection);
      connection = this.#connect(from, data.conn);
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
          this.#retry(from, current);
          return;
        }
      }
      if (this.#connections.get(from) !== current) return;
      try {
        current.peer.signal(payload);
      } catch {
        this.#replace(from);
      }
    });
    // A callback that throws must not stop the signals after it, nor surface as an unhandled rejection.
    current.applied = current.applied.catch(() => {
      if (this.#connections.get(from) === current) this.#replace(from);
    });
  }

  /** Closes every connection. Idempotent. */
  close(): void {
    this.#closed = true;
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
    const peer = new SimplePeer({ initiator, trickle: true, config, ...(wrtc === undefined ? {} : { wrtc }) });
    const connection: Connection = {
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
      this.#options.onUnreachable?.(id);
      this.#retry(id, connection);
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
    };
    channel.onmessage = (event: MessageEvent) => {
      if (event.data instanceof ArrayBuffer) port1.postMessage(event.data, [event.data]);
      else port1.postMessage(event.data);
    };
    void this.#options.host.attachPort(id, Comlink.transfer(port2, [port2]));
  }

  #retry(id: string, connection: Connection): void {
    this.#drop(id, connection);
    setTimeout(() => {
      if (!this.#closed && this.#members.has(id) && !this.#connections.has(id)) this.#connect(id, null);
    }, this.#options.retryDelay ?? 1000);
  }

  #replace(id: string): void {
    const connection = this.#connections.get(id);
    if (connection !== undefined) this.#drop(id, connection);
    if (this.#members.has(id)) this.#connect(id, null);
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
