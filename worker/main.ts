/**
 * The entry point of the dedicated Worker that runs one node in a tab. It opens the node's IndexedDB database,
 * builds the {@link DynamoNode} with the real clock and timers, and takes its peer links from the main thread:
 * data channels transferred here, or relay ports. The main thread drives it through comlink; every call answers
 * with an {@link Outcome} instead of throwing, so that error codes survive the boundary intact.
 */
import * as Comlink from 'comlink';
import { deleteDB } from 'idb';
import { DynameshError } from './errors.ts';
import { serveCalls } from './calls.ts';
import { type Logger, systemClock, systemTimers } from './env.ts';
import { type FaultState, Faults } from './transport/faults.ts';
import { type LinkState, Links } from './transport/links.ts';
import { DEFAULT_LINK_IDLE_MS, LinkPolicy, type LinkPolicyOptions } from './transport/link-policy.ts';
import {
  type DeleteOptions,
  DynamoNode,
  type GetOptions,
  type GetResult,
  type KeysOptions,
  type KeysResult,
  type NodeMetrics,
  type NodeOptions,
  type PutOptions,
  type PutResult,
  type WatchNotice,
  type WatchTargetSpec,
} from './node.ts';
import type { PartitionInfo } from './membership/ownership.ts';
import { type KeyBounds, type ProtocolLimits, limitsFor } from './wire/protocol.ts';
import type { Member } from './ring/ring.ts';
import { openIndexedDbStorage } from './storage/indexeddb.ts';
import { PARTITIONS_META, storedPartitions } from './storage/filed-partitions.ts';
import { WebCryptoProofs, firstSignedCounter, webCryptoSigning } from './versions/proof.ts';
import { derivedNodeId } from '../signaling/events.ts';
import type { Storage, StorageStats } from './storage/storage.ts';

/** How the main thread configures the node. */
export interface HostConfig {
  readonly id: string;
  readonly domain: string;
  /** The IndexedDB database of this node: named after cluster and node id. */
  readonly database: string;
  readonly n: number;
  readonly r: number;
  readonly w: number;
  readonly requestTimeout: number;
  readonly hintInterval: number;
  readonly limits: Partial<ProtocolLimits>;
  /** What a put may leave of a key; each defaults as in {@link NodeOptions}. */
  readonly bounds?: Partial<KeyBounds>;
  /** Anti-entropy, transfer and tombstone tunables; each defaults as in {@link NodeOptions}. */
  readonly sync?: SyncTunables;
  /** Lets the page inject faults into this node's transport. @default false */
  readonly faults?: boolean;
  /** The bound on open peer links and when an idle one is let go (link-policy.ts); each defaults there. */
  readonly links?: LinkPolicyOptions;
  /**
   * The node's Ed25519 key (the private key non-extractable, cloned from the page), when its id derives from it: the
   * node then signs every version it writes (versions/proof.ts).
   */
  readonly signing?: { readonly privateKey: CryptoKey; readonly publicKey: Uint8Array };
}

/** What an opened node tells the page, for its join. */
export interface Opened {
  /** The first dot counter the node signs, for its join (`JoinRequest.signedFrom`); null when it does not sign. */
  readonly signedFrom: number | null;
  /**
   * Q of the ring the node's stored data is filed in (`JoinRequest.partitions`); null when it stores nothing yet, so
   * that it takes the cluster's.
   */
  readonly partitions: number | null;
}

/** What {@link NodeHost.retire} did with a retired node's database. */
export interface RetireReport {
  /** Keys merged into this node, to be released to their owners. */
  readonly keys: number;
  /** Hints taken over, to be delivered by this node. */
  readonly hints: number;
  /** True when the retired node had been away longer than the tombstone grace, so nothing was taken. */
  readonly dropped: boolean;
}

/** The node tunables of membership change that a page may set. */
export type SyncTunables = Partial<
  Pick<NodeOptions, 'antiEntropyInterval' | 'antiEntropyBytesPerSecond' | 'transferBytesPerSecond' | 'tombstoneGrace'>
>;

/** A failure as it crosses the worker boundary. */
export interface WireError {
  readonly code: DynameshError['code'];
  readonly message: string;
  readonly required?: number;
  readonly acknowledged?: number;
}

