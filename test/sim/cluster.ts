/**
 * A simulated cluster of real {@link DynamoNode}s over {@link MemoryStorage}, wired to the simulated network and
 * the virtual clock. A crash closes the node and its storage handle and drops its timers and connections; a restart
 * builds a new node over a reopened handle on the same data, as a reloaded tab reopens its IndexedDB database.
 *
 * The cluster also plays the signalling server's part in membership. It owns the view and pushes every change to
 * each running node after its own small random delay, in order per node, as Socket.IO delivers a `view` event: for a
 * while after a change, nodes disagree about the ring. A crash keeps the node in the view (the others time out on it
 * and use fallbacks), as a tab reloaded within the heartbeat timeout does. A {@link Cluster.fail} is a crash that the
 * server notices: the node leaves the view after {@link ClusterOptions.failureDetection}. A {@link Cluster.join}
 * brings a new node with empty storage, a {@link Cluster.leave} closes a node for good and removes it at once (a tab
 * that announced its leave), and a {@link Cluster.rejoin} restarts a failed node over its old data and adds it back.
 */
import type { Logger } from '../../worker/env.ts';
import { HELD_RECORD } from '../../worker/membership/ownership.ts';
import { DynamoNode, type NodeOptions } from '../../worker/node.ts';
import { type Member, Ring } from '../../worker/ring/ring.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Storage } from '../../worker/storage/storage.ts';
import type { Network } from './network.ts';
import type { Rng } from './random.ts';
import { type SimKey, SimProofs, simKey } from './keys.ts';
import type { Owner, Scheduler, SimEvent } from './scheduler.ts';
import type { Witness } from './witness.ts';

/** The node tunables a simulated cluster passes to every node. */
export type SimNodeOptions = Pick<
  NodeOptions,
  | 'n'
  | 'r'
  | 'w'
  | 'requestTimeout'
  | 'hintInterval'
  | 'partitions'
  | 'tokensPerNode'
  | 'logger'
  | 'antiEntropyInterval'
  | 'antiEntropyBytesPerSecond'
  | 'transferBytesPerSecond'
  | 'tombstoneGrace'
>;

/** One node slot: its data outlives its incarnations. */
export interface SimNode {
  readonly id: string;
  readonly domain: string;
  /** The storage data of every incarnation; each incarnation opens its own handle on it. */
  readonly data: MemoryStorage;
  /** The running incarnation, or null while crashed, failed or gone. */
  node: DynamoNode | null;
  /** The running incarnation's storage handle (watched when the cluster has a witness), or null while down or gone. */
  storage: Storage | null;
  owner: Owner;
  /** Incarnations started so far. */
  incarnations: number;
  /** True while the view lists this node. */
  inView: boolean;
  /** True once the node has left for good: it never runs again and its data is gone from the cluster. */
  left: boolean;
  /** The epoch of the last view pushed to the running incarnation (delivered or on its way). */
  viewEpoch: number;
  /** The epoch of the last view the running incarnation received. */
  deliveredEpoch: number;
}

/** Options of a {@link Cluster}. */
export interface ClusterOptions {
  readonly scheduler: Scheduler;
  readonly network: Network;
  /** Source of every node's own randomness and of the view delays. */
  readonly rng: Rng;
  /** How many nodes at the start. */
  readonly size: number;
  /** Failure domains the nodes are spread over, round robin. @default one per node */
  readonly domains?: number;
  readonly node?: SimNodeOptions;
  readonly logger?: Logger;
  /** Longest delay, virtual ms, between a view change and its arrival at one node. @default 20 */
  readonly viewDelay?: number;
  /**
   * Virtual ms between a {@link Cluster.fail} and the failed node's removal from the view: the signalling server's
   * heartbeat timeout. @default 3000
   */
  readonly failureDetection?: number;
  /** Watches every node's storage (dots drawn, versions stored) when given. */
  readonly witness?: Witness;
  /**
   * Gives every node an Ed25519 key (keys.ts) and the id derived from it, so that it signs its versions and its
   * peers check who may ship them (versions/proof.ts), as tabs do. @default false: plain ids, nothing signed
   */
  readonly keys?: boolean;
  /**
   * The starting members begin as members of a cluster formed earlier and still empty: each holds the partitions it
   * owns under the first ring (its held set is in its storage, ownership.ts). Otherwise each starts as a new node
   * does, asking every other member whether it holds each partition it owns before it holds it: N × Q probes of
   * every member at once, which a cluster of a thousand nodes cannot afford in memory. @default false
   */
  readonly formed?: boolean;
}

