/**
 * Cluster membership kept in Redis, shared by every process of one signalling service. Each process applies the same
 * rules ({@link Membership}) to a working copy of a cluster read from Redis, then commits the result with a Lua script
 * that writes it only if nobody committed since the copy was read (the cluster's `rev`), and hands out the new view's
 * epoch from one counter (`max(last + 1, now)`), so no two processes give the same or a smaller epoch. A refused
 * commit reads the cluster again and applies the operation anew.
 *
 * Keys, under the service's prefix:
 * - `c:<cluster>`: hash of `rev`, `epoch`, `state` (the members' records and the view, JSON) and `creator`;
 * - `seen:<cluster>`: hash node id → when it was last heard; heartbeats write here only, O(1), unless the member's
 *   state changes (it was out of the view, suspect, in grace), and a sweep takes the latest of both;
 * - `metrics:<cluster>`: hash node id → its pushed snapshot;
 * - `clusters` (set), `epoch` (the last epoch handed out), `held` and `creators` (quota counts), `procs` (sorted set of
 *   live processes by their last sweep time), `sweep` and `swept` (the lock of the process sweeping, the time of
 *   the last sweep).
 *
 * Failure detection: every process marks itself alive each `sweepInterval`; the first process to claim an interval
 * (a Lua script over the time of the last sweep, and a lock while it runs) sweeps every cluster. A member whose connection is on a process not alive for `heartbeatTimeout` (it
 * died) is treated as disconnected, so the silence rule fails it unless its tab re-joins, on any process.
 */
import type { Redis } from 'ioredis';
import type { ClusterView, LifecycleState, MetricsSnapshot, NodeMetrics } from './events.ts';
import {
  Membership,
  type Changes,
  type ClusterSnapshot,
  type DisconnectCause,
  type MemberSnapshot,
  type MembershipOptions,
  type MembershipStats,
  type Outcome,
  type Seat,
} from './membership.ts';
import type { JoinFields, Joined, MembershipStore, Route } from './membership-store.ts';

/** Options of {@link RedisMembershipStore}. */
export interface RedisStoreOptions {
  /** A connected ioredis client for commands (not the adapter's subscriber). */
  readonly redis: Redis;
  /** Prefix of every key. */
  readonly prefix: string;
  /** This process's name in the service: `[A-Za-z0-9_.-]{1,64}`. */
  readonly processId: string;
  /** The rules' settings, as for {@link Membership}. */
  readonly membership: MembershipOptions;
  /** How often the server sweeps, in ms: the service sweeps about this often, whichever process does. */
  readonly sweepInterval: number;
}

/** How many heartbeat timeouts a dead process is remembered for. */
const PROCESS_MEMORY = 100;

/** Commits refused in a row before an operation gives up (each follows a commit of another process). */
const MAX_ATTEMPTS = 50;

/** The pattern of process ids: no `/`, which separates them from socket ids in member records. */
export const PROCESS_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Commits a cluster. KEYS: cluster hash, clusters set, epoch, held, creators, seen, metrics. ARGV: the rev the state
 * was read at, the new state ('' when the cluster is gone), the cluster name, '1' when its view changed, the time,
 * the creator's address ('' for none), then pairs of holder and count change. Returns [-1] when another commit came
 * first, else [new rev, epoch handed out (0 when the view did not change)].
 */
const COMMIT = `
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return {-1, 0} end
local epoch = 0
if ARGV[2] == '' then
  local creator = redis.call('HGET', KEYS[1], 'creator')
  if creator and creator ~= '' then
    if redis.call('HINCRBY', KEYS[5], creator, -1) <= 0 then redis.call('HDEL', KEYS[5], creator) end
  end
  redis.call('DEL', KEYS[1], KEYS[6], KEYS[7])
  redis.call('SREM', KEYS[2], ARGV[3])
else
  if ARGV[4] == '1' then
    local last = tonumber(redis.call('GET', KEYS[3]) or '0')
    epoch = math.max(last + 1, tonumber(ARGV[5]))
    redis.call('SET', KEYS[3], string.format('%d', epoch))
    redis.call('HSET', KEYS[1], 'epoch', string.format('%d', epoch))
  end
  redis.call('HSET', KEYS[1], 'rev', rev + 1, 'state', ARGV[2])
  if rev == 0 then
    redis.call('SADD', KEYS[2], ARGV[3])
    if ARGV[6] ~= '' then
      redis.call('HSET', KEYS[1], 'creator', ARGV[6])
      redis.call('HINCRBY', KEYS[5], ARGV[6], 1)
    end
  end
end
for i = 7, #ARGV, 2 do
  if redis.call('HINCRBY', KEYS[4], ARGV[i], tonumber(ARGV[i + 1])) <= 0 then redis.call('HDEL', KEYS[4], ARGV[i]) end
end
return {rev + 1, epoch}
`;

