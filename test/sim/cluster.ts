/**
 * A simulated cluster of real {@link DynamoNode}s over {@link MemoryStorage}, wired to the simulated network and
 * the virtual clock. A crash closes the node and its storage handle and drops its timers and connections; a restart
 * builds a new node over a reopened handle on the same data, as a reloaded tab reopens its IndexedDB database.
 * The view keeps listing a crashed node (failure detection by the signalling server is not simulated), so the
 * others time out on it and use fallbacks.
 */
import type { Logger } from '../../worker/env.ts';
import { DynamoNode, type NodeOptions } from '../../worker/node.ts';
import { type Member, Ring } from '../../worker/ring.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Network } from './network.ts';
import type { Rng } from './random.ts';
import type { Owner, Scheduler } from './scheduler.ts';

/** The node tunables a simulated cluster passes to every node. */
export type SimNodeOptions = Pick<
  NodeOptions,
  'n' | 'r' | 'w' | 'requestTimeout' | 'hintInterval' | 'partitions' | 'tokensPerNode' | 'logger'
>;

/** One node slot: its data outlives its incarnations. */
export interface SimNode {
  readonly id: string;
  readonly domain: string;
  /** The storage data of every incarnation; each incarnation opens its own handle on it. */
  readonly data: MemoryStorage;
  /** The running incarnation, or null while crashed. */
  node: DynamoNode | null;
  /** The running incarnation's storage handle, or null while crashed. */
  storage: MemoryStorage | null;
  owner: Owner;
  /** Incarnations started so far. */
  incarnations: number;
}

/** Options of a {@link Cluster}. */
export interface ClusterOptions {
  readonly scheduler: Scheduler;
  readonly network: Network;
  /** Source of every node's own randomness. */
  readonly rng: Rng;
  /** How many nodes. */
  readonly size: number;
  /** Failure domains the nodes are spread over, round robin. @default size (one per node) */
  readonly domains?: number;
  readonly node?: SimNodeOptions;
  readonly logger?: Logger;
}

/** Sums of numeric metrics over every incarnation that ever ran. */
export type MetricTotals = Record<string, number>;

/** A simulated cluster. */
export class Cluster {
  readonly members: readonly Member[];
  readonly nodes: ReadonlyMap<string, SimNode>;
  readonly ids: readonly string[];
  readonly #options: ClusterOptions;
  /** Metrics of incarnations that have crashed, so totals survive restarts. */
  readonly #retired: MetricTotals = {};
  #ring: Ring;

  constructor(options: ClusterOptions) {
    this.#options = options;
    const domains = options.domains ?? options.size;
    const width = String(options.size - 1).length;
    const members: Member[] = [];
    for (let i = 0; i < options.size; i++) {
      members.push({ id: `n${String(i).padStart(width, '0')}`, domain: `d${i % domains}` });
    }
    this.members = members;
    this.ids = members.map((m) => m.id);
    const nodes = new Map<string, SimNode>();
    for (const m of members) {
      nodes.set(m.id, {
        id: m.id,
        domain: m.domain,
        data: new MemoryStorage(),
        node: null,
        storage: null,
        owner: { alive: false },
        incarnations: 0,
      });
    }
    this.nodes = nodes;
    this.#ring = this.#buildRing();
    for (const id of this.ids) this.#start(nodes.get(id)!);
  }

  /** The ring every node computes from the full view. */
  get ring(): Ring {
    return this.#ring;
  }

  /** The node slot `id`. */
  slot(id: string): SimNode {
    const slot = this.nodes.get(id);
    if (slot === undefined) throw new RangeError(`no node ${id}`);
    return slot;
  }

  /** The running node `id`, or null while it is crashed. */
  node(id: string): DynamoNode | null {
    return this.slot(id).node;
  }

  /** Ids of the running nodes. */
  alive(): string[] {
    return this.ids.filter((id) => this.slot(id).node !== null);
  }

  /** Ids of the running nodes that are not paused: those a client in their tab could call now. */
  available(): string[] {
    const now = this.#options.scheduler.now;
    return this.ids.filter((id) => {
      const slot = this.slot(id);
      return slot.node !== null && (slot.owner.pausedUntil ?? 0) <= now;
    });
  }

  /**
   * Freezes node `id` for `ms` virtual ms, as a browser freezes a background tab: its timers and the frames sent to
   * it wait until the pause ends, and nothing fails.
   */
  pause(id: string, ms: number): void {
    const slot = this.slot(id);
    if (slot.node === null) return;
    slot.owner.pausedUntil = this.#options.scheduler.now + ms;
  }

  /** Ids of the crashed nodes. */
  crashed(): string[] {
    return this.ids.filter((id) => this.slot(id).node === null);
  }

  /** The preference list of `key` under the full view. */
  preferenceList(key: Uint8Array, n: number): readonly string[] {
    return this.#ring.preferenceList(this.#ring.partitionOf(key), n);
  }

  /**
   * Crashes node `id`: its timers never fire again, its in-flight frames to it are dropped, its pending requests end
   * with `ERR_CLOSED`, and its storage handle closes. What it stored stays for its next incarnation.
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

  /** Starts a new incarnation of crashed node `id` over its stored data, with the full view. */
  restart(id: string): void {
    const slot = this.slot(id);
    if (slot.node !== null) return;
    this.#start(slot);
  }

  /** Crashes every running node, for the end of a run. */
  async close(): Promise<void> {
    for (const id of this.alive()) await this.crash(id);
  }

  /** Numeric metrics summed over every incarnation, running or crashed. */
  metricTotals(): MetricTotals {
    const totals: MetricTotals = { ...this.#retired };
    for (const id of this.alive()) addMetrics(totals, this.slot(id).node!.metrics());
    return totals;
  }

  /** Hints held across the cluster, by every node's data whether or not it runs. */
  async hintsHeld(): Promise<number> {
    let hints = 0;
    for (const id of this.ids) {
      const handle = this.slot(id).data.reopen();
      hints += (await handle.stats()).hints;
      await handle.close();
    }
    return hints;
  }

  #start(slot: SimNode): void {
    const { scheduler, network, rng } = this.#options;
    const owner: Owner = { alive: true };
    const storage = slot.data.reopen();
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
    };
    if (this.#options.logger !== undefined) Object.assign(options, { logger: this.#options.logger });
    const node = new DynamoNode(options);
    node.setMembers(this.members);
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
    return new Ring(this.members, ringOptions);
  }
}

function addMetrics(totals: MetricTotals, metrics: object): void {
  for (const [name, value] of Object.entries(metrics)) {
    if (typeof value === 'number') totals[name] = (totals[name] ?? 0) + value;
  }
}