/** Sums of numeric metrics over every incarnation that ever ran. */
export type MetricTotals = Record<string, number>;

/** A simulated cluster. */
export class Cluster {
  readonly #options: ClusterOptions;
  readonly #slots = new Map<string, SimNode>();
  /** The slots' ids in creation order; replaced, never changed, when a slot is added. */
  #ids: readonly string[] = Object.freeze([]);
  /** Metrics of incarnations that have crashed, so totals survive restarts. */
  readonly #retired: MetricTotals = {};
  readonly #viewRng: Rng;
  readonly #idWidth: number;
  /** The view's members, in the order they joined. */
  #view: Member[] = [];
  /** Each signing node's key, by id (see {@link ClusterOptions.keys}). */
  readonly #keys = new Map<string, SimKey>();
  readonly #keyRng: Rng;
  readonly #proofs = new SimProofs();
  #epoch = 0;
  #ring: Ring;
  /** Per node, the virtual time of the last view push scheduled to it, so that pushes arrive in order. */
  readonly #lastPush = new Map<string, number>();
  /** Pending removals of failed nodes from the view, by node. */
  readonly #removals = new Map<string, SimEvent>();

  constructor(options: ClusterOptions) {
    this.#options = options;
    this.#viewRng = options.rng.fork('views');
    this.#keyRng = options.rng.fork('keys');
    this.#idWidth = String(options.size - 1).length;
    for (let i = 0; i < options.size; i++) {
      const slot = this.#newSlot();
      this.#view.push(this.#member(slot));
      slot.inView = true;
    }
    this.#epoch = 1;
    this.#ring = this.#buildRing();
    if (options.formed === true) this.#holdOwnPartitions();
    for (const id of this.ids) this.#start(this.slot(id));
  }

  /** Every node slot ever created, by id, gone ones included. */
  get nodes(): ReadonlyMap<string, SimNode> {
    return this.#slots;
  }

  /** Ids of every node slot ever created, in creation order, gone ones included. */
  get ids(): readonly string[] {
    return this.#ids;
  }

  /** The members of the current view, in the order they joined. */
  get members(): readonly Member[] {
    return this.#view;
  }

  /** The current view's epoch; it grows with every change. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The ring every node computes from the current view, once the view has reached it. */
  get ring(): Ring {
    return this.#ring;
  }

  /** Virtual ms from a failure to the failed node's removal from the view. */
  get failureDetection(): number {
    return this.#options.failureDetection ?? 3000;
  }

  /** Ids of the current view's members. */
  memberIds(): string[] {
    return this.#view.map((m) => m.id);
  }

  /** The node slot `id`. */
  slot(id: string): SimNode {
    const slot = this.#slots.get(id);
    if (slot === undefined) throw new RangeError(`no node ${id}`);
    return slot;
  }

  /** The running node `id`, or null while it is crashed, failed or gone. */
  node(id: string): DynamoNode | null {
    return this.slot(id).node;
  }