/**
 * Claims this interval's sweep. KEYS: lock, time of the last sweep; ARGV: process id, time, least ms between sweeps,
 * ms the lock lasts if its holder dies mid-sweep. Returns 1 when the caller is to sweep.
 */
const CLAIM = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) - last < tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2])
return 1
`;

/** Releases the sweep lock if the caller holds it. KEYS: lock; ARGV: process id. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`;

/** A heartbeat's one write: KEYS cluster hash, seen; ARGV node id, time. Returns the cluster's rev (0: gone). */
const TOUCH = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
`;

type Redis_ = Redis & {
  dynameshCommit(...args: (string | number)[]): Promise<[number, number]>;
  dynameshTouch(...args: (string | number)[]): Promise<number>;
  dynameshClaim(...args: (string | number)[]): Promise<number>;
  dynameshRelease(...args: (string | number)[]): Promise<number>;
};

/** Membership of every cluster of a service, in Redis; see the module comment. */
export class RedisMembershipStore implements MembershipStore {
  readonly #redis: Redis_;
  readonly #prefix: string;
  readonly #processId: string;
  readonly #options: RedisStoreOptions;
  /** The working copy: the clusters this process read last, and the seats of its own connections. */
  readonly #work: Membership;
  /** The rev of each cluster in the working copy. */
  readonly #revs = new Map<string, number>();
  /**
   * The tail of each cluster's queue: one operation on a cluster at a time in this process, from its read to its
   * commit, since they share the working copy.
   */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Snapshots pushed through this process's connections, by connection, for its `/metrics`. */
  readonly #snapshots = new Map<string, { cluster: string; node: string; values: MetricsSnapshot }>();

  constructor(options: RedisStoreOptions) {
    if (!PROCESS_ID_PATTERN.test(options.processId)) {
      throw new RangeError(`processId must match ${String(PROCESS_ID_PATTERN)}, got ${options.processId}`);
    }
    this.#options = options;
    this.#prefix = options.prefix;
    this.#processId = options.processId;
    const redis = options.redis as Redis_;
    if (typeof redis.dynameshCommit !== 'function') {
      redis.defineCommand('dynameshCommit', { numberOfKeys: 7, lua: COMMIT });
      redis.defineCommand('dynameshTouch', { numberOfKeys: 2, lua: TOUCH });
      redis.defineCommand('dynameshClaim', { numberOfKeys: 2, lua: CLAIM });
      redis.defineCommand('dynameshRelease', { numberOfKeys: 1, lua: RELEASE });
    }
    this.#redis = redis;
    this.#work = new Membership(options.membership);
  }

  seat(connection: string): Seat | undefined {
    return this.#work.seat(this.#key(connection));
  }

  knownView(cluster: string): ClusterView | undefined {
    return this.#work.view(cluster);
  }

  view(cluster: string): Promise<ClusterView | undefined> {
    return this.#locked(cluster, async () => {
      await this.#load(cluster);
      return this.#work.view(cluster);
    });
  }

  async clusterCount(): Promise<number> {
    return this.#redis.scard(this.#k('clusters'));
  }

  async createdBy(address: string): Promise<number> {
    return Number((await this.#redis.hget(this.#k('creators'), address)) ?? 0);
  }

  async held(holder: string): Promise<number> {
    return Number((await this.#redis.hget(this.#k('held'), holder)) ?? 0);
  }

  holds(cluster: string, nodeId: string, holder: string): Promise<boolean> {
    return this.#locked(cluster, async () => {
      await this.#load(cluster);
      return this.#work.holds(cluster, nodeId, holder);
    });
  }

  async join(
    connection: string,
    request: JoinFields,
    holders: readonly string[],
    address: string,
  ): Promise<Outcome<Joined>> {
    const key = this.#key(connection);
    const joined = await this.#locked(request.cluster, () =>
      this.#apply(request.cluster, key, () => this.#work.join(key, request, holders), address),
    );
    if (!joined.ok || joined.superseded === null) return joined;
    return { ...joined, superseded: socketOf(joined.superseded) };
  }

  async heartbeat(connection: string): Promise<Outcome<{ view: ClusterView; changes: Changes }>> {
    const key = this.#key(connection);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.heartbeat(key);
    return this.#locked(seat.cluster, async () => {
      const now = this.#options.membership.now();
      const rev = await this.#redis.dynameshTouch(
        this.#k(`c:${seat.cluster}`),
        this.#k(`seen:${seat.cluster}`),
        seat.nodeId,
        now,
      );
      const member = this.#work.memberSnapshot(seat.cluster, seat.nodeId);
      // The common case: the copy is current and hearing the member changes nothing but its last-heard time, which
      // the write above recorded. Anything else goes through a commit.
      if (rev === this.#revs.get(seat.cluster) && member !== undefined && quietlyHeard(member, key)) {
        return this.#work.heartbeat(key);
      }
      return this.#apply(seat.cluster, key, () => this.#work.heartbeat(key));
    });
  }

  async lifecycle(
    connection: string,
    state: LifecycleState,
  ): Promise<Outcome<{ view: ClusterView; changes: Changes }>> {
    const key = this.#key(connection);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.lifecycle(key, state);
    return this.#locked(seat.cluster, () => this.#apply(seat.cluster, key, () => this.#work.lifecycle(key, state)));
  }

  async report(
    connection: string,
    target: string,
  ): Promise<Outcome<{ state: 'suspect' | 'removed'; changes: Changes }>> {
    const key = this.#key(connection);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.report(key, target);
    return this.#locked(seat.cluster, () => this.#apply(seat.cluster, key, () => this.#work.report(key, target)));
  }

  async leave(connection: string): Promise<Changes> {
    const key = this.#key(connection);
    this.#snapshots.delete(key);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.leave(key);
    return this.#locked(seat.cluster, () => this.#apply(seat.cluster, key, () => this.#work.leave(key)));
  }

  async disconnect(connection: string, cause: DisconnectCause): Promise<Changes> {
    const key = this.#key(connection);
    this.#snapshots.delete(key);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.disconnect(key, cause);
    return this.#locked(seat.cluster, () => this.#apply(seat.cluster, key, () => this.#work.disconnect(key, cause)));
  }

  async route(connection: string, to: string): Promise<Outcome<Route>> {
    const key = this.#key(connection);
    const seat = this.#work.seat(key);
    if (seat === undefined) return this.#work.route(key, to);
    return this.#locked(seat.cluster, async () => {
      await this.#load(seat.cluster);
      return this.#work.route(key, to);
    });
  }

  async setMetrics(connection: string, values: MetricsSnapshot): Promise<Outcome<object>> {
    const key = this.#key(connection);
    const seat = this.#work.seat(key);
    const checked = this.#work.setMetrics(key, values);
    if (!checked.ok || seat === undefined) return checked;
    const metrics: NodeMetrics = { at: this.#options.membership.now(), values };
    await this.#redis.hset(this.#k(`metrics:${seat.cluster}`), seat.nodeId, JSON.stringify(metrics));
    this.#snapshots.set(key, { cluster: seat.cluster, node: seat.nodeId, values });
    return checked;
  }

  async metrics(cluster: string): Promise<Record<string, NodeMetrics>> {
    const members = await this.#locked(cluster, async () => {
      await this.#load(cluster);
      return new Set(this.#work.exportCluster(cluster)?.members.map((member) => member.id) ?? []);
    });
    const stored = await this.#redis.hgetall(this.#k(`metrics:${cluster}`));
    const result: Record<string, NodeMetrics> = {};
    for (const id of Object.keys(stored).sort()) {
      if (members.has(id)) result[id] = JSON.parse(stored[id]!) as NodeMetrics;
    }
    return result;
  }

  localSnapshots(): Iterable<{ cluster: string; node: string; values: MetricsSnapshot }> {
    return this.#snapshots.values();
  }

  async sweep(): Promise<Changes> {
    const now = this.#options.membership.now();
    await this.#redis.zadd(this.#k('procs'), now, this.#processId);
    // One process sweeps each interval, whichever claims it first: the others would only find nothing to change.
    const gap = Math.floor(this.#options.sweepInterval * 0.8);
    const lockMs = Math.max(1000, 4 * this.#options.sweepInterval);
    const claimed = await this.#redis.dynameshClaim(
      this.#k('sweep'),
      this.#k('swept'),
      this.#processId,
      now,
      gap,
      lockMs,
    );
    if (claimed !== 1) return { views: [], failures: [], graces: [] };
    try {
      return await this.#sweepAll(now);
    } finally {
      await this.#redis.dynameshRelease(this.#k('sweep'), this.#processId);
    }
  }

  async #sweepAll(now: number): Promise<Changes> {
    const { heartbeatTimeout } = this.#options.membership;
    // Processes dead for long are forgotten: their members were failed long ago.
    await this.#redis.zremrangebyscore(this.#k('procs'), '-inf', now - PROCESS_MEMORY * heartbeatTimeout);
    const alive = new Set(await this.#redis.zrangebyscore(this.#k('procs'), now - heartbeatTimeout, '+inf'));
    const views: ClusterView[] = [];
    const deltas: NonNullable<Changes['deltas']>[number][] = [];
    const failures: Changes['failures'][number][] = [];
    const graces: NonNullable<Changes['graces']>[number][] = [];
    for (const cluster of await this.#redis.smembers(this.#k('clusters'))) {
      const changes = await this.#locked(cluster, () =>
        this.#apply(cluster, undefined, () => this.#work.sweepCluster(cluster), '', alive),
      );
      views.push(...changes.views);
      deltas.push(...(changes.deltas ?? []));
      failures.push(...changes.failures);
      graces.push(...(changes.graces ?? []));
    }
    return { views, deltas, failures, graces };
  }

  async stats(): Promise<MembershipStats> {
    const clusters = new Set(await this.#redis.smembers(this.#k('clusters')));
    for (const name of this.#work.clusterNames()) {
      if (!clusters.has(name)) await this.#locked(name, async () => this.#forget(name));
    }
    for (const name of clusters) await this.#locked(name, () => this.#load(name));
    return this.#work.stats();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Runs `operation` on a fresh copy of `cluster` and commits what it changed, again on a newer copy as long as
   * another process committed first. `connection` is the caller's, whose seat is put back before a retry;
   * `alive`, for a sweep, the live processes (members on others count as disconnected).
   */
  async #apply<T>(
    cluster: string,
    connection: string | undefined,
    operation: () => T,
    creator = '',
    alive?: ReadonlySet<string>,
  ): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { rev, stored: read } = await this.#load(cluster, alive);
      const before = this.#work.exportCluster(cluster);
      // What Redis holds: a sweep's copy differs by the members of dead processes it disconnected.
      const stored = alive === undefined ? before : read;
      const seat = connection === undefined ? undefined : this.#work.seat(connection);
      const result = operation();
      const after = this.#work.exportCluster(cluster);
      if (JSON.stringify(after) === JSON.stringify(stored)) return result;
      const viewChanged = after !== undefined && after.view !== before?.view;
      const [newRev, epoch] = await this.#redis.dynameshCommit(
        this.#k(`c:${cluster}`),
        this.#k('clusters'),
        this.#k('epoch'),
        this.#k('held'),
        this.#k('creators'),
        this.#k(`seen:${cluster}`),
        this.#k(`metrics:${cluster}`),
        rev,
        after === undefined ? '' : JSON.stringify(after),
        cluster,
        viewChanged ? '1' : '0',
        Math.floor(this.#options.membership.now()),
        creator,
        ...holderChanges(stored, after),
      );
      if (newRev >= 0) {
        if (after === undefined) this.#revs.delete(cluster);
        else this.#revs.set(cluster, newRev);
        await this.#forgetMembers(cluster, stored, after);
        return epoch > 0 ? this.#restamped(result, cluster, epoch) : result;
      }
      // Another process committed first: read again, from the seat this connection had.
      if (connection !== undefined) this.#work.restoreSeat(connection, seat);
      this.#revs.delete(cluster);
    }
    throw new Error(`cluster ${cluster}: ${MAX_ATTEMPTS} commits in a row lost to other processes`);
  }

  /** Runs `task` once every earlier task on `cluster` in this process has settled. */
  #locked<T>(cluster: string, task: () => Promise<T>): Promise<T> {
    const run = (this.#queues.get(cluster) ?? Promise.resolve()).then(task, task);
    const tail = run.catch(() => {});
    this.#queues.set(cluster, tail);
    void tail.then(() => {
      if (this.#queues.get(cluster) === tail) this.#queues.delete(cluster);
    });
    return run;
  }

  /**
   * Brings the working copy of `cluster` up to date; returns its rev and what Redis holds. With `alive` (a sweep) it
   * always reads, last-heard times included, and marks disconnected the members whose process is not in `alive`.
   */
  async #load(
    cluster: string,
    alive?: ReadonlySet<string>,
  ): Promise<{ rev: number; stored: ClusterSnapshot | undefined }> {
    const key = this.#k(`c:${cluster}`);
    if (alive === undefined) {
      const rev = Number((await this.#redis.hget(key, 'rev')) ?? 0);
      if (rev === (this.#revs.get(cluster) ?? 0) && (rev === 0) === (this.#work.view(cluster) === undefined)) {
        return { rev, stored: this.#work.exportCluster(cluster) };
      }
    }
    const replies = await this.#redis
      .multi()
      .hgetall(key)
      .hgetall(this.#k(`seen:${cluster}`))
      .exec();
    const fields = (replies?.[0]?.[1] ?? {}) as Record<string, string>;
    const seen = (replies?.[1]?.[1] ?? {}) as Record<string, string>;
    const rev = Number(fields['rev'] ?? 0);
    const state = fields['state'];
    if (state === undefined || state === '') {
      this.#forget(cluster);
      return { rev, stored: undefined };
    }
    const parsed = JSON.parse(state) as ClusterSnapshot;
    const snapshot: ClusterSnapshot = {
      view: { ...parsed.view, epoch: Number(fields['epoch'] ?? parsed.view.epoch) },
      members: parsed.members.map((member) => ({
        ...member,
        lastSeen: Math.max(member.lastSeen, Number(seen[member.id] ?? 0)),
      })),
    };
    this.#work.importCluster(cluster, alive === undefined ? snapshot : withoutDeadConnections(snapshot, alive));
    this.#revs.set(cluster, rev);
    return { rev, stored: snapshot };
  }

  /** Drops what Redis keeps beside the cluster (last heard, metrics) of the members gone from `before` to `after`. */
  async #forgetMembers(
    cluster: string,
    before: ClusterSnapshot | undefined,
    after: ClusterSnapshot | undefined,
  ): Promise<void> {
    if (after === undefined || before === undefined) return;
    const kept = new Set(after.members.map((member) => member.id));
    const gone = before.members.map((member) => member.id).filter((id) => !kept.has(id));
    if (gone.length === 0) return;
    await this.#redis
      .multi()
      .hdel(this.#k(`seen:${cluster}`), ...gone)
      .hdel(this.#k(`metrics:${cluster}`), ...gone)
      .exec();
  }

  #forget(cluster: string): void {
    this.#work.importCluster(cluster, undefined);
    this.#revs.delete(cluster);
  }

  /** `result` with the view of `cluster` stamped with the epoch Redis handed out. */
  #restamped<T>(result: T, cluster: string, epoch: number): T {
    const stamped = this.#work.restamp(cluster, epoch);
    if (stamped === undefined || typeof result !== 'object' || result === null) return result;
    const fix = (changes: Changes): Changes => ({
      ...changes,
      views: changes.views.map((view) => (view.cluster === cluster ? stamped.view : view)),
      ...(changes.deltas === undefined
        ? {}
        : { deltas: changes.deltas.map((delta) => (delta.cluster === cluster ? stamped.delta : delta)) }),
    });
    const record = result as Record<string, unknown>;
    if ('views' in record) return fix(result as unknown as Changes) as T;
    return {
      ...record,
      ...('view' in record ? { view: stamped.view } : {}),
      ...('changes' in record ? { changes: fix(record['changes'] as Changes) } : {}),
    } as T;
  }

  #key(connection: string): string {
    return `${this.#processId}/${connection}`;
  }

  #k(name: string): string {
    return `${this.#prefix}${name}`;
  }
}

