/**
 * Cluster membership and failure detection, as plain state over an injected clock: no sockets, no timers. The server
 * calls one method per event (and {@link Membership.sweep} on a timer) and pushes the views each call reports as
 * changed. Every change of a cluster's view bumps its epoch; a call that changes nothing visible bumps nothing.
 *
 * The rules, with `interval` = heartbeatInterval, `timeout` = heartbeatTimeout and `grace` = suspectGrace:
 * - A member is in the view from its join. Each `heartbeat`, `lifecycle` (or join) refreshes its last-seen time.
 * - Silence: a member not seen for `timeout` leaves the view (failure `'heartbeat'`). If its connection is still
 *   open it stays joined, out of the view, and comes back (`alive`, same `joinedAt`) on its next heartbeat.
 * - Grace: a member that announced `lifecycle` `hidden` or `frozen` (and not `active` since) is held still by its
 *   browser, not dead: heartbeats come from its worker, whose timers a hidden tab does not throttle, but a frozen tab
 *   runs nothing. When such a member reaches `timeout` of silence it turns `suspect` and stays in the view, so its
 *   partitions do not move, until `timeout + grace` of silence, when it leaves (failure `'grace'`). Any heartbeat or
 *   `lifecycle` ends the grace (`alive` again; it catches up through hints and anti-entropy). The announcement lasts
 *   until `active`, a new join, or a closed connection. While announced, a member is not removed for missing a
 *   report's deadline (`'unconfirmed'`): its silence is explained; the majority rule still applies. `grace` 0 turns
 *   the rule off.
 * - Disconnection: the member turns `suspect` at once and leaves only through the silence rule, so a connection
 *   that drops and rejoins within `timeout` does not change the ring. A closed connection (a closed, crashed or
 *   navigated tab) also ends any announcement, so a dead tab leaves at `timeout` of silence as if it never announced.
 *   A connection dropped because it stopped answering the transport's pings (`'unanswered'`: a frozen tab cannot
 *   answer them) keeps its announcement and grace.
 * - Reports: a member of the view may report another as unreachable. A report makes the target `suspect` and sets
 *   a deadline of `2 × interval`: if the target sends no heartbeat by then it leaves the view (failure
 *   `'unconfirmed'`), since it is probably gone and the server would only learn it at `timeout`. A heartbeat meets
 *   the deadline; the target then stays `suspect` until its reports expire (`timeout` after each was made). When
 *   reports from at least two members and from a strict majority of the other members of the view are current, the
 *   target leaves the view even though it heartbeats (failure `'majority'`): most of the cluster cannot reach it.
 *   It is then kept out until `timeout` has passed, so it does not bounce straight back. One peer's word alone never
 *   removes a member the server can hear.
 * - Only a member joined for at least `reporterTenure` may report (else `ERR_UNAUTHORIZED`, nothing changes).
 * - `leave` removes the member at once; so does a newer join of the same node id from another connection, which
 *   takes the member over (the older connection is told it was superseded).
 * - Holders: a join may name holders, the keys the server counts quotas by (its client address, its token). A member
 *   counts against the holders of its latest join for as long as it is a member, in or out of the view: until it
 *   leaves, or its connection closed and its silence removed it ({@link Membership.held}).
 */
import type { Placement } from './placement.ts';
import type {
  ClusterView,
  LifecycleState,
  MemberState,
  MetricsSnapshot,
  NodeMetrics,
  SignalingErrorCode,
  ViewDelta,
  ViewMember,
} from './events.ts';

/** Default {@link MembershipOptions.reporterTenure}, ms. */
export const DEFAULT_REPORTER_TENURE = 10_000;

/** Why a member left its view without leaving. */
export type FailureReason = 'heartbeat' | 'unconfirmed' | 'majority' | 'grace';

/** Every {@link FailureReason}, for metrics labels. */
export const FAILURE_REASONS: readonly FailureReason[] = Object.freeze([
  'heartbeat',
  'unconfirmed',
  'majority',
  'grace',
]);

