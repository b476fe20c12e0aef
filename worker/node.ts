/**
 * One Dynamo node: wires the ring, the coordinator, the replica and hinted handoff to its storage and transport,
 * validates what callers and peers hand it, and owns its timers. It runs unchanged in a Web Worker, in Node and in
 * the seeded simulation, because everything it touches comes in through {@link NodeOptions}.
 */
import { Admission } from './admission.ts';
import { AntiEntropy } from './membership/antientropy.ts';
import { ByteBudget } from './transport/budget.ts';
import { decodeMessage, encodeMessage } from './wire/codec.ts';
import { decodeContext, encodeContext } from './wire/context.ts';
import { Coordinator, type PutRequest } from './replication/coordinator.ts';
import {
  ClosedError,
  DynameshError,
  InvalidArgumentError,
  OverloadedError,
  TooLargeError,
  hasErrorCode,
} from './errors.ts';
import {
  type Clock,
  type Logger,
  type Random,
  type Timers,
  type TimerHandle,
  type Transport,
  silentLogger,
} from './env.ts';
import { Handoff } from './replication/handoff.ts';
import { PartitionTrees } from './membership/merkle.ts';
import { Metrics, type MetricsSnapshot } from './metrics.ts';
import { Holders, type Holding } from './membership/holders.ts';
import { Ownership, type PartitionInfo } from './membership/ownership.ts';
import { HeldFrames } from './membership/strangers.ts';
import { takeOver } from './membership/takeover.ts';
import { type Outgoing, Peers, type Reply, isReply } from './transport/peers.ts';
import {
  DEFAULT_KEY_BOUNDS,
  type KeyBounds,
  MAX_WATCH_LEASE_MS,
  MAX_WATCH_TARGETS,
  MIN_WATCH_LEASE_MS,
  NODE_ID_PATTERN,
  type PeerMessage,
  type ProtocolLimits,
  type KeysAsk,
  type KeysPage,
  type ReadReplyMessage,
  type SyncKeysReplyMessage,
  type WireReceipt,
  limitsFor,
} from './wire/protocol.ts';
import { Rebalancer } from './membership/rebalance.ts';
import { corroborate } from './membership/corroborate.ts';
import { RingHistory } from './membership/ring-history.ts';
import { Replica } from './replication/replica.ts';
import { type Member, Ring } from './ring/ring.ts';
import { MetaSaver } from './storage/meta-saver.ts';
import { ObservedStorage } from './storage/observed.ts';
import { DotHorizon } from './versions/horizon.ts';
import { type ProofCrypto, type Signing, WebCryptoProofs, proofAtStake, signsVersions } from './versions/proof.ts';
import { type CarryingMessage, Provenance } from './versions/provenance.ts';
import type { Storage } from './storage/storage.ts';
import { PartitionSync } from './membership/sync.ts';
import { linkPartners } from './transport/link-policy.ts';
import { type Version, contextOf } from './versions/version.ts';
import { WatchRegistry } from './watch/registry.ts';
import { Watcher } from './watch/watcher.ts';
import { DEFAULT_KEYS_LIMIT, MAX_KEYS_LIMIT, decodeCursor, encodeCursor } from './replication/coverage.ts';
import { type KeysAnswer, coverageQuery } from './replication/coverage-query.ts';
import { listPartition } from './replication/key-listing.ts';

/** Everything a node is made of and its tunables. */
export interface NodeOptions {
  /** This node's id, `[A-Za-z0-9_-]{1,64}`. */
  readonly id: string;
  /** The failure domain (browser profile) this node runs in. */
  readonly domain: string;
  readonly storage: Storage;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly timers: Timers;
  /** Randomness, for anything that must not be predictable. @default Math.random */
  readonly random?: Random;
  /**
   * This node's key, when its id derives from it: it then signs every version it writes (proof.ts). Absent, its
   * versions go unsigned.
   */
  readonly signing?: Signing;
  /** The crypto that checks the proofs of versions peers ship. @default WebCrypto's */
  readonly proofs?: ProofCrypto;
  /** @default a logger that drops everything */
  readonly logger?: Logger;
  /** Replication factor N. @default 3 */
  readonly n?: number;
  /** Default read quorum R. @default 2 */
  readonly r?: number;
  /** Default write quorum W. @default 2 */
  readonly w?: number;
  /** Per-node reply timeout in ms; past it a replica is replaced by a fallback. @default 500 */
  readonly requestTimeout?: number;
  /** How long a put forwarded to its coordinator may take, in ms. @default 4 × requestTimeout */
  readonly forwardTimeout?: number;
  /** How long a peer that timed out is skipped, in ms. @default 4 × requestTimeout */
  readonly suspicionMs?: number;
  /** Ms between hinted-handoff delivery rounds. @default 1000 */
  readonly hintInterval?: number;
  /** Hints delivered per owner per round. @default 64 */
  readonly hintBatch?: number;
  /**
   * Ms between anti-entropy rounds, in each of which this node compares Merkle roots with the other owners of a
   * few of its partitions and repairs what differs; 0 turns anti-entropy off. @default 10000
   */
  readonly antiEntropyInterval?: number;
  /** Bytes per second that anti-entropy may send and ask for, at most. @default 262144 */
  readonly antiEntropyBytesPerSecond?: number;
  /** Bytes per second that partition transfers (joins, re-replication, releases) may move, at most. @default 1048576 */
  readonly transferBytesPerSecond?: number;
  /**
   * Ms a tombstone is kept after every owner of its partition holds it, before it is collected; a node away from
   * the cluster for longer drops what it held on return, so that no collected delete comes back. Days, as
   * Cassandra's `gc_grace_seconds`: a browser closed overnight must come back with its data. @default 864000000 (10 days)
   */
  readonly tombstoneGrace?: number;
  /** Ring partitions Q: the cluster's, the same on every member (tabs take it from the signalling server). @default 256 */
  readonly partitions?: number;
  /** Ring tokens per node T. @default DEFAULT_TOKENS_PER_NODE of ring.ts */
  readonly tokensPerNode?: number;
  /**
   * Size limits of keys, values and frames, as the decoder enforces them; raised where needed to hold the bounds
   * below many times over (see `limitsFor`). @default DEFAULT_LIMITS
   */
  readonly limits?: Partial<ProtocolLimits>;
  /**
   * Most siblings a put may leave of its key, tombstones included; a put that would leave more fails with
   * `ERR_TOO_MANY_SIBLINGS` and stores nothing (a put with the context of a read resolves them). 1..4096.
   * @default 32
   */
  readonly maxSiblings?: number;
  /**
   * Most bytes a put may leave of its key's whole sibling set (key, values and clocks); a put that would leave more
   * fails with `ERR_TOO_LARGE` and stores nothing. 1..67108864. @default 4194304 (4 MiB)
   */
  readonly maxSiblingSetBytes?: number;
  /**
   * The app's gets, puts and deletes this node runs at once, at most; the rest wait their turn (the wait counts in
   * their latency, not against any replica's timeout). @default 2048
   */
  readonly maxActiveRequests?: number;
  /** The app's requests that may wait, at most; one more fails at once with `ERR_OVERLOADED`. @default 50000 */
  readonly maxWaitingRequests?: number;
  /**
   * How long a node holds a watch registration unless the watcher sends it again, ms (it does every third of it);
   * 1000..600000. @default 30000
   */
  readonly watchLeaseMs?: number;
  /** Watches this node runs for its app at once, at most; one more fails with `ERR_TOO_MANY_WATCHES`. 1..1024. @default 1024 */
  readonly maxWatches?: number;
  /**
   * Watch targets this node holds for all watchers together; a watcher's set that would pass it is dropped (every
   * node holds its own app to `maxWatches`, so only a misbehaving one gets there). @default 65536
   */
  readonly maxRegisteredWatches?: number;
}

/** What a watch is of: one key, or every key that starts with `prefix`. */
export type WatchTargetSpec = { readonly key: Uint8Array | string } | { readonly prefix: Uint8Array | string };