/** The result of a call into the worker. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: WireError };

/** One log entry, forwarded to the page. */
export interface LogEntry {
  readonly time: number;
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

/** A snapshot of what the node holds and does. */
export interface HostMetrics {
  readonly node: NodeMetrics;
  readonly storage: StorageStats;
  readonly links: LinkState[];
  readonly framesDropped: number;
  /** Frames sent and received through the signalling server's relay (peers without an open link). */
  readonly relayedFrames: { readonly sent: number; readonly received: number };
  /** The peers the link policy wants linked now, by priority (link-policy.ts). */
  readonly linkPlan: readonly string[];
  /** The injected faults and what they dropped and held; present only when the node runs with faults. */
  readonly faults?: FaultState;
}

/** Options of {@link NodeHost}. */
export interface NodeHostOptions {
  /**
   * Opens the storage of the node named {@link HostConfig.database}: the always-on node passes its disk engine
   * (storage/level.ts). @default openIndexedDbStorage
   */
  readonly openStorage?: (database: string) => Promise<Storage>;
}

/** The node's side of the worker boundary; in Node.js (the always-on node), the node itself, in process. */
export class NodeHost {
  readonly #openStorage: (database: string) => Promise<Storage>;
  #node: DynamoNode | undefined;
  #database: string | undefined;
  #storage: Storage | undefined;
  #links: Links | undefined;
  #faults: Faults | undefined;
  #onLog: ((entry: LogEntry) => void) | undefined;
  #onNotice: ((id: number, notice: WatchNotice) => void) | undefined;
  /** The page's watches, by the id it gave each. */
  readonly #watches = new Map<number, () => void>();
  #heartbeat: { timer: ReturnType<typeof setInterval>; port: MessagePort } | undefined;
  /** Between {@link open} and {@link start}: what the node is built from, and the latest view, kept for it. */
  #opened:
    | {
        config: HostConfig;
        storedPartitions: number | null;
        members: readonly Member[] | null;
        suspects: readonly string[];
      }
    | undefined;
  #policy: LinkPolicy | undefined;
  /** The page's end of the signalling relay: frames in and out, and the link plan told to the page's mesh. */
  #serverPort: MessagePort | undefined;
  #plan: string[] = [];
  #planned = new Set<string>();
  #planTimer: ReturnType<typeof setInterval> | undefined;
  /** When a send to a peer without a link last made the policy plan again. */
  #unlinkedAt = -Infinity;
  readonly #logger: Logger = {
    debug: () => {},
    info: (fields, msg) => this.#log('info', fields, msg),
    warn: (fields, msg) => this.#log('warn', fields, msg),
    error: (fields, msg) => this.#log('error', fields, msg),
  };

  constructor(options: NodeHostOptions = {}) {
    this.#openStorage = options.openStorage ?? openIndexedDbStorage;
  }

