/**
 * `openStore()`: the library a web app embeds. It claims the tab's node identity, starts the node in a dedicated
 * Worker, joins the cluster through the signalling server, connects to the members its node's link policy plans (a
 * partial mesh, bounded by `maxLinks`; frames for the others go through the server's relay), and answers `get`,
 * `put` and `delete` through the node.
 */
import * as Comlink from 'comlink';
import {
  DERIVED_ID_PATTERN,
  type ClusterView,
  type NodeMetrics as ServerNodeMetrics,
  type ViewMember,
} from '../signaling/events.ts';
import {
  ClosedError,
  InvalidArgumentError,
  TooManyWatchesError,
  type ErrorCode,
  errorFromCode,
} from '../worker/errors.ts';
import { type FaultState, validateDelay, validateDropRate, validateNodeIds } from '../worker/transport/faults.ts';
import type { HostConfig, HostMetrics, LogEntry, NodeHost, Outcome, SyncTunables } from '../worker/main.ts';
import type { ReadReceipt, WatchNotice, WatchTargetSpec } from '../worker/node.ts';
import { CallPort } from '../worker/calls.ts';
import type { PartitionInfo } from '../worker/membership/ownership.ts';
import { DEFAULT_CLUSTER_PARTITIONS } from '../worker/ring/ring.ts';
import { DEFAULT_LINK_IDLE_MS, DEFAULT_MAX_LINKS } from '../worker/transport/link-policy.ts';
import type { WireReceipt as Receipt } from '../worker/wire/protocol.ts';
import { claimIdentity, type Identity, nodeDatabase, retireStale } from './identity.ts';
import { nodeCertificate, nodeKey } from './node-key.ts';
import { type DataPlane, Mesh, type PeerState, canTransferDataChannels } from './mesh.ts';
import { metricsSnapshot } from './metrics-snapshot.ts';
import { ServerRelay, relayFrameBytes } from './server-relay.ts';
import { SignalingClient, watchPageLifecycle } from './signaling.ts';
import { type ReadValue, type Value, encodeValue, readValue } from './values.ts';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /**
   * The signalling server, e.g. `http://127.0.0.1:8787`, or a list of the processes of one signalling service on
   * Redis (`['http://a:8787', 'http://b:8787']`): the tab connects to the first and, whenever it loses its server or
   * cannot reach it, to the next one round the list, and joins there again with the same node id and its data.
   */
  readonly url: string | readonly string[];
  /** The cluster to join: `[A-Za-z0-9_-]{1,64}`. */
  readonly cluster: string;
  /** A token minted for the cluster, when the server runs with a secret. */
  readonly token?: string;
  /** Replication factor N; every node of a cluster must use the same. @default 3 */
  readonly n?: number;
  /** Default read quorum. @default 2 */
  readonly r?: number;
  /** Default write quorum. @default 2 */
  readonly w?: number;
  /** Per-node reply timeout, ms. @default 500 */
  readonly requestTimeout?: number;
  /** Ms between hinted-handoff rounds. @default 1000 */
  readonly hintInterval?: number;
  /** Ms between anti-entropy rounds (Merkle roots compared with the other owners); 0 turns it off. @default 10000 */
  readonly antiEntropyInterval?: number;
  /** Bytes per second anti-entropy may move, at most. @default 262144 */
  readonly antiEntropyBytesPerSecond?: number;
  /** Bytes per second partition transfers (joins, re-replication, releases) may move, at most. @default 1048576 */
  readonly transferBytesPerSecond?: number;
  /**
   * Ms a tombstone is kept once every owner holds it; a node away for longer drops its old copies on return.
   * @default 864000000 (10 days)
   */
  readonly tombstoneGrace?: number;
  /** Largest key, bytes. @default 1024 */
  readonly maxKeyBytes?: number;
  /** Largest encoded value, bytes. @default 1048576 */
  readonly maxValueBytes?: number;
  /**
   * Most siblings a put may leave of its key, tombstones included: a put that would leave more fails with
   * `ERR_TOO_MANY_SIBLINGS` and stores nothing (put with the context of a read to resolve them). All nodes of a
   * cluster should use the same. 1..4096. @default 32
   */
  readonly maxSiblings?: number;
  /**
   * Most bytes a put may leave of its key's whole sibling set (key, values, clocks): a put that would leave more
   * fails with `ERR_TOO_LARGE` and stores nothing. 1..67108864. @default 4194304 (4 MiB)
   */
  readonly maxSiblingSetBytes?: number;
  /** How frames reach the worker: `auto` transfers data channels where the browser can, else relays. @default 'auto' */
  readonly dataPlane?: 'auto' | DataPlane;
  /** Ms between pushes of this node's metrics to the server. @default 2000 */
  readonly metricsInterval?: number;
  /** Makes the worker; the default loads the bundled `worker/main.ts` as a module worker. */
  readonly createWorker?: () => Worker;
  /** Gives the store {@link Store.faults}, to cut, slow and thin this node's links for tests and demos. @default false */
  readonly faults?: boolean;
  /**
   * Ms `openStore` waits, at most, for the peer connections to the cluster's members, so that the first request finds
   * them up; a member not reached by then is treated as any unreachable one (fallbacks, hints). @default 5000
   */
  readonly connectWait?: number;
  /**
   * Most peer connections this tab holds at once: its node links the members it shares partitions with first, and
   * the peers it sends to lately; frames for the others go through the signalling server's relay (slower, and
   * rate-limited there). A cluster of at most `maxLinks + 1` members is a full mesh. The default links every partner
   * at any cluster size with the default N and Q (at most about 30), keeps the server's default 64 members a full
   * mesh, and stays far below the 500 connections Chromium allows a tab over its lifetime. ≥ 1. @default 64
   */
  readonly maxLinks?: number;
  /**
   * Ms after its last frame that a connection kept only for use (not to a partner) is closed. Below 5 s, a connection
   * opened on first use may be let go before the bound makes room for it (a connection is kept 5 s after it is made).
   * @default 60000
   */
  readonly linkIdleMs?: number;
  /**
   * Ms after which a node that ran in this browser profile, and that no tab has run since, is retired: the next tab
   * of the cluster to start hands what it held to the cluster and deletes its database. `Infinity` never retires.
   * @default 604800000 (7 days)
   */
  readonly retireAfter?: number;
}

