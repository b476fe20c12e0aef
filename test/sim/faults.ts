/**
 * The fault driver: while the clients run, it injects faults at random times and heals each after a random while.
 * Partitions (one node alone, a minority against a majority, or two sides joined only through a bridge node),
 * crashes (with restart over the same data), frame loss, reordering, duplication, and pauses (a node frozen like a
 * background tab: its timers and incoming frames wait, so its replies come late rather than never). At most one partition and
 * one episode of each network fault are active at once; crashes overlap up to a limit.
 */
import type { Cluster } from './cluster.ts';
import type { Network, NetworkConditions, Side } from './network.ts';
import type { Rng } from './random.ts';
import type { Scheduler } from './scheduler.ts';

/** The faults a run can inject. */
export type FaultKind = 'partition' | 'crash' | 'loss' | 'reorder' | 'duplicate' | 'pause';

/** Every fault kind, in a stable order. */
export const FAULT_KINDS: readonly FaultKind[] = Object.freeze([
  'partition',
  'crash',
  'loss',
  'reorder',
  'duplicate',
  'pause',
]);

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
  /** Most nodes crashed at once, and most paused at once. @default max(1, floor(nodes / 5)) */
  readonly maxCrashed?: number;
  /** Frame loss rate while a loss fault lasts, drawn uniformly. @default [0.02, 0.3] */
  readonly lossRate?: readonly [number, number];
  /** Frame duplication rate while a duplication fault lasts. @default 0.1 */
  readonly duplicateRate?: number;
  /** Mean exponential latency tail while reordering, ms. @default 20 */
  readonly reorderTail?: number;
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
  };
  readonly #scheduler: Scheduler;
  readonly #network: Network;
  readonly #cluster: Cluster;
  readonly #rng: Rng;
  readonly #options: FaultOptions;
  readonly #base: NetworkConditions;
  readonly #active = new Set<FaultKind>();
  #stopped = false;

  constructor(scheduler: Scheduler, network: Network, cluster: Cluster, rng: Rng, options: FaultOptions) {
    this.#scheduler = scheduler;
    this.#network = network;
    this.#cluster = cluster;
    this.#rng = rng;
    this.#options = options;
    this.#base = { ...network.conditions };
  }

  /** Starts injecting; runs on the scheduler until {@link stop}. */
  start(): void {
    if (this.#options.kinds.length === 0) return;
    void this.#loop();
  }

  /** Stops injecting and heals everything: partition, network faults, and restarts every crashed node. */
  stop(): void {
    this.#stopped = true;
    if (this.#network.sides !== null) this.#healPartition();
    Object.assign(this.#network.conditions, this.#base);
    for (const kind of ['loss', 'reorder', 'duplicate'] as const) {
      if (this.#active.delete(kind)) this.#record('heal', `${kind} ended`);
    }
    for (const id of this.#cluster.crashed()) {
      this.#cluster.restart(id);
      this.#record('heal', `${id} restarted`);
    }
    for (const id of this.#cluster.alive()) {
      if (!this.#cluster.available().includes(id)) {
        this.#cluster.pause(id, 0);
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
      this.#inject(first.shift() ?? this.#rng.pick(this.#options.kinds));
    }
  }

  #duration(): number {
    const [min, max] = this.#options.duration ?? [300, 3000];
    return this.#rng.between(min, max);
  }

  #inject(kind: FaultKind): void {
    switch (kind) {
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
    const ids = this.#rng.shuffle(this.#cluster.ids);
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
    return this.#options.maxCrashed ?? Math.max(1, Math.floor(this.#cluster.ids.length / 5));
  }

  #crash(): void {
    const alive = this.#cluster.alive();
    if (this.#cluster.crashed().length >= this.#maxDown() || alive.length <= 1) return;
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

  #record(kind: FaultEvent['kind'], detail: string): void {
    const event = { time: this.#scheduler.now, kind, detail };
    this.log.push(event);
    this.#options.onEvent?.(event);
  }
}
