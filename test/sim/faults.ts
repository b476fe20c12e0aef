/**
 * The fault driver: while the clients run, it injects faults at random times and heals each after a random while.
 * Partitions (one node alone, a minority against a majority, or two sides joined only through a bridge node),
 * crashes (with restart over the same data), frame loss, reordering, duplication, and pauses (a node frozen like a
 * background tab: its timers and incoming frames wait, so its replies come late rather than never). At most one
 * partition and one episode of each network fault are active at once; crashes overlap up to a limit.
 *
 * Churn changes the view: joins of new nodes, leaves for good, and failures (a crash the view drops after the
 * failure detection delay, healed by a rejoin over the old data). The view never falls below N + 1 running members.
 * A node leaves only while everything it stores is also stored by another node that has not left: the fault model
 * never destroys the last copy of a write, which no replication scheme survives.
 */
import { sameDot, supersedes, type Version } from '../../worker/versions/version.ts';
import type { Cluster } from './cluster.ts';
import type { Network, NetworkConditions, Side } from './network.ts';
import type { Rng } from './random.ts';
import type { Scheduler } from './scheduler.ts';

/** The faults a run can inject. */
export type FaultKind = 'partition' | 'crash' | 'loss' | 'reorder' | 'duplicate' | 'pause' | 'join' | 'leave' | 'fail';

/** Every fault kind, in a stable order. */
export const FAULT_KINDS: readonly FaultKind[] = Object.freeze([
  'partition',
  'crash',
  'loss',
  'reorder',
  'duplicate',
  'pause',
  'join',
  'leave',
  'fail',
]);

/** The fault kinds that change the view. */
export const CHURN_KINDS: readonly FaultKind[] = Object.freeze(['join', 'leave', 'fail']);

/** One fault starting or ending, for the run's log. */
export interface FaultEvent {
  /** Virtual ms. */
  readonly time: number;
  readonly kind: FaultKind | 'heal';
  readonly detail: string;
}

/** Options of a {@link FaultDriver}. */
export interface FaultOptions {
  readonly kinds: readonly FaultKind[];
  /** Virtual ms between the start of one fault and the next, drawn uniformly. @default [100, 800] */
  readonly interval?: readonly [number, number];
  /** How long a fault lasts, virtual ms, drawn uniformly. @default [300, 3000] */
  readonly duration?: readonly [number, number];
  /**
   * Most nodes crashed at once, most failed at once, and most paused at once (three separate budgets, all under the
   * N + 1 floor of churn). @default max(1, floor(nodes / 5))
   */
  readonly maxCrashed?: number;
  /** Replication factor N: churn keeps at least N + 1 running members in the view. @default 3 */
  readonly replicas?: number;
  /**
   * Most members the view may gain or lose against the starting size, through joins and leaves, so that the size
   * wanders but does not run away. @default max(2, floor(nodes / 5))
   */
  readonly maxDrift?: number;
  /** Frame loss rate while a loss fault lasts, drawn uniformly. @default [0.02, 0.3] */
  readonly lossRate?: readonly [number, number];
  /** Frame duplication rate while a duplication fault lasts. @default 0.1 */
  readonly duplicateRate?: number;
  /** Mean exponential latency tail while reordering, ms. @default 20 */
  readonly reorderTail?: number;
  /**
   * Each kind is to be injected at least this many times: half the draws go to kinds injected fewer times that could
   * start now, until every one has been (in runs with churn, whose bounds often refuse a kind on its turn, at least
   * once by default, busy or not).
   * @default 1 under churn, else none
   */
  readonly eachAtLeast?: number;
  /** Called on every fault and heal. */
  readonly onEvent?: (event: FaultEvent) => void;
}