/** Options of {@link Store.get}. */
export interface StoreGetOptions {
  /** Replicas that must answer, 1..N. @default the store's r */
  readonly r?: number;
}

/** Options of {@link Store.put}. */
export interface StorePutOptions {
  /** The context of the read this put supersedes. */
  readonly context?: string;
  /** Replicas that must acknowledge, 1..N. @default the store's w */
  readonly w?: number;
  /** Fail with `ERR_STALE_CONTEXT` unless the context has seen every stored version. @default false */
  readonly ifMatch?: boolean;
  /** Ask every replica for a strict (durable) IndexedDB commit. @default false */
  readonly durable?: boolean;
}

/** Options of {@link Store.delete}. */
export type StoreDeleteOptions = Omit<StorePutOptions, 'ifMatch'>;

/** What a get answers. */
export interface StoreGetResult {
  /**
   * Every unresolved sibling; empty when the key is absent or deleted. A sibling this client cannot decode comes
   * back as an {@link UndecodableValue} holding its bytes (test with `isUndecodable`); the context covers it too.
   */
  readonly values: ReadValue[];
  /** Put with this context to supersede what was read. */
  readonly context: string;
  readonly receipt: ReadReceipt;
}

/** Options of {@link Store.keys}. */
export interface StoreKeysOptions {
  /**
   * List only the keys that start with this prefix: a string matches keys given as strings by their UTF-8, bytes
   * match the key bytes. Its type also says how keys come back (see {@link StoreKeysResult.keys}). @default ''
   */
  readonly prefix?: string | Uint8Array;
  /** Most keys in the page, 1 to 1000. @default 100 */
  readonly limit?: number;
  /** The `cursor` of the previous page of the same prefix; omitted (or null), the first page. */
  readonly cursor?: string | null;
}

/** One page of {@link Store.keys}. */
export interface StoreKeysResult {
  /**
   * Live keys, in byte order of their UTF-8 or bytes. The store keeps a key's bytes, not whether it was given as a
   * string: with a string prefix each key comes back as a string when its bytes are valid UTF-8 (every key given as
   * a string is) and as a `Uint8Array` otherwise; with a `Uint8Array` prefix every key comes back as bytes.
   */
  readonly keys: (string | Uint8Array)[];
  /** Pass it as `cursor` for the next page; null when there is no more. Opaque base64url text. */
  readonly cursor: string | null;
}

/** What a put or delete answers. */
export interface StorePutResult {
  /** The new version's context. */
  readonly context: string;
  readonly receipt: Receipt;
}

/** What {@link Store.watch} watches: a key, or every key starting with `prefix` (both non-empty). */
export type StoreWatchTarget = string | Uint8Array | { readonly prefix: string | Uint8Array };