/** How a connection ended: `closed` by either end or by the network, or dropped for not answering pings. */
export type DisconnectCause = 'closed' | 'unanswered';

/** The lifecycle states a member can announce that explain its silence. */
export type QuietState = 'hidden' | 'frozen';

/** A silent member that turned suspect under the grace rule instead of leaving its view. */
export interface GraceStart {
  readonly cluster: string;
  readonly nodeId: string;
  /** What it announced. */
  readonly state: QuietState;
  /** Server time at which it leaves the view unless heard from. */
  readonly until: number;
}

/** Default of {@link MembershipOptions.suspectGrace}: five minutes, Chrome's own wait before freezing a hidden tab. */
export const DEFAULT_SUSPECT_GRACE = 5 * 60_000;

/** A member that left its view without leaving. */
export interface DetectedFailure {
  readonly cluster: string;
  readonly nodeId: string;
  readonly reason: FailureReason;
}

/** Options of {@link Membership}. */
export interface MembershipOptions {
  /** Expected time between heartbeats, in ms. @default 1000 */
  readonly heartbeatInterval: number;
  /** Silence after which a member leaves the view, in ms. @default 3000 */
  readonly heartbeatTimeout: number;
  /**
   * How long, in ms after `heartbeatTimeout` of silence, a member that announced its tab hidden or frozen stays in
   * the view as `suspect`; 0 turns the grace off. @default 300000 ({@link DEFAULT_SUSPECT_GRACE})
   */
  readonly suspectGrace?: number;
  /** Most members (in or out of the view) a cluster holds. @default 1000 */
  readonly maxMembersPerCluster: number;
  /**
   * How long a member must have been joined before its reports count, in ms: members joined just now (as a flood of
   * fake ones would be) cannot make others suspect or vote them out. @default 10000 ({@link DEFAULT_REPORTER_TENURE})
   */
  readonly reporterTenure?: number;
  /** The clock, in ms since the Unix epoch. @default Date.now */
  readonly now: () => number;
  /** Each member's placement on the ring (placement.ts). @default none: `''` for every member */
  readonly placement?: Placement;
}

/** Where a connection is joined. */
export interface Seat {
  readonly cluster: string;
  readonly nodeId: string;
}

/** What an operation did: the views that changed (to push), the failures it detected and the graces it began. */
export interface Changes {
  readonly views: readonly ClusterView[];
  /**
   * For each of `views`, in the same order, what changed since the cluster's previous view: what the server pushes,
   * so that a change costs its members O(change), not O(members).
   */
  readonly deltas?: readonly ViewDelta[];
  readonly failures: readonly DetectedFailure[];
  /** Members that turned suspect under the grace rule (from {@link Membership.sweep} only). */
  readonly graces?: readonly GraceStart[];
}

/** Outcome of an operation that can be refused. */
export type Outcome<T> =
  ({ readonly ok: true } & T) | { readonly ok: false; readonly code: SignalingErrorCode; readonly message: string };

/** Counts of the current state, for health checks and gauges. */
export interface MembershipStats {
  readonly clusters: number;
  /** Members in views, by state. */
  readonly alive: number;
  readonly suspect: number;
  /** Members of views that are suspect under the grace rule (counted in `suspect` too). */
  readonly inGrace: number;
  /** Joined connections out of their view (silent, or held out by reports). */
  readonly outOfView: number;
}

interface MemberRecord {
  readonly id: string;
  domain: string;
  readonly placement: string;
  /** What the node's latest join told (`JoinRequest.signedFrom`). */
  signedFrom: number | undefined;
  joinedAt: number;
  /** Null once its connection dropped; the record then lives until the silence rule removes it. */
  connection: string | null;
  lastSeen: number;
  inView: boolean;
  /** Reporter id → time of its latest report. */
  reports: Map<string, number>;
  /** When the target must have heartbeaten by, after a report; null when no deadline is pending. */
  reportDeadline: number | null;
  /** A member removed by a majority of reports stays out until then. */
  heldOutUntil: number;
  metrics: NodeMetrics | null;
  /** What the member last announced of its tab, unless `active` (null). */
  announced: QuietState | null;
  /** Silent past `timeout` and kept in the view by the grace rule. */
  inGrace: boolean;
  /** What it counts against: the holders its latest join named. */
  holders: readonly string[];
}