  /** Ids of the running nodes. */
  alive(): string[] {
    const out: string[] = [];
    for (const slot of this.#slots.values()) if (slot.node !== null) out.push(slot.id);
    return out;
  }

  /** Ids of the running members of the view: the nodes that serve. */
  live(): string[] {
    const out: string[] = [];
    for (const slot of this.#slots.values()) if (slot.node !== null && slot.inView) out.push(slot.id);
    return out;
  }

  /** Ids of the running view members that are not paused: those a client in their tab could call now. */
  available(): string[] {
    const now = this.#options.scheduler.now;
    const out: string[] = [];
    for (const slot of this.#slots.values()) {
      if (slot.node !== null && slot.inView && (slot.owner.pausedUntil ?? 0) <= now) out.push(slot.id);
    }
    return out;
  }

  /**
   * Freezes node `id` for `ms` virtual ms, as a browser freezes a background tab: its timers, the frames and the
   * views sent to it wait until the pause ends, and nothing fails.
   */
  pause(id: string, ms: number): void {
    const slot = this.slot(id);
    if (slot.node === null) return;
    slot.owner.pausedUntil = this.#options.scheduler.now + ms;
  }

  /** Ends node `id`'s pause now: its waiting timers, views and frames run, frames in the order they arrived. */
  resume(id: string): void {
    const slot = this.slot(id);
    if (slot.node === null || (slot.owner.pausedUntil ?? 0) <= this.#options.scheduler.now) return;
    slot.owner.pausedUntil = this.#options.scheduler.now;
    this.#options.network.flush(id);
  }

  /** Ids of the nodes that are down but not gone: crashed (still in the view) or failed (out of it). */
  crashed(): string[] {
    return this.ids.filter((id) => {
      const slot = this.slot(id);
      return slot.node === null && !slot.left;
    });
  }

  /** Ids of the failed nodes: down and out of the view (or about to be), waiting to rejoin. */
  failed(): string[] {
    return this.crashed().filter((id) => !this.slot(id).inView || this.#removals.has(id));
  }

  /** The preference list of `key` under the current view. */
  preferenceList(key: Uint8Array, n: number): readonly string[] {
    return this.#ring.preferenceList(this.#ring.partitionOf(key), n);
  }

  /**
   * Crashes node `id`: its timers never fire again, its in-flight frames to it are dropped, its pending requests end
   * with `ERR_CLOSED`, and its storage handle closes. What it stored stays for its next incarnation. It stays in the
   * view.
   */
  async crash(id: string): Promise<void> {
    const slot = this.slot(id);
    const node = slot.node;
    if (node === null) return;
    slot.owner.alive = false;
    this.#options.network.detach(id);
    slot.node = null;
    this.#retire(node);
    await node.close();
    await slot.storage?.close();
    slot.storage = null;
  }

  /**
   * Starts a new incarnation of crashed node `id` over its stored data, with the current view. A failed node is
   * rejoined (see {@link rejoin}).
   * @throws RangeError for a node that has left.
   */
  restart(id: string): void {
    const slot = this.slot(id);
    if (slot.left) throw new RangeError(`${id} has left the cluster for good`);
    if (slot.node !== null) return;
    if (!slot.inView || this.#removals.has(id)) {
      this.rejoin(id);
      return;
    }
    this.#start(slot);
  }

  /**
   * Adds a new node with empty storage to the view and starts it; the others learn of it over the next few ms.
   * @returns Its id: `id`, or the next free `nNN`.
   * @throws RangeError when `id` is taken.
   */
  join(id?: string): string {
    if (id !== undefined && this.#slots.has(id)) throw new RangeError(`node ${id} exists already`);
    const slot = this.#newSlot(id);
    this.#setMember(slot, true);
    this.#start(slot);
    this.#publish();
    return slot.id;
  }

  /**
   * Node `id` leaves for good: it closes (as a crash does) and leaves the view at once. What it stored is gone from
   * the cluster; only copies elsewhere remain.
   */
  async leave(id: string): Promise<void> {
    const slot = this.slot(id);
    if (slot.left) return;
    slot.left = true;
    this.#cancelRemoval(id);
    const closing = this.crash(id);
    if (slot.inView) {
      this.#setMember(slot, false);
      this.#publish();
    }
    await closing;
  }

  /**
   * Node `id` fails: it crashes now, and the view drops it `failureDetection` ms later, when the signalling server's
   * heartbeat timeout would. Its data stays for a {@link rejoin}.
   */
  async fail(id: string): Promise<void> {
    const slot = this.slot(id);
    if (slot.left || slot.node === null) return;
    const closing = this.crash(id);
    if (slot.inView && !this.#removals.has(id)) {
      const event = this.#options.scheduler.schedule(this.failureDetection, () => {
        this.#removals.delete(id);
        if (!slot.inView || slot.node !== null) return;
        this.#setMember(slot, false);
        this.#publish();
      });
      this.#removals.set(id, event);
    }
    await closing;
  }

  /**
   * Restarts failed node `id` over its old data and adds it back to the view. Back before the failure was detected,
   * it never leaves the view.
   * @throws RangeError for a node that has left.
   */
  rejoin(id: string): void {
    const slot = this.slot(id);
    if (slot.left) throw new RangeError(`${id} has left the cluster for good`);
    if (slot.node !== null) return;
    this.#cancelRemoval(id);
    const change = !slot.inView;
    if (change) this.#setMember(slot, true);
    this.#start(slot);
    if (change) this.#publish();
  }

  /** Crashes every running node, for the end of a run. */
  async close(): Promise<void> {
    for (const event of this.#removals.values()) this.#options.scheduler.cancel(event);
    this.#removals.clear();
    for (const id of this.alive()) await this.crash(id);
  }

  /** Numeric metrics summed over every incarnation, running or crashed. */
  metricTotals(): MetricTotals {
    const totals: MetricTotals = { ...this.#retired };
    for (const id of this.alive()) addMetrics(totals, this.slot(id).node!.metrics());
    return totals;
  }

  /** Hints held across the cluster, by every node's data whether or not it runs; gone nodes' data excluded. */
  async hintsHeld(): Promise<number> {
    let hints = 0;
    for (const id of this.ids) {
      const slot = this.slot(id);
      if (slot.left) continue;
      const handle = slot.data.reopen();
      hints += (await handle.stats()).hints;
      await handle.close();
    }
    return hints;
  }

  #newSlot(id?: string): SimNode {
    const index = this.#slots.size;
    const domains = this.#options.domains;
    const slot: SimNode = {
      id: id ?? this.#freeId(index),
      domain: `d${domains === undefined ? index : index % domains}`,
      data: new MemoryStorage(),
      node: null,
      storage: null,
      owner: { alive: false },
      incarnations: 0,
      inView: false,
      left: false,
      viewEpoch: 0,
      deliveredEpoch: 0,
    };
    this.#slots.set(slot.id, slot);
    this.#ids = Object.freeze([...this.#ids, slot.id]);
    return slot;
  }

  #freeId(index: number): string {
    if (this.#options.keys === true) {
      const key = simKey(this.#keyRng);
      this.#keys.set(key.id, key);
      return key.id;
    }
    for (let i = index; ; i++) {
      const id = `n${String(i).padStart(this.#idWidth, '0')}`;
      if (!this.#slots.has(id)) return id;
    }
  }

  #setMember(slot: SimNode, member: boolean): void {
    slot.inView = member;
    if (member) this.#view.push(this.#member(slot));
    else this.#view = this.#view.filter((m) => m.id !== slot.id);
  }

  /**
   * The view's entry of `slot`. A signing node's first signed counter is its first one: it never wrote unsigned (a
   * tab draws one counter for it at its first start, with the same effect).
   */
  #member(slot: SimNode): Member {
    return this.#keys.has(slot.id)
      ? { id: slot.id, domain: slot.domain, signedFrom: 1 }
      : { id: slot.id, domain: slot.domain };
  }

  #cancelRemoval(id: string): void {
    const event = this.#removals.get(id);
    if (event === undefined) return;
    this.#options.scheduler.cancel(event);
    this.#removals.delete(id);
  }

  /** A new epoch of the view: the ring is rebuilt, and every running node gets the view after its own delay. */
  #publish(): void {
    this.#epoch++;
    this.#ring = this.#buildRing();
    const { scheduler } = this.#options;
    const view = [...this.#view];
    const epoch = this.#epoch;
    const maxDelay = this.#options.viewDelay ?? 20;
    for (const id of this.ids) {
      const slot = this.slot(id);
      const node = slot.node;
      if (node === null || slot.viewEpoch >= epoch) continue;
      // One Socket.IO connection per tab: views reach a node in the order they were sent.
      const at = Math.max(scheduler.now + this.#viewRng.int(maxDelay + 1), this.#lastPush.get(id) ?? 0);
      this.#lastPush.set(id, at);
      slot.viewEpoch = epoch;
      // A pause that ends early lets a later view overtake an earlier one held back by it: the older one is stale.
      scheduler.schedule(
        at - scheduler.now,
        () => {
          if (epoch <= slot.deliveredEpoch) return;
          slot.deliveredEpoch = epoch;
          node.setMembers(view);
        },
        slot.owner,
      );
    }
  }

  /** Stores in each member's data the held set of the partitions the current ring gives it (see `formed`). */
  #holdOwnPartitions(): void {
    const n = this.#options.node?.n ?? 3;
    const held = new Map<string, number[]>(this.#view.map((m) => [m.id, []]));
    for (let p = 0; p < this.#ring.partitions; p++) {
      for (const id of this.#ring.preferenceList(p, n)) held.get(id)!.push(p);
    }
    // MemoryStorage stores meta before its first await: the record is there when the node starts, just after.
    for (const [id, partitions] of held) void this.slot(id).data.reopen().putMeta(HELD_RECORD, partitions);
  }

  #start(slot: SimNode): void {
    const { scheduler, network, rng } = this.#options;
    const owner: Owner = { alive: true };
    const handle = slot.data.reopen();
    const storage = this.#options.witness?.wrap(slot.id, handle) ?? handle;
    slot.incarnations++;
    const transport = network.attach(slot.id, owner, (from, frame) => node.receive(from, frame));
    const options: NodeOptions = {
      ...this.#options.node,
      id: slot.id,
      domain: slot.domain,
      storage,
      transport,
      clock: scheduler.clock,
      timers: scheduler.timersFor(owner),
      random: rng.fork(`${slot.id}#${slot.incarnations}`).asRandom(),
      proofs: this.#proofs,
    };
    const key = this.#keys.get(slot.id);
    if (key !== undefined) Object.assign(options, { signing: key.signing });
    if (this.#options.logger !== undefined) Object.assign(options, { logger: this.#options.logger });
    const node = new DynamoNode(options);
    // A tab that connects receives the current view with its join acknowledgement.
    node.setMembers([...this.#view]);
    slot.viewEpoch = this.#epoch;
    slot.deliveredEpoch = this.#epoch;
    slot.node = node;
    slot.storage = storage;
    slot.owner = owner;
  }

  #retire(node: DynamoNode): void {
    addMetrics(this.#retired, node.metrics());
  }

  #buildRing(): Ring {
    const o = this.#options.node ?? {};
    const ringOptions: { partitions?: number; tokensPerNode?: number } = {};
    if (o.partitions !== undefined) ringOptions.partitions = o.partitions;
    if (o.tokensPerNode !== undefined) ringOptions.tokensPerNode = o.tokensPerNode;
    return new Ring(this.#view, ringOptions);
  }
}

function addMetrics(totals: MetricTotals, metrics: object): void {
  for (const [name, value] of Object.entries(metrics)) {
    if (typeof value === 'number') totals[name] = (totals[name] ?? 0) + value;
  }
}
