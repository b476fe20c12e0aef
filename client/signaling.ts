/**
 * The tab's connection to the signalling server: join, heartbeats, the tab's lifecycle, the pushed view, relay of
 * WebRTC signals and of peer frames (to the peers the tab has no open connection to), and re-joining after every
 * reconnection. If the server goes away the node keeps serving on its last view. Given several URLs (processes of one
 * service on Redis), a client that loses its server, or cannot reach it, tries the next one, round the list, and joins
 * there with the same node id.
 *
 * The server pushes changes of the view as deltas (`view-delta`); the client applies one that follows the view it
 * holds and otherwise asks for the whole view (a heartbeat naming its epoch), so the rest of the tab sees whole views.
 *
 * Heartbeats are timed by the node's worker, not here (see `startHeartbeats`): a hidden tab's main-thread timers are
 * throttled, to one wake-up a minute after five minutes hidden, which would make the server fail a healthy hidden
 * tab. What the browser does to the tab (hidden, frozen, active again) is told to the server with `lifecycle`, so a
 * frozen tab is kept in the view as suspect for the server's grace instead of being failed, and its partitions stay.
 */
import { type Socket, io } from 'socket.io-client';
import {
  type Ack,
  type ClientToServerEvents,
  type ClusterView,
  type JoinAccepted,
  type JoinRequest,
  type LifecycleState,
  type MetricsSnapshot,
  type NodeMetrics,
  PROTOCOL_VERSION,
  type RelayedSignal,
  type SignalingLimits,
  type ServerToClientEvents,
  type SignalData,
} from '../signaling/events.ts';
import { applyViewDelta, isNodeId, validateView, validateViewDelta } from '../signaling/validate.ts';
import { DynameshError, TimeoutError, UnauthorizedError, hasErrorCode } from '../worker/errors.ts';
import { isPartitionCount } from '../worker/ring/ring.ts';

/** The heartbeat intervals a client accepts from a join's acknowledgement, ms: beyond them a server is broken. */
const HEARTBEAT_INTERVALS = { min: 10, max: 3_600_000 } as const;

/** Ms before connecting again after a server was lost, doubling round each full turn of the URL list, up to the max. */
const RECONNECT_DELAY = { first: 250, max: 2000 } as const;

/** Options of {@link SignalingClient}. */
export interface SignalingClientOptions {
  /**
   * The signalling server, or several processes of one service (on Redis): the client starts at the first and, on
   * losing its server, tries the next.
   */
  readonly url: string | readonly string[];
  readonly cluster: string;
  readonly nodeId: string;
  readonly domain: string;
  readonly token?: string;
  /** The first dot counter the node signs (`JoinRequest.signedFrom`); absent for a node that does not sign. */
  readonly signedFrom?: number;
  /**
   * Q of the node's stored data, when it holds any (`JoinRequest.partitions`): the server refuses the join unless it
   * is the cluster's. Once joined, every later join names the cluster's Q.
   */
  readonly partitions?: number;
  /** A new view arrived. */
  readonly onView: (view: ClusterView) => void;
  /** A WebRTC signal from another member arrived. */
  readonly onSignal: (signal: RelayedSignal) => void;
  /** A peer frame relayed from another member arrived: binary, within the server's `maxFrameBytes`. */
  readonly onFrame?: (from: string, frame: ArrayBuffer) => void;
  /** The connection to the server went up or down. */
  readonly onConnection?: (connected: boolean) => void;
  /** Another tab joined with this node id. */
  readonly onSuperseded?: () => void;
  /**
   * The server refused a re-join with `ERR_VERSION_MISMATCH`: it now runs another release of dynamesh (upgraded while
   * this page stayed open). The client has stopped joining it and disconnected; the page must load again.
   */
  readonly onOutdated?: (error: DynameshError) => void;
  /** The server pushed a view that failed validation (`validateView`): it was ignored, and this says why. */
  readonly onInvalidView?: (reason: string) => void;
  /** Signs a join on the connection with Socket.IO id `connection` (see `JoinRequest.proof`); absent, joins are unsigned. */
  readonly prove?: (connection: string) => Promise<NonNullable<JoinRequest['proof']>>;
  /** How long the first join may take, in ms. @default 10000 */
  readonly joinTimeout?: number;
  /**
   * Starts the heartbeat clock: calls `tick` every `interval` ms (the server's, from the join) until the returned
   * function is called. The store times it in its worker, whose timers a hidden tab does not throttle.
   */
  readonly startHeartbeats: (interval: number, tick: () => void) => () => void;
}

type TypedSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** A joined member's link to the signalling server. */
export class SignalingClient {
  readonly #options: SignalingClientOptions;
  readonly #urls: readonly string[];
  /** The connection to the server at `#urls[#current]`; replaced by one to the next URL when it is lost. */
  #socket: TypedSocket;
  #current = 0;
  /** Connections lost or refused in a row, since the last that connected. */
  #failures = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set once the first join succeeded: from then on pushes are taken and every new connection joins again. */
  #started = false;
  /** While the first join runs: what a new connection does. */
  #onFirstConnect: (() => void) | undefined;
  #view: ClusterView | null = null;
  #partitions: number | undefined;
  #limits: SignalingLimits | null = null;
  #stopHeartbeats: (() => void) | undefined;
  #lifecycle: LifecycleState = 'active';
  #closed = false;
  #superseded = false;
  #outdated = false;

  private constructor(options: SignalingClientOptions, urls: readonly string[]) {
    this.#options = options;
    this.#urls = urls;
    this.#socket = this.#open(0);
  }

  /**
   * Connects and joins; rejects with `ERR_UNAUTHORIZED` for refused credentials, `ERR_VERSION_MISMATCH` when the
   * server runs another release, `ERR_TIMEOUT` if no server answers.
   */
  static async connect(options: SignalingClientOptions): Promise<SignalingClient> {
    const urls = typeof options.url === 'string' ? [options.url] : [...options.url];
    if (urls.length === 0 || !urls.every((url) => typeof url === 'string' && url !== '')) {
      throw new DynameshError('ERR_INVALID_ARGUMENT', 'url must be a URL or a non-empty list of URLs');
    }
    const client = new SignalingClient(options, urls);
    try {
      await client.#firstJoin();
    } catch (error) {
      client.#stop();
      throw error;
    }
    return client;
  }