/** Injects and heals faults. */
export class FaultDriver {
  /** Everything injected and healed, in order. */
  readonly log: FaultEvent[] = [];
  /** Faults injected, by kind. */
  readonly counts: Record<FaultKind, number> = {
    partition: 0,
    crash: 0,
    loss: 0,
    reorder: 0,
    duplicate: 0,
    pause: 0,
    join: 0,
    leave: 0,
    fail: 0,
  };
  readonly #scheduler: Scheduler;
  readonly #network: Network;
  readonly #cluster: Cluster;
  readonly #rng: Rng;
  readonly #options: FaultOptions;
  readonly #base: NetworkConditions;
  readonly #active = new Set<FaultKind>();
  /** Members at the start: the bounds on crashes and on the view's drift are fractions of it. */
  readonly #size: number;
  readonly #churn: boolean;
  #stopped = false;

  constructor(scheduler: Scheduler, network: Network, cluster: Cluster, rng: Rng, options: FaultOptions) {
    this.#scheduler = scheduler;
    this.#network = network;
    this.#cluster = cluster;
    this.#rng = rng;
    this.#options = options;
    this.#base = { ...network.conditions };
    this.#size = cluster.memberIds().length;
    this.#churn = options.kinds.some((k) => CHURN_KINDS.includes(k));
  }