interface ClusterRecord {
  readonly name: string;
  epoch: number;
  view: ClusterView;
  readonly members: Map<string, MemberRecord>;
  /** The delta from the previous view to `view`, set with it. */
  delta: ViewDelta;
}

/**
 * A member as a shared store keeps it (redis-store.ts): every field of the server's record but its pushed metrics,
 * which live apart so that a push does not rewrite the cluster.
 */
export interface MemberSnapshot {
  readonly id: string;
  readonly domain: string;
  readonly placement: string;
  readonly signedFrom?: number;
  readonly joinedAt: number;
  readonly connection: string | null;
  readonly lastSeen: number;
  readonly inView: boolean;
  readonly reports: readonly (readonly [string, number])[];
  readonly reportDeadline: number | null;
  readonly heldOutUntil: number;
  readonly announced: QuietState | null;
  readonly inGrace: boolean;
  readonly holders: readonly string[];
}

/** A cluster as a shared store keeps it: its view and its members' records, in or out of the view. */
export interface ClusterSnapshot {
  readonly view: ClusterView;
  readonly members: readonly MemberSnapshot[];
}

/** The membership of every cluster on one server. */
export class Membership {
  readonly #options: MembershipOptions;
  readonly #grace: number;
  readonly #clusters = new Map<string, ClusterRecord>();
  readonly #seats = new Map<string, Seat>();
  /** Members counting against each holder; a holder no member counts against has no entry. */
  readonly #held = new Map<string, number>();
  /** The last epoch given to any cluster: one sequence for all, so a re-formed cluster never repeats an epoch. */
  #lastEpoch = 0;

  constructor(options: MembershipOptions) {
    this.#options = options;
    this.#grace = options.suspectGrace ?? DEFAULT_SUSPECT_GRACE;
  }

  /** The cluster and node a connection joined as, if it did. */
  seat(connection: string): Seat | undefined {
    return this.#seats.get(connection);
  }

  /** Puts back the seat of `connection` as it was before an operation that a shared store then refused to commit. */
  restoreSeat(connection: string, seat: Seat | undefined): void {
    if (seat === undefined) this.#seats.delete(connection);
    else this.#seats.set(connection, seat);
  }

  /** The current view of a cluster, if it has members. */
  view(cluster: string): ClusterView | undefined {
    return this.#clusters.get(cluster)?.view;
  }