  /** The cluster's Q (`JoinAccepted.partitions`), known once joined. */
  get partitions(): number {
    if (this.#partitions === undefined) throw new Error('the cluster is not joined yet');
    return this.#partitions;
  }

  /** The URL of the server this client is connected to, or trying to reach. */
  get url(): string {
    return this.#urls[this.#current]!;
  }

  /** Opens a connection to the server at `#urls[index]`, with every listener; Socket.IO's own reconnection is off. */
  #open(index: number): TypedSocket {
    this.#current = index;
    const socket: TypedSocket = io(this.#urls[index]!, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    const mine = (): boolean => socket === this.#socket;
    socket.on('connect', () => {
      if (!mine()) return;
      this.#failures = 0;
      if (!this.#started) return this.#onFirstConnect?.();
      this.#options.onConnection?.(true);
      // Every connection is a new server-side connection: join again, on the same id.
      this.#rejoin();
    });
    socket.on('connect_error', () => mine() && this.#lost());
    socket.on('disconnect', (reason) => {
      if (!mine() || reason === 'io client disconnect') return;
      if (this.#started) this.#options.onConnection?.(false);
      this.#lost();
    });
    socket.on('view', (view) => mine() && this.#started && this.#acceptPushed(view));
    socket.on('view-delta', (delta: unknown) => mine() && this.#started && this.#acceptDelta(delta));
    socket.on('signal', (signal: unknown) => {
      if (mine() && this.#started && isRelayedSignal(signal)) this.#options.onSignal(signal);
    });
    socket.on('frame', (frame: unknown) => {
      if (!mine() || !this.#started) return;
      const max = this.#limits?.maxFrameBytes ?? 0;
      const { from, data } = (typeof frame === 'object' && frame !== null ? frame : {}) as Record<string, unknown>;
      // Checked as the server checks what it relays: a node id, binary data within the limit.
      if (isNodeId(from) && data instanceof ArrayBuffer && data.byteLength > 0 && data.byteLength <= max) {
        this.#options.onFrame?.(from, data);
      }
    });
    socket.on('superseded', () => {
      if (!mine() || !this.#started) return;
      // Another connection holds this node id now (a reload of this tab): stop, and do not join again.
      this.#superseded = true;
      this.#stopHeartbeats?.();
      this.#options.onSuperseded?.();
    });
    return socket;
  }

  /** The connection went away or never came: connect again, to the next URL of the list, after a delay. */
  #lost(): void {
    this.#socket.removeAllListeners();
    this.#socket.disconnect();
    if (this.#closed || this.#superseded || this.#outdated || this.#reconnectTimer !== undefined) return;
    this.#failures++;
    // Through the list quickly once; each further turn of it waits twice as long, up to the max.
    const turns = Math.floor((this.#failures - 1) / this.#urls.length);
    const delay = Math.min(RECONNECT_DELAY.max, RECONNECT_DELAY.first * 2 ** turns) * (0.5 + Math.random() / 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed || this.#superseded || this.#outdated) return;
      this.#socket = this.#open((this.#current + 1) % this.#urls.length);
    }, delay);
  }

  /** Stops connecting and closes the connection. */
  #stop(): void {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#socket.removeAllListeners();
    this.#socket.disconnect();
  }

  /** The latest view. */
  get view(): ClusterView | null {
    return this.#view;
  }

  /** The limits the server told in its latest join acknowledgement. */
  get limits(): SignalingLimits | null {
    return this.#limits;
  }

  /** True while connected to the server. */
  get connected(): boolean {
    return this.#socket.connected;
  }

  /** Relays WebRTC signalling data to member `to`. */
  signal(to: string, data: SignalData): void {
    if (this.#socket.connected) this.#socket.emit('signal', { to, data }, () => {});
  }

  /**
   * Relays one peer frame to member `to`, without an acknowledgement: best effort, as a data channel is (a frame the
   * server refuses, or sent while disconnected, is lost; the node's timeouts notice).
   */
  frame(to: string, frame: ArrayBuffer): void {
    if (this.#socket.connected) this.#socket.emit('frame', { to, data: frame });
  }

  /** Tells the server that this node cannot reach `nodeId`. */
  reportUnreachable(nodeId: string): void {
    if (this.#socket.connected) this.#socket.emit('report-unreachable', { nodeId }, () => {});
  }

  /** What the tab's lifecycle was last set to. */
  get lifecycle(): LifecycleState {
    return this.#lifecycle;
  }

  /**
   * Tells the server the tab turned hidden, frozen or active (again after every re-join while not active). A
   * repeated state is not sent again.
   */
  setLifecycle(state: LifecycleState): void {
    if (state === this.#lifecycle) return;
    this.#lifecycle = state;
    // Sent at once, synchronously: on `freeze` this is the last task the page runs before it stops.
    if (this.#socket.connected && !this.#closed && !this.#superseded)
      this.#socket.emit('lifecycle', { state }, () => {});
  }

  /** Pushes this node's metrics snapshot to the server. */
  pushMetrics(snapshot: MetricsSnapshot): void {
    if (this.#socket.connected) this.#socket.emit('metrics', snapshot, () => {});
  }

  /** The metrics every member pushed, as the server holds them. */
  async clusterMetrics(): Promise<Record<string, NodeMetrics>> {
    const ack = await this.#socket.timeout(5000).emitWithAck('get-metrics', {});
    return unwrap(ack).metrics;
  }

  /**
   * Leaves the cluster and disconnects. Idempotent. With `leave: false` it only disconnects: the server takes the node
   * for failed and keeps it in the view for its heartbeat timeout, so a node back by then (a restart of the always-on
   * node) moves no partition.
   */
  async close(options: { readonly leave?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopHeartbeats?.();
    if (this.#socket.connected && options.leave !== false) {
      await this.#socket
        .timeout(1000)
        .emitWithAck('leave', {})
        .catch(() => {});
    }
    this.#stop();
  }

  async #firstJoin(): Promise<void> {
    const { joinTimeout = 10_000 } = this.#options;
    const accepted = await new Promise<JoinAccepted>((resolve, reject) => {
      let settled = false;
      const finish = (error: unknown, accepted?: JoinAccepted): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#onFirstConnect = undefined;
        if (accepted !== undefined) resolve(accepted);
        else reject(error);
      };
      const timer = setTimeout(
        () => finish(new TimeoutError(`no answer from the signalling server at ${this.#urls.join(' or ')}`)),
        joinTimeout,
      );
      // A join lost with its connection (the server went away mid-join) is tried again on the next connection,
      // until joinTimeout; an answer of the server (a refusal with a code) ends it.
      const attempt = (): void => {
        const socket = this.#socket;
        const again = (ms: number): void => {
          setTimeout(() => !settled && socket === this.#socket && socket.connected && attempt(), ms);
        };
        this.#join().then(
          (accepted) => finish(null, accepted),
          (error: unknown) => {
            // Joins of this id or address came too fast (reloads in a row): the server admits one again shortly.
            if (hasErrorCode(error, 'ERR_RATE_LIMITED')) again(1000);
            else if (error instanceof DynameshError) finish(error);
            else again(250);
          },
        );
      };
      this.#onFirstConnect = attempt;
      if (this.#socket.connected) attempt();
    });
    this.#started = true;
    this.#stopHeartbeats = this.#options.startHeartbeats(accepted.heartbeatInterval, () => this.#beat());
  }

  async #join(): Promise<JoinAccepted> {
    const { cluster, nodeId, domain, token, prove, signedFrom } = this.#options;
    const partitions = this.#partitions ?? this.#options.partitions;
    const connection = this.#socket.id;
    const proof = prove !== undefined && connection !== undefined ? await prove(connection) : undefined;
    const ack = await this.#socket.timeout(this.#options.joinTimeout ?? 10_000).emitWithAck('join', {
      cluster,
      nodeId,
      domain,
      protocol: PROTOCOL_VERSION,
      ...(token !== undefined ? { token } : {}),
      ...(proof !== undefined ? { proof } : {}),
      ...(signedFrom !== undefined ? { signedFrom } : {}),
      ...(partitions !== undefined ? { partitions } : {}),
    });
    const accepted = unwrap(ack);
    const view = validateView(accepted.view);
    const interval = accepted.heartbeatInterval;
    const heartbeatOk = interval >= HEARTBEAT_INTERVALS.min && interval <= HEARTBEAT_INTERVALS.max;
    // A server of the same release always names Q; after the first join it can only name the same one.
    const partitionsOk =
      isPartitionCount(accepted.partitions) && (partitions === undefined || accepted.partitions === partitions);
    if (!view.ok || !heartbeatOk || !partitionsOk) {
      const reason = !view.ok
        ? view.message
        : !heartbeatOk
          ? `heartbeatInterval ${String(interval)}`
          : `partitions ${String(accepted.partitions)}`;
      throw new DynameshError(
        'ERR_INVALID_ARGUMENT',
        `the signalling server answered the join with an invalid ${reason}`,
      );
    }
    this.#partitions = accepted.partitions;
    this.#limits = accepted.limits;
    this.#acceptView(view.value);
    // A join starts the member afresh on the server, as active: say again what the tab is.
    const state = this.#lifecycle;
    if (state !== 'active') this.#socket.emit('lifecycle', { state }, () => {});
    return accepted;
  }

  /**
   * Joins again after the first join (a reconnection, or a server that forgot this member). A refusal for another
   * protocol version ends it: the server was upgraded, and this page's release can no longer take part.
   */
  #rejoin(): void {
    if (this.#superseded || this.#outdated || this.#closed) return;
    this.#join().catch((error: unknown) => {
      if (!hasErrorCode(error, 'ERR_VERSION_MISMATCH') || this.#outdated) return;
      this.#outdated = true;
      this.#stopHeartbeats?.();
      this.#socket.disconnect();
      this.#options.onOutdated?.(error as DynameshError);
    });
  }

  #beat(): void {
    if (!this.#socket.connected) return;
    const epoch = this.#view?.epoch;
    this.#socket.emit('heartbeat', epoch === undefined ? {} : { epoch }, (ack) => {
      if (ack.ok) {
        if (ack.view !== null) this.#acceptPushed(ack.view);
      } else if (ack.error.code === 'ERR_NOT_JOINED') {
        this.#rejoin();
      }
    });
  }

  /**
   * Takes a delta the server pushed, once it validates: applied when it follows the view held, ignored when it is
   * older, and otherwise (a change was missed, or this is a new server's first) the whole view is asked for.
   */
  #acceptDelta(input: unknown): void {
    const checked = validateViewDelta(input);
    if (!checked.ok) return this.#options.onInvalidView?.(checked.message);
    const delta = checked.value;
    const held = this.#view;
    if (held !== null && delta.cluster === held.cluster && delta.epoch <= held.epoch) return;
    if (held === null || delta.cluster !== held.cluster || delta.prevEpoch !== held.epoch) return this.#beat();
    this.#acceptPushed({ cluster: held.cluster, epoch: delta.epoch, members: applyViewDelta(held.members, delta) });
  }

  /** Takes a view the server pushed, once it validates; a malformed one is ignored (the next valid one will do). */
  #acceptPushed(input: unknown): void {
    const view = validateView(input);
    if (view.ok) this.#acceptView(view.value);
    else this.#options.onInvalidView?.(view.message);
  }

  #acceptView(view: ClusterView): void {
    if (this.#view !== null && view.epoch < this.#view.epoch) return;
    this.#view = view;
    this.#options.onView(view);
  }
}

/**
 * Follows the Page Lifecycle API of `window` and calls `onChange` with what the tab is: `hidden`
 * (`visibilitychange`), `frozen` (`freeze`, or `pagehide` into the back/forward cache), and back to `active` or
 * `hidden` on `resume`, `pageshow` and `visibilitychange`. A `pagehide` that unloads the page says nothing: the
 * closing connection tells the server the node is gone. Returns the function that stops listening.
 */
export function watchPageLifecycle(onChange: (state: LifecycleState) => void, target: Window = window): () => void {
  const { document } = target;
  const visible = (): LifecycleState => (document.visibilityState === 'hidden' ? 'hidden' : 'active');
  const onVisibility = (): void => onChange(visible());
  const onFreeze = (): void => onChange('frozen');
  const onPageHide = (event: PageTransitionEvent): void => {
    if (event.persisted) onChange('frozen');
  };
  document.addEventListener('visibilitychange', onVisibility);
  document.addEventListener('freeze', onFreeze);
  document.addEventListener('resume', onVisibility);
  target.addEventListener('pagehide', onPageHide);
  target.addEventListener('pageshow', onVisibility);
  if (document.visibilityState === 'hidden') onChange('hidden');
  return () => {
    document.removeEventListener('visibilitychange', onVisibility);
    document.removeEventListener('freeze', onFreeze);
    document.removeEventListener('resume', onVisibility);
    target.removeEventListener('pagehide', onPageHide);
    target.removeEventListener('pageshow', onVisibility);
  };
}

function unwrap<T extends object>(ack: Ack<T>): T {
  if (ack.ok) return ack;
  if (ack.error.code === 'ERR_UNAUTHORIZED') throw new UnauthorizedError(ack.error.message);
  throw new DynameshError(ack.error.code, ack.error.message);
}

/** A relayed signal as the server sends it: from a node id, with a JSON object (the mesh checks what is inside). */
function isRelayedSignal(value: unknown): value is RelayedSignal {
  if (typeof value !== 'object' || value === null) return false;
  const { from, data } = value as Record<string, unknown>;
  return isNodeId(from) && typeof data === 'object' && data !== null && !Array.isArray(data);
}
