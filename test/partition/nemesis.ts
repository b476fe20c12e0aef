/**
 * The nemesis of the partition test: seeded, logged, and overlapping. Every one to three seconds it starts a fault
 * whose kind is free: a network partition injected in the nodes' own transports (one node alone, a minority
 * against a majority, or a bridge: one node seeing both sides, which do not see each other), a tab closed and a new
 * one opened, a tab reloaded, the signalling server killed and restarted on its port, or one tab's context taken
 * offline. Partitions, the server outage and the offline tab each last a few seconds, and may overlap one another.
 * The first actions go through every kind once, so even a short run meets them all.
 */
import type { Rng } from '../sim/random.ts';
import type { SignalingProcess } from './servers.ts';
import type { Tab, Tabs } from './tabs.ts';

/** The kinds of fault. */
export const FAULT_KINDS = [
  'partition-one',
  'partition-minority',
  'partition-bridge',
  'close-open',
  'reload',
  'server-restart',
  'offline',
] as const;

/** One of {@link FAULT_KINDS}. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A partition of the nodes: which group each is in, and which groups still see each other. */
interface Cut {
  readonly kind: FaultKind;
  readonly groups: Map<string, number>;
  /** Pairs of groups `a-b` (a < b) that still see each other: the bridge's. */
  readonly links: ReadonlySet<string>;
  /** The groups a node that joins during the cut may be put in. */
  readonly joinable: readonly number[];
}

/** What happened to one tab while it was offline, for the report. */
export interface OfflineEpisode {
  readonly node: string;
  readonly start: number;
  readonly end: number;
  /** Peers the offline tab still called connected halfway through. */
  readonly connectedPeersMidway: number;
  /** Peers it was connected to just before. */
  readonly connectedPeersBefore: number;
}

/** Options of a {@link Nemesis}. */
export interface NemesisOptions {
  readonly rng: Rng;
  readonly tabs: Tabs;
  readonly server: SignalingProcess;
  /** Appends one line to the nemesis log. */
  readonly log: (line: string) => void;
  /** Least ms between two tab closes: Dynamo keeps acknowledged writes through one permanent failure at a time. @default 8000 */
  readonly closeGap?: number;
  /**
   * Whether the cluster has re-made the copies the last close took (every owner holds its partitions); a tab is
   * closed only then, since losing a second copy before the first is re-made may lose what W=2 acknowledged.
   * @default always true
   */
  readonly safeToClose?: () => Promise<boolean>;
  /** Ms between the starts of two actions, least and most. @default [1000, 3000] */
  readonly gap?: readonly [number, number];
  /** How long a partition, a server outage and an offline tab last, least and most ms. @default [2000, 6000] */
  readonly duration?: readonly [number, number];
}

/** Runs faults until stopped, then heals what it broke. */
export class Nemesis {
  /** Faults started, by kind. */
  readonly counts: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
    FaultKind,
    number
  >;
  readonly offline: OfflineEpisode[] = [];
  /** Closes skipped because the cluster had not yet re-made the copies of the last one. */
  closesDeferred = 0;
  /** Ms from each kill of the signalling server until it answered again. */
  readonly serverOutages: number[] = [];
  /** Actions that failed (a tab that would not open, a server that would not start): each a finding. */
  readonly errors: string[] = [];
  readonly #options: NemesisOptions;
  readonly #rng: Rng;
  readonly #episodes = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  readonly #applying = new Map<Tab, Promise<void>>();
  #cut: Cut | null = null;
  #serverBusy = false;
  #closing = false;
  #lastClose = -Infinity;
  #loop: Promise<void> = Promise.resolve();
  readonly #t0 = Date.now();

  constructor(options: NemesisOptions) {
    this.#options = options;
    this.#rng = options.rng;
  }

  /** Starts the loop of faults. */
  start(): void {
    this.#loop = this.#run();
  }