  /**
   * Opens the node's storage and links, and tells what its join needs. The node itself starts once the cluster's Q is
   * known ({@link start}): the join answers it.
   */
  async open(config: HostConfig, onLog?: (entry: LogEntry) => void): Promise<Outcome<Opened>> {
    return attempt(async () => {
      if (this.#storage !== undefined) throw new DynameshError('ERR_INVALID_ARGUMENT', 'the node is already open');
      this.#onLog = onLog;
      const limits = limitsFor(config.bounds, config.limits);
      if (config.signing !== undefined && !(await derivesFrom(config.id, config.signing.publicKey))) {
        throw new DynameshError('ERR_INVALID_ARGUMENT', `node id ${config.id} does not derive from the signing key`);
      }
      const storage = await this.#openStorage(config.database);
      const faults =
        config.faults === true
          ? new Faults({ self: config.id, random: Math.random, clock: systemClock, timers: systemTimers })
          : undefined;
      const policy = new LinkPolicy(config.links ?? {}, () => Date.now());
      this.#policy = policy;
      this.#links = new Links({
        onUse: (peer) => policy.use(peer),
        onUnlinked: (peer) => this.#unlinked(peer),
        maxMessageBytes: limits.maxFrameBytes,
        logger: this.#logger,
        onMessage: (from, message) => this.#node?.receive(from, message),
        onInvalid: (from, reason) => this.#node?.rejectFrame(from, reason),
        onProgress: (from) => this.#node?.progress(from),
        ...(faults !== undefined ? { faults } : {}),
      });
      this.#database = config.database;
      this.#storage = storage;
      this.#faults = faults;
      const signedFrom = config.signing === undefined ? null : await firstSignedCounter(storage);
      const partitions = await storedPartitions(storage);
      this.#opened = { config, storedPartitions: partitions, members: null, suspects: [] };
      return { signedFrom, partitions };
    });
  }

  /** Starts the opened node on a ring of `partitions` partitions, the cluster's Q (`JoinAccepted.partitions`). */
  async start(partitions: number): Promise<Outcome<void>> {
    return attempt(async () => {
      const opened = this.#opened;
      if (opened === undefined || this.#storage === undefined || this.#links === undefined) {
        throw new DynameshError('ERR_INVALID_ARGUMENT', 'open the node before starting it');
      }
      const { config, storedPartitions: stored } = opened;
      if (stored !== null && stored !== partitions) {
        throw new DynameshError(
          'ERR_INVALID_ARGUMENT',
          `the node's data is filed in ${stored} ring partitions and the cluster uses ${partitions}`,
        );
      }
      if (stored === null) await this.#storage.putMeta(PARTITIONS_META, partitions);
      const signing =
        config.signing === undefined
          ? undefined
          : webCryptoSigning(config.signing.privateKey, config.signing.publicKey);
      // Read after the await: views that arrived meanwhile replaced the one kept at the start of this call.
      const members = this.#opened?.members ?? null;
      const suspects = this.#opened?.suspects ?? [];
      this.#opened = undefined;
      this.#node = new DynamoNode({
        id: config.id,
        domain: config.domain,
        storage: this.#storage,
        transport: this.#links,
        clock: systemClock,
        timers: systemTimers,
        logger: this.#logger,
        n: config.n,
        r: config.r,
        w: config.w,
        partitions,
        requestTimeout: config.requestTimeout,
        hintInterval: config.hintInterval,
        ...config.sync,
        ...config.bounds,
        limits: limitsFor(config.bounds, config.limits),
        ...(signing !== undefined ? { signing } : {}),
      });
      // Links used only are let go some time after idleMs; an idle link costs little meanwhile.
      const idleMs = config.links?.idleMs ?? DEFAULT_LINK_IDLE_MS;
      this.#planTimer = setInterval(() => this.#replan(), Math.min(idleMs / 2, 10_000));
      if (members !== null) this.setMembers(members, suspects);
      this.#logger.info(
        { id: config.id, domain: config.domain, database: config.database, partitions, signing: signing !== undefined },
        'node started',
      );
    });
  }

  /** Replaces the view: its members, and those of them it has as suspect (see DynamoNode.setMembers). */
  setMembers(members: readonly Member[], suspects: readonly string[] = []): void {
    if (this.#opened !== undefined) this.#opened = { ...this.#opened, members, suspects };
    const node = this.#node;
    if (node === undefined) return;
    node.setMembers(members, suspects);
    const peers = members.map((m) => m.id).filter((id) => id !== node.id);
    this.#links?.retainRelayed(new Set(peers));
    this.#policy?.setView(peers, node.linkPartners());
    this.#replan();
  }

  /**
   * Takes the page's end of the signalling server's relay: frames for peers without an open link go out on `port` as
   * `{ type: 'frame', to, frame }`, frames relayed to this node come in as `{ from, frame }`, and the link plan goes
   * out as `{ type: 'plan', peers }` whenever it changes, for the page's mesh to open and close connections by. Call
   * it once the node has started.
   */
  attachServer(port: MessagePort, maxFrameBytes: number): void {
    this.#serverPort?.close();
    this.#serverPort = port;
    port.onmessage = (event: MessageEvent<unknown>) => {
      const data = event.data as { from?: unknown; frame?: unknown } | null;
      if (typeof data?.from === 'string' && data.frame instanceof ArrayBuffer) {
        this.#links?.receiveRelayed(data.from, data.frame);
      }
    };
    port.start();
    this.#links?.useServerRelay({
      maxFrameBytes,
      send: (to, frame) => {
        const buffer = frame.buffer as ArrayBuffer;
        port.postMessage({ type: 'frame', to, frame: buffer }, [buffer]);
      },
    });
    port.postMessage({ type: 'plan', peers: this.#plan });
  }

  /** Plans the links again and tells the page when the plan changed. */
  #replan(): void {
    const plan = this.#policy?.plan();
    if (plan === undefined) return;
    if (plan.length === this.#plan.length && plan.every((peer, i) => peer === this.#plan[i])) return;
    this.#plan = plan;
    this.#planned = new Set(plan);
    this.#serverPort?.postMessage({ type: 'plan', peers: plan });
  }

  /** A message goes to `peer`, which has no open link: a link opened on first use, when the plan makes room for it. */
  #unlinked(peer: string): void {
    if (this.#planned.has(peer)) return;
    // At most once per 100 ms: past the bound, every message to an unplanned peer comes here.
    const now = Date.now();
    if (now - this.#unlinkedAt < 100) return;
    this.#unlinkedAt = now;
    this.#replan();
  }

  /** Takes a data channel transferred from the main thread as the link to `peer`. */
  attachChannel(peer: string, channel: RTCDataChannel): void {
    this.#links?.attachChannel(peer, channel);
  }

  /** Takes a relay port from the main thread as the link to `peer`. */
  attachPort(peer: string, port: MessagePort): void {
    this.#links?.attachPort(peer, port);
  }

  /** Serves the page's gets, puts and deletes arriving in batches on `port` (see calls.ts). */
  attachCalls(port: MessagePort): void {
    serveCalls(port, this);
  }

  /**
   * Takes the page's receiver of watch notices: each goes to it with the id the page gave its watch. Comlink carries
   * it, as it carries log entries.
   */
  receiveNotices(onNotice: (id: number, notice: WatchNotice) => void): void {
    this.#onNotice = onNotice;
  }

  /** Starts the page's watch `id` of `target` (see {@link DynamoNode.watch}); its notices go to the receiver. */
  watch(id: number, target: WatchTargetSpec): Promise<Outcome<void>> {
    return attempt(async () => {
      if (!Number.isSafeInteger(id) || this.#watches.has(id))
        throw new DynameshError('ERR_INVALID_ARGUMENT', `watch id ${String(id)} is not a new integer`);
      const unwatch = this.#running().watch(target, (notice) => {
        try {
          this.#onNotice?.(id, notice);
        } catch {
          // The page went away.
        }
      });
      this.#watches.set(id, unwatch);
    });
  }

  /** The page reconnected to the signalling server: the watches may have missed notices meanwhile. */
  resyncWatches(): void {
    this.#node?.resyncWatches();
  }

  /** Ends the page's watch `id`. Idempotent. */
  unwatch(id: number): void {
    this.#watches.get(id)?.();
    this.#watches.delete(id);
  }

  /** Drops the link to `peer`. */
  detach(peer: string): void {
    this.#links?.detach(peer);
  }

  get(key: Uint8Array | string, options: GetOptions): Promise<Outcome<GetResult>> {
    return attempt(() => this.#running().get(key, options));
  }

  put(key: Uint8Array | string, value: Uint8Array, options: PutOptions): Promise<Outcome<PutResult>> {
    return attempt(() => this.#running().put(key, value, options));
  }

  delete(key: Uint8Array | string, options: DeleteOptions): Promise<Outcome<PutResult>> {
    return attempt(() => this.#running().delete(key, options));
  }

  /** One page of the live keys under a prefix (see {@link DynamoNode.keys}). */
  keys(options: KeysOptions): Promise<Outcome<KeysResult>> {
    return attempt(() => this.#running().keys(options));
  }

  /** Counters, latencies, storage counts and link states. */
  metrics(): Promise<Outcome<HostMetrics>> {
    return attempt(async () => ({
      node: this.#running().metrics(),
      storage: await this.#storage!.stats(),
      links: this.#links!.states(),
      framesDropped: this.#links!.dropped,
      relayedFrames: { ...this.#links!.relayedFrames },
      linkPlan: [...this.#plan],
      ...(this.#faults !== undefined ? { faults: this.#faults.state() } : {}),
    }));
  }

  /** Every partition this node owns or still stores keys of: transfer state, progress, keys, Merkle root. */
  partitions(): Promise<Outcome<PartitionInfo[]>> {
    return attempt(() => this.#running().partitions());
  }

  /**
   * Retires the node whose IndexedDB database is `database`: this node takes over what it held (see
   * {@link DynamoNode.absorb}), then the database is deleted. The page calls it holding that node's Web Lock, so no
   * tab runs the node meanwhile; an interrupted retirement is simply done again, as merging is idempotent.
   */
  retire(database: string): Promise<Outcome<RetireReport>> {
    return attempt(async () => {
      const node = this.#running();
      if (database === this.#database) throw new DynameshError('ERR_INVALID_ARGUMENT', 'a node cannot retire itself');
      const source = await openIndexedDbStorage(database);
      let report: RetireReport;
      try {
        report = await node.absorb(source);
      } finally {
        await source.close();
      }
      await deleteDB(database);
      this.#logger.info({ database, ...report }, 'retired a node');
      return report;
    });
  }

  /** Cuts this node from `nodeIds` (its own id: from everyone), on top of earlier cuts. */
  isolate(nodeIds: readonly string[]): Promise<Outcome<FaultState>> {
    return this.#fault((faults) => faults.isolate(nodeIds));
  }

  /** Ends isolation, loss and delay. */
  heal(): Promise<Outcome<FaultState>> {
    return this.#fault((faults) => faults.heal());
  }

  /** Drops each message in or out with probability `p`. */
  setDropRate(p: number): Promise<Outcome<FaultState>> {
    return this.#fault((faults) => faults.setDropRate(p));
  }

  /** Holds each outgoing message `ms`. */
  setDelay(ms: number): Promise<Outcome<FaultState>> {
    return this.#fault((faults) => faults.setDelay(ms));
  }

  /** The faults in force and their counts. */
  faultState(): Promise<Outcome<FaultState>> {
    return this.#fault(() => {});
  }

  /**
   * Posts a tick (`null`) on `port` every `interval` ms, replacing any earlier heartbeat; the page sends the
   * signalling server's `heartbeat` as each tick arrives. The timer lives here, not on the page, because Chrome
   * throttles a hidden tab's main-thread timers (to one wake-up a second at once, and to one a minute after five
   * minutes hidden: intensive wake-up throttling) but not a dedicated worker's, and a message event to the page is
   * delivered promptly even when the page is hidden. So a hidden tab keeps heartbeating; only a frozen one stops.
   */
  startHeartbeat(interval: number, port: MessagePort): void {
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new DynameshError('ERR_INVALID_ARGUMENT', `heartbeat interval must be a positive number, got ${interval}`);
    }
    this.stopHeartbeat();
    const timer = setInterval(() => port.postMessage(null), interval);
    this.#heartbeat = { timer, port };
  }

  /** Stops the heartbeat ticks and closes their port. Idempotent. */
  stopHeartbeat(): void {
    if (this.#heartbeat === undefined) return;
    clearInterval(this.#heartbeat.timer);
    this.#heartbeat.port.close();
    this.#heartbeat = undefined;
  }

  /** Stops the node, closes the links and the database. Idempotent. */
  async close(): Promise<void> {
    this.stopHeartbeat();
    clearInterval(this.#planTimer);
    const storage = this.#storage;
    if (storage === undefined) return;
    this.#storage = undefined;
    this.#opened = undefined;
    await this.#node?.close();
    this.#faults?.close();
    this.#links?.close();
    await storage.close();
  }

  #running(): DynamoNode {
    if (this.#node === undefined) throw new DynameshError('ERR_CLOSED', 'the node has not started');
    return this.#node;
  }

  #fault(change: (faults: Faults) => void): Promise<Outcome<FaultState>> {
    return attempt(async () => {
      this.#running();
      const faults = this.#faults;
      if (faults === undefined) throw new DynameshError('ERR_INVALID_ARGUMENT', 'the node runs without faults');
      change(faults);
      return faults.state();
    });
  }

  #log(level: LogEntry['level'], fields: object, msg?: string): void {
    const entry: LogEntry = { time: Date.now(), level, msg: msg ?? '', fields: plain(fields) };
    try {
      this.#onLog?.(entry);
    } catch {
      // The page went away; logging must never break the node.
    }
  }
}

async function attempt<T>(run: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    return { ok: false, error: toWireError(error) };
  }
}

/** The parts of an error that cross the boundary: its code, message and quorum counts. */
export function toWireError(error: unknown): WireError {
  if (error instanceof DynameshError) {
    const counts = error as unknown as { required?: unknown; acknowledged?: unknown };
    return {
      code: error.code,
      message: error.message,
      ...(typeof counts.required === 'number' ? { required: counts.required } : {}),
      ...(typeof counts.acknowledged === 'number' ? { acknowledged: counts.acknowledged } : {}),
    };
  }
  return { code: 'ERR_STORAGE', message: error instanceof Error ? error.message : String(error) };
}

function plain(fields: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = typeof v === 'object' && v !== null ? JSON.stringify(v) : v;
  }
  return out;
}

/** Whether node id `id` derives from `publicKey`: only then can its versions' proofs hold (proof.ts). */
async function derivesFrom(id: string, publicKey: Uint8Array): Promise<boolean> {
  return derivedNodeId(await new WebCryptoProofs().sha256(publicKey)) === id;
}

// Only when loaded as a worker: the module is also imported for its types and by tests.
const scope = globalThis as { WorkerGlobalScope?: unknown; postMessage?: unknown };
if (typeof scope.WorkerGlobalScope !== 'undefined' && typeof scope.postMessage === 'function') {
  Comlink.expose(new NodeHost());
}