  /** Every cluster name. */
  clusterNames(): string[] {
    return [...this.#clusters.keys()];
  }

  /** How many members, in or out of their views, count against `holder`: their latest join named it. */
  held(holder: string): number {
    return this.#held.get(holder) ?? 0;
  }

  /** Whether `nodeId` is a member of `cluster` that counts against `holder`: a join of it adds none to that count. */
  holds(cluster: string, nodeId: string, holder: string): boolean {
    return this.#clusters.get(cluster)?.members.get(nodeId)?.holders.includes(holder) === true;
  }

  /**
   * Joins `connection` to `cluster` as `nodeId`. A connection holds one seat: joining again with the same seat
   * refreshes it, with another seat is refused. A node id already held by another connection is taken over; that
   * connection is returned as `superseded`. The member counts against `holders` (and no longer against those of
   * its previous join).
   */
  join(
    connection: string,
    request: {
      readonly cluster: string;
      readonly nodeId: string;
      readonly domain: string;
      readonly signedFrom?: number;
    },
    holders: readonly string[] = [],
  ): Outcome<{ view: ClusterView; superseded: string | null; changes: Changes }> {
    const now = this.#options.now();
    const seat = this.#seats.get(connection);
    if (seat !== undefined && (seat.cluster !== request.cluster || seat.nodeId !== request.nodeId)) {
      return refuse(
        'ERR_INVALID_ARGUMENT',
        `this connection already joined cluster ${seat.cluster} as ${seat.nodeId}; leave first`,
      );
    }
    let cluster = this.#clusters.get(request.cluster);
    const existing = cluster?.members.get(request.nodeId);
    if (existing === undefined && cluster !== undefined && cluster.members.size >= this.#options.maxMembersPerCluster) {
      return refuse(
        'ERR_CLUSTER_FULL',
        `cluster ${request.cluster} has ${this.#options.maxMembersPerCluster} members, the most it may have`,
      );
    }
    if (cluster === undefined) {
      cluster = {
        name: request.cluster,
        epoch: 0,
        view: { cluster: request.cluster, epoch: 0, members: [] },
        members: new Map(),
        delta: { cluster: request.cluster, epoch: 0, prevEpoch: 0, upserts: [], removals: [] },
      };
      this.#clusters.set(request.cluster, cluster);
    }
    let superseded: string | null = null;
    if (existing !== undefined && existing.connection !== null && existing.connection !== connection) {
      superseded = existing.connection;
      this.#seats.delete(existing.connection);
    }
    const member: MemberRecord = existing ?? {
      id: request.nodeId,
      domain: request.domain,
      placement: this.#options.placement?.(request.cluster, request.nodeId) ?? '',
      signedFrom: request.signedFrom,
      joinedAt: now,
      connection,
      lastSeen: now,
      inView: true,
      reports: new Map(),
      reportDeadline: null,
      heldOutUntil: 0,
      metrics: null,
      announced: null,
      inGrace: false,
      holders: [],
    };
    // A join is a fresh start for the node: whatever peers said about its previous connection no longer applies.
    member.domain = request.domain;
    member.signedFrom = request.signedFrom;
    member.joinedAt = now;
    member.connection = connection;
    member.lastSeen = now;
    member.inView = true;
    member.reports.clear();
    member.reportDeadline = null;
    member.heldOutUntil = 0;
    // The tab announces its state again after every join: a new connection starts from "active".
    member.announced = null;
    member.inGrace = false;
    this.#count(member.holders, -1);
    member.holders = [...holders];
    this.#count(member.holders, 1);
    cluster.members.set(member.id, member);
    this.#seats.set(connection, { cluster: cluster.name, nodeId: member.id });
    const changed = this.#refresh(cluster, now);
    return {
      ok: true,
      view: cluster.view,
      superseded,
      changes: changesOf(changed ? [cluster] : [], []),
    };
  }

  /** Records a heartbeat; a member out of the view comes back unless it is held out. */
  heartbeat(connection: string): Outcome<{ view: ClusterView; changes: Changes }> {
    const found = this.#find(connection);
    if (found === undefined) return notJoined();
    const { cluster, member } = found;
    const now = this.#options.now();
    this.#hear(member, now);
    const changed = this.#refresh(cluster, now);
    return { ok: true, view: cluster.view, changes: changesOf(changed ? [cluster] : [], []) };
  }

  /**
   * Records what the member on `connection` says of its tab: `hidden` or `frozen` puts it under the grace rule,
   * `active` takes it out. It counts as a heartbeat too.
   */
  lifecycle(connection: string, state: LifecycleState): Outcome<{ view: ClusterView; changes: Changes }> {
    const found = this.#find(connection);
    if (found === undefined) return notJoined();
    const { cluster, member } = found;
    const now = this.#options.now();
    this.#hear(member, now);
    member.announced = state === 'active' ? null : state;
    const changed = this.#refresh(cluster, now);
    return { ok: true, view: cluster.view, changes: changesOf(changed ? [cluster] : [], []) };
  }

  /** Records that the member on `connection` cannot reach `target`; see the module comment for what follows. */
  report(connection: string, target: string): Outcome<{ state: 'suspect' | 'removed'; changes: Changes }> {
    const found = this.#find(connection);
    if (found === undefined) return notJoined();
    const { cluster, member: reporter } = found;
    if (!reporter.inView) return refuse('ERR_NOT_MEMBER', 'you are out of the view; heartbeat to return');
    if (target === reporter.id) return refuse('ERR_INVALID_ARGUMENT', 'a node cannot report itself');
    const tenure = this.#options.reporterTenure ?? DEFAULT_REPORTER_TENURE;
    if (this.#options.now() - reporter.joinedAt < tenure) {
      return refuse('ERR_UNAUTHORIZED', `a member may report others ${tenure} ms after it joined, not before`);
    }
    const reported = cluster.members.get(target);
    if (reported === undefined || !reported.inView) {
      return refuse('ERR_NOT_MEMBER', `${target} is not a member of the view of ${cluster.name}`);
    }
    const now = this.#options.now();
    reported.reports.set(reporter.id, now);
    reported.reportDeadline ??= now + 2 * this.#options.heartbeatInterval;
    const failures: DetectedFailure[] = [];
    if (this.#reportedByMajority(cluster, reported, now)) {
      this.#remove(cluster, reported, 'majority', now, failures);
    }
    const changed = this.#refresh(cluster, now);
    return {
      ok: true,
      state: reported.inView ? 'suspect' : 'removed',
      changes: changesOf(changed ? [cluster] : [], failures),
    };
  }

  /** Removes the member on `connection` from its cluster at once. Leaving without a seat changes nothing. */
  leave(connection: string): Changes {
    const found = this.#find(connection);
    if (found === undefined) return { views: [], failures: [] };
    const { cluster, member } = found;
    this.#seats.delete(connection);
    this.#drop(cluster, member);
    return this.#settle(cluster);
  }

  /**
   * The connection dropped: its member turns suspect, and leaves only if it stays silent. A `closed` connection ends
   * the member's announcement (and grace); an `unanswered` one keeps it.
   */
  disconnect(connection: string, cause: DisconnectCause = 'closed'): Changes {
    const found = this.#find(connection);
    if (found === undefined) {
      // A seat whose member another connection took over (known only from a shared store) goes with its connection.
      this.#seats.delete(connection);
      return { views: [], failures: [] };
    }
    const { cluster, member } = found;
    this.#seats.delete(connection);
    member.connection = null;
    if (cause === 'closed') {
      member.announced = null;
      member.inGrace = false;
    }
    if (!member.inView) this.#drop(cluster, member);
    return this.#settle(cluster);
  }

  /** The connection holding `nodeId`'s seat in the caller's view, for relaying a signal. */
  route(connection: string, to: string): Outcome<{ from: string; connection: string }> {
    const found = this.#find(connection);
    if (found === undefined) return notJoined();
    const { cluster, member } = found;
    if (!member.inView) return refuse('ERR_NOT_MEMBER', 'you are out of the view; heartbeat to return');
    if (to === member.id) return refuse('ERR_INVALID_ARGUMENT', 'a node cannot signal itself');
    const target = cluster.members.get(to);
    if (target === undefined || !target.inView) {
      return refuse('ERR_NOT_MEMBER', `${to} is not a member of the view of ${cluster.name}`);
    }
    if (target.connection === null) return refuse('ERR_NOT_MEMBER', `${to} is not connected`);
    return { ok: true, from: member.id, connection: target.connection };
  }

  /** Replaces the metrics snapshot of the member on `connection`. */
  setMetrics(connection: string, values: MetricsSnapshot): Outcome<object> {
    const found = this.#find(connection);
    if (found === undefined) return notJoined();
    found.member.metrics = { at: this.#options.now(), values };
    return { ok: true };
  }

  /** The latest metrics of every member of `cluster` that pushed some, by node id. */
  metrics(cluster: string): Record<string, NodeMetrics> {
    const result: Record<string, NodeMetrics> = {};
    const record = this.#clusters.get(cluster);
    if (record === undefined) return result;
    for (const member of [...record.members.values()].sort((a, b) => compare(a.id, b.id))) {
      if (member.metrics !== null) result[member.id] = member.metrics;
    }
    return result;
  }

  /** Applies the silence, grace and report rules at the current time; call it on a timer. */
  sweep(): Changes {
    const changed: ClusterRecord[] = [];
    const failures: DetectedFailure[] = [];
    const graces: GraceStart[] = [];
    for (const cluster of [...this.#clusters.values()]) {
      if (this.#sweepCluster(cluster, failures, graces)) changed.push(cluster);
    }
    return { ...changesOf(changed, failures), graces };
  }

  /** {@link Membership.sweep} of one cluster only (a shared store sweeps cluster by cluster). */
  sweepCluster(name: string): Changes {
    const cluster = this.#clusters.get(name);
    if (cluster === undefined) return { views: [], failures: [], graces: [] };
    const failures: DetectedFailure[] = [];
    const graces: GraceStart[] = [];
    const changed = this.#sweepCluster(cluster, failures, graces);
    return { ...changesOf(changed ? [cluster] : [], failures), graces };
  }

  /** Sweeps `cluster`; true when its view changed. */
  #sweepCluster(cluster: ClusterRecord, failures: DetectedFailure[], graces: GraceStart[]): boolean {
    const now = this.#options.now();
    const { heartbeatTimeout } = this.#options;
    for (const member of [...cluster.members.values()]) {
      this.#expireReports(member, now);
      const silence = now - member.lastSeen;
      const announced = member.announced !== null && this.#grace > 0 ? member.announced : null;
      if (member.inView && silence >= heartbeatTimeout) {
        if (announced === null) {
          this.#remove(cluster, member, 'heartbeat', now, failures);
        } else if (silence >= heartbeatTimeout + this.#grace) {
          this.#remove(cluster, member, 'grace', now, failures);
        } else if (!member.inGrace) {
          member.inGrace = true;
          const until = member.lastSeen + heartbeatTimeout + this.#grace;
          graces.push({ cluster: cluster.name, nodeId: member.id, state: announced, until });
        }
      } else if (
        member.inView &&
        announced === null &&
        member.reportDeadline !== null &&
        now >= member.reportDeadline
      ) {
        this.#remove(cluster, member, 'unconfirmed', now, failures);
      }
      if (!member.inView && member.connection === null) this.#drop(cluster, member);
    }
    if (cluster.members.size === 0) {
      this.#clusters.delete(cluster.name);
      return false;
    }
    return this.#refresh(cluster, now);
  }

  /** The record of one member, as a shared store keeps it; undefined when `nodeId` is no member of `cluster`. */
  memberSnapshot(cluster: string, nodeId: string): MemberSnapshot | undefined {
    const member = this.#clusters.get(cluster)?.members.get(nodeId);
    return member === undefined ? undefined : snapshotOf(member);
  }

  /** A cluster's whole state, as a shared store keeps it; undefined when it has no members. */
  exportCluster(name: string): ClusterSnapshot | undefined {
    const cluster = this.#clusters.get(name);
    if (cluster === undefined) return undefined;
    return { view: cluster.view, members: [...cluster.members.values()].map(snapshotOf) };
  }

  /**
   * Replaces what this instance holds of cluster `name` with `snapshot` (undefined: the cluster is gone), as read
   * from a shared store. Seats of connections whose member is now held elsewhere stop working (`ERR_NOT_JOINED`).
   */
  importCluster(name: string, snapshot: ClusterSnapshot | undefined): void {
    const old = this.#clusters.get(name);
    for (const member of old?.members.values() ?? []) this.#count(member.holders, -1);
    if (snapshot === undefined) {
      this.#clusters.delete(name);
      return;
    }
    const members = new Map<string, MemberRecord>();
    for (const entry of snapshot.members) {
      const member: MemberRecord = {
        id: entry.id,
        domain: entry.domain,
        placement: entry.placement,
        signedFrom: entry.signedFrom,
        joinedAt: entry.joinedAt,
        connection: entry.connection,
        lastSeen: entry.lastSeen,
        inView: entry.inView,
        reports: new Map(entry.reports),
        reportDeadline: entry.reportDeadline,
        heldOutUntil: entry.heldOutUntil,
        metrics: old?.members.get(entry.id)?.metrics ?? null,
        announced: entry.announced,
        inGrace: entry.inGrace,
        holders: [...entry.holders],
      };
      members.set(member.id, member);
      this.#count(member.holders, 1);
    }
    const { view } = snapshot;
    this.#clusters.set(name, {
      name,
      epoch: view.epoch,
      view,
      members,
      delta: { cluster: name, epoch: view.epoch, prevEpoch: view.epoch, upserts: [], removals: [] },
    });
    this.#lastEpoch = Math.max(this.#lastEpoch, view.epoch);
  }

  /**
   * Gives the latest view of `name` the epoch a shared store handed out for it (its own is provisional), and returns
   * the view and its delta as they now are.
   */
  restamp(name: string, epoch: number): { view: ClusterView; delta: ViewDelta } | undefined {
    const cluster = this.#clusters.get(name);
    if (cluster === undefined) return undefined;
    cluster.epoch = epoch;
    cluster.view = Object.freeze({ ...cluster.view, epoch });
    cluster.delta = Object.freeze({ ...cluster.delta, epoch });
    this.#lastEpoch = Math.max(this.#lastEpoch, epoch);
    return { view: cluster.view, delta: cluster.delta };
  }

  /** Counts for health checks and gauges. */
  stats(): MembershipStats {
    let alive = 0;
    let suspect = 0;
    let inGrace = 0;
    let outOfView = 0;
    for (const cluster of this.#clusters.values()) {
      for (const member of cluster.view.members) {
        if (member.state === 'alive') alive++;
        else suspect++;
        if (cluster.members.get(member.id)?.inGrace === true) inGrace++;
      }
      outOfView += cluster.members.size - cluster.view.members.length;
    }
    return { clusters: this.#clusters.size, alive, suspect, inGrace, outOfView };
  }

  #find(connection: string): { cluster: ClusterRecord; member: MemberRecord } | undefined {
    const seat = this.#seats.get(connection);
    if (seat === undefined) return undefined;
    const cluster = this.#clusters.get(seat.cluster);
    const member = cluster?.members.get(seat.nodeId);
    if (cluster === undefined || member === undefined || member.connection !== connection) return undefined;
    return { cluster, member };
  }

  /** The member was heard from: it proves itself alive, ends any grace and returns to the view unless held out. */
  #hear(member: MemberRecord, now: number): void {
    member.lastSeen = now;
    member.reportDeadline = null;
    member.inGrace = false;
    if (!member.inView && member.heldOutUntil <= now) {
      member.inView = true;
      member.reports.clear();
    }
  }