/** A change of a watched key, as a get would have returned it just after the write. */
export interface StoreWatchNotice {
  /** The key that changed: a string when the watch was given a string, else bytes. */
  readonly key: string | Uint8Array;
  /** Every unresolved sibling after the change; empty after a delete. Undecodable ones as in {@link StoreGetResult}. */
  readonly values: ReadValue[];
  /** Put with this context to supersede what the notice told. */
  readonly context: string;
}

/** Most watches one store runs at once. @default 1024 */
export const MAX_STORE_WATCHES = 1024;

/** Events a store emits. */
export interface StoreEvents {
  /** The cluster view changed. */
  membership: ClusterView;
  /** A get found concurrent siblings: resolve them by putting with `context`. */
  conflict: { readonly key: string | Uint8Array; readonly values: ReadValue[]; readonly context: string };
  /** A peer connection changed state. */
  peer: { readonly peer: string; readonly state: PeerState };
  /** The connection to the signalling server went up or down. */
  server: { readonly connected: boolean };
  /** A log entry of the node. */
  log: LogEntry;
  /** Another tab took over this node id (a reload of this tab); this store stops talking to the server. */
  superseded: undefined;
  /**
   * The signalling server now runs another release of dynamesh (it was upgraded while this page stayed open) and
   * refused this store's re-join with `ERR_VERSION_MISMATCH`: the store stops talking to it; load the page again.
   */
  outdated: { readonly message: string };
  /** The store closed. */
  closed: undefined;
}

/** The settings a store's node runs with. */
export interface StoreConfig {
  /** Replication factor. */
  readonly n: number;
  /** Default read quorum. */
  readonly r: number;
  /** Default write quorum. */
  readonly w: number;
  /** Ring partitions Q: the cluster's, told by the signalling server as the node joins (its `--partitions`). */
  readonly partitions: number;
}

/**
 * Faults injected into this tab's node transport. Each call resolves to the faults now in force and their counts.
 * Faults are this node's alone: a cut here drops messages both ways at this node, so one side suffices for a partition.
 */
export interface StoreFaults {
  /**
   * Drops every message between this node and `nodeIds`, on top of earlier cuts; this node's own id cuts it from
   * every peer. Its requests then fail for lack of replicas (`ERR_QUORUM`), as in a real partition.
   */
  isolate(nodeIds: readonly string[]): Promise<FaultState>;
  /** Ends isolation, loss and delay; messages held by the delay go out at once. */
  heal(): Promise<FaultState>;
  /** Drops each message in or out with probability `p` (0..1, else `ERR_INVALID_ARGUMENT`). */
  dropRate(p: number): Promise<FaultState>;
  /** Holds each outgoing message `ms` (0..60000, else `ERR_INVALID_ARGUMENT`), keeping their order per peer. */
  delay(ms: number): Promise<FaultState>;
  /** The faults in force and the counts of messages dropped and delayed. */
  state(): Promise<FaultState>;
}

/** A key-value store backed by this tab's node and its cluster. */
export interface Store {
  /**
   * This tab's node id. A reload keeps it; a new tab, or a tab of a restarted browser, runs a node this profile ran
   * before and no open tab runs (with its data), or a new one when every such node is running; a duplicated tab is
   * another node.
   */
  readonly nodeId: string;
  /** This browser profile's failure domain. */
  readonly domain: string;
  readonly cluster: string;
  /** How frames reach the worker in this tab. */
  readonly dataPlane: DataPlane;
  /** The node's replication and quorum settings. */
  readonly config: StoreConfig;
  /** Fault injection; present only when the store was opened with `faults: true` (`'faults' in store` is false otherwise). */
  readonly faults?: StoreFaults;
  /** The members of the current view. */
  members(): ViewMember[];
  /** The current view, with its epoch. */
  view(): ClusterView | null;
  get(key: string | Uint8Array, options?: StoreGetOptions): Promise<StoreGetResult>;
  put(key: string | Uint8Array, value: Value, options?: StorePutOptions): Promise<StorePutResult>;
  delete(key: string | Uint8Array, options?: StoreDeleteOptions): Promise<StorePutResult>;
  /**
   * Calls `listener` after each write of the watched key (or of any key under `{ prefix }`) is stored, with the key's
   * siblings and a context to put over them; returns the function that ends the watch. At least once, never back in
   * time for a key (a notice older than or equal to the last one delivered is dropped); a key watch also hears the
   * key's value when it starts (if it has one), and reads the key again whenever its owners change. See the README
   * for the costs. Throws `ERR_INVALID_ARGUMENT` for an empty key or prefix, `ERR_TOO_MANY_WATCHES` past
   * {@link MAX_STORE_WATCHES}; a watch the node refuses afterwards (a key over `maxKeyBytes`) is ended and logged.
   */
  watch(target: StoreWatchTarget, listener: (notice: StoreWatchNotice) => void): () => void;
  /**
   * One page of the live keys under `prefix`, in key order: a coverage query that asks every partition of the ring of
   * one node holding it (this node first), so its cost grows with the cluster's partitions, not with the page. A key
   * is listed when the node asked for its partition stores a live version of it (eventual: R = 1 per partition).
   * `ERR_QUORUM` when no node holding some partition answers; `ERR_INVALID_ARGUMENT` for a bad limit, prefix or
   * cursor.
   */
  keys(options?: StoreKeysOptions): Promise<StoreKeysResult>;
  /** This node's counters, latencies, storage and links. */
  metrics(): Promise<HostMetrics>;
  /**
   * Every partition this node owns or still stores keys of: `held`, `fetching` (a join or re-replication streaming
   * it in) or `releasing` (handing it to its new owners), with progress, key count and Merkle root. Replicas of a
   * partition are identical when their roots are.
   */
  partitions(): Promise<PartitionInfo[]>;
  /** The metrics every member pushed to the signalling server. */
  clusterMetrics(): Promise<Record<string, ServerNodeMetrics>>;
  /** The state of each peer connection. */
  peers(): Record<string, PeerState>;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void;
  /** Leaves the cluster, stops the worker, releases the node id. Idempotent. */
  close(): Promise<void>;
}