  /** Starts injecting; runs on the scheduler until {@link stop}. */
  start(): void {
    if (this.#options.kinds.length === 0) return;
    void this.#loop();
  }

  /**
   * Stops injecting and heals everything: partition, network faults, restarts every crashed node and rejoins every
   * failed one. Nodes that left stay gone.
   */
  stop(): void {
    this.#stopped = true;
    if (this.#network.sides !== null) this.#healPartition();
    Object.assign(this.#network.conditions, this.#base);
    for (const kind of ['loss', 'reorder', 'duplicate'] as const) {
      if (this.#active.delete(kind)) this.#record('heal', `${kind} ended`);
    }
    for (const id of this.#cluster.crashed()) {
      const failed = this.#cluster.failed().includes(id);
      this.#cluster.restart(id);
      this.#record('heal', `${id} ${failed ? 'rejoined' : 'restarted'}`);
    }
    for (const id of this.#cluster.alive()) {
      if (!this.#cluster.available().includes(id)) {
        this.#cluster.resume(id);
        this.#record('heal', `${id} resumed`);
      }
    }
  }

  async #loop(): Promise<void> {
    const [minGap, maxGap] = this.#options.interval ?? [100, 800];
    // Every kind asked for comes once, in a random order, before the draws turn independent, so that even a short
    // run sees each of them.
    const first = this.#rng.shuffle(this.#options.kinds);
    for (;;) {
      await this.#scheduler.sleep(this.#rng.between(minGap, maxGap));
      if (this.#stopped) return;
      await this.#inject(first.shift() ?? this.#draw());
    }
  }

  /**
   * A random kind. Under churn the cluster's bounds often refuse a kind on its turn (too few members, every
   * candidate the last holder of something), so half the draws go to kinds not injected yet, until each has been;
   * with {@link FaultOptions.eachAtLeast}, to kinds injected fewer times than that.
   */
  #draw(): FaultKind {
    const kinds = this.#options.kinds;
    const asked = this.#options.eachAtLeast;
    const atLeast = asked ?? (this.#churn ? 1 : 0);
    if (atLeast > 0) {
      // Asked for a count, the favoured draw also skips kinds that could not start now, so that it is not wasted.
      const short = kinds.filter((k) => this.counts[k] < atLeast && (asked === undefined || !this.#busy(k)));
      if (short.length > 0 && this.#rng.chance(0.5)) return this.#rng.pick(short);
    }
    return this.#rng.pick(kinds);
  }

  /** True when a fault of `kind` cannot start now: one episode of each network fault, one partition at a time. */
  #busy(kind: FaultKind): boolean {
    if (kind === 'partition') return this.#network.sides !== null;
    return this.#active.has(kind);
  }

  #duration(): number {
    const [min, max] = this.#options.duration ?? [300, 3000];
    return this.#rng.between(min, max);
  }

  async #inject(kind: FaultKind): Promise<void> {
    switch (kind) {
      case 'join':
        this.#join();
        return;
      case 'leave':
        await this.#leave();
        return;
      case 'fail':
        this.#fail();
        return;
      case 'partition':
        if (this.#network.sides === null) this.#partition();
        return;
      case 'crash':
        this.#crash();
        return;
      case 'pause': {
        const available = this.#cluster.available();
        const paused = this.#cluster.alive().length - available.length;
        if (available.length <= 1 || paused >= this.#maxDown()) return;
        const id = this.#rng.pick(available);
        const ms = this.#duration();
        this.#cluster.pause(id, ms);
        this.counts.pause++;
        this.#record('pause', `${id} frozen for ${ms} ms`);
        return;
      }
      case 'loss': {
        if (this.#active.has('loss')) return;
        const [min, max] = this.#options.lossRate ?? [0.02, 0.3];
        const rate = min + this.#rng.next() * (max - min);
        this.#network.conditions.lossRate = rate;
        this.#episode('loss', `frame loss ${(rate * 100).toFixed(1)}%`, () => {
          this.#network.conditions.lossRate = this.#base.lossRate;
        });
        return;
      }
      case 'reorder':
        if (this.#active.has('reorder')) return;
        this.#network.conditions.reorder = true;
        this.#network.conditions.latencyTail = this.#options.reorderTail ?? 20;
        this.#episode('reorder', `reordering, latency tail ${this.#network.conditions.latencyTail} ms`, () => {
          this.#network.conditions.reorder = this.#base.reorder;
          this.#network.conditions.latencyTail = this.#base.latencyTail;
        });
        return;
      case 'duplicate': {
        if (this.#active.has('duplicate')) return;
        const rate = this.#options.duplicateRate ?? 0.1;
        this.#network.conditions.duplicateRate = rate;
        this.#episode('duplicate', `frame duplication ${(rate * 100).toFixed(0)}%`, () => {
          this.#network.conditions.duplicateRate = this.#base.duplicateRate;
        });
        return;
      }
    }
  }

  #episode(kind: 'loss' | 'reorder' | 'duplicate', detail: string, end: () => void): void {
    this.#active.add(kind);
    this.counts[kind]++;
    this.#record(kind, detail);
    this.#scheduler.schedule(this.#duration(), () => {
      if (this.#stopped || !this.#active.delete(kind)) return;
      end();
      this.#record('heal', `${kind} ended`);
    });
  }

  #partition(): void {
    const ids = this.#rng.shuffle(this.#cluster.memberIds());
    const sides = new Map<string, Side>();
    const shape = this.#rng.int(ids.length >= 3 ? 3 : 1);
    let detail: string;
    if (shape === 0) {
      sides.set(ids[0]!, 'b');
      detail = `${ids[0]} isolated`;
    } else if (shape === 1) {
      const minority = ids.slice(0, this.#rng.between(1, Math.max(1, Math.floor((ids.length - 1) / 2))));
      for (const id of minority) sides.set(id, 'b');
      detail = `minority {${minority.join(',')}} cut off from the other ${ids.length - minority.length}`;
    } else {
      const bridge = ids[0]!;
      const rest = ids.slice(1);
      const cut = this.#rng.between(1, rest.length - 1);
      sides.set(bridge, 'bridge');
      for (const id of rest.slice(cut)) sides.set(id, 'b');
      detail = `bridge ${bridge} between {${rest.slice(0, cut).join(',')}} and {${rest.slice(cut).join(',')}}`;
    }
    this.#network.partition(sides);
    this.counts.partition++;
    this.#record('partition', detail);
    this.#scheduler.schedule(this.#duration(), () => {
      if (this.#stopped || this.#network.sides !== sides) return;
      this.#healPartition();
    });
  }