/** Whether hearing `member` (on `connection`) changes nothing but its last-heard time. */
function quietlyHeard(member: MemberSnapshot, connection: string): boolean {
  return (
    member.connection === connection &&
    member.inView &&
    !member.inGrace &&
    member.reportDeadline === null &&
    member.reports.length === 0
  );
}

/** `snapshot` with members whose connection is on a process not in `alive` disconnected, as a closed one is. */
function withoutDeadConnections(snapshot: ClusterSnapshot, alive: ReadonlySet<string>): ClusterSnapshot {
  return {
    view: snapshot.view,
    members: snapshot.members.map((member) =>
      member.connection === null || alive.has(processOf(member.connection))
        ? member
        : { ...member, connection: null, announced: null, inGrace: false },
    ),
  };
}

function processOf(connection: string): string {
  return connection.slice(0, connection.lastIndexOf('/'));
}

function socketOf(connection: string): string {
  return connection.slice(connection.lastIndexOf('/') + 1);
}

/** Holder and count-change pairs from `before` to `after`, for the commit script. */
function holderChanges(before: ClusterSnapshot | undefined, after: ClusterSnapshot | undefined): (string | number)[] {
  const change = new Map<string, number>();
  for (const member of before?.members ?? []) {
    for (const holder of member.holders) change.set(holder, (change.get(holder) ?? 0) - 1);
  }
  for (const member of after?.members ?? []) {
    for (const holder of member.holders) change.set(holder, (change.get(holder) ?? 0) + 1);
  }
  return [...change].filter(([, by]) => by !== 0).flat();
}