const CLUSTER_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const utf8 = new TextDecoder();

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A listed key as text when its bytes are UTF-8 (as every key given as a string is), else as its bytes. */
function textOrBytes(key: Uint8Array): string | Uint8Array {
  try {
    return strictUtf8.decode(key);
  } catch {
    return key;
  }
}

/**
 * Starts this tab's node and joins `options.cluster`. Rejects with `ERR_UNAUTHORIZED` for refused credentials,
 * `ERR_VERSION_MISMATCH` when the signalling server runs another release of dynamesh, `ERR_TIMEOUT` when no server
 * answers.
 */
export async function openStore(options: OpenStoreOptions): Promise<Store> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
  const urls: unknown = options.url;
  const isUrl = (url: unknown): boolean => typeof url === 'string' && url !== '';
  if (!(isUrl(urls) || (Array.isArray(urls) && urls.length > 0 && urls.every(isUrl)))) {
    throw new InvalidArgumentError('url must be a URL or a non-empty list of URLs');
  }
  if (typeof options.cluster !== 'string' || !CLUSTER_PATTERN.test(options.cluster)) {
    throw new InvalidArgumentError('cluster must match [A-Za-z0-9_-]{1,64}');
  }
  if (options.faults !== undefined && typeof options.faults !== 'boolean') {
    throw new InvalidArgumentError('faults must be a boolean');
  }
  const { connectWait } = options;
  if (connectWait !== undefined && (typeof connectWait !== 'number' || !(connectWait >= 0))) {
    throw new InvalidArgumentError('connectWait must be a number of ms ≥ 0');
  }
  const { maxLinks, linkIdleMs } = options;
  if (maxLinks !== undefined && !(Number.isSafeInteger(maxLinks) && maxLinks >= 1)) {
    throw new InvalidArgumentError('maxLinks must be an integer ≥ 1');
  }
  if (linkIdleMs !== undefined && !(typeof linkIdleMs === 'number' && linkIdleMs > 0)) {
    throw new InvalidArgumentError('linkIdleMs must be a number of ms > 0');
  }
  const { retireAfter } = options;
  if (retireAfter !== undefined && (typeof retireAfter !== 'number' || Number.isNaN(retireAfter) || retireAfter < 0)) {
    throw new InvalidArgumentError('retireAfter must be a number of ms ≥ 0');
  }
  const identity = await claimIdentity({ cluster: options.cluster });
  try {
    return await DynameshStore.open(options, identity);
  } catch (error) {
    identity.release();
    throw error;
  }
}

type Listener = (payload: never) => void;