/** A change of a watched key, as a get would return it. */
export interface WatchNotice {
  readonly key: Uint8Array;
  /** Every unresolved sibling's value; empty when the key was deleted. */
  readonly values: Uint8Array[];
  /** The opaque context to put over what the notice told. */
  readonly context: string;
}

/** Options of a get. */
export interface GetOptions {
  /** Replicas that must answer, 1..N. @default the node's r */
  readonly r?: number;
}

/** Options of a put. */
export interface PutOptions {
  /** The context of the read this put supersedes; omitted, the put supersedes nothing. */
  readonly context?: string;
  /** Replicas that must acknowledge, the coordinator included, 1..N. @default the node's w */
  readonly w?: number;
  /** Fail with `ERR_STALE_CONTEXT` unless the context has seen every stored version. @default false */
  readonly ifMatch?: boolean;
  /** Ask every replica for a durable (strict) write. @default false */
  readonly durable?: boolean;
}

/** Options of a delete. */
export type DeleteOptions = Omit<PutOptions, 'ifMatch'>;

/** Which nodes answered a get. */
export interface ReadReceipt {
  readonly coordinator: string;
  readonly replied: readonly string[];
}

/** The answer of a get. */
export interface GetResult {
  /** Every unresolved sibling's value; empty when the key is absent or deleted. */
  readonly values: Uint8Array[];
  /** The opaque context to put over what was read. */
  readonly context: string;
  readonly receipt: ReadReceipt;
}

/** Options of {@link DynamoNode.keys}. */
export interface KeysOptions {
  /** List only keys that start with these bytes (a string is taken as its UTF-8). @default every key */
  readonly prefix?: Uint8Array | string;
  /** Most keys in the page, 1 to MAX_KEYS_LIMIT (1000). @default 100 */
  readonly limit?: number;
  /** The cursor of the previous page of the same prefix; omitted, the first page. */
  readonly cursor?: string;
}

/** One page of {@link DynamoNode.keys}. */
export interface KeysResult {
  /** Live keys in byte order, as stored (a string key as its UTF-8). */
  readonly keys: Uint8Array[];
  /** Where the next page starts, or null when there is no more. */
  readonly cursor: string | null;
  /** Messages this node sent to peers for the page. */
  readonly messages: number;
}

/** The answer of a put or delete. */
export interface PutResult {
  /** The opaque context of the new version. */
  readonly context: string;
  /** Who acknowledged, which of them were fallbacks, and where hints are held. */
  readonly receipt: WireReceipt;
}

/** A node's metrics and what it holds. */
export type NodeMetrics = MetricsSnapshot & { readonly members: number; readonly pendingRequests: number };

const encoder = new TextEncoder();

/** Longest string key whose UTF-8 {@link utf8Key} writes itself. */
const SHORT_KEY = 64;

/**
 * The UTF-8 bytes of a string key. A short ASCII key, the common case, is written here a byte per character: a call
 * of `TextEncoder.encode` costs more than that for a few characters (about 1 µs in Node, once per get and put).
 */
function utf8Key(key: string): Uint8Array {
  const n = key.length;
  if (n > SHORT_KEY) return encoder.encode(key);
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c >= 0x80) return encoder.encode(key);
    bytes[i] = c;
  }
  return bytes;
}

/** How long a tombstone held by every owner is kept, and how long a node may be away and keep its copies, ms. */
export const DEFAULT_TOMBSTONE_GRACE = 10 * 24 * 3600 * 1000;

/** The bookkeeping record of the node's last sign of life, in storage meta. */
const LAST_ACTIVE = 'last-active';
/** How long anti-entropy and releases wait for a pause in foreground requests before going on anyway, ms. */
const IDLE_WAIT_MS = 200;
/**
 * How long after a view change a peer's role in the view before it is still honoured, ms: views reach the members
 * at different moments, and a node may act on the view it has until the next one reaches it.
 */
const VIEW_GRACE_MS = 10_000;
/**
 * How long an owner of a partition in an earlier view may still write it on its own word, ms: an old owner releases
 * what it held to the new owners at a budgeted rate, for minutes when the partition is large. Beyond it, a write from
 * a node that does not own the partition is taken only where the other owners vouch for it (corroborate.ts).
 */
const WRITE_GRACE_MS = 10 * 60_000;
/** The bookkeeping record of the ring history (ring-history.ts), in storage meta. */
const RING_HISTORY_RECORD = 'ring-history';
/**
 * The meta record of the first counter each signing node signed (provenance.ts): kept across restarts, so that a
 * node that left before this one last started is still known, and its unsigned versions refused when relayed.
 */
const SIGNERS_RECORD = 'signers';
/**
 * Most requests of one peer served at once. An honest coordinator has at most its admission limit of puts in flight
 * (2,048, each one replicate to this node) plus a few transfer pages; beyond twice that, a peer is flooding.
 */
const MAX_SERVED_PER_PEER = 4096;

/** Bytes of keys one `keys-reply` holds at most, whatever is asked: a small request cannot draw a large answer. */
const KEYS_REPLY_BYTES = 256 * 1024;

/** Bytes a key takes in a `keys-reply` beyond its own, at most (its bin header). */
const KEY_WIRE_OVERHEAD = 5;
/** A pause: no foreground request running, and none ended in the last this many ms. */
const IDLE_QUIET_MS = 10;

/** One Dynamo node. */
export class DynamoNode {
  /** This node's id. */
  readonly id: string;
  /** This node's failure domain. */
  readonly domain: string;
  readonly #options: NodeOptions;
  readonly #n: number;
  readonly #r: number;
  readonly #w: number;
  readonly #limits: ProtocolLimits;
  /** How long a tombstone is kept, and a node may be away and keep its copies, ms. */
  readonly #grace: number;
  readonly #logger: Logger;
  readonly #metrics = new Metrics();
  readonly #peers: Peers;
  readonly #replica: Replica;
  readonly #coordinator: Coordinator;
  readonly #handoff: Handoff;
  /** The node's storage, telling the Merkle trees of every change of the main store. */
  readonly #storage: Storage;
  readonly #trees: PartitionTrees;
  readonly #ownership: Ownership;
  readonly #holders: Holders;
  /** How long a peer may take to answer a `keys` request: it scans up to a thousand partitions. */
  readonly #keysTimeout: number;
  readonly #sync: PartitionSync;
  readonly #rebalancer: Rebalancer;
  readonly #antiEntropy: AntiEntropy | null;
  /** Resolves once the held partitions are loaded (and a node back from a long absence has dropped its copies). */
  readonly #ready: Promise<void>;
  #loaded = false;
  #ring: Ring;
  /** The members the current view has as suspect (see setMembers). */
  #suspects: ReadonlySet<string> = new Set();
  /** Earlier rings, each with when it was replaced: a peer may still act on them for a while. */
  readonly #history = new RingHistory((members) => this.#buildRing(members), WRITE_GRACE_MS);
  /** Whether a store of the ring history is under way, and whether the history changed since it began. */
  /** Stores the ring history (RING_HISTORY_RECORD) as views replace rings. */
  readonly #historySaver: MetaSaver;
  /** Stores what the node knows of who signs since when (SIGNERS_RECORD), kept across restarts. */
  readonly #signersSaver: MetaSaver;
  /** False until the first view arrived: before it, this node knows of no other member to fetch from. */
  #viewed = false;
  /** Messages from nodes outside the view, held for a view that names them. */
  readonly #strangers = new HeldFrames();
  /** Peers heard from since the last view change. */
  readonly #contacted = new Set<string>();
  /** Calls of {@link DynamoNode.#nextView} waiting for the next view. */
  readonly #viewWaiters: (() => void)[] = [];
  /**
   * Requests being served, by the peer that made them. A peer's count stays when it falls to 0: an entry coming and
   * going with nearly every request would make the map rebuild its table every few requests.
   */
  readonly #servingFor = new Map<string, number>();
  /** Foreground requests (client calls and peer requests) running now; background sync yields to them. */
  #inflight = 0;
  /** When the last foreground request ended. */
  #lastForeground = -Infinity;
  /** Background work waiting for the foreground requests running now to end (see {@link DynamoNode.#idle}). */
  readonly #idleWaiters = new Set<() => void>();
  #hintTimer: TimerHandle | undefined;
  #activeTimer: TimerHandle | undefined;
  #closed = false;
  /** The gate of the app's requests. */
  readonly #admission: Admission;
  /** Who signs since when, and what peers may ship (see proof.ts). */
  readonly #provenance: Provenance;
  /** The watches this node serves for others (its own app's included only through {@link DynamoNode.#watcher}). */
  readonly #registry: WatchRegistry;
  /** This node's app's watches. */
  readonly #watcher: Watcher;