  #expireReports(member: MemberRecord, now: number): void {
    for (const [reporter, at] of member.reports) {
      if (now - at >= this.#options.heartbeatTimeout) member.reports.delete(reporter);
    }
    if (member.reports.size === 0) member.reportDeadline = null;
  }

  #reportedByMajority(cluster: ClusterRecord, target: MemberRecord, now: number): boolean {
    this.#expireReports(target, now);
    let others = 0;
    for (const member of cluster.members.values()) {
      if (member.inView && member !== target) others++;
    }
    let reporters = 0;
    for (const reporter of target.reports.keys()) {
      if (cluster.members.get(reporter)?.inView === true) reporters++;
    }
    return reporters >= 2 && 2 * reporters > others;
  }

  #remove(cluster: ClusterRecord, member: MemberRecord, reason: FailureReason, now: number, out: DetectedFailure[]) {
    member.inView = false;
    member.inGrace = false;
    member.reports.clear();
    member.reportDeadline = null;
    member.heldOutUntil = reason === 'majority' ? now + this.#options.heartbeatTimeout : 0;
    out.push({ cluster: cluster.name, nodeId: member.id, reason });
  }

  /** The member is no longer one: it stops counting against its holders. */
  #drop(cluster: ClusterRecord, member: MemberRecord): void {
    cluster.members.delete(member.id);
    this.#count(member.holders, -1);
  }

  #count(holders: readonly string[], by: 1 | -1): void {
    for (const holder of holders) {
      const count = (this.#held.get(holder) ?? 0) + by;
      if (count > 0) this.#held.set(holder, count);
      else this.#held.delete(holder);
    }
  }

  /** Drops an emptied cluster, or refreshes its view; reports the view when it changed. */
  #settle(cluster: ClusterRecord): Changes {
    if (cluster.members.size === 0) {
      this.#clusters.delete(cluster.name);
      return { views: [], failures: [] };
    }
    const changed = this.#refresh(cluster, this.#options.now());
    return changesOf(changed ? [cluster] : [], []);
  }

  /** Recomputes the view; bumps the epoch and returns true when it differs from the last one. */
  #refresh(cluster: ClusterRecord, now: number): boolean {
    const members: ViewMember[] = [];
    for (const member of cluster.members.values()) {
      if (!member.inView) continue;
      const state: MemberState =
        member.connection === null || member.reports.size > 0 || member.inGrace ? 'suspect' : 'alive';
      members.push({
        id: member.id,
        domain: member.domain,
        placement: member.placement,
        state,
        joinedAt: member.joinedAt,
        ...(member.signedFrom !== undefined ? { signedFrom: member.signedFrom } : {}),
      });
    }
    members.sort((a, b) => compare(a.id, b.id));
    if (cluster.epoch > 0 && sameMembers(cluster.view.members, members)) return false;
    const previous = cluster.view;
    this.#lastEpoch = Math.max(this.#lastEpoch + 1, Math.floor(now));
    cluster.epoch = this.#lastEpoch;
    cluster.view = Object.freeze({ cluster: cluster.name, epoch: cluster.epoch, members: Object.freeze(members) });
    cluster.delta = Object.freeze({
      ...viewDelta(previous.members, members),
      cluster: cluster.name,
      epoch: cluster.epoch,
      prevEpoch: previous.epoch,
    });
    return true;
  }
}