class DynameshStore implements Store {
  readonly nodeId: string;
  readonly domain: string;
  readonly cluster: string;
  readonly dataPlane: DataPlane;
  #config: StoreConfig;
  // Declared only: the property exists on a store opened with faults and nowhere else.
  declare readonly faults?: StoreFaults;
  readonly #identity: Identity;
  readonly #worker: Worker;
  readonly #host: Comlink.Remote<NodeHost>;
  /** Gets, puts and deletes, in a batch per task (comlink carries the rest). */
  readonly #calls: CallPort;
  readonly #mesh: Mesh;
  /** The worker's signalling relay: frames and link plans out, relayed frames in. */
  readonly #relay: ServerRelay;
  readonly #listeners = new Map<keyof StoreEvents, Set<Listener>>();
  /** The app's watches by id: the listener, and whether keys go to it as strings. */
  readonly #watches = new Map<
    number,
    { readonly listener: (notice: StoreWatchNotice) => void; readonly text: boolean }
  >();
  #lastWatch = 0;
  #signaling: SignalingClient | undefined;
  #metricsTimer: ReturnType<typeof setInterval> | undefined;
  #stopLifecycle: (() => void) | undefined;
  readonly #retiring = new AbortController();
  /** The retirement of unused nodes started with the store; it settles soon after the node closes. */
  #retirement: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(options: OpenStoreOptions, identity: Identity, worker: Worker, dataPlane: DataPlane) {
    this.nodeId = identity.nodeId;
    this.domain = identity.domain;
    this.cluster = options.cluster;
    this.dataPlane = dataPlane;
    this.#config = Object.freeze({
      n: options.n ?? 3,
      r: options.r ?? 2,
      w: options.w ?? 2,
      partitions: DEFAULT_CLUSTER_PARTITIONS,
    });
    this.#identity = identity;
    this.#worker = worker;
    this.#host = Comlink.wrap<NodeHost>(worker);
    const { port1, port2 } = new MessageChannel();
    this.#calls = new CallPort(port1);
    // Comlink keeps the order of calls, so this reaches the worker before anything that could use the port.
    void this.#host.attachCalls(Comlink.transfer(port2, [port2])).catch(() => {});
    void this.#host
      .receiveNotices(Comlink.proxy((id: number, notice: WatchNotice) => this.#notice(id, notice)))
      .catch(() => {});
    this.#mesh = new Mesh({
      self: identity.nodeId,
      cluster: options.cluster,
      host: this.#host,
      dataPlane,
      maxLinks: options.maxLinks ?? DEFAULT_MAX_LINKS,
      signal: (to, data) => this.#signaling?.signal(to, data),
      onPeerState: (peer, state) => this.#emit('peer', { peer, state }),
      onUnreachable: (peer) => this.#signaling?.reportUnreachable(peer),
      onRefused: (peer, reason) => {
        const msg = 'refused a peer connection whose certificate its node did not vouch for';
        this.#emit('log', { time: Date.now(), level: 'warn', msg, fields: { peer, reason } });
      },
    });
    this.#relay = new ServerRelay({
      frame: (to, frame) => this.#signaling?.frame(to, frame),
      plan: (peers) => this.#mesh.plan(peers),
    });
    if (options.faults === true) {
      Object.defineProperty(this, 'faults', { value: this.#faultControls(), enumerable: true });
    }
  }

  get config(): StoreConfig {
    return this.#config;
  }

  static async open(options: OpenStoreOptions, identity: Identity): Promise<DynameshStore> {
    const requested = options.dataPlane ?? 'auto';
    const dataPlane: DataPlane = requested === 'auto' ? (canTransferDataChannels() ? 'transfer' : 'relay') : requested;
    const worker =
      options.createWorker?.() ??
      new Worker(new URL('../worker/main.ts', import.meta.url), { type: 'module', name: 'dynamesh-node' });
    const store = new DynameshStore(options, identity, worker, dataPlane);
    try {
      await store.#start(options);
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  async #start(options: OpenStoreOptions): Promise<void> {
    const limits: HostConfig['limits'] = {
      ...(options.maxKeyBytes !== undefined ? { maxKeyBytes: options.maxKeyBytes } : {}),
      ...(options.maxValueBytes !== undefined ? { maxValueBytes: options.maxValueBytes } : {}),
    };
    const bounds: HostConfig['bounds'] = {
      ...(options.maxSiblings !== undefined ? { maxSiblings: options.maxSiblings } : {}),
      ...(options.maxSiblingSetBytes !== undefined ? { maxSiblingSetBytes: options.maxSiblingSetBytes } : {}),
    };
    const config: HostConfig = {
      id: this.nodeId,
      domain: this.domain,
      database: nodeDatabase(this.cluster, this.nodeId),
      n: this.config.n,
      r: this.config.r,
      w: this.config.w,
      requestTimeout: options.requestTimeout ?? 500,
      hintInterval: options.hintInterval ?? 1000,
      sync: syncTunables(options),
      limits,
      bounds,
      ...(options.faults === true ? { faults: true } : {}),
      links: {
        maxLinks: options.maxLinks ?? DEFAULT_MAX_LINKS,
        idleMs: options.linkIdleMs ?? DEFAULT_LINK_IDLE_MS,
      },
    };
    // The node's key signs its joins: the server then lets no one else join under its id. A browser without
    // WebCrypto's Ed25519 (or without IndexedDB to keep the key in) joins unsigned, as before, and says so.
    const key = await nodeKey(this.cluster, this.nodeId).catch((error: unknown) => {
      const msg = 'no node key: joins go unsigned, and this node id is not protected from takeover';
      // Said on the console too: it happens before the app could listen to the store's log.
      console.warn(`dynamesh: ${msg} (${String(error)})`);
      this.#emit('log', { time: Date.now(), level: 'warn', msg, fields: { error: String(error) } });
      return null;
    });
    // A node whose id derives from its key signs every version it writes, so that no member can make one up under
    // its dots (README, Security model).
    const signing = key !== null && DERIVED_ID_PATTERN.test(this.nodeId) ? key.signing : undefined;
    const opened = unwrap(
      await this.#host.open(
        signing === undefined ? config : { ...config, signing },
        Comlink.proxy((entry: LogEntry) => this.#emit('log', entry)),
      ),
    );
    const { signedFrom } = opened;
    if (key !== null) {
      // One certificate per node, its fingerprint signed by the node's key: peers check it against the SDP.
      const certificate = await nodeCertificate(this.cluster, this.nodeId);
      const auth =
        certificate === null ? null : await key.vouch(this.cluster, this.nodeId, certificate).catch(() => null);
      this.#mesh.authenticate({ certificate, auth });
    }
    this.#signaling = await SignalingClient.connect({
      url: options.url,
      cluster: this.cluster,
      nodeId: this.nodeId,
      domain: this.domain,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(signedFrom !== null ? { signedFrom } : {}),
      ...(opened.partitions !== null ? { partitions: opened.partitions } : {}),
      onView: (view) => this.#acceptView(view),
      onSignal: (signal) => this.#mesh.handleSignal(signal.from, signal.data),
      // Posted as they come: the worker's end queues them until it is handed over just below.
      onFrame: (from, frame) => this.#relay.deliver(from, frame),
      onConnection: (connected) => {
        // Back after losing the server: notices may have been missed meanwhile (the node was perhaps failed out of
        // the view and back, or its links were down), and are made good by reads.
        if (connected && this.#watches.size > 0) void this.#host.resyncWatches().catch(() => {});
        this.#emit('server', { connected });
      },
      onSuperseded: () => this.#emit('superseded', undefined),
      onOutdated: (error) => this.#emit('outdated', { message: error.message }),
      onInvalidView: (reason) =>
        this.#emit('log', {
          time: Date.now(),
          level: 'warn',
          msg: 'the signalling server pushed an invalid view: ignored',
          fields: { reason },
        }),
      startHeartbeats: (interval, tick) => this.#startHeartbeats(interval, tick),
      ...(key === null ? {} : { prove: (connection: string) => key.prove(this.cluster, this.nodeId, connection) }),
    });
    // The join told the cluster's Q; the views it pushed meanwhile wait in the host for the node.
    const partitions = this.#signaling.partitions;
    unwrap(await this.#host.start(partitions));
    this.#config = Object.freeze({ ...this.#config, partitions });
    const frameBytes = relayFrameBytes(this.#signaling.limits?.maxFrameBytes);
    const port = this.#relay.take();
    if (port !== undefined) void this.#host.attachServer(Comlink.transfer(port, [port]), frameBytes).catch(() => {});
    // The first request of an app comes right after openStore: it must find the planned peers connected.
    await this.#connected(options.connectWait ?? 5000);
    this.#stopLifecycle = watchPageLifecycle((state) => this.#signaling?.setLifecycle(state));
    this.#metricsTimer = setInterval(() => void this.#pushMetrics(), options.metricsInterval ?? 2000);
    // In the background, once this node is up: it takes over what the retired nodes held.
    this.#retirement = retireStale({
      cluster: this.cluster,
      self: this.nodeId,
      retireAfter: options.retireAfter ?? 7 * 24 * 3600 * 1000,
      signal: this.#retiring.signal,
      retire: async (database) => void unwrap(await this.#host.retire(database)),
    }).then(
      () => {},
      (error: unknown) => {
        if (this.#closing === undefined) console.warn('dynamesh: could not retire an unused node', error);
      },
    );
  }

  /**
   * Resolves once every alive member the node's link policy planned a link to is connected (or refused one for now),
   * or after `ms`: a member that cannot be reached then is left to the relay, the node's timeouts and fallbacks.
   */
  async #connected(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && this.#closing === undefined) {
      const view = this.#signaling?.view;
      const alive = new Set((view?.members ?? []).filter((m) => m.state === 'alive').map((m) => m.id));
      if (this.#mesh.settled(alive)) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Heartbeat ticks from the worker's timer, over a port of their own (see `NodeHost.startHeartbeat` for why). */
  #startHeartbeats(interval: number, tick: () => void): () => void {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => tick();
    this.#host.startHeartbeat(interval, Comlink.transfer(port2, [port2])).catch((error: unknown) => {
      console.error('dynamesh: the worker could not start heartbeats', error);
    });
    return () => {
      port1.close();
      void this.#host.stopHeartbeat().catch(() => {});
    };
  }

  #acceptView(view: ClusterView): void {
    if (this.#closing !== undefined) return;
    // On the calls' port: a get or put made after this view reaches the node after it.
    const members = view.members.map(({ id, domain, placement, signedFrom }) =>
      signedFrom === undefined ? { id, domain, placement } : { id, domain, placement, signedFrom },
    );
    const suspects = view.members.filter((m) => m.state === 'suspect').map((m) => m.id);
    this.#calls.call({ op: 'members', members, suspects }).catch(() => {});
    this.#mesh.update(view.members);
    this.#emit('membership', view);
  }

  members(): ViewMember[] {
    return [...(this.#signaling?.view?.members ?? [])];
  }

  view(): ClusterView | null {
    return this.#signaling?.view ?? null;
  }

  peers(): Record<string, PeerState> {
    return this.#mesh.states();
  }

  async get(key: string | Uint8Array, options: StoreGetOptions = {}): Promise<StoreGetResult> {
    this.#open();
    const result = unwrap(await this.#calls.call({ op: 'get', key, options }));
    // Never throws for a sibling it cannot decode: the caller still gets the context that supersedes it.
    const values = result.values.map(readValue);
    if (values.length > 1) this.#emit('conflict', { key, values, context: result.context });
    return { values, context: result.context, receipt: result.receipt };
  }

  async put(key: string | Uint8Array, value: Value, options: StorePutOptions = {}): Promise<StorePutResult> {
    this.#open();
    const bytes = encodeValue(value);
    return unwrap(await this.#calls.call({ op: 'put', key, value: bytes, options }, [bytes.buffer]));
  }

  async delete(key: string | Uint8Array, options: StoreDeleteOptions = {}): Promise<StorePutResult> {
    this.#open();
    return unwrap(await this.#calls.call({ op: 'delete', key, options }));
  }

  watch(target: StoreWatchTarget, listener: (notice: StoreWatchNotice) => void): () => void {
    this.#open();
    if (typeof listener !== 'function') throw new InvalidArgumentError('listener must be a function');
    const isKey = (k: unknown): k is string | Uint8Array =>
      (typeof k === 'string' || k instanceof Uint8Array) && k.length > 0;
    let spec: WatchTargetSpec;
    let text: boolean;
    if (isKey(target)) {
      spec = { key: target };
      text = typeof target === 'string';
    } else if (typeof target === 'object' && target !== null && isKey((target as { prefix?: unknown }).prefix)) {
      spec = { prefix: target.prefix };
      text = typeof target.prefix === 'string';
    } else {
      throw new InvalidArgumentError('a watch target is a non-empty key or { prefix } with a non-empty prefix');
    }
    if (this.#watches.size >= MAX_STORE_WATCHES)
      throw new TooManyWatchesError(`${this.#watches.size} watches run already, the most a store allows`);
    const id = ++this.#lastWatch;
    this.#watches.set(id, { listener, text });
    void this.#host.watch(id, spec).then(
      (outcome) => {
        if (outcome.ok) return;
        this.#watches.delete(id);
        const msg = `a watch was refused: ${outcome.error.message}`;
        this.#emit('log', { time: Date.now(), level: 'error', msg, fields: { code: outcome.error.code } });
      },
      () => {},
    );
    return () => {
      if (!this.#watches.delete(id) || this.#closing !== undefined) return;
      void this.#host.unwatch(id).catch(() => {});
    };
  }

  #notice(id: number, notice: WatchNotice): void {
    const watch = this.#watches.get(id);
    if (watch === undefined) return;
    const key = watch.text ? utf8.decode(notice.key) : notice.key;
    try {
      watch.listener({ key, values: notice.values.map(readValue), context: notice.context });
    } catch (error) {
      console.error('dynamesh: a watch listener threw', error);
    }
  }

  async keys(options: StoreKeysOptions = {}): Promise<StoreKeysResult> {
    this.#open();
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
    const { prefix = '', limit, cursor } = options;
    if (typeof prefix !== 'string' && !(prefix instanceof Uint8Array)) {
      throw new InvalidArgumentError('prefix must be a string or a Uint8Array');
    }
    if (limit !== undefined && typeof limit !== 'number') throw new InvalidArgumentError('limit must be a number');
    if (cursor !== undefined && cursor !== null && typeof cursor !== 'string') {
      throw new InvalidArgumentError('cursor must be a string returned by keys(), or null');
    }
    // A plain copy of what was checked: anything else on `options` stays on this side.
    const page = unwrap(
      await this.#host.keys({
        prefix,
        ...(limit !== undefined ? { limit } : {}),
        ...(typeof cursor === 'string' ? { cursor } : {}),
      }),
    );
    const keys = typeof prefix === 'string' ? page.keys.map(textOrBytes) : page.keys;
    return { keys, cursor: page.cursor };
  }

  async partitions(): Promise<PartitionInfo[]> {
    this.#open();
    return unwrap(await this.#host.partitions());
  }

  async metrics(): Promise<HostMetrics> {
    this.#open();
    return unwrap(await this.#host.metrics());
  }

  async clusterMetrics(): Promise<Record<string, ServerNodeMetrics>> {
    this.#open();
    return this.#signaling!.clusterMetrics();
  }

  #faultControls(): StoreFaults {
    const call = async (run: () => Promise<Outcome<FaultState>>): Promise<FaultState> => {
      this.#open();
      return unwrap(await run());
    };
    // Arguments are checked here too: what structured clone refuses would fail as a DataCloneError, without a code.
    return Object.freeze({
      isolate: (nodeIds: readonly string[]) =>
        call(() => {
          validateNodeIds(nodeIds);
          return this.#host.isolate([...nodeIds]);
        }),
      heal: () => call(() => this.#host.heal()),
      dropRate: (p: number) =>
        call(() => {
          validateDropRate(p);
          return this.#host.setDropRate(p);
        }),
      delay: (ms: number) =>
        call(() => {
          validateDelay(ms);
          return this.#host.setDelay(ms);
        }),
      state: () => call(() => this.#host.faultState()),
    });
  }

  on<E extends keyof StoreEvents>(event: E, listener: (payload: StoreEvents[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) this.#listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => void set.delete(listener);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#metricsTimer);
      this.#retiring.abort();
      this.#stopLifecycle?.();
      await this.#signaling?.close();
      this.#mesh.close();
      await this.#host.close().catch(() => {});
      // A retirement under way fails once the node is closed, and releases the retired node's lock. Were the worker
      // gone first, its call would never settle and hold that lock until the page goes: safe, but kept from others.
      await settledWithin(this.#retirement, 5000);
      this.#host[Comlink.releaseProxy]();
      this.#worker.terminate();
      this.#calls.close();
      this.#relay.close();
      this.#identity.release();
      this.#emit('closed', undefined);
    })();
    return this.#closing;
  }

  async #pushMetrics(): Promise<void> {
    const outcome = await this.#host.metrics().catch(() => null);
    if (outcome === null || !outcome.ok) return;
    this.#signaling?.pushMetrics(metricsSnapshot(outcome.value));
  }

  #open(): void {
    if (this.#closing !== undefined) throw new ClosedError('the store is closed');
  }

  #emit<E extends keyof StoreEvents>(event: E, payload: StoreEvents[E]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        (listener as (payload: StoreEvents[E]) => void)(payload);
      } catch (error) {
        console.error(`dynamesh: a ${event} listener threw`, error);
      }
    }
  }
}

/** Resolves once `promise` has settled, or after `ms`. */
function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([
    promise.then(
      () => {},
      () => {},
    ),
    timeout,
  ]).finally(() => clearTimeout(timer));
}

function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  const { code, message, required, acknowledged } = outcome.error;
  throw errorFromCode(
    code as ErrorCode,
    message,
    required !== undefined && acknowledged !== undefined ? { required, acknowledged } : undefined,
  );
}

/** The sync tunables the caller set, and only those. */
function syncTunables(options: OpenStoreOptions): SyncTunables {
  const out: { -readonly [K in keyof SyncTunables]: SyncTunables[K] } = {};
  if (options.antiEntropyInterval !== undefined) out.antiEntropyInterval = options.antiEntropyInterval;
  if (options.antiEntropyBytesPerSecond !== undefined)
    out.antiEntropyBytesPerSecond = options.antiEntropyBytesPerSecond;
  if (options.transferBytesPerSecond !== undefined) out.transferBytesPerSecond = options.transferBytesPerSecond;
  if (options.tombstoneGrace !== undefined) out.tombstoneGrace = options.tombstoneGrace;
  return out;
}