  /** Stops starting faults, ends those in force (healing partitions, bringing the tab online, the server up). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    while (this.#episodes.size > 0) await Promise.all([...this.#episodes]);
  }

  /** Makes a tab's transport match the partition in force; call after the tab (re)opened its store. */
  sync(tab: Tab): Promise<void> {
    const previous = this.#applying.get(tab) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (!tab.ready) return;
      const blocked = this.#blockedFor(tab);
      try {
        await tab.evaluate(async (ids) => {
          const faults = window.store?.faults;
          if (faults === undefined) throw new Error('the store has no faults');
          await faults.heal();
          if (ids.length > 0) await faults.isolate(ids);
        }, blocked);
      } catch (error) {
        // The tab is reloading or closing: it is synced again once it is back.
        if (tab.ready) this.errors.push(`sync of ${tab.label} failed: ${String(error)}`);
      }
    });
    this.#applying.set(tab, next);
    return next;
  }

  #log(line: string): void {
    this.#options.log(`${String(Date.now() - this.#t0).padStart(7)} ms  ${line}`);
  }

  async #run(): Promise<void> {
    const [least, most] = this.#options.gap ?? [1000, 3000];
    const firsts = this.#rng.shuffle(FAULT_KINDS);
    while (!this.#stop.signal.aborted) {
      await this.#sleep(this.#rng.between(least, most));
      if (this.#stop.signal.aborted) break;
      const free = FAULT_KINDS.filter((k) => this.#canStart(k));
      if (free.length === 0) continue;
      const pending = firsts.filter((k) => this.counts[k] === 0);
      // Kinds not yet met go first, in a seeded order, as soon as they can start.
      const kind = pending.find((k) => free.includes(k)) ?? this.#rng.pick(free);
      const episode = this.#episode(kind).catch((error: unknown) => {
        const message = `${kind} failed: ${error instanceof Error ? error.message : String(error)}`;
        this.errors.push(message);
        this.#log(message);
      });
      this.#episodes.add(episode);
      void episode.finally(() => this.#episodes.delete(episode));
    }
  }

  #canStart(kind: FaultKind): boolean {
    const { tabs } = this.#options;
    const idle = tabs.live.filter((t) => t.ready && !t.busy);
    switch (kind) {
      case 'partition-one':
      case 'partition-minority':
      case 'partition-bridge':
        return this.#cut === null && tabs.live.filter((t) => t.ready).length >= 3;
      case 'close-open':
        return !this.#closing && Date.now() - this.#lastClose >= (this.#options.closeGap ?? 8000) && idle.length > 0;
      case 'reload':
      case 'offline':
        return idle.length > 0 && (kind === 'reload' || !tabs.live.some((t) => t.offline));
      case 'server-restart':
        return !this.#serverBusy;
    }
  }

  async #episode(kind: FaultKind): Promise<void> {
    switch (kind) {
      case 'partition-one':
      case 'partition-minority':
      case 'partition-bridge':
        return this.#partition(kind);
      case 'close-open':
        return this.#closeOpen();
      case 'reload':
        return this.#reload();
      case 'server-restart':
        return this.#serverRestart();
      case 'offline':
        return this.#offline();
    }
  }

  #duration(): number {
    const [least, most] = this.#options.duration ?? [2000, 6000];
    return this.#rng.between(least, most);
  }

  async #partition(kind: FaultKind): Promise<void> {
    const ids = this.#rng.shuffle(this.#options.tabs.live.filter((t) => t.ready).map((t) => t.nodeId));
    const groups = new Map<string, number>();
    let links = new Set<string>();
    let joinable: number[];
    if (kind === 'partition-one') {
      ids.forEach((id, i) => groups.set(id, i === 0 ? 0 : 1));
      joinable = [1];
    } else if (kind === 'partition-minority') {
      const minority = Math.floor((ids.length - 1) / 2);
      ids.forEach((id, i) => groups.set(id, i < minority ? 0 : 1));
      joinable = [0, 1];
    } else {
      // The bridge (group 0) sees both sides; the sides do not see each other.
      const half = Math.ceil((ids.length - 1) / 2);
      ids.forEach((id, i) => groups.set(id, i === 0 ? 0 : i <= half ? 1 : 2));
      links = new Set(['0-1', '0-2']);
      joinable = [1, 2];
    }
    const cut: Cut = { kind, groups, links, joinable };
    this.#cut = cut;
    this.counts[kind]++;
    const describe = [0, 1, 2]
      .map((g) => ids.filter((id) => groups.get(id) === g))
      .filter((g) => g.length > 0)
      .map((g) => `{${g.join(' ')}}`)
      .join(kind === 'partition-bridge' ? ' ⇄ ' : ' | ');
    const ms = this.#duration();
    this.#log(`${kind} for ${ms} ms: ${describe}`);
    await this.#syncAll();
    await this.#sleep(ms);
    this.#cut = null;
    await this.#syncAll();
    this.#log(`${kind} healed`);
  }

  async #closeOpen(): Promise<void> {
    const { tabs } = this.#options;
    this.#closing = true;
    let tab: Tab | undefined;
    try {
      if (this.#options.safeToClose !== undefined && !(await this.#options.safeToClose())) {
        this.closesDeferred++;
        // Try again in two seconds, and let other kinds of fault go meanwhile.
        this.#lastClose = Date.now() - (this.#options.closeGap ?? 8000) + 2000;
        this.#log('close deferred: some owner is still fetching a partition');
        return;
      }
      const candidates = tabs.live.filter((t) => t.ready && !t.busy);
      if (candidates.length === 0) return;
      tab = this.#rng.pick(candidates);
      tab.busy = true;
      this.counts['close-open']++;
      this.#lastClose = Date.now();
      this.#log(`close ${tab.label} (${tab.nodeId})`);
      await tabs.close(tab);
      const fresh = await tabs.open();
      this.#log(`opened ${fresh.label} (${fresh.nodeId})`);
      await this.#syncAll();
    } finally {
      this.#closing = false;
      if (tab !== undefined) this.#lastClose = Date.now();
    }
  }

  async #reload(): Promise<void> {
    const { tabs } = this.#options;
    const tab = this.#rng.pick(tabs.live.filter((t) => t.ready && !t.busy && !t.offline));
    tab.busy = true;
    this.counts.reload++;
    try {
      this.#log(`reload ${tab.label} (${tab.nodeId})`);
      const start = Date.now();
      await tabs.reload(tab);
      this.#log(`${tab.label} back as ${tab.nodeId} after ${Date.now() - start} ms`);
      await this.sync(tab);
    } finally {
      tab.busy = false;
    }
  }

  async #serverRestart(): Promise<void> {
    const { server } = this.#options;
    this.#serverBusy = true;
    this.counts['server-restart']++;
    try {
      const signal = this.#rng.chance(0.5) ? 'SIGKILL' : 'SIGTERM';
      const ms = this.#rng.between(500, 3000);
      this.#log(`server ${signal}, down for ${ms} ms`);
      const down = Date.now();
      await server.stop(signal);
      await this.#sleep(ms);
      const start = Date.now();
      await server.start();
      this.serverOutages.push(Date.now() - down);
      this.#log(`server up again (start took ${Date.now() - start} ms)`);
    } finally {
      this.#serverBusy = false;
    }
  }

  async #offline(): Promise<void> {
    const { tabs } = this.#options;
    const tab = this.#rng.pick(tabs.live.filter((t) => t.ready && !t.busy));
    tab.busy = true;
    this.counts.offline++;
    try {
      const ms = this.#duration();
      const before = await this.#connectedPeers(tab);
      this.#log(`offline ${tab.label} (${tab.nodeId}) for ${ms} ms`);
      const start = Date.now();
      await tabs.setOffline(tab, true);
      await this.#sleep(ms / 2);
      const midway = await this.#connectedPeers(tab);
      await this.#sleep(ms / 2);
      await tabs.setOffline(tab, false);
      const end = Date.now();
      this.offline.push({
        node: tab.nodeId,
        start,
        end,
        connectedPeersBefore: before,
        connectedPeersMidway: midway,
      });
      this.#log(`online ${tab.label} (connected peers before ${before}, midway ${midway})`);
    } finally {
      tab.busy = false;
    }
  }

  async #connectedPeers(tab: Tab): Promise<number> {
    return tab
      .evaluate(() => Object.values(window.store?.peers() ?? {}).filter((s) => s === 'connected').length, null)
      .catch(() => -1);
  }

  #blockedFor(tab: Tab): string[] {
    const cut = this.#cut;
    if (cut === null) return [];
    const live = this.#options.tabs.live.filter((t) => t.nodeId !== '' && t !== tab).map((t) => t.nodeId);
    const mine = this.#groupOf(cut, tab.nodeId);
    return live.filter((id) => {
      const theirs = this.#groupOf(cut, id);
      if (theirs === mine) return false;
      return !cut.links.has(`${Math.min(mine, theirs)}-${Math.max(mine, theirs)}`);
    });
  }

  /** A node's group; a node that joined during the cut is put in a group it may join, once. */
  #groupOf(cut: Cut, id: string): number {
    let group = cut.groups.get(id);
    if (group === undefined) {
      group = this.#rng.pick(cut.joinable);
      cut.groups.set(id, group);
      this.#log(`${id} joined during ${cut.kind}, into group ${group}`);
    }
    return group;
  }

  async #syncAll(): Promise<void> {
    await Promise.all(this.#options.tabs.live.map((t) => this.sync(t)));
  }

  /** Sleeps `ms`, or less when the nemesis is stopped. */
  #sleep(ms: number): Promise<void> {
    const signal = this.#stop.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done);
    });
  }
}