function changesOf(clusters: readonly ClusterRecord[], failures: readonly DetectedFailure[]): Changes {
  return { views: clusters.map((cluster) => cluster.view), deltas: clusters.map((cluster) => cluster.delta), failures };
}

function snapshotOf(member: MemberRecord): MemberSnapshot {
  return {
    id: member.id,
    domain: member.domain,
    placement: member.placement,
    ...(member.signedFrom !== undefined ? { signedFrom: member.signedFrom } : {}),
    joinedAt: member.joinedAt,
    connection: member.connection,
    lastSeen: member.lastSeen,
    inView: member.inView,
    reports: [...member.reports],
    reportDeadline: member.reportDeadline,
    heldOutUntil: member.heldOutUntil,
    announced: member.announced,
    inGrace: member.inGrace,
    holders: [...member.holders],
  };
}

/** What turns the members `before` into `after` (both sorted by id): the changed or new members, the ids gone. */
export function viewDelta(
  before: readonly ViewMember[],
  after: readonly ViewMember[],
): { upserts: ViewMember[]; removals: string[] } {
  const old = new Map(before.map((member) => [member.id, member]));
  const upserts: ViewMember[] = [];
  for (const member of after) {
    const was = old.get(member.id);
    old.delete(member.id);
    if (was === undefined || !sameMember(was, member)) upserts.push(member);
  }
  return { upserts, removals: [...old.keys()] };
}

function sameMembers(a: readonly ViewMember[], b: readonly ViewMember[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((member, i) => {
    const other = b[i];
    return other !== undefined && sameMember(member, other);
  });
}

function sameMember(member: ViewMember, other: ViewMember): boolean {
  return (
    member.id === other.id &&
    member.domain === other.domain &&
    member.placement === other.placement &&
    member.state === other.state &&
    member.joinedAt === other.joinedAt &&
    member.signedFrom === other.signedFrom
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function refuse(code: SignalingErrorCode, message: string): { ok: false; code: SignalingErrorCode; message: string } {
  return { ok: false, code, message };
}

function notJoined(): { ok: false; code: SignalingErrorCode; message: string } {
  return refuse('ERR_NOT_JOINED', 'this connection has not joined a cluster; join first');
}