  #healPartition(): void {
    this.#network.heal();
    this.#record('heal', 'partition healed');
  }

  /** How many nodes may be crashed at once, and, apart, how many paused. */
  #maxDown(): number {
    return this.#options.maxCrashed ?? Math.max(1, Math.floor(this.#size / 5));
  }

  #drift(): number {
    return this.#options.maxDrift ?? Math.max(2, Math.floor(this.#size / 5));
  }

  /** True when one more member may stop serving: churn keeps N + 1 running members in the view. */
  #canLoseOne(): boolean {
    return this.#cluster.live().length - 1 >= (this.#options.replicas ?? 3) + 1;
  }

  #crash(): void {
    const alive = this.#cluster.alive();
    const crashed = this.#cluster.crashed().length - this.#cluster.failed().length;
    if (crashed >= this.#maxDown() || alive.length <= 1) return;
    if (this.#churn && !this.#canLoseOne()) return;
    const id = this.#rng.pick(alive);
    const incarnation = this.#cluster.slot(id).incarnations;
    this.counts.crash++;
    this.#record('crash', `${id} crashed`);
    void this.#cluster.crash(id);
    this.#scheduler.schedule(this.#duration(), () => {
      // A later crash of the same node schedules its own restart.
      if (this.#stopped || this.#cluster.slot(id).incarnations !== incarnation) return;
      this.#cluster.restart(id);
      this.#record('heal', `${id} restarted`);
    });
  }

  #join(): void {
    if (this.#cluster.memberIds().length >= this.#size + this.#drift()) return;
    const id = this.#cluster.join();
    this.counts.join++;
    this.#record('join', `${id} joined with empty storage`);
  }

  async #leave(): Promise<void> {
    if (!this.#canLoseOne() || this.#cluster.memberIds().length <= this.#size - this.#drift()) return;
    for (const id of this.#rng.shuffle(this.#cluster.live())) {
      if (!(await this.#othersHoldAll(id))) continue;
      this.counts.leave++;
      this.#record('leave', `${id} left for good`);
      void this.#cluster.leave(id);
      return;
    }
  }

  /**
   * True when every version node `id` stores, in its main store or as a hint, is also stored (or superseded by a
   * version stored) by a node that has not left, whether running or down.
   */
  async #othersHoldAll(id: string): Promise<boolean> {
    const cluster = this.#cluster;
    const own = cluster.slot(id).data.reopen();
    const others = cluster.ids
      .filter((other) => other !== id && !cluster.slot(other).left)
      .map((other) => cluster.slot(other).data.reopen());
    try {
      const held: { key: Uint8Array; siblings: Version[] }[] = [...(await own.listHints())];
      for (let p = 0; p < cluster.ring.partitions; p++) held.push(...(await own.scanPartition(p)));
      for (const { key, siblings } of held) {
        const elsewhere: Version[] = [];
        for (const other of others) {
          elsewhere.push(...(await other.get(key)));
          for (const hint of await other.hintsFor(key)) elsewhere.push(...hint.siblings);
        }
        for (const version of siblings) {
          if (!elsewhere.some((e) => sameDot(e, version) || supersedes(e, version))) return false;
        }
      }
      return true;
    } finally {
      await Promise.all([own, ...others].map((handle) => handle.close()));
    }
  }

  #fail(): void {
    if (this.#cluster.failed().length >= this.#maxDown() || !this.#canLoseOne()) return;
    const id = this.#rng.pick(this.#cluster.live());
    const incarnation = this.#cluster.slot(id).incarnations;
    this.counts.fail++;
    this.#record('fail', `${id} failed`);
    void this.#cluster.fail(id);
    // It comes back after the view has dropped it: every failure moves partitions twice.
    this.#scheduler.schedule(this.#cluster.failureDetection + this.#duration(), () => {
      if (this.#stopped || this.#cluster.slot(id).incarnations !== incarnation) return;
      this.#cluster.rejoin(id);
      this.#record('heal', `${id} rejoined`);
    });
  }

  #record(kind: FaultEvent['kind'], detail: string): void {
    const event = { time: this.#scheduler.now, kind, detail };
    this.log.push(event);
    this.#options.onEvent?.(event);
  }
}
