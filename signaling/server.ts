/**
 * The signalling server: one HTTP server carrying Socket.IO (membership, heartbeats, relay of signals and of peer
 * frames between members without a peer connection), `/healthz`,
 * `/metrics` and the built demo. Each cluster is a Socket.IO room; {@link Membership} decides views and failures,
 * this module validates, limits, authorises, relays and pushes.
 *
 * Every client event goes through the same steps: the connection's token bucket (over it: `ERR_RATE_LIMITED`,
 * dropped), a known name (else `ERR_INVALID_ARGUMENT`), exactly one payload that its validator accepts, then the
 * handler. Any refusal is answered through the acknowledgement when there is one, counted in
 * `dynamesh_signaling_events_rejected_total{event,reason}`, logged at debug level, and changes nothing.
 */
import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { pino, type Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import {
  CLIENT_EVENT_NAMES,
  type Ack,
  type ClientEventName,
  type ClientToServerEvents,
  type ClusterView,
  type EmptyRequest,
  type ErrorAck,
  type FrameRequest,
  type HeartbeatRequest,
  type JoinRequest,
  type LifecycleRequest,
  type MetricsSnapshot,
  type NodeMetrics,
  type ReportRequest,
  type ServerToClientEvents,
  type SignalingErrorCode,
  type SignalingLimits,
  type SignalRequest,
  PROTOCOL_VERSION,
} from './events.ts';
import { DEFAULT_SUSPECT_GRACE, type Changes, type DisconnectCause, type MembershipStats } from './membership.ts';
import { LocalMembershipStore, type MembershipStore } from './membership-store.ts';
import { createSignalingMetrics, reasonLabel, type SignalingMetrics } from './metrics.ts';
import { TokenBucket } from './rate-limit.ts';
import { JoinDamper } from './damping.ts';
import { admitShared, NodeKeys } from './node-keys.ts';
import { type AllowedOrigins, isLoopback, originRefusal } from './origin.ts';
import { placementFor } from './placement.ts';
import { DEFAULT_CLUSTER_PARTITIONS, MAX_PARTITIONS, isPartitionCount } from '../worker/ring/ring.ts';
import { serveStatic } from './static.ts';
import { tokenId, verifyToken } from './token.ts';
import { MAX_VIEW_MEMBERS, VALIDATORS, type PayloadLimits } from './validate.ts';

/** Where Socket.IO listens (its default). */
const SOCKET_IO_PATH = '/socket.io/';

/** Ms close() lets open WebSockets finish their closing handshake before it cuts them. */
const CLOSE_GRACE_MS = 1000;

/**
 * Joins one node id of a cluster may make: 10 at once, then one every 6 s. A tab joins once, and again after a
 * reload or a lost connection; an id joining faster flaps, and every view it causes costs each tab a ring rebuild.
 */
const NODE_JOINS = { burst: 10, refillMs: 6000 };
/** Joins from one client address, whatever their ids: 100 at once, then four a second. */
const ADDRESS_JOINS = { burst: 100, refillMs: 250 };

/** Interval timers, injectable so tests can drive failure detection. */
export interface IntervalTimers {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** Options of {@link createSignalingServer}; every one has a default. */
export interface SignalingServerOptions {
  /** TCP port; 0 picks a free one (see `port` on the result). @default 8787 */
  readonly port?: number | undefined;
  /** Interface to bind; `0.0.0.0` or `::` to accept other machines. @default '127.0.0.1' */
  readonly host?: string | undefined;
  /** How often members heartbeat, in ms; told to them in the join acknowledgement. @default 1000 */
  readonly heartbeatInterval?: number | undefined;
  /** Silence after which a member leaves its view, in ms; more than `heartbeatInterval`. @default 3000 */
  readonly heartbeatTimeout?: number | undefined;
  /**
   * How long, in ms past `heartbeatTimeout` of silence, a member that announced its tab `hidden` or `frozen` (the
   * `lifecycle` event) stays in its view as `suspect` before it leaves; 0 turns the grace off. A tab that closes or
   * crashes is still removed at `heartbeatTimeout`: its connection closes, which ends the grace. @default 300000
   */
  readonly suspectGrace?: number | undefined;
  /**
   * How often failure detection runs, in ms: a silent member leaves its view between `heartbeatTimeout` and
   * `heartbeatTimeout + sweepInterval` after it was last heard. @default 250
   */
  readonly sweepInterval?: number | undefined;
  /**
   * Q, the ring partitions of every cluster this server holds, told to each member as it joins: a power of two,
   * chosen for the largest size a cluster will reach (each partition's preference list needs N distinct nodes, and
   * balance needs many partitions per node). The default serves 1,000 nodes (`npm run bench:ring`). A node whose
   * stored data is partitioned otherwise is refused; a server upgraded under tabs that hold data of a smaller Q runs
   * with that Q. @default 4096
   */
  readonly partitions?: number | undefined;
  /**
   * Most members per cluster (in or out of its view); one more join gets `ERR_CLUSTER_FULL`. At most
   * `MAX_VIEW_MEMBERS` (4,096), the most a tab takes in a view. @default 1000
   */
  readonly maxMembersPerCluster?: number | undefined;
  /** How long a member must have been joined before its `report-unreachable` counts, in ms. @default 10000 */
  readonly reporterTenure?: number | undefined;
  /** Most clusters the server holds; a join creating one more gets `ERR_CLUSTER_FULL`. @default 1000 */
  readonly maxClusters?: number | undefined;
  /**
   * Most clusters held that joins from one client address created; a join from it creating one more gets
   * `ERR_CLUSTER_FULL`, so that one address cannot take every place of {@link maxClusters}. @default 64
   */
  readonly maxClustersPerAddress?: number | undefined;
  /** Most open connections; one more is refused before any event. @default 10000 */
  readonly maxConnections?: number | undefined;
  /** Most open connections from one client address; one more is refused before any event. @default 256 */
  readonly maxConnectionsPerAddress?: number | undefined;
  /**
   * Most members (node ids in clusters, in or out of their views) whose latest join came from one client address; a
   * join from it of one more gets `ERR_CLUSTER_FULL`. A member counts until it leaves, or until its silence removes
   * it once its connection closed, so one address cannot mint ids faster than they leave (a Sybil bound beyond its
   * connections). @default 256
   */
  readonly maxIdsPerAddress?: number | undefined;
  /**
   * With a `secret`: most open connections that joined with one token (counted from their join with it until they
   * close or join with another); a join with it on one more gets `ERR_CLUSTER_FULL`. A token is known by a hash of
   * its signature (`tokenId` in token.ts), never kept or logged itself. @default 256
   */
  readonly maxConnectionsPerToken?: number | undefined;
  /**
   * With a `secret`: most members whose latest join came with one token, counted as for `maxIdsPerAddress`; a join
   * with it of one more gets `ERR_CLUSTER_FULL`. @default 256
   */
  readonly maxIdsPerToken?: number | undefined;
  /** Largest Socket.IO message in bytes (Socket.IO's `maxHttpBufferSize`); a bigger one closes the connection. @default 65536 */
  readonly maxPayloadBytes?: number | undefined;
  /** Largest `signal.data`, as JSON, in bytes; more gets `ERR_TOO_LARGE`. @default 16384 */
  readonly maxSignalBytes?: number | undefined;
  /**
   * Largest relayed `frame.data`, bytes; more is refused (`ERR_TOO_LARGE`). Well under `maxPayloadBytes` and the
   * 64 KiB of a data-channel frame, so that a relayed frame never holds a connection's other events up for long.
   * @default 16384
   */
  readonly maxFrameBytes?: number | undefined;
  /**
   * Sustained `frame` events per second per connection, with a burst of twice as many; over it gets
   * `ERR_RATE_LIMITED` (dropped). Counted in a bucket of their own, so that frames never starve a member's
   * heartbeats: 200 frames a second carry a few dozen requests a second between nodes that have no direct link.
   * @default 200
   */
  readonly maxFramesPerSecond?: number | undefined;
  /** Most entries in a `metrics` snapshot; more gets `ERR_TOO_LARGE`. @default 64 */
  readonly maxMetricsEntries?: number | undefined;
  /** Sustained events per second per connection (token bucket refill); over it gets `ERR_RATE_LIMITED`. @default 100 */
  readonly maxEventsPerSecond?: number | undefined;
  /** Token bucket size: events a connection may send at once. @default 200 */
  readonly maxEventBurst?: number | undefined;
  /**
   * When set, joins need a token minted with this secret for their cluster (`ERR_UNAUTHORIZED` otherwise), and
   * `/metrics` needs `Authorization: Bearer <secret>`. Without one the server is open, and may listen on loopback
   * only. @default undefined (open)
   */
  readonly secret?: string | undefined;
  /** Directory of the built demo, served at `/`; without an `index.html` there, `/` says the demo is not built. @default undefined */
  readonly staticDir?: string | undefined;
  /**
   * Web pages allowed to connect, by origin (`https://app.example.com`), besides the server's own pages and pages
   * served from loopback; `'*'` admits any page. A connection from a page of any other origin is refused before
   * its first event (see origin.ts). @default [] (own and loopback pages only)
   */
  readonly allowedOrigins?: AllowedOrigins | undefined;
  /**
   * A Redis server (`redis://host:port`) through which any number of server processes run as one service: views,
   * epochs, member records and failure detection live in Redis (redis-store.ts), and relays and pushes reach tabs on
   * any process through Socket.IO's Redis adapter. Without it the server is one process with everything in memory.
   * @default undefined (in memory)
   */
  readonly redis?: string | undefined;
  /** With `redis`: the prefix of every key this service keeps there, so that several services share one Redis. @default 'dynamesh:' */
  readonly redisPrefix?: string | undefined;
  /**
   * With `redis`: this process's name in the service, on its `/metrics` (the `process` label) and in the member
   * records it writes. @default the host name, the pid and random characters
   */
  readonly processId?: string | undefined;
  /** Export the nodes' pushed metrics as `dynamesh_node_metric{cluster,node,name}` on `/metrics`. @default true */
  readonly exportNodeMetrics?: boolean;
  /** The logger; when absent, a pino logger at `logLevel`. */
  readonly logger?: Logger;
  /** Level of the default logger. @default process.env.LOG_LEVEL ?? 'info' */
  readonly logLevel?: string;
  /** The clock, ms since the Unix epoch: view times, token expiry, rate limits, failure detection. @default Date.now */
  readonly now?: () => number;
  /** Timers for failure detection. @default the global setInterval and clearInterval */
  readonly timers?: IntervalTimers;
}

/** A running signalling server. */
export interface SignalingServer {
  readonly httpServer: HttpServer;
  readonly io: Server<ListenEvents, ServerToClientEvents>;
  /** `http://host:port`, the URL clients connect to. */
  readonly url: string;
  /** The bound port (the chosen one when the option was 0). */
  readonly port: number;
  readonly host: string;
  /** The limits in force, as told to clients. */
  readonly limits: SignalingLimits;
  /** The Prometheus metrics served at `/metrics`. */
  readonly metrics: SignalingMetrics;
  readonly logger: Logger;
  /** This process's name in a service on Redis (`processId`); undefined for an in-memory server. */
  readonly processId: string | undefined;
  /**
   * The latest view of a cluster this process knows, or undefined when it has no members. In memory it is the view;
   * on Redis, the latest this process read or wrote: {@link SignalingServer.currentView} asks Redis.
   */
  view(cluster: string): ClusterView | undefined;
  /** The current view of a cluster, or undefined when it has no members. */
  currentView(cluster: string): Promise<ClusterView | undefined>;
  /** The metrics each member of a cluster pushed, by node id. */
  nodeMetrics(cluster: string): Promise<Record<string, NodeMetrics>>;
  /** Membership counts. */
  stats(): Promise<MembershipStats>;
  /** Runs failure detection now, as the timer does, and pushes what changed. */
  sweep(): Promise<void>;
  /** Disconnects every client and closes the HTTP server; idempotent. */
  close(): Promise<void>;
}

/** The server listens to the client's events but trusts nothing about their arguments until validated. */
export type ListenEvents = { [E in keyof ClientToServerEvents]: (...args: unknown[]) => void };

type ClientSocket = Socket<ListenEvents, ServerToClientEvents>;
type AckFunction = (response: Ack) => void;
type Reply = { readonly response: Ack; readonly changes?: Changes };

/**
 * The room of one node of a cluster, which the connection holding its seat is in: every relay to a node goes there,
 * so the Redis adapter carries it to whichever process holds that connection.
 */
export const nodeRoom = (cluster: string, nodeId: string): string => `node:${cluster}:${nodeId}`;

/** The room of a cluster: its joined connections, which every change of its view is pushed to. */
export const clusterRoom = (cluster: string): string => `cluster:${cluster}`;

const KNOWN_EVENTS: ReadonlySet<string> = new Set(CLIENT_EVENT_NAMES);

/** The numeric and address options, with defaults applied: the limits nodes are told, and the server's own. */
export interface SignalingSettings extends SignalingLimits {
  readonly port: number;
  readonly partitions: number;
  readonly host: string;
  readonly heartbeatInterval: number;
  readonly heartbeatTimeout: number;
  readonly suspectGrace: number;
  readonly sweepInterval: number;
  readonly maxClusters: number;
  readonly maxClustersPerAddress: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  readonly maxIdsPerAddress: number;
  readonly maxConnectionsPerToken: number;
  readonly maxIdsPerToken: number;
}

/** Defaults of {@link SignalingServerOptions}. */
export const SIGNALING_DEFAULTS: SignalingSettings = Object.freeze({
  port: 8787,
  host: '127.0.0.1',
  partitions: DEFAULT_CLUSTER_PARTITIONS,
  heartbeatInterval: 1000,
  heartbeatTimeout: 3000,
  suspectGrace: DEFAULT_SUSPECT_GRACE,
  sweepInterval: 250,
  maxMembersPerCluster: 1000,
  maxClusters: 1000,
  maxClustersPerAddress: 64,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 256,
  // As many as the connections one address may open, each holding one member, so a machine with that many tabs
  // is not refused; ids of closed tabs count until they leave their views (heartbeatTimeout).
  maxIdsPerAddress: 256,
  // One token is typically handed to every tab of an app's users: as generous as one address.
  maxConnectionsPerToken: 256,
  maxIdsPerToken: 256,
  maxPayloadBytes: 64 * 1024,
  maxSignalBytes: 16 * 1024,
  maxFrameBytes: 16 * 1024,
  maxFramesPerSecond: 200,
  maxMetricsEntries: 64,
  maxEventsPerSecond: 100,
  maxEventBurst: 200,
});

/** Starts a signalling server; resolves once it listens. Throws a RangeError on a bad option. */
export async function createSignalingServer(options: SignalingServerOptions = {}): Promise<SignalingServer> {
  const defaults = SIGNALING_DEFAULTS;
  const settings: SignalingSettings = {
    port: options.port ?? defaults.port,
    host: options.host ?? defaults.host,
    partitions: options.partitions ?? defaults.partitions,
    heartbeatInterval: options.heartbeatInterval ?? defaults.heartbeatInterval,
    heartbeatTimeout: options.heartbeatTimeout ?? defaults.heartbeatTimeout,
    suspectGrace: options.suspectGrace ?? defaults.suspectGrace,
    sweepInterval: options.sweepInterval ?? defaults.sweepInterval,
    maxMembersPerCluster: options.maxMembersPerCluster ?? defaults.maxMembersPerCluster,
    maxClusters: options.maxClusters ?? defaults.maxClusters,
    maxClustersPerAddress: options.maxClustersPerAddress ?? defaults.maxClustersPerAddress,
    maxConnections: options.maxConnections ?? defaults.maxConnections,
    maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? defaults.maxConnectionsPerAddress,
    maxIdsPerAddress: options.maxIdsPerAddress ?? defaults.maxIdsPerAddress,
    maxConnectionsPerToken: options.maxConnectionsPerToken ?? defaults.maxConnectionsPerToken,
    maxIdsPerToken: options.maxIdsPerToken ?? defaults.maxIdsPerToken,
    maxPayloadBytes: options.maxPayloadBytes ?? defaults.maxPayloadBytes,
    maxSignalBytes: options.maxSignalBytes ?? defaults.maxSignalBytes,
    maxFrameBytes: options.maxFrameBytes ?? defaults.maxFrameBytes,
    maxFramesPerSecond: options.maxFramesPerSecond ?? defaults.maxFramesPerSecond,
    maxMetricsEntries: options.maxMetricsEntries ?? defaults.maxMetricsEntries,
    maxEventsPerSecond: options.maxEventsPerSecond ?? defaults.maxEventsPerSecond,
    maxEventBurst: options.maxEventBurst ?? defaults.maxEventBurst,
  };
  checkOptions(settings);
  const now = options.now ?? Date.now;
  const timers = options.timers ?? {
    setInterval: (callback: () => void, ms: number) => setInterval(callback, ms),
    clearInterval: (handle: unknown) => clearInterval(handle as ReturnType<typeof setInterval>),
  };
  const logger =
    options.logger ?? pino({ name: 'dynamesh-signaling', level: options.logLevel ?? process.env.LOG_LEVEL ?? 'info' });
  const secret = options.secret !== undefined && options.secret !== '' ? options.secret : undefined;
  // Bound to loopback, the server is reached by that name only: any other Host is a page whose name was rebound.
  const loopbackOnly = isLoopback(settings.host);
  if (secret === undefined && !loopbackOnly) {
    throw new RangeError(
      `an open server (no secret) listens on loopback only, not on ${settings.host}: give it a secret to listen there`,
    );
  }
  const limits: SignalingLimits = Object.freeze({
    maxMembersPerCluster: settings.maxMembersPerCluster,
    maxPayloadBytes: settings.maxPayloadBytes,
    maxSignalBytes: settings.maxSignalBytes,
    maxFrameBytes: settings.maxFrameBytes,
    maxFramesPerSecond: settings.maxFramesPerSecond,
    maxMetricsEntries: settings.maxMetricsEntries,
    maxEventsPerSecond: settings.maxEventsPerSecond,
    maxEventBurst: settings.maxEventBurst,
  });
  const payloadLimits: PayloadLimits = limits;
  const membershipOptions = {
    heartbeatInterval: settings.heartbeatInterval,
    heartbeatTimeout: settings.heartbeatTimeout,
    suspectGrace: settings.suspectGrace,
    maxMembersPerCluster: settings.maxMembersPerCluster,
    ...(options.reporterTenure === undefined ? {} : { reporterTenure: options.reporterTenure }),
    now,
    placement: placementFor(secret),
  };
  const redisUrl = options.redis !== undefined && options.redis !== '' ? options.redis : undefined;
  // Loaded only with --redis: a server in memory needs neither ioredis nor the adapter.
  const shared = redisUrl === undefined ? undefined : await import('./redis-service.ts');
  const service =
    shared === undefined || redisUrl === undefined
      ? undefined
      : await shared.connectRedisService({
          url: redisUrl,
          prefix: options.redisPrefix ?? shared.DEFAULT_REDIS_PREFIX,
          processId: options.processId ?? shared.defaultProcessId(),
          membership: membershipOptions,
          sweepInterval: settings.sweepInterval,
          logger,
        });
  const membership: MembershipStore = service?.store ?? new LocalMembershipStore(membershipOptions);

  const { maxClusters, maxClustersPerAddress, maxIdsPerAddress, maxConnectionsPerToken, maxIdsPerToken } = settings;
  const { maxConnections, maxConnectionsPerAddress: maxPerAddress } = settings;
  const nodeJoins = new JoinDamper(NODE_JOINS);
  const nodeKeys = new NodeKeys();
  const addressJoins = new JoinDamper(ADDRESS_JOINS);
  /** Open Socket.IO connections by client address. */
  const perAddress = new Map<string, number>();
  /** The token (its {@link tokenId}) each open connection last joined with, and how many hold each token. */
  const connectionToken = new Map<string, string>();
  const perToken = new Map<string, number>();
  const countToken = (token: string, by: 1 | -1): void => {
    const count = (perToken.get(token) ?? 0) + by;
    if (count > 0) perToken.set(token, count);
    else perToken.delete(token);
  };

  const httpServer = createServer();
  // Every connection, so that close() can end the upgraded (WebSocket) ones, which are no longer HTTP connections.
  const connections = new Set<NetSocket>();
  httpServer.on('connection', (socket: NetSocket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  const io = new Server<ListenEvents, ServerToClientEvents>(httpServer, {
    ...(service === undefined ? {} : { adapter: service.adapter }),
    maxHttpBufferSize: settings.maxPayloadBytes,
    serveClient: false,
    // A transport that does not join the namespace soon is closed: it holds a connection of the caps below.
    connectTimeout: 5000,
    // Pages of other origins are refused below, before any transport starts; CORS then only has to answer the rest.
    cors: { origin: true },
    allowRequest(request, callback) {
      const address = request.socket.remoteAddress ?? 'unknown';
      const refuse = (reason: string, message: string): void => {
        metrics.refused.inc({ reason });
        logger.warn({ origin: request.headers.origin, address }, message);
        callback(message, false);
      };
      const refusal = originRefusal(request.headers.origin, request.headers.host, options.allowedOrigins, loopbackOnly);
      if (refusal !== null) return refuse('origin', refusal);
      // Counted when the connection opens; a long-polling request of an open one is not a new connection.
      const opening = new URL(request.url ?? '/', 'http://localhost').searchParams.get('sid') === null;
      if (opening && io.engine.clientsCount >= maxConnections) {
        return refuse('connections', `the server has ${maxConnections} connections, the most it takes`);
      }
      if (opening && (perAddress.get(address) ?? 0) >= maxPerAddress) {
        return refuse('address_connections', `${maxPerAddress} connections from ${address} are open already`);
      }
      callback(null, true);
    },
  });
  const metrics = createSignalingMetrics(
    {
      stats: () => membership.stats(),
      connections: () => io.engine.clientsCount,
      nodeSnapshots: () => membership.localSnapshots(),
    },
    options.exportNodeMetrics ?? true,
    service === undefined ? undefined : service.processId,
  );
  const startedAt = now();

  httpServer.on('request', (request: IncomingMessage, response: ServerResponse) => {
    // Socket.IO answers its own path (long-polling) from a listener of its own, which runs for every request, as this
    // one does (it was added after Socket.IO's): this one must leave that path alone, or both would answer.
    if (request.url?.startsWith(SOCKET_IO_PATH) === true) return;
    void onRequest(request, response).catch((error: unknown) => {
      logger.error({ err: error, url: request.url }, 'http request failed');
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });

  async function onRequest(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const pathname = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (pathname === '/healthz') {
      const stats = await membership.stats();
      const body = JSON.stringify({
        ok: true,
        uptimeSeconds: Math.round((now() - startedAt) / 1000),
        clusters: stats.clusters,
        members: stats.alive + stats.suspect,
        suspect: stats.suspect,
        inGrace: stats.inGrace,
        outOfView: stats.outOfView,
        connections: io.engine.clientsCount,
        secured: secret !== undefined,
        ...(service === undefined ? {} : { process: service.processId }),
      });
      response.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
      response.end(body);
      return;
    }
    if (pathname === '/metrics') {
      if (secret !== undefined && !bearerIs(request.headers.authorization, secret)) {
        metrics.refused.inc({ reason: 'metrics_unauthorized' });
        response.writeHead(401, { 'WWW-Authenticate': 'Bearer realm="dynamesh metrics"', 'Cache-Control': 'no-store' });
        response.end('this server has a secret: /metrics needs Authorization: Bearer <secret>\n');
        return;
      }
      const body = await metrics.registry.metrics();
      response.writeHead(200, { 'Content-Type': metrics.registry.contentType, 'Cache-Control': 'no-store' });
      response.end(body);
      return;
    }
    await serveStatic(request, response, options.staticDir);
  }

  const room = clusterRoom;

  /**
   * Sends `payload` as `event` to the connection holding node `nodeId` of `cluster`, on whichever process it is:
   * every relay to a node goes through here.
   */
  function deliverToNode<E extends keyof ServerToClientEvents>(
    cluster: string,
    nodeId: string,
    event: E,
    ...payload: Parameters<ServerToClientEvents[E]>
  ): void {
    io.to(nodeRoom(cluster, nodeId)).emit(event, ...payload);
  }

  /**
   * Relays to member `to` of the sender's view, as `event`, what `payload` makes of the sender's node id, once the
   * store agrees both are connected members of one view: the one path of every relayed event (`signal`, and any
   * added after it), wherever `to` is connected.
   */
  async function relayToMember<E extends keyof ServerToClientEvents>(
    socket: ClientSocket,
    to: string,
    event: E,
    payload: (from: string) => Parameters<ServerToClientEvents[E]>,
  ): Promise<Reply> {
    const route = await membership.route(socket.id, to);
    if (!route.ok) return fail(route.code, route.message);
    const seat = membership.seat(socket.id);
    if (seat === undefined) return fail('ERR_NOT_JOINED', 'this connection has not joined a cluster; join first');
    deliverToNode(seat.cluster, to, event, ...payload(route.from));
    return { response: { ok: true } };
  }

  function publish(changes: Changes | undefined): void {
    if (changes === undefined) return;
    for (const [i, view] of changes.views.entries()) {
      // Every connection of the room joined with the whole view in its acknowledgement: from then on, changes only.
      const delta = changes.deltas?.[i];
      if (delta === undefined) io.to(room(view.cluster)).emit('view', view);
      else io.to(room(view.cluster)).emit('view-delta', delta);
      metrics.viewsPushed.inc();
    }
    for (const failure of changes.failures) {
      metrics.failures.inc({ reason: failure.reason });
      logger.warn(failure, 'member left its view: failure detected');
    }
    for (const grace of changes.graces ?? []) {
      metrics.gracesStarted.inc({ state: grace.state });
      logger.info(grace, 'member silent after announcing its tab hidden or frozen: suspect, kept in its view');
    }
  }

  function reject(
    socket: ClientSocket,
    event: string,
    ack: AckFunction | undefined,
    code: SignalingErrorCode,
    message: string,
  ) {
    metrics.rejected.inc({ event, reason: reasonLabel(code) });
    logger.debug({ socket: socket.id, event, code, message }, 'event rejected');
    ack?.(errorAck(code, message));
  }

  const handlers: { [E in ClientEventName]: (socket: ClientSocket, payload: never) => Promise<Reply> } = {
    async join(socket, request: JoinRequest) {
      if (request.protocol !== PROTOCOL_VERSION) {
        const page =
          request.protocol === undefined ? 'a release without protocol versions' : `protocol ${request.protocol}`;
        return fail(
          'ERR_VERSION_MISMATCH',
          `this page runs ${page} and the server protocol ${PROTOCOL_VERSION}: load the page again to run the server's release`,
        );
      }
      if (request.partitions !== undefined && request.partitions !== settings.partitions) {
        return fail(
          'ERR_INVALID_ARGUMENT',
          `this node's data is filed in ${request.partitions} ring partitions and the cluster uses ` +
            `${settings.partitions}: run the server with --partitions ${request.partitions}, or open the node afresh`,
        );
      }
      let token: string | undefined;
      if (secret !== undefined) {
        if (request.token === undefined) return fail('ERR_UNAUTHORIZED', 'this server needs a token to join');
        const check = verifyToken(request.token, secret, request.cluster, now(), request.nodeId);
        if (!check.ok) return fail('ERR_UNAUTHORIZED', `token refused: ${check.reason}`);
        token = tokenId(request.token);
      }
      const keyCheck =
        service === undefined
          ? nodeKeys.admit(request.cluster, request.nodeId, socket.id, request.proof)
          : await admitShared(service.keys, request.cluster, request.nodeId, socket.id, request.proof);
      if (!keyCheck.ok) return fail('ERR_UNAUTHORIZED', keyCheck.reason);
      const address = socket.conn.remoteAddress;
      const creating = (await membership.view(request.cluster)) === undefined;
      if (creating && (await membership.clusterCount()) >= maxClusters) {
        return fail('ERR_CLUSTER_FULL', `this server holds ${maxClusters} clusters, the most it may`);
      }
      if (creating && (await membership.createdBy(address)) >= maxClustersPerAddress) {
        return fail('ERR_CLUSTER_FULL', `this address created ${maxClustersPerAddress} clusters, the most it may`);
      }
      // What the member will count against (see Membership.held); a member already counting adds nothing.
      const byAddress = `address ${address}`;
      const byToken = token === undefined ? undefined : `token ${token}`;
      const adds = async (holder: string): Promise<boolean> =>
        !(await membership.holds(request.cluster, request.nodeId, holder));
      if ((await adds(byAddress)) && (await membership.held(byAddress)) >= maxIdsPerAddress) {
        return fail('ERR_CLUSTER_FULL', `this address holds ${maxIdsPerAddress} node ids as members, the most it may`);
      }
      if (byToken !== undefined && (await adds(byToken)) && (await membership.held(byToken)) >= maxIdsPerToken) {
        return fail('ERR_CLUSTER_FULL', `this token holds ${maxIdsPerToken} node ids as members, the most it may`);
      }
      if (
        token !== undefined &&
        connectionToken.get(socket.id) !== token &&
        (perToken.get(token) ?? 0) >= maxConnectionsPerToken
      ) {
        return fail(
          'ERR_CLUSTER_FULL',
          `${maxConnectionsPerToken} connections joined with this token, the most it may`,
        );
      }
      const at = now();
      const node = `${request.cluster}\u0000${request.nodeId}`;
      // Both allowances are asked before either is taken from: a join refused by one costs the other nothing.
      const wait = Math.max(addressJoins.wait(address, at), nodeJoins.wait(node, at));
      if (wait > 0) {
        return fail('ERR_RATE_LIMITED', `joining too often: join again in ${Math.ceil(wait / 1000)} s`);
      }
      addressJoins.take(address, at);
      nodeJoins.take(node, at);
      const holders = byToken === undefined ? [byAddress] : [byAddress, byToken];
      const joined = await membership.join(socket.id, request, holders, address);
      if (!joined.ok) return fail(joined.code, joined.message);
      const previousToken = connectionToken.get(socket.id);
      if (token !== previousToken) {
        if (previousToken !== undefined) countToken(previousToken, -1);
        if (token === undefined) connectionToken.delete(socket.id);
        else {
          connectionToken.set(socket.id, token);
          countToken(token, 1);
        }
      }
      if (joined.superseded !== null) {
        // The older connection may be on another process: the adapter carries both to it.
        io.to(joined.superseded).emit('superseded', { cluster: request.cluster, nodeId: request.nodeId });
        io.in(joined.superseded).socketsLeave([room(request.cluster), nodeRoom(request.cluster, request.nodeId)]);
      }
      void socket.join([room(request.cluster), nodeRoom(request.cluster, request.nodeId)]);
      metrics.joins.inc();
      logger.info({ cluster: request.cluster, nodeId: request.nodeId, socket: socket.id }, 'member joined');
      return {
        response: {
          ok: true,
          view: joined.view,
          heartbeatInterval: settings.heartbeatInterval,
          heartbeatTimeout: settings.heartbeatTimeout,
          limits,
          partitions: settings.partitions,
        },
        changes: joined.changes,
      };
    },
    async heartbeat(socket, request: HeartbeatRequest) {
      const beat = await membership.heartbeat(socket.id);
      if (!beat.ok) return fail(beat.code, beat.message);
      const { view } = beat;
      return {
        response: { ok: true, epoch: view.epoch, view: request.epoch === view.epoch ? null : view },
        changes: beat.changes,
      };
    },
    async lifecycle(socket, request: LifecycleRequest) {
      const announced = await membership.lifecycle(socket.id, request.state);
      if (!announced.ok) return fail(announced.code, announced.message);
      logger.debug({ ...membership.seat(socket.id), state: request.state }, 'member lifecycle');
      return { response: { ok: true }, changes: announced.changes };
    },
    async signal(socket, request: SignalRequest) {
      const relayed = await relayToMember(socket, request.to, 'signal', (from) => [{ from, data: request.data }]);
      if (relayed.response.ok) metrics.signalsRelayed.inc();
      return relayed;
    },
    async frame(socket, request: FrameRequest) {
      // The same membership check as a signal's: both ends are connected members of one view.
      const relayed = await relayToMember(socket, request.to, 'frame', (from) => [{ from, data: request.data }]);
      if (relayed.response.ok) {
        metrics.framesRelayed.inc();
        metrics.frameBytesRelayed.inc(request.data.byteLength);
      }
      return relayed;
    },
    async 'report-unreachable'(socket, request: ReportRequest) {
      const report = await membership.report(socket.id, request.nodeId);
      if (!report.ok) return fail(report.code, report.message);
      logger.info(
        { reporter: membership.seat(socket.id), nodeId: request.nodeId, state: report.state },
        'member reported unreachable',
      );
      return { response: { ok: true, state: report.state }, changes: report.changes };
    },
    async metrics(socket, snapshot: MetricsSnapshot) {
      const stored = await membership.setMetrics(socket.id, snapshot);
      return stored.ok ? { response: { ok: true } } : fail(stored.code, stored.message);
    },
    async 'get-metrics'(socket, _request: EmptyRequest) {
      const seat = membership.seat(socket.id);
      if (seat === undefined) return fail('ERR_NOT_JOINED', 'this connection has not joined a cluster; join first');
      return { response: { ok: true, metrics: await membership.metrics(seat.cluster) } };
    },
    async leave(socket, _request: EmptyRequest) {
      const seat = membership.seat(socket.id);
      if (seat === undefined) return { response: { ok: true } };
      const changes = await membership.leave(socket.id);
      void socket.leave(room(seat.cluster));
      void socket.leave(nodeRoom(seat.cluster, seat.nodeId));
      metrics.leaves.inc();
      logger.info({ ...seat, socket: socket.id }, 'member left');
      return { response: { ok: true }, changes };
    },
  };

  async function dispatch(socket: ClientSocket, event: ClientEventName, args: unknown[]): Promise<void> {
    const ack = typeof args.at(-1) === 'function' ? (args.pop() as AckFunction) : undefined;
    if (args.length !== 1) {
      return reject(socket, event, ack, 'ERR_INVALID_ARGUMENT', `${event}: takes exactly one payload object`);
    }
    const validation = VALIDATORS[event](args[0], payloadLimits);
    if (!validation.ok) return reject(socket, event, ack, validation.code, validation.message);
    const { response, changes } = await handlers[event](socket, validation.value as never);
    if (!response.ok) return reject(socket, event, ack, response.error.code, response.error.message);
    // Acknowledge before pushing, so a joining node sees its join accepted before the view it caused.
    ack?.(response);
    publish(changes);
  }

  // Counted at the transport, where a connection starts (and Socket.IO counts it in clientsCount): a client that
  // opens transports and never joins the namespace holds one too, until connectTimeout.
  io.engine.on('connection', (transport: { remoteAddress: string; once(event: 'close', run: () => void): void }) => {
    const address = transport.remoteAddress;
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
    transport.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
  });

  /** The last event still being handled of each connection: close() lets them finish before it lets go of the store. */
  const pending = new Map<string, Promise<void>>();

  io.on('connection', (socket: ClientSocket) => {
    logger.debug({ socket: socket.id }, 'connected');
    const bucket = new TokenBucket(settings.maxEventsPerSecond, settings.maxEventBurst, now);
    const frames = new TokenBucket(settings.maxFramesPerSecond, 2 * settings.maxFramesPerSecond, now);
    socket.use((packet, next) => {
      const [event] = packet;
      const last: unknown = packet.at(-1);
      const ack = packet.length > 1 && typeof last === 'function' ? (last as AckFunction) : undefined;
      const label = typeof event === 'string' && KNOWN_EVENTS.has(event) ? event : 'unknown';
      if (!(label === 'frame' ? frames : bucket).take()) {
        return reject(
          socket,
          label,
          ack,
          'ERR_RATE_LIMITED',
          `too many ${label === 'frame' ? 'frames' : 'events'}; slow down`,
        );
      }
      if (label === 'unknown') {
        return reject(
          socket,
          label,
          ack,
          'ERR_INVALID_ARGUMENT',
          `unknown event ${JSON.stringify(String(event)).slice(0, 80)}`,
        );
      }
      next();
    });
    // One connection's events are handled one after the other, in the order they came: a heartbeat sent after a
    // join must find the join done, whatever the store awaits.
    let queue = Promise.resolve();
    const serially = (what: string, run: () => Promise<void>): void => {
      queue = queue.then(run).catch((error: unknown) => {
        logger.error({ err: error, event: what, socket: socket.id }, 'event handler failed');
      });
      const tail = queue;
      pending.set(socket.id, tail);
      void tail.then(() => {
        if (pending.get(socket.id) === tail) pending.delete(socket.id);
      });
    };
    for (const event of CLIENT_EVENT_NAMES) {
      socket.on(event, (...args: unknown[]) => serially(event, () => dispatch(socket, event, args)));
    }
    socket.on('disconnect', (reason) => {
      logger.debug({ socket: socket.id, reason }, 'disconnected');
      // Socket.IO's 'ping timeout' is the one reason a frozen tab's connection ends with: it cannot answer pings.
      // Every other reason (transport close or error, a client or server disconnect) means the tab or its network
      // went away.
      const cause: DisconnectCause = reason === 'ping timeout' ? 'unanswered' : 'closed';
      serially('disconnect', async () => publish(await membership.disconnect(socket.id, cause)));
      const token = connectionToken.get(socket.id);
      if (token !== undefined) {
        connectionToken.delete(socket.id);
        countToken(token, -1);
      }
    });
  });

  let sweeping = false;
  const sweepTimer = timers.setInterval(() => {
    // A sweep of a shared store that outlasts the interval is not run twice at once.
    if (sweeping) return;
    sweeping = true;
    membership
      .sweep()
      .then(publish)
      .catch((error: unknown) => logger.error({ err: error }, 'failure detection failed'))
      .finally(() => (sweeping = false));
  }, settings.sweepInterval);
  (sweepTimer as { unref?: () => void } | null)?.unref?.();

  try {
    httpServer.listen(settings.port, settings.host);
    await once(httpServer, 'listening');
  } catch (error) {
    timers.clearInterval(sweepTimer);
    await io.close();
    await membership.close();
    await service?.close();
    throw error;
  }
  const address = httpServer.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  let closing: Promise<void> | undefined;
  return {
    httpServer,
    io,
    url,
    port: address.port,
    host: address.address,
    limits,
    metrics,
    logger,
    processId: service?.processId,
    view: (cluster) => membership.knownView(cluster),
    currentView: (cluster) => membership.view(cluster),
    nodeMetrics: (cluster) => membership.metrics(cluster),
    stats: () => membership.stats(),
    sweep: async () => publish(await membership.sweep()),
    close() {
      closing ??= (async () => {
        timers.clearInterval(sweepTimer);
        const closed = httpServer.listening ? once(httpServer, 'close') : Promise.resolve();
        await io.close();
        // Idle keep-alive HTTP connections would hold the server open.
        httpServer.closeAllConnections();
        // So would a WebSocket whose closing handshake the page does not finish (a busy or frozen tab): cut after a grace.
        const cut = setTimeout(() => {
          for (const socket of connections) socket.destroy();
        }, CLOSE_GRACE_MS);
        await closed;
        clearTimeout(cut);
        // The disconnections close() caused are still being written to a shared store, and pushed.
        await Promise.all(pending.values());
        await membership.close();
        await service?.close();
        logger.info('signalling server closed');
      })();
      return closing;
    },
  };
}

function fail(code: SignalingErrorCode, message: string): Reply {
  return { response: errorAck(code, message) };
}

function errorAck(code: SignalingErrorCode, message: string): ErrorAck {
  return { ok: false, error: { code, message } };
}

/** Whether an `Authorization` header carries `Bearer <secret>`, compared in constant time. */
function bearerIs(header: string | undefined, secret: string): boolean {
  const given = Buffer.from(header ?? '');
  const expected = Buffer.from(`Bearer ${secret}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function checkOptions(settings: SignalingSettings): void {
  const { port, heartbeatInterval, heartbeatTimeout } = settings;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0–65535, got ${port}`);
  for (const name of [
    'heartbeatInterval',
    'heartbeatTimeout',
    'sweepInterval',
    'maxMembersPerCluster',
    'maxClusters',
    'maxClustersPerAddress',
    'maxConnections',
    'maxConnectionsPerAddress',
    'maxIdsPerAddress',
    'maxConnectionsPerToken',
    'maxIdsPerToken',
    'maxPayloadBytes',
    'maxSignalBytes',
    'maxFrameBytes',
    'maxFramesPerSecond',
    'maxMetricsEntries',
    'maxEventsPerSecond',
    'maxEventBurst',
  ] as const) {
    const value = settings[name];
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  if (!Number.isFinite(settings.suspectGrace) || settings.suspectGrace < 0) {
    throw new RangeError(`suspectGrace must be a non-negative number, got ${settings.suspectGrace}`);
  }
  if (heartbeatTimeout <= heartbeatInterval) {
    throw new RangeError(
      `heartbeatTimeout (${heartbeatTimeout}) must be more than heartbeatInterval (${heartbeatInterval})`,
    );
  }
  if (settings.maxEventBurst < 1) throw new RangeError('maxEventBurst must be at least 1');
  if (!isPartitionCount(settings.partitions)) {
    throw new RangeError(`partitions must be a power of two from 1 to ${MAX_PARTITIONS}, got ${settings.partitions}`);
  }
  // Nodes relay nothing through a server whose frames are smaller: a frame carries at least one small message whole.
  if (settings.maxFrameBytes < 1024)
    throw new RangeError(`maxFrameBytes must be at least 1024, got ${settings.maxFrameBytes}`);
  if (settings.maxMembersPerCluster > MAX_VIEW_MEMBERS) {
    throw new RangeError(
      `maxMembersPerCluster must be at most ${MAX_VIEW_MEMBERS} (the most members a tab takes in a view), got ${settings.maxMembersPerCluster}`,
    );
  }
}
