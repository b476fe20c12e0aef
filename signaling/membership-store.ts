/**
 * Where the signalling server keeps cluster membership: the one seam between the server and its state. The server
 * awaits every call, so the state can live in this process ({@link LocalMembershipStore}, the default) or in Redis
 * shared by several server processes (redis-store.ts). The rules themselves are {@link Membership}'s in both.
 *
 * Connections are the Socket.IO ids of this process's sockets; a store shared by processes tells them apart itself.
 */
import type { ClusterView, LifecycleState, MetricsSnapshot, NodeMetrics } from './events.ts';
import {
  Membership,
  type Changes,
  type DisconnectCause,
  type MembershipOptions,
  type MembershipStats,
  type Outcome,
  type Seat,
} from './membership.ts';

/** The fields of a join a store needs. */
export interface JoinFields {
  readonly cluster: string;
  readonly nodeId: string;
  readonly domain: string;
  readonly signedFrom?: number;
}

/** What a join did: the view, the connection that held the id before (to tell it), and the changes to push. */
export interface Joined {
  readonly view: ClusterView;
  /** The Socket.IO id of the connection the member was taken over from, on whichever process holds it. */
  readonly superseded: string | null;
  readonly changes: Changes;
}

/** A relay's route: the sender's node id, as the server knows it. */
export interface Route {
  readonly from: string;
}

/** Membership state, as the signalling server uses it; see {@link Membership} for the rules. */
export interface MembershipStore {
  /** The cluster and node a connection of this process joined as, if it did. */
  seat(connection: string): Seat | undefined;
  /** The latest view of `cluster` this process knows, without asking anyone (exact for the local store). */
  knownView(cluster: string): ClusterView | undefined;
  /** The current view of `cluster`, or undefined when it has no members. */
  view(cluster: string): Promise<ClusterView | undefined>;
  /** How many clusters exist. */
  clusterCount(): Promise<number>;
  /** How many existing clusters a join from `address` created. */
  createdBy(address: string): Promise<number>;
  /** How many members count against `holder` (see {@link Membership.held}). */
  held(holder: string): Promise<number>;
  /** Whether `nodeId` of `cluster` counts against `holder` already. */
  holds(cluster: string, nodeId: string, holder: string): Promise<boolean>;
  /** See {@link Membership.join}; `address` is remembered as the cluster's creator when the join creates it. */
  join(connection: string, request: JoinFields, holders: readonly string[], address: string): Promise<Outcome<Joined>>;
  heartbeat(connection: string): Promise<Outcome<{ view: ClusterView; changes: Changes }>>;
  lifecycle(connection: string, state: LifecycleState): Promise<Outcome<{ view: ClusterView; changes: Changes }>>;
  report(connection: string, target: string): Promise<Outcome<{ state: 'suspect' | 'removed'; changes: Changes }>>;
  leave(connection: string): Promise<Changes>;
  disconnect(connection: string, cause: DisconnectCause): Promise<Changes>;
  /** Checks that the member on `connection` may relay to `to` (both connected members of one view). */
  route(connection: string, to: string): Promise<Outcome<Route>>;
  setMetrics(connection: string, values: MetricsSnapshot): Promise<Outcome<object>>;
  /** The latest metrics of every member of `cluster` that pushed some, by node id. */
  metrics(cluster: string): Promise<Record<string, NodeMetrics>>;
  /** The snapshots pushed through this process, for its `/metrics`. */
  localSnapshots(): Iterable<{ cluster: string; node: string; values: MetricsSnapshot }>;
  /** Runs failure detection (with a shared store: this process's turn at it, if it is its turn). */
  sweep(): Promise<Changes>;
  stats(): Promise<MembershipStats>;
  /** Releases what the store holds (connections to Redis); idempotent. */
  close(): Promise<void>;
}

/** The in-memory store of one server process: {@link Membership} and who created each cluster. */
export class LocalMembershipStore implements MembershipStore {
  readonly #membership: Membership;
  /** Which address created each cluster, while it is held (entries of clusters gone are dropped as they are met). */
  readonly #creators = new Map<string, string>();

  constructor(options: MembershipOptions) {
    this.#membership = new Membership(options);
  }

  seat(connection: string): Seat | undefined {
    return this.#membership.seat(connection);
  }

  knownView(cluster: string): ClusterView | undefined {
    return this.#membership.view(cluster);
  }

  view(cluster: string): Promise<ClusterView | undefined> {
    return Promise.resolve(this.#membership.view(cluster));
  }

  clusterCount(): Promise<number> {
    return Promise.resolve(this.#membership.clusterNames().length);
  }

  createdBy(address: string): Promise<number> {
    let count = 0;
    for (const [cluster, creator] of this.#creators) {
      if (this.#membership.view(cluster) === undefined) this.#creators.delete(cluster);
      else if (creator === address) count++;
    }
    return Promise.resolve(count);
  }

  held(holder: string): Promise<number> {
    return Promise.resolve(this.#membership.held(holder));
  }

  holds(cluster: string, nodeId: string, holder: string): Promise<boolean> {
    return Promise.resolve(this.#membership.holds(cluster, nodeId, holder));
  }

  join(connection: string, request: JoinFields, holders: readonly string[], address: string): Promise<Outcome<Joined>> {
    const creating = this.#membership.view(request.cluster) === undefined;
    const joined = this.#membership.join(connection, request, holders);
    if (joined.ok && creating) this.#creators.set(request.cluster, address);
    return Promise.resolve(joined);
  }

  heartbeat(connection: string): Promise<Outcome<{ view: ClusterView; changes: Changes }>> {
    return Promise.resolve(this.#membership.heartbeat(connection));
  }

  lifecycle(connection: string, state: LifecycleState): Promise<Outcome<{ view: ClusterView; changes: Changes }>> {
    return Promise.resolve(this.#membership.lifecycle(connection, state));
  }

  report(connection: string, target: string): Promise<Outcome<{ state: 'suspect' | 'removed'; changes: Changes }>> {
    return Promise.resolve(this.#membership.report(connection, target));
  }

  leave(connection: string): Promise<Changes> {
    return Promise.resolve(this.#membership.leave(connection));
  }

  disconnect(connection: string, cause: DisconnectCause): Promise<Changes> {
    return Promise.resolve(this.#membership.disconnect(connection, cause));
  }

  route(connection: string, to: string): Promise<Outcome<Route>> {
    return Promise.resolve(this.#membership.route(connection, to));
  }

  setMetrics(connection: string, values: MetricsSnapshot): Promise<Outcome<object>> {
    return Promise.resolve(this.#membership.setMetrics(connection, values));
  }

  metrics(cluster: string): Promise<Record<string, NodeMetrics>> {
    return Promise.resolve(this.#membership.metrics(cluster));
  }

  *localSnapshots(): Iterable<{ cluster: string; node: string; values: MetricsSnapshot }> {
    for (const cluster of this.#membership.clusterNames()) {
      for (const [node, { values }] of Object.entries(this.#membership.metrics(cluster))) {
        yield { cluster, node, values };
      }
    }
  }

  sweep(): Promise<Changes> {
    return Promise.resolve(this.#membership.sweep());
  }

  stats(): Promise<MembershipStats> {
    return Promise.resolve(this.#membership.stats());
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