  constructor(options: NodeOptions) {
    if (!NODE_ID_PATTERN.test(options.id))
      throw new InvalidArgumentError(`node id ${JSON.stringify(options.id)} is not [A-Za-z0-9_-]{1,64}`);
    if (options.signing !== undefined && !signsVersions(options.id)) {
      throw new InvalidArgumentError(`node id ${options.id} does not derive from a key, so it cannot sign versions`);
    }
    this.id = options.id;
    this.#provenance = new Provenance(options.proofs ?? new WebCryptoProofs(), (node, key) =>
      this.#recentRole(this.#ring.partitionOf(key), (owners) => owners.includes(node)),
    );
    const saver = (name: string, build: () => unknown, what: string): MetaSaver =>
      new MetaSaver({
        // Through the node's storage handle, set below, as every other write of the node.
        storage: { putMeta: (n, value) => this.#storage.putMeta(n, value) },
        name,
        build,
        closed: () => this.#closed,
        onError: (error) => this.#logger.warn({ error: errorText(error) }, `could not store ${what}`),
      });
    this.#historySaver = saver(
      RING_HISTORY_RECORD,
      () => this.#history.record(this.#ring, this.#options.clock.now()),
      'the ring history',
    );
    this.#signersSaver = saver(SIGNERS_RECORD, () => this.#provenance.record(), 'the signing nodes');
    this.domain = options.domain;
    this.#options = options;
    this.#n = positiveInteger(options.n ?? 3, 'n');
    this.#r = quorum(options.r ?? 2, this.#n, 'r');
    this.#w = quorum(options.w ?? 2, this.#n, 'w');
    const bounds = keyBounds(options);
    this.#limits = limitsFor(bounds, options.limits);
    this.#admission = new Admission({
      maxActive: boundOption(options.maxActiveRequests ?? 2048, 1, 'maxActiveRequests'),
      maxWaiting: boundOption(options.maxWaitingRequests ?? 50_000, 0, 'maxWaitingRequests'),
    });
    // Every dot this node stores or scans from its start on tells it how far that dot's node has issued counters
    // (contexts are checked against it).
    const horizon = new DotHorizon(options.clock.now());
    this.#logger = options.logger ?? silentLogger;
    const requestTimeout = options.requestTimeout ?? 500;
    const forwardTimeout = options.forwardTimeout ?? 4 * requestTimeout;
    this.#keysTimeout = forwardTimeout;
    this.#ring = this.#buildRing([{ id: this.id, domain: this.domain }]);
    const partitions = this.#ring.partitions;
    // Partitions known to hold keys: those stored at start and those written since. A tree of any other partition is
    // empty without a scan, which spares a new or lightly loaded node hundreds of storage reads when peers compare.
    const written = new Set<number>();
    let stored: Promise<ReadonlySet<number>> | undefined;
    this.#trees = new PartitionTrees({
      partitions,
      scan: async (partition, page) => {
        stored ??= options.storage.partitionsWithData().then((list) => new Set(list));
        if (!written.has(partition) && !(await stored).has(partition)) return [];
        const keys = await options.storage.scanPartition(partition, page);
        for (const k of keys) horizon.observe(k.siblings);
        return keys;
      },
    });
    this.#storage = new ObservedStorage(options.storage, (key, siblings) => {
      const partition = this.#ring.partitionOf(key);
      written.add(partition);
      this.#trees.update(partition, key, siblings);
      horizon.observe(siblings);
      if (siblings.length > 0) this.#notify(key, siblings);
    });
    this.#ownership = new Ownership(this.#storage);
    this.#peers = new Peers({
      self: this.id,
      clock: options.clock,
      timers: options.timers,
      random: options.random ?? Math.random,
      suspicionMs: options.suspicionMs ?? 4 * requestTimeout,
      send: (to, message) => this.#send(to, message),
      onTimeout: () => this.#metrics.count('timeouts'),
    });
    const owns = (partition: number): boolean => this.#ring.preferenceList(partition, this.#n).includes(this.id);
    const holds = (partition: number): boolean => this.#ownership.holds(partition);
    this.#holders = new Holders({
      self: this.id,
      ring: () => this.#ring,
      isSuspected: (id) => this.#peers.isSuspected(id),
      probe: (peer, partition) => this.#sync.probe(peer, partition),
    });
    const findHolders = (partition: number): Promise<Holding> => this.#holders.find(partition);
    /** An owner of the partition in this view, or in one replaced moments ago: who may store hints and pull keys. */
    const isRecentOwner = (node: string, partition: number): boolean =>
      this.#recentRole(partition, (owners) => owners.includes(node));
    this.#replica = new Replica({
      self: this.id,
      storage: this.#storage,
      metrics: this.#metrics,
      peers: this.#peers,
      holderTimeout: requestTimeout / 2,
      partitionOf: (key) => this.#ring.partitionOf(key),
      owns,
      isOwner: isRecentOwner,
      nextView: (ms) => this.#nextView(ms),
      holds,
      findHolders,
      onlyOther: (node) => this.#ring.members.every((m) => m.id === this.id || m.id === node),
      clock: options.clock,
    });
    this.#coordinator = new Coordinator({
      self: this.id,
      n: this.#n,
      storage: this.#storage,
      holds,
      whenHeld: (partition, patient) => {
        this.#rebalancer.prioritize(partition);
        return this.#ownership.whenHeld(partition, patient === true ? forwardTimeout : requestTimeout, options.timers);
      },
      findHolders,
      probeHolders: (partition) => this.#holders.probe(partition),
      knownHolders: (partition) => this.#holders.known(partition),
      peers: this.#peers,
      metrics: this.#metrics,
      logger: this.#logger,
      requestTimeout,
      forwardTimeout,
      bounds,
      horizon,
      ring: () => this.#ring,
      readLocal: (key) => this.#replica.readLocal(key),
      readWhole: (key) => this.#replica.readWhole(key),
      now: () => options.clock.now(),
      ...(options.signing !== undefined ? { signing: options.signing } : {}),
      // The most recent few, never this node: a put whose context names an unknown version asks each.
      formerOwners: (partition) =>
        this.#history
          .former((ring) => ring.preferenceList(partition, this.#n), this.#ring, options.clock.now(), WRITE_GRACE_MS)
          .filter((id) => id !== this.id)
          .slice(0, 2 * this.#n),
      wasMember: (node) => this.#history.some((ring) => ring.has(node), options.clock.now(), WRITE_GRACE_MS),
      viewSuspects: (node) => this.#suspects.has(node),
    });
    this.#handoff = new Handoff({
      self: this.id,
      n: this.#n,
      storage: this.#storage,
      peers: this.#peers,
      metrics: this.#metrics,
      logger: this.#logger,
      requestTimeout,
      batch: options.hintBatch ?? 64,
      ring: () => this.#ring,
    });
    this.#sync = new PartitionSync({
      storage: this.#storage,
      peers: this.#peers,
      metrics: this.#metrics,
      logger: this.#logger,
      requestTimeout,
      partitions,
      partitionOf: (key) => this.#ring.partitionOf(key),
      limits: this.#limits,
      tree: (partition) => this.#trees.get(partition),
      holds,
      mayCollect: (node, partition) => this.#firstOwnerOf(partition, node),
      mayWrite: (node, partition) => this.#mayWrite(node, partition),
      mayPull: isRecentOwner,
      nextView: (ms) => this.#nextView(ms),
      corroborate: (key, versions, sender, partition) =>
        corroborate(
          {
            self: this.id,
            peers: this.#peers,
            requestTimeout,
            isMember: (id) => this.#ring.has(id),
            readLocal: (k) => this.#storage.get(k),
          },
          key,
          versions,
          this.#ring.preferenceList(partition, this.#n),
          sender,
        ),
      clock: options.clock,
      // Four times what this node's own transfers and repairs may pull, at least 4 MiB/s: peers configured alike
      // never meet it.
      serveBytesPerSecond: Math.max(
        4 * 1024 * 1024,
        4 * ((options.transferBytesPerSecond ?? 1024 * 1024) + (options.antiEntropyBytesPerSecond ?? 256 * 1024)),
      ),
    });
    const idle = (): Promise<void> => this.#idle();
    const ring = (): Ring | null => (this.#viewed && this.#loaded ? this.#ring : null);
    this.#rebalancer = new Rebalancer({
      self: this.id,
      n: this.#n,
      storage: this.#storage,
      peers: this.#peers,
      sync: this.#sync,
      ownership: this.#ownership,
      holders: this.#holders,
      budget: new ByteBudget(options.transferBytesPerSecond ?? 1024 * 1024, options.clock, options.timers),
      metrics: this.#metrics,
      logger: this.#logger,
      timers: options.timers,
      retryMs: Math.max(250, requestTimeout),
      periodMs: Math.max(1000, 10 * requestTimeout),
      ring,
      idle,
    });
    const grace = options.tombstoneGrace ?? DEFAULT_TOMBSTONE_GRACE;
    this.#grace = grace;
    const interval = options.antiEntropyInterval ?? 10_000;
    this.#antiEntropy =
      interval > 0
        ? new AntiEntropy({
            self: this.id,
            n: this.#n,
            storage: this.#storage,
            peers: this.#peers,
            sync: this.#sync,
            ownership: this.#ownership,
            budget: new ByteBudget(
              options.antiEntropyBytesPerSecond ?? 256 * 1024,
              options.clock,
              options.timers,
              idle,
            ),
            metrics: this.#metrics,
            logger: this.#logger,
            clock: options.clock,
            timers: options.timers,
            interval,
            tombstoneGrace: grace,
            ring,
          })
        : null;
    const leaseMs = options.watchLeaseMs ?? 30_000;
    if (!Number.isInteger(leaseMs) || leaseMs < MIN_WATCH_LEASE_MS || leaseMs > MAX_WATCH_LEASE_MS)
      throw new InvalidArgumentError(
        `watchLeaseMs must be an integer from ${MIN_WATCH_LEASE_MS} to ${MAX_WATCH_LEASE_MS}, got ${String(leaseMs)}`,
      );
    this.#registry = new WatchRegistry({
      maxTargets: boundOption(options.maxRegisteredWatches ?? 65_536, 0, 'maxRegisteredWatches'),
    });
    this.#watcher = new Watcher({
      self: this.id,
      n: this.#n,
      ring: () => this.#ring,
      send: (to, targets, lease) =>
        this.#send(to, { type: 'watch', from: this.id, requestId: 0, targets, leaseMs: lease }),
      read: async (key) => (await this.#coordinator.get(key, this.#r)).siblings,
      clock: options.clock,
      timers: options.timers,
      logger: this.#logger,
      leaseMs,
      maxWatches: boundOption(options.maxWatches ?? MAX_WATCH_TARGETS, 1, 'maxWatches'),
    });
    this.#ready = this.#load(grace);
    this.#scheduleHandoff();
  }

  /**
   * Tells the watchers of `key` that this node stored a change of it: each watcher registered here, once per change,
   * and this node's own app. Nothing is sent when nobody watches, so a put pays for watches only when there are some.
   */
  #notify(key: Uint8Array, siblings: readonly Version[]): void {
    if (this.#watcher.size > 0) this.#watcher.notice(key, siblings);
    if (this.#registry.watchers === 0) return;
    const watchers = this.#registry.watchersOf(key, this.#options.clock.now());
    if (watchers.length === 0) return;
    this.#metrics.count('noticesSent', watchers.length);
    for (const watcher of watchers) {
      this.#send(watcher, { type: 'notice', from: this.id, requestId: 0, key, versions: siblings });
    }
  }

  /**
   * Makes good what this node's watches may have missed without a change of view (its page reconnected to the
   * signalling server, its links were down): registers them again and reads every watched key.
   */
  resyncWatches(): void {
    if (!this.#closed) this.#watcher.resync();
  }

  /**
   * Watches `target`: `listener` hears of every change of a watched key that an owner of it stores, at least once and
   * never going back in time (see watch/). Returns the function that ends the watch.
   * @throws TooManyWatchesError past `maxWatches`; InvalidArgumentError for a key or prefix that is empty or too long.
   */
  watch(target: WatchTargetSpec, listener: (notice: WatchNotice) => void): () => void {
    if (this.#closed) throw new ClosedError();
    if (typeof target !== 'object' || target === null)
      throw new InvalidArgumentError('a watch target must be { key } or { prefix }');
    const prefix = 'prefix' in target;
    const key = this.#key(prefix ? target.prefix : (target as { key: Uint8Array | string }).key);
    return this.#watcher.watch({ key, prefix }, (change) =>
      listener({
        key: change.key,
        values: liveValues(change.siblings),
        context: encodeContext(contextOf(change.siblings)),
      }),
    );
  }

  /**
   * Loads the held partitions. A node whose last sign of life is older than the tombstone grace drops every copy it
   * holds: the others may have collected tombstones meanwhile, and its old versions would come back to life. Its
   * partitions are then fetched afresh like a new node's.
   */
  async #load(grace: number): Promise<void> {
    try {
      const now = this.#options.clock.now();
      const lastActive = await this.#storage.getMeta(LAST_ACTIVE);
      const away = typeof lastActive === 'number' && now - lastActive > grace;
      // Whatever the absence: a node's first signed counter never changes.
      this.#provenance.restore(await this.#storage.getMeta(SIGNERS_RECORD));
      if (!away) {
        const history = await this.#storage.getMeta(RING_HISTORY_RECORD);
        this.#history.restore(history, typeof lastActive === 'number' ? lastActive : 0, now);
        await this.#ownership.load();
        // A partition held but not owned in the last ring before the stop was being released: writes went to its
        // owners alone, and no hint is kept for a node outside the preference list, so its copy lacks them however
        // short the absence. Still counted whole, it would be offered as a whole copy to owners fetching the
        // partition, and be whole again should the ring give it back to this node, with nothing to bring it what it
        // missed but the releases of owners it never saw own it (taken only where another owner vouches for them).
        // It is released, or fetched again, as any copy not held.
        const last = this.#history.storedRing(history);
        if (last !== null) await this.#ownership.forgetWhere((p) => !last.preferenceList(p, this.#n).includes(this.id));
        // Away longer than a reload takes (two records of activity missed): writes went on without it, so it keeps
        // its copies but counts none as whole until it has compared it with the partition's holders again (a
        // probe when the roots are equal), and meanwhile reads it answers are completed from them.
        if (typeof lastActive === 'number' && now - lastActive > 2 * activeInterval(grace)) {
          this.#logger.info({ awayMs: now - lastActive }, 'back after an absence: checking every partition held');
          await this.#ownership.forgetAll();
        }
      } else {
        this.#logger.info(
          { awayMs: now - lastActive },
          'back after more than the tombstone grace: dropping old copies',
        );
        await this.#ownership.forgetAll();
        for (const partition of await this.#storage.partitionsWithData()) {
          let after: Uint8Array | undefined;
          for (;;) {
            const page = await this.#storage.scanPartition(
              partition,
              after === undefined ? { limit: 256 } : { after, limit: 256 },
            );
            if (page.length === 0) break;
            for (const k of page) await this.#storage.deleteIfUnchanged(k.key, k.siblings);
            after = page[page.length - 1]!.key;
          }
        }
        // Hints are old copies too: delivered now, they would bring back writes whose tombstones were collected.
        for (let hints = await this.#storage.listHints({ limit: 256 }); hints.length > 0;) {
          for (const h of hints) await this.#storage.deleteHint(h.target, h.key, h.siblings);
          hints = await this.#storage.listHints({ limit: 256 });
        }
      }
      await this.#markActive();
    } catch (error) {
      this.#logger.error({ error: errorText(error) }, 'could not load the held partitions');
    }
    this.#loaded = true;
    if (this.#closed) return;
    this.#saveHistory();
    // What views taught it while it loaded (nothing, where no node signs).
    if (this.#provenance.record().length > 0) this.#signersSaver.save();
    this.#scheduleActive(grace);
    this.#antiEntropy?.start();
    this.#rebalancer.kick();
  }

  /**
   * Stores the ring history (ring-history.ts); changes made while a store is under way are stored once it is done,
   * in one more store of the latest history. A failure is only logged.
   */
  #saveHistory(): void {
    this.#historySaver.save();
  }

  async #markActive(): Promise<void> {
    await this.#storage.putMeta(LAST_ACTIVE, this.#options.clock.now());
  }

  /** Records a sign of life often enough that an absence longer than the grace is noticed on return. */
  #scheduleActive(grace: number): void {
    if (this.#closed) return;
    this.#activeTimer = this.#options.timers.setTimeout(() => {
      this.#markActive()
        .catch((error: unknown) => this.#logger.warn({ error: errorText(error) }, 'could not record activity'))
        .finally(() => this.#scheduleActive(grace));
    }, activeInterval(grace));
  }

  /**
   * Resolves once no foreground request runs and none ended in the last {@link IDLE_QUIET_MS}, or after
   * {@link IDLE_WAIT_MS} so that background work is never starved. It sleeps until the last foreground request ends
   * (or the quiet time is over), rather than polling.
   */
  async #idle(): Promise<void> {
    const { clock, timers } = this.#options;
    const deadline = clock.now() + IDLE_WAIT_MS;
    for (;;) {
      const now = clock.now();
      if (now >= deadline) return;
      const quietAt = this.#lastForeground + IDLE_QUIET_MS;
      if (this.#inflight === 0 && now >= quietAt) return;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          timers.clearTimeout(timer);
          this.#idleWaiters.delete(wake);
          resolve();
        };
        const timer = timers.setTimeout(wake, (this.#inflight === 0 ? Math.min(quietAt, deadline) : deadline) - now);
        if (this.#inflight > 0) this.#idleWaiters.add(wake);
      });
    }
  }

  #foregroundDone(): void {
    this.#inflight--;
    this.#lastForeground = this.#options.clock.now();
    if (this.#inflight === 0) for (const wake of [...this.#idleWaiters]) wake();
  }

  /** Resolves once the node has loaded what it holds. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The other members this node shares partitions with on its current ring, most shared first (link-policy.ts). */
  linkPartners(): string[] {
    return linkPartners(this.#ring, this.id, this.#n);
  }

  /**
   * Every partition this node owns or still stores keys of, with its transfer state and Merkle root. Only the trees of
   * partitions holding keys are kept (merkle.ts): with Q chosen for 1,000 nodes, a node of a small cluster owns
   * thousands of empty partitions.
   */
  async partitions(): Promise<PartitionInfo[]> {
    await this.#ready;
    const ring = this.#ring;
    const stored = await this.#storage.partitionsWithData();
    const listed = [...new Set([...ring.partitionsOf(this.id, this.#n), ...stored])].sort((a, b) => a - b);
    const out: PartitionInfo[] = [];
    for (const p of listed) {
      const owners = ring.preferenceList(p, this.#n);
      const owned = owners.includes(this.id);
      const tree = await this.#trees.get(p);
      const state = owned ? (this.#ownership.holds(p) ? 'held' : 'fetching') : 'releasing';
      out.push({
        partition: p,
        owners,
        state,
        progress: this.#ownership.progress(p),
        keys: tree.keyCount,
        root: tree.rootHex(),
      });
    }
    return out;
  }

  /**
   * How many partitions this node owns but does not hold yet (0 once every transfer in has finished), or -1 before
   * the held partitions are loaded and the first view arrived.
   */
  fetchingCount(): number {
    if (!this.#loaded || !this.#viewed) return -1;
    return this.#ring.partitionsOf(this.id, this.#n).filter((p) => !this.#ownership.holds(p)).length;
  }

  /** Runs one anti-entropy round now (tests, the simulation); resolves with the partitions it repaired. */
  async antiEntropyRound(): Promise<number> {
    await this.#ready;
    return this.#antiEntropy === null ? 0 : this.#antiEntropy.round();
  }

  /** The members of the current view. */
  get members(): readonly Member[] {
    return this.#ring.members;
  }

  /** The ring of the current view. */
  get ring(): Ring {
    return this.#ring;
  }

  /**
   * Resolves at the next change of view, or after `ms`: a peer's request that this node's view does not allow yet
   * may come from a node whose view is newer, and is looked at again under the next one.
   */
  #nextView(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timers = this.#options.timers;
      const waiters = this.#viewWaiters;
      const timer = timers.setTimeout(done, ms);
      function done(): void {
        timers.clearTimeout(timer);
        // Gone from the waiters once settled, so that waits that time out in a steady view do not pile up.
        const at = waiters.indexOf(done);
        if (at >= 0) waiters.splice(at, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  /** Whether `node` is the first owner of `partition` (see {@link DynamoNode.#recentRole}). */
  #firstOwnerOf(partition: number, node: string): boolean {
    return this.#recentRole(partition, (owners) => owners[0] === node);
  }

  /**
   * Whether `node` may write `partition` on its own word: it owns the partition, or did in a view of the last
   * {@link WRITE_GRACE_MS}. A node's claim to hold a partition is its own word, so it does not count: an old owner
   * releasing to a node that joined since is vouched for by the other owners (corroborate.ts), and what the
   * receiver fetched from it already is taken without asking.
   */
  #mayWrite(node: string, partition: number): boolean {
    return node === this.id || this.#recentRole(partition, (owners) => owners.includes(node), WRITE_GRACE_MS);
  }

  /**
   * Whether the owners of `partition` pass `test` in this node's view, or did in an earlier view replaced less than
   * `graceMs` ago (views reach the members at different times).
   */
  #recentRole(
    partition: number,
    test: (owners: readonly string[]) => boolean,
    graceMs: number = VIEW_GRACE_MS,
  ): boolean {
    if (test(this.#ring.preferenceList(partition, this.#n))) return true;
    const now = this.#options.clock.now();
    return this.#history.some((ring) => test(ring.preferenceList(partition, this.#n)), now, graceMs);
  }

  /**
   * Replaces the view. This node is always part of its own ring, even when the view leaves it out (then with the
   * placement it last had). `suspects` are the members the view has as suspect (the server stopped hearing their
   * heartbeats): failed rather than busy, which a put tells apart (see Replication in rounds.ts).
   */
  setMembers(members: readonly Member[], suspects: readonly string[] = []): void {
    this.#suspects = new Set(suspects);
    const self = this.#ring.members.find((m) => m.id === this.id) ?? { id: this.id, domain: this.domain };
    const view = members.some((m) => m.id === this.id) ? members : [...members, self];
    if (this.#provenance.learn(members) && this.#loaded) this.#signersSaver.save();
    // Only rings that placed partitions differently: a member turning suspect and back changes the view, not them.
    const changed = !sameMembers(this.#ring.members, view);
    if (changed) this.#history.replaced(this.#ring, this.#options.clock.now());
    this.#ring = this.#buildRing(view);
    // Stored once loaded: until then the stored history is yet to be taken back (see #load).
    if (changed && this.#loaded) this.#saveHistory();
    for (const resolve of this.#viewWaiters.splice(0)) resolve();
    this.#viewed = true;
    this.#contacted.clear();
    if (this.#loaded) this.#rebalancer.kick();
    if (changed) this.#watcher.viewChanged();
    const now = this.#options.clock.now();
    for (const message of this.#strangers.release(
      (id) => id !== this.id && this.#ring.has(id),
      now,
      (count) => this.#rejected(count),
    ))
      this.#accept(message);
  }

  /** Handles one frame from peer `from`. Never throws: a malformed frame is counted, logged and dropped. */
  receive(from: string, frame: Uint8Array): void {
    if (this.#closed) return;
    this.#metrics.count('framesReceived');
    let message: PeerMessage;
    try {
      message = decodeMessage(frame, this.#limits);
      if (message.from !== from)
        throw new DynameshError('ERR_MALFORMED_FRAME', `frame from ${from} claims to be from ${message.from}`);
    } catch (error) {
      this.#metrics.count('malformedFrames');
      this.#logger.warn({ from, error: errorText(error) }, 'dropped a malformed frame');
      return;
    }
    if (from === this.id) {
      this.#rejected(1);
      return;
    }
    if (!this.#ring.has(from)) {
      // Perhaps the view naming it has not reached this node yet: held for it, briefly.
      const now = this.#options.clock.now();
      if (!this.#strangers.hold(message, frame.byteLength, now, (count) => this.#rejected(count))) this.#rejected(1);
      return;
    }
    this.#accept(message);
  }

  #rejected(count: number): void {
    this.#metrics.count('rejectedFrames', count);
    this.#logger.warn({ count }, 'dropped frames from a node outside the view');
  }

  /** Handles a decoded message from a member of the view. */
  #accept(message: PeerMessage): void {
    const from = message.from;
    this.#peers.heard(from);
    if (!this.#contacted.has(from)) {
      // The first frame from a peer since the last view: a transfer that could not reach it may now go ahead.
      this.#contacted.add(from);
      if (this.#loaded && this.#viewed) this.#rebalancer.kick();
    }
    if (isReply(message)) {
      if (
        (message.type === 'read-reply' && this.#replyNeedsCheck(message)) ||
        (message.type === 'sync-keys-reply' && this.#provenance.entriesNeedCheck(message.entries, from))
      ) {
        void this.#settleChecked(message);
        return;
      }
      // Half of all frames are replies, which settle their request at once: no promise of #dispatch for them.
      this.#settle(message);
      return;
    }
    void this.#serveRequest(message);
  }

  #settle(message: Reply): void {
    try {
      if (!this.#peers.settle(message)) this.#logger.debug({ from: message.from, type: message.type }, 'late reply');
    } catch (error) {
      this.#logger.error({ from: message.from, type: message.type, error: errorText(error) }, 'request failed');
    }
  }

  /**
   * Whether a read reply carries versions to check before its request takes it (see provenance.ts): against the key
   * the read asked for, or all of signing nodes' versions when the request was no read. A late reply is dropped
   * unread as any other.
   */
  #replyNeedsCheck(message: ReadReplyMessage): boolean {
    if (!this.#peers.waiting(message.from, message.requestId)) return false;
    const key = this.#peers.keyOf(message.requestId);
    if (key === undefined) return message.versions.some(proofAtStake);
    return this.#provenance.needsCheck(key, message.versions, message.from);
  }

  /** Settles a reply that carries versions of signing nodes once they are checked (see proof.ts). */
  async #settleChecked(message: ReadReplyMessage | SyncKeysReplyMessage): Promise<void> {
    try {
      // A read reply's versions are signed over the key asked, which only the request knows.
      const key = message.type === 'read-reply' ? this.#peers.keyOf(message.requestId) : undefined;
      this.#settle(await this.#proven(message, key));
    } catch (error) {
      this.#logger.error({ from: message.from, type: message.type, error: errorText(error) }, 'request failed');
    }
  }

  /** `message` without the versions its sender may not ship, counted and logged (see provenance.ts). */
  async #proven<M extends CarryingMessage>(message: M, key?: Uint8Array): Promise<M> {
    const checked = await this.#provenance.check(message, key);
    if (checked.dropped > 0) {
      this.#metrics.count('unprovenVersions', checked.dropped);
      const dot = checked.first?.dot;
      this.#logger.warn(
        { from: message.from, type: message.type, dropped: checked.dropped, dot: dot && `${dot.node}:${dot.counter}` },
        'dropped versions without a proof of their writer that holds',
      );
    }
    return checked.message;
  }

  /**
   * Serves a request from a peer: one async frame rather than a chain of promises, as every request comes here. At
   * most {@link MAX_SERVED_PER_PEER} of one peer's requests are served at once; past that the peer is answered
   * `ERR_OVERLOADED` at once, and its flood holds no more of this node's memory.
   */
  async #serveRequest(message: PeerMessage): Promise<void> {
    const from = message.from;
    const serving = this.#servingFor.get(from) ?? 0;
    if (serving >= MAX_SERVED_PER_PEER) {
      this.#metrics.count('peerRequestsRefused');
      this.#replyError(
        from,
        message.requestId,
        new OverloadedError(`${serving} requests of ${from} are being served already; retry later`),
      );
      return;
    }
    this.#servingFor.set(from, serving + 1);
    const foreground = !message.type.startsWith('sync-');
    if (foreground) this.#inflight++;
    try {
      await this.#dispatch(message);
    } catch (error) {
      this.#logger.error({ from, type: message.type, error: errorText(error) }, 'request failed');
    } finally {
      if (foreground) this.#foregroundDone();
      this.#servingFor.set(from, this.#servingFor.get(from)! - 1);
    }
  }

  /**
   * Tells the node that a chunk of a large message from peer `from` arrived and more are to come, so that requests
   * waiting for `from` are not timed out while their reply is still on its way.
   */
  progress(from: string): void {
    if (!this.#closed) this.#peers.progress(from);
  }

  /** Counts and logs a frame the transport could not turn into a message (a bad chunk, a non-binary frame). */
  rejectFrame(from: string, reason: string): void {
    if (this.#closed) return;
    this.#metrics.count('malformedFrames');
    this.#logger.warn({ from, reason }, 'dropped a malformed frame');
  }

  async #dispatch(message: PeerMessage): Promise<void> {
    // Nothing is stored or answered before the node knows what it holds and has dropped what it must drop.
    if (!this.#loaded) await this.#ready;
    switch (message.type) {
      case 'replicate-ack':
      case 'read-reply':
      case 'coordinate-reply':
      case 'sync-tree-reply':
      case 'sync-keys-reply':
      case 'keys-reply':
      case 'error':
        if (!this.#peers.settle(message)) this.#logger.debug({ from: message.from, type: message.type }, 'late reply');
        return;
      case 'replicate':
        try {
          const proven = this.#provenance.needsCheck(message.key, message.versions, message.from)
            ? await this.#proven(message)
            : message;
          await this.#replica.replicate(proven);
          this.#peers.reply(message.from, message.requestId, { type: 'replicate-ack' });
        } catch (error) {
          this.#replyError(message.from, message.requestId, error);
        }
        return;
      case 'read':
        try {
          const versions = await this.#replica.read(message);
          this.#peers.reply(message.from, message.requestId, { type: 'read-reply', versions });
        } catch (error) {
          this.#replyError(message.from, message.requestId, error);
        }
        return;
      case 'coordinate':
        try {
          this.#metrics.count('coordinated');
          const outcome = await this.#coordinator.coordinatePut({
            key: message.key,
            value: message.value,
            context: message.context,
            w: quorum(message.w, this.#n, 'w'),
            r: this.#r,
            ifMatch: message.ifMatch,
            durable: message.durable,
          });
          this.#peers.reply(message.from, message.requestId, {
            type: 'coordinate-reply',
            context: outcome.context,
            receipt: outcome.receipt,
          });
        } catch (error) {
          this.#replyError(message.from, message.requestId, error);
        }
        return;
      case 'sync-tree':
        return this.#serve(message, () => this.#sync.serveTree(message));
      case 'sync-keys':
        return this.#serve(message, () => this.#sync.serveKeys(message));
      case 'sync-push':
        return this.#serve(message, () =>
          this.#provenance.entriesNeedCheck(message.entries, message.from)
            ? this.#proven(message).then((proven) => this.#sync.servePush(proven))
            : this.#sync.servePush(message),
        );
      case 'sync-drop':
        return this.#serve(message, () => this.#sync.serveDrop(message));
      case 'watch': {
        const now = this.#options.clock.now();
        this.#registry.sweep(now);
        if (!this.#registry.register(message.from, message.targets, message.leaseMs, now)) {
          this.#metrics.count('watchesRefused', message.targets.length);
          this.#logger.warn(
            { from: message.from, targets: message.targets.length, held: this.#registry.targets },
            'refused a set of watches past maxRegisteredWatches',
          );
        }
        return;
      }
      case 'notice':
        // Only an owner of the key's partition (in this view or one replaced moments ago) stores it and may tell.
        if (this.#recentRole(this.#ring.partitionOf(message.key), (owners) => owners.includes(message.from))) {
          this.#watcher.notice(message.key, message.versions);
        } else this.#metrics.count('noticesRefused');
        return;
      case 'keys':
        // Any member may list keys: it is a read. Only partitions held whole are answered.
        return this.#serve(message, async () => ({
          type: 'keys-reply',
          ...(await this.#serveKeys(message.asks, message.prefix, message.limit)),
        }));
    }
  }

  /**
   * The live keys under `prefix` of each asked partition this node owns and holds whole, in order, until the reply
   * holds {@link KEYS_REPLY_BYTES} of keys (the first asked partition is always answered, so every reply makes
   * progress); the others are refused: those it is fetching, those it does not own, and those it holds but no longer
   * owns (it hands them over to their new owners, and the writes made since went to those, not to it).
   */
  async #serveKeys(asks: readonly KeysAsk[], prefix: Uint8Array, limit: number): Promise<KeysAnswer> {
    const pages: KeysPage[] = [];
    const refused: number[] = [];
    const stored = new Set(await this.#storage.partitionsWithData());
    let room = KEYS_REPLY_BYTES;
    for (const { partition, after } of asks) {
      if (!this.#servesKeys(partition)) {
        refused.push(partition);
        continue;
      }
      if (room <= 0) break;
      if (!stored.has(partition)) {
        pages.push({ partition, keys: [], more: false });
        continue;
      }
      const page = await listPartition(this.#storage, partition, prefix, after, limit, {
        maxKeyBytes: this.#limits.maxKeyBytes,
        maxBytes: room,
      });
      room -= page.bytes + KEY_WIRE_OVERHEAD * page.keys.length;
      pages.push({ partition, keys: page.keys, more: page.more });
    }
    this.#metrics.count('keysServed', pages.length);
    return { pages, refused };
  }

  /**
   * One page of the live keys under a prefix, in byte order: a coverage query that asks every partition of one node
   * holding it (see coverage-query.ts). A key is listed when the node asked for its partition stores a live version
   * of it (R = 1 per partition); a tombstone hides its key.
   */
  async keys(options: KeysOptions = {}): Promise<KeysResult> {
    if (this.#closed) throw new ClosedError();
    const prefix = options.prefix === undefined ? new Uint8Array(0) : this.#prefix(options.prefix);
    const limit = options.limit ?? DEFAULT_KEYS_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_KEYS_LIMIT)
      throw new InvalidArgumentError(`limit must be an integer from 1 to ${MAX_KEYS_LIMIT}, got ${String(limit)}`);
    const after = options.cursor === undefined ? null : decodeCursor(options.cursor, prefix, this.#limits.maxKeyBytes);
    await this.#ready;
    this.#metrics.count('keysQueries');
    const query = coverageQuery(
      {
        self: this.id,
        partitions: this.#ring.partitions,
        candidates: (partition) => this.#keysCandidates(partition),
        // An owner waits for its own copy; another node gives the owners, still fetching, as long once more.
        awaitHeld: (partition) =>
          this.#ring.preferenceList(partition, this.#n).includes(this.id)
            ? this.#ownership.whenHeld(partition, this.#keysTimeout, this.#options.timers)
            : new Promise<boolean>((resolve) =>
                this.#options.timers.setTimeout(() => resolve(true), this.#keysTimeout),
              ),
        partitionOf: (key) => this.#ring.partitionOf(key),
        serveLocal: (asks, p, l) => this.#serveKeys(asks, p, l),
        request: (peer, message) => this.#peers.request(peer, message, this.#keysTimeout),
        logger: this.#logger,
      },
      prefix,
      after,
      limit,
    );
    // A listing cut short by close failed because the node closed, not for want of holders.
    const page = await query.catch((error: unknown) => {
      throw this.#closed ? new ClosedError('the node closed before the listing completed', { cause: error }) : error;
    });
    if (this.#closed) throw new ClosedError('the node closed before the listing completed');
    const last = page.keys[page.keys.length - 1];
    return {
      keys: [...page.keys],
      cursor: page.more && last !== undefined ? encodeCursor(last) : null,
      messages: page.messages,
    };
  }

  /** Whether this node answers a listing of `partition`: it owns it and holds it whole (see #serveKeys). */
  #servesKeys(partition: number): boolean {
    return this.#ownership.holds(partition) && this.#ring.preferenceList(partition, this.#n).includes(this.id);
  }

  /**
   * Who to ask for `partition`: this node when it owns and holds it, then its owners, then other members known to
   * hold it (an owner in a view this node has not seen yet), those suspected last.
   */
  #keysCandidates(partition: number): string[] {
    const owners = this.#ring.preferenceList(partition, this.#n);
    const order = [...owners, ...this.#holders.known(partition).filter((id) => !owners.includes(id))].filter(
      (id) => id !== this.id,
    );
    const live = order.filter((id) => !this.#peers.isSuspected(id));
    const suspected = order.filter((id) => this.#peers.isSuspected(id));
    return this.#servesKeys(partition) ? [this.id, ...live, ...suspected] : [...live, ...suspected];
  }

  #prefix(prefix: Uint8Array | string): Uint8Array {
    let bytes: Uint8Array;
    if (typeof prefix === 'string') bytes = utf8Key(prefix);
    else if (prefix instanceof Uint8Array) bytes = new Uint8Array(prefix);
    else throw new InvalidArgumentError('prefix must be a string or a Uint8Array');
    if (bytes.byteLength > this.#limits.maxKeyBytes)
      throw new TooLargeError('prefix', bytes.byteLength, this.#limits.maxKeyBytes);
    return bytes;
  }

  /** Answers a sync request once the held partitions are known (a source must not claim a copy it lacks). */
  async #serve(message: PeerMessage, answer: () => Promise<Outgoing>): Promise<void> {
    try {
      await this.#ready;
      this.#peers.reply(message.from, message.requestId, await answer());
    } catch (error) {
      this.#replyError(message.from, message.requestId, error);
    }
  }

  /** Reads `key`: every unresolved sibling and one context for them. */
  async get(key: Uint8Array | string, options: GetOptions = {}): Promise<GetResult> {
    return this.#operation('get', async () => {
      const bytes = this.#key(key);
      const r = quorum(options.r ?? this.#r, this.#n, 'r');
      this.#metrics.count('gets');
      const outcome = await this.#coordinator.get(bytes, r);
      return {
        values: liveValues(outcome.siblings),
        context: encodeContext(contextOf(outcome.siblings)),
        receipt: { coordinator: outcome.coordinator, replied: outcome.replied },
      };
    });
  }

  /** Writes `value` under `key`, superseding what `options.context` has seen. */
  async put(key: Uint8Array | string, value: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    return this.#operation('put', async () => {
      const bytes = this.#key(key);
      if (!(value instanceof Uint8Array)) throw new InvalidArgumentError('value must be a Uint8Array');
      if (value.byteLength > this.#limits.maxValueBytes)
        throw new TooLargeError('value', value.byteLength, this.#limits.maxValueBytes);
      this.#metrics.count('puts');
      return this.#write(bytes, new Uint8Array(value), options);
    });
  }

  /** Deletes `key` by writing a tombstone over what `options.context` has seen. */
  async delete(key: Uint8Array | string, options: DeleteOptions = {}): Promise<PutResult> {
    return this.#operation('put', async () => {
      const bytes = this.#key(key);
      this.#metrics.count('deletes');
      return this.#write(bytes, null, { ...options, ifMatch: false });
    });
  }

  async #write(key: Uint8Array, value: Uint8Array | null, options: PutOptions): Promise<PutResult> {
    const request: PutRequest = {
      key,
      value,
      context: decodeContext(options.context),
      w: quorum(options.w ?? this.#w, this.#n, 'w'),
      r: this.#r,
      ifMatch: booleanOption(options.ifMatch, 'ifMatch'),
      durable: booleanOption(options.durable, 'durable'),
    };
    const outcome = await this.#coordinator.put(request);
    return { context: encodeContext(outcome.context), receipt: outcome.receipt };
  }

  /** A snapshot of this node's counters and latencies. */
  metrics(): NodeMetrics {
    return {
      ...this.#metrics.snapshot(),
      members: this.#ring.members.length,
      pendingRequests: this.#peers.pendingCount,
    };
  }

  /** Stops the timers and ends every waiting request; later calls fail with `ERR_CLOSED`. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#hintTimer !== undefined) this.#options.timers.clearTimeout(this.#hintTimer);
    if (this.#activeTimer !== undefined) this.#options.timers.clearTimeout(this.#activeTimer);
    this.#rebalancer.close();
    this.#antiEntropy?.close();
    this.#ownership.close();
    this.#watcher.close();
    this.#peers.close();
  }

  async #operation<T>(kind: 'get' | 'put', run: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError();
    const started = this.#options.clock.now();
    this.#inflight++;
    try {
      const result = await this.#admission.run(run);
      if (this.#closed) throw new ClosedError('the node closed before the request completed');
      this.#metrics.observe(kind, this.#options.clock.now() - started);
      return result;
    } catch (error) {
      if (hasErrorCode(error, 'ERR_INVALID_ARGUMENT') || hasErrorCode(error, 'ERR_TOO_LARGE')) {
        this.#metrics.count('invalidRequests');
      }
      // A request cut short by close failed because the node closed, not for want of replicas.
      if (this.#closed && !hasErrorCode(error, 'ERR_CLOSED'))
        throw new ClosedError('the node closed before the request completed', { cause: error });
      throw error;
    } finally {
      this.#foregroundDone();
    }
  }

  #key(key: Uint8Array | string): Uint8Array {
    let bytes: Uint8Array;
    if (typeof key === 'string') bytes = utf8Key(key);
    else if (key instanceof Uint8Array) bytes = new Uint8Array(key);
    else throw new InvalidArgumentError('key must be a string or a Uint8Array');
    if (bytes.byteLength === 0) throw new InvalidArgumentError('key must not be empty');
    if (bytes.byteLength > this.#limits.maxKeyBytes)
      throw new TooLargeError('key', bytes.byteLength, this.#limits.maxKeyBytes);
    return bytes;
  }

  #buildRing(members: readonly Member[]): Ring {
    const options: { partitions?: number; tokensPerNode?: number } = {};
    if (this.#options.partitions !== undefined) options.partitions = this.#options.partitions;
    if (this.#options.tokensPerNode !== undefined) options.tokensPerNode = this.#options.tokensPerNode;
    return new Ring(members, options);
  }

  #send(to: string, message: PeerMessage): void {
    this.#metrics.count('framesSent');
    this.#options.transport.send(to, encodeMessage(message));
  }

  #replyError(to: string, requestId: number, error: unknown): void {
    const known = error instanceof DynameshError;
    if (!known) this.#logger.error({ error: errorText(error) }, 'request failed unexpectedly');
    const quorumCounts = error as { required?: unknown; acknowledged?: unknown };
    this.#peers.reply(to, requestId, {
      type: 'error',
      code: known ? error.code : 'ERR_STORAGE',
      message: errorText(error).slice(0, 1024),
      required: typeof quorumCounts.required === 'number' ? quorumCounts.required : null,
      acknowledged: typeof quorumCounts.acknowledged === 'number' ? quorumCounts.acknowledged : null,
    });
  }

  #scheduleHandoff(): void {
    if (this.#closed) return;
    this.#hintTimer = this.#options.timers.setTimeout(() => {
      this.#handoff
        .deliverRound()
        .catch((error: unknown) => this.#logger.warn({ error: errorText(error) }, 'hinted handoff round failed'))
        .finally(() => this.#scheduleHandoff());
    }, this.#options.hintInterval ?? 1000);
  }

  /**
   * Takes over what a retired node left in `source`, its storage, which no node runs any more and which the caller
   * deletes afterwards. Like the node itself on its return, a retired node whose last sign of life is older than the
   * tombstone grace holds nothing that may come back (a tombstone may have been collected since), so nothing is
   * taken. Otherwise its keys are merged into this node's storage, where versions resolve as any replica write does
   * (nothing superseded returns), and its hints join this node's; the rebalancer then releases, page by page, each
   * partition this node does not own to that partition's owners, and hinted handoff delivers the hints. The source
   * keeps its keys; its hints are removed as they are taken, which is how the listing pages through them.
   */
  async absorb(source: Storage): Promise<{ keys: number; hints: number; dropped: boolean }> {
    await this.#ready;
    const lastActive = await source.getMeta(LAST_ACTIVE);
    if (typeof lastActive !== 'number' || this.#options.clock.now() - lastActive > this.#grace) {
      this.#logger.info({ lastActive }, 'retired node was away longer than the tombstone grace: nothing taken');
      return { keys: 0, hints: 0, dropped: true };
    }
    const { keys, hints } = await takeOver(source, {
      self: this.id,
      storage: this.#storage,
      partitionOf: (key) => this.#ring.partitionOf(key),
      idle: () => this.#idle(),
      closed: () => this.#closed,
    });
    this.#logger.info({ keys, hints }, 'took over a retired node');
    if (this.#loaded && this.#viewed) this.#rebalancer.kick();
    return { keys, hints, dropped: false };
  }
}

/** The values of `siblings` that are not tombstones, in order: a loop, as every get makes this list. */
function liveValues(siblings: readonly Version[]): Uint8Array[] {
  const values: Uint8Array[] = [];
  for (let i = 0; i < siblings.length; i++) {
    const value = siblings[i]!.value;
    if (value !== null) values.push(value);
  }
  return values;
}

/**
 * True when `view` has exactly the members of `ring`, each in the same domain and with the same placement: the ring
 * it builds is the same.
 */
function sameMembers(ring: readonly Member[], view: readonly Member[]): boolean {
  if (ring.length !== view.length) return false;
  const byId = new Map(ring.map((m) => [m.id, m]));
  return view.every((m) => {
    const was = byId.get(m.id);
    return was !== undefined && was.domain === m.domain && (was.placement ?? '') === (m.placement ?? '');
  });
}

/** The bounds a node keeps its keys to, checked. */
function keyBounds(options: NodeOptions): KeyBounds {
  const bound = (value: unknown, fallback: number, max: number, name: string): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max)
      throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}, got ${String(value)}`);
    return value;
  };
  return {
    maxSiblings: bound(options.maxSiblings, DEFAULT_KEY_BOUNDS.maxSiblings, 4096, 'maxSiblings'),
    maxSiblingSetBytes: bound(
      options.maxSiblingSetBytes,
      DEFAULT_KEY_BOUNDS.maxSiblingSetBytes,
      64 * 1024 * 1024,
      'maxSiblingSetBytes',
    ),
  };
}

/** Ms between records of a node's last sign of life. */
function activeInterval(grace: number): number {
  return Math.max(1000, Math.min(60_000, grace / 4));
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 16)
    throw new InvalidArgumentError(`${name} must be an integer from 1 to 16, got ${String(value)}`);
  return value;
}

function boundOption(value: number, min: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < min)
    throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}, got ${String(value)}`);
  return value;
}

function quorum(value: unknown, n: number, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > n) {
    throw new InvalidArgumentError(`${name} must be an integer from 1 to N=${n}, got ${String(value)}`);
  }
  return value;
}

function booleanOption(value: unknown, name: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`${name} must be a boolean`);
  return value;
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
