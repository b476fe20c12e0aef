/**
 * The coordinator of gets and puts, as named steps over a per-request state (after Voldemort's routed pipeline):
 * choose replicas, write locally, replicate in parallel with fallbacks, count acknowledgements, repair reads.
 *
 * A put is coordinated by a node of the key's preference list, which draws the new dot from its own counter and
 * ships the key's whole sibling set (see version.ts for why the whole set). Other nodes forward the put to one.
 * A get may be coordinated by any node. Each replica slot that does not answer within the per-node timeout is
 * handed to the next fallback of the ring walk, which keeps what it is sent as a hint for the owner it stands in for.
 *
 * While an owner streams in a partition it just took over (membership change), requests are routed as Cassandra
 * routes pending ranges: writes go to every owner, the fetching one included, which stores them; a read of a
 * fetching owner is answered whole, its copy merged with a holder's (replica.ts); a put goes to an owner that holds
 * the partition, and only when no owner does is it held back until the transfer ends (the dot invariant above).
 */
import {
  type DynameshError,
  InvalidArgumentError,
  NotResponsibleError,
  QuorumError,
  StaleContextError,
  errorFromCode,
  hasErrorCode,
} from '../errors.ts';
import type { Logger } from '../env.ts';
import type { Holding } from '../membership/holders.ts';
import type { Peers, Reply, ReplyHandler } from '../transport/peers.ts';
import type { KeyBounds, WireReceipt } from '../wire/protocol.ts';
import type { Ring } from '../ring/ring.ts';
import type { LocalWriteResult, Storage } from '../storage/storage.ts';
import type { DotHorizon } from '../versions/horizon.ts';
import { type VClock, EMPTY_CLOCK, counterOf, merge } from '../versions/vclock.ts';
import { type Version, clockOf, contextCoversAll, resolve, sameSiblings } from '../versions/version.ts';
import type { Metrics } from '../metrics.ts';
import { carryingTimeout } from '../wire/fit.ts';

/** What the coordinator needs from its node. */
export interface CoordinatorDeps {
  readonly self: string;
  /** Replication factor N. */
  readonly n: number;
  readonly storage: Storage;
  readonly peers: Peers;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Per-node reply timeout, ms. */
  readonly requestTimeout: number;
  /** How long a forwarded put may take at its coordinator, ms. */
  readonly forwardTimeout: number;
  /** What a put may leave of its key; checked atomically with the local write. */
  readonly bounds: KeyBounds;
  /** The highest dot counter of each node that this node has seen: counters up to it were issued. */
  readonly horizon: DotHorizon;
  /** The ring of the current view. */
  ring(): Ring;
  /**
   * True when this node holds a complete copy of `partition`. An owner still fetching one neither coordinates its
   * puts (its new dot could claim to follow earlier dots of its own that it does not have yet) nor answers its reads.
   */
  holds(partition: number): boolean;
  /** Resolves true once this node holds `partition`, or false when it is not coming soon (see Ownership.whenHeld). */
  whenHeld(partition: number): Promise<boolean>;
  /** The members that hold a whole copy of `partition`, as learnt or asked now (see Holders.find). */
  findHolders(partition: number): Promise<Holding>;
  /** The members known to hold a whole copy of `partition`, without asking (see Holders.known). */
  knownHolders(partition: number): readonly string[];
  /** The key's siblings on this node: its main store merged with any hints it holds for the key. */
  readLocal(key: Uint8Array): Promise<Version[]>;
  /** The key's siblings as this node answers a read: whole even while it still fetches the partition. */
  readWhole(key: Uint8Array): Promise<Version[]>;
  /** The current wall-clock time. */
  now(): number;
}

/** A put as the coordinator receives it, validated. */
export interface PutRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
  readonly context: VClock;
  readonly w: number;
  readonly r: number;
  readonly ifMatch: boolean;
  readonly durable: boolean;
}

/** The outcome of a put. */
export interface PutOutcome {
  /** The new version's clock. */
  readonly context: VClock;
  readonly receipt: WireReceipt;
}

/** The outcome of a get. */
export interface GetOutcome {
  /** The merged siblings, tombstones included. */
  readonly siblings: Version[];
  readonly coordinator: string;
  /** The nodes whose replies the answer was built from. */
  readonly replied: string[];
}

/** The replicas a request goes to, in order: owners of the preference list, then fallbacks. */
interface Plan {
  readonly partition: number;
  readonly owners: readonly string[];
  readonly fallbacks: readonly string[];
}

/** Coordinates gets and puts for one node. */
export class Coordinator {
  readonly #deps: CoordinatorDeps;
  /** The ring the cached plans were made from, and its plans by partition. */
  #plannedRing: Ring | null = null;
  #plans: (Plan | undefined)[] = [];

  constructor(deps: CoordinatorDeps) {
    this.#deps = deps;
  }

  /** The partition, preference list and fallbacks for `key` under the current ring. */
  plan(key: Uint8Array): Plan {
    const ring = this.#deps.ring();
    if (ring !== this.#plannedRing) {
      this.#plannedRing = ring;
      this.#plans = [];
    }
    const partition = ring.partitionOf(key);
    let plan = this.#plans[partition];
    if (plan === undefined) {
      const walk = ring.walk(partition);
      plan = Object.freeze({
        partition,
        owners: Object.freeze(walk.slice(0, this.#deps.n)),
        fallbacks: Object.freeze(walk.slice(this.#deps.n)),
      });
      this.#plans[partition] = plan;
    }
    return plan;
  }

  /**
   * Puts (or deletes, when `value` is null) as coordinator when this node owns the key and holds its partition,
   * else forwards it to an owner that can.
   */
  async put(request: PutRequest): Promise<PutOutcome> {
    const { self } = this.#deps;
    const tried = new Set<string>();
    let lastError: DynameshError | undefined;
    // Each step plans afresh: a forward can take seconds, and the view may change meanwhile.
    for (let plan = this.plan(request.key); ; plan = this.plan(request.key)) {
      const owner = plan.owners.includes(self);
      if (owner && (await this.#mayCoordinate(plan))) return this.coordinatePut(request, plan);
      const next = this.#nextCoordinator(plan, tried);
      if (next === undefined) {
        // No other owner could coordinate: this one, still fetching, does once its transfer ends soon enough.
        if (owner && (await this.#deps.whenHeld(plan.partition))) return this.coordinatePut(request, plan);
        break;
      }
      tried.add(next);
      const forwarded = await this.#forwardPut(request, next);
      if ('outcome' in forwarded) return forwarded.outcome;
      lastError = forwarded.lastError ?? lastError;
    }
    this.#deps.metrics.count('quorumFailures');
    throw new QuorumError("no node of the key's preference list could coordinate the put", request.w, 0, {
      cause: lastError,
    });
  }

  /** Coordinates a put this node owns; `NotResponsibleError` when it does not, or may not yet. */
  async coordinatePut(request: PutRequest, plan: Plan = this.plan(request.key)): Promise<PutOutcome> {
    const { self, metrics } = this.#deps;
    if (!plan.owners.includes(self)) {
      throw new NotResponsibleError(`node ${self} is not in the preference list of this key`);
    }
    if (!(await this.#mayCoordinate(plan))) {
      metrics.count('putsRedirected');
      throw new NotResponsibleError(`node ${self} is still fetching partition ${plan.partition}`);
    }
    await this.#checkContext(request, plan);
    const local = await this.#writeLocal(request, plan);
    metrics.count('localWrites');
    const receipt = await this.#replicate(request, plan, local.siblings);
    return { context: clockOf(local.version), receipt };
  }

  /**
   * Step: whether this owner may coordinate now. It must hold the partition (the dot invariant); while it fetches,
   * an owner that holds it coordinates instead, and only when none does does this one wait a little for its transfer.
   */
  async #mayCoordinate(plan: Plan): Promise<boolean> {
    const { self, holds, findHolders, whenHeld } = this.#deps;
    if (holds(plan.partition)) return true;
    const { holders } = await findHolders(plan.partition);
    if (plan.owners.some((id) => id !== self && holders.includes(id))) return holds(plan.partition);
    return whenHeld(plan.partition);
  }

  /**
   * Step: refuses a context that names a version the cluster never issued, as far as this node can know, with
   * `ERR_INVALID_ARGUMENT`; and, for a conditional put, a context that has not seen a stored version, with
   * `ERR_STALE_CONTEXT`. A context naming a counter far ahead (forged, or corrupted) would make the new version
   * supersede that node's later, concurrent writes. An entry is known to name an issued version when it is at most
   * a dot of its node that this node has seen (the horizon), or when the clocks of the key's versions cover it: this
   * node's own siblings first (no request needed), else those of R replicas, since this node may just lag behind,
   * else those of every replica that answers (a write acknowledged by one replica, and read from it alone, makes an
   * honest context too), else those of the named member itself. An entry still unknown once every owner of the key
   * and the named member answered names a version never issued. When one that might know did not answer, the put
   * fails with `ERR_QUORUM`, as a conditional put does. This
   * node's own entry is also checked exactly, and atomically, by the storage write, against the counter it issued.
   */
  async #checkContext(request: PutRequest, plan: Plan): Promise<void> {
    const { self, metrics, horizon } = this.#deps;
    const context = request.context;
    // The entries not known at once to name issued versions. This node's own is checked exactly by the write, but
    // a conditional put must hear of a forged one before it hears of a stale context.
    let claimed: VClock = context.filter(
      (e) => (request.ifMatch || e.node !== self) && e.counter > horizon.counter(e.node),
    );
    let known: VClock = EMPTY_CLOCK;
    if (!request.ifMatch) {
      if (claimed.length === 0) return;
      known = clockOfAll(known, await this.#deps.readLocal(request.key));
      claimed = uncovered(claimed, known);
      if (claimed.length === 0) return;
    }
    const read = await this.#read(request.key, request.r, plan, false);
    known = clockOfAll(known, read.siblings);
    claimed = uncovered(claimed, known);
    if (claimed.length > 0) {
      const all = await this.#readAll(request.key, plan);
      known = clockOfAll(known, all.siblings);
      claimed = uncovered(claimed, known);
      // Last, each named member itself: it stored its own write of the key (the version may live on only there and
      // in hints while partitions move), and anything that superseded it there covers it. A node that has left the
      // view cannot be asked; when this node has seen it, the version may have left with it.
      let silent = 0;
      for (const node of new Set(claimed.map((e) => e.node))) {
        if (node === self || plan.owners.includes(node)) continue;
        if (!this.#deps.ring().has(node)) {
          if (horizon.counter(node) > 0 || counterOf(known, node) > 0) silent++;
          continue;
        }
        const versions = await this.#readAt(node, request.key);
        if (versions === null) silent++;
        else known = clockOfAll(known, versions);
      }
      claimed = uncovered(claimed, known);
      if (claimed.length > 0) {
        if (!all.complete || silent > 0) {
          // Nodes that would know did not answer: as for a conditional put, the put waits for them.
          metrics.count('quorumFailures');
          throw new QuorumError(
            'could not reach every node that might hold the versions the context names',
            plan.owners.length,
            all.owners,
          );
        }
        metrics.count('contextsRefused');
        const unknown = claimed[0]!;
        throw new InvalidArgumentError(
          `invalid context: it names version ${unknown.counter} of node ${unknown.node}, which this node and ` +
            'every replica of this key know nothing of; put with the context of a read of this key',
        );
      }
    }
    if (request.ifMatch && !contextCoversAll(context, read.siblings)) {
      metrics.count('staleContexts');
      throw new StaleContextError('the key holds a version that the given context has not seen');
    }
  }

  /** Step: the key's siblings at member `node`, or null when it did not answer. */
  async #readAt(node: string, key: Uint8Array): Promise<readonly Version[] | null> {
    const reply = await this.#deps.peers.request(
      node,
      { type: 'read', key, requireHeld: false },
      this.#deps.requestTimeout,
    );
    return reply?.type === 'read-reply' ? reply.versions : null;
  }

  /**
   * Step: the key's siblings at every replica that answers (each silent owner's fallbacks asked in turn), and
   * whether every owner answered.
   */
  #readAll(key: Uint8Array, plan: Plan): Promise<{ siblings: readonly Version[]; owners: number; complete: boolean }> {
    return new Promise((resolve) => {
      const read = new Read(this.#deps, key, 1, plan, (replied, _replies, merged) => {
        const owners = plan.owners.filter((id) => replied.includes(id)).length;
        resolve({ siblings: merged, owners, complete: owners === plan.owners.length });
      });
      read.done.catch(() => {});
    });
  }

  /**
   * Step: the local write, which draws the new dot and checks the context's entry for this node and the key's
   * bounds in the same transaction; a refusal stores nothing.
   */
  async #writeLocal(request: PutRequest, plan: Plan): Promise<LocalWriteResult> {
    const { self, storage, metrics } = this.#deps;
    try {
      return await storage.write(
        request.key,
        plan.partition,
        {
          node: self,
          timestamp: this.#deps.now(),
          context: request.context,
          value: request.value,
          ifMatch: request.ifMatch,
          bounds: this.#deps.bounds,
        },
        { durability: request.durable ? 'strict' : 'relaxed' },
      );
    } catch (error) {
      if (hasErrorCode(error, 'ERR_TOO_MANY_SIBLINGS') || hasErrorCode(error, 'ERR_TOO_LARGE')) {
        metrics.count('putsOverBounds');
      } else if (hasErrorCode(error, 'ERR_INVALID_ARGUMENT')) {
        metrics.count('contextsRefused');
      }
      throw error;
    }
  }

  /**
   * Step: ships the sibling set to the other owners in parallel, replacing each one that does not answer by the
   * next fallback with a hint. Resolves once W replicas (this node included) hold it; the others keep going.
   */
  #replicate(request: PutRequest, plan: Plan, siblings: readonly Version[]): Promise<WireReceipt> {
    return new Replication(this.#deps, request, plan, siblings).done;
  }

  /**
   * Step: the owner to hand the put to next, of those not tried yet: unsuspected owners first, and of those the
   * ones known to hold the partition, each group in preference order.
   */
  #nextCoordinator(plan: Plan, tried: ReadonlySet<string>): string | undefined {
    const { self, peers } = this.#deps;
    const holders = this.#deps.knownHolders(plan.partition);
    let later: string | undefined;
    let suspected: string | undefined;
    for (const owner of plan.owners) {
      if (owner === self || tried.has(owner)) continue;
      if (peers.isSuspected(owner)) suspected ??= owner;
      else if (holders.includes(owner)) return owner;
      else later ??= owner;
    }
    return later ?? suspected;
  }

  /**
   * Step: hands the put to `owner`. Its errors that are final are thrown; a refusal (it may not coordinate, or did
   * not answer) resolves with the error, and the next owner is tried.
   */
  async #forwardPut(
    request: PutRequest,
    owner: string,
  ): Promise<{ outcome: PutOutcome } | { lastError: DynameshError | undefined }> {
    this.#deps.metrics.count('forwards');
    const reply = await this.#deps.peers.request(
      owner,
      {
        type: 'coordinate',
        key: request.key,
        value: request.value,
        context: request.context,
        w: request.w,
        ifMatch: request.ifMatch,
        durable: request.durable,
      },
      this.#deps.forwardTimeout,
    );
    if (reply === null) return { lastError: undefined };
    if (reply.type === 'coordinate-reply') return { outcome: { context: reply.context, receipt: reply.receipt } };
    const error = replyError(reply);
    if (!hasErrorCode(error, 'ERR_NOT_RESPONSIBLE')) throw error;
    return { lastError: error };
  }

  /** Reads `key` from R replicas, answers with the merged siblings, then repairs stale replicas. */
  async get(key: Uint8Array, r: number): Promise<GetOutcome> {
    return this.#read(key, r, this.plan(key), true);
  }

  /**
   * Step: asks every owner (or, for each that does not answer, the next fallback) for its siblings and resolves
   * after R replies. When every slot has finished, replicas of the preference list that hold less than the merged
   * set are repaired (read repair).
   */
  #read(key: Uint8Array, r: number, plan: Plan, repair: boolean): Promise<GetOutcome> {
    const read = new Read(
      this.#deps,
      key,
      r,
      plan,
      repair ? (replied, replies, merged) => this.#repair(key, plan, replied, replies, merged) : null,
    );
    return read.done;
  }

  /** Step: sends the merged siblings to each owner that replied with less. */
  async #repair(
    key: Uint8Array,
    plan: Plan,
    replied: readonly string[],
    replies: readonly (readonly Version[])[],
    merged: readonly Version[],
  ): Promise<void> {
    const { self, peers, metrics, storage } = this.#deps;
    for (const owner of plan.owners) {
      const k = replied.indexOf(owner);
      if (k < 0 || sameSiblings(replies[k]!, merged)) continue;
      metrics.count('readRepairs');
      try {
        if (owner === self) {
          await storage.apply(key, plan.partition, merged);
        } else {
          void peers.request(
            owner,
            { type: 'replicate', key, versions: merged, hintFor: null, durable: false },
            carryingTimeout(this.#deps.requestTimeout, merged),
          );
        }
      } catch (error) {
        this.#deps.logger.warn({ error: String(error), owner }, 'read repair failed');
      }
    }
  }
}

/**
 * One put's replication, as state and methods rather than closures: a put makes one, and closures would be made
 * afresh (and, under some bundlers, renamed) on every put.
 */
class Replication {
  /** Settles with the receipt once W replicas hold the siblings, or fails once every slot has finished short of W. */
  readonly done: Promise<WireReceipt>;
  readonly deps: CoordinatorDeps;
  readonly request: PutRequest;
  readonly siblings: readonly Version[];
  readonly spare: string[];
  readonly #acknowledged: string[];
  readonly #fallbacks: string[] = [];
  readonly #hints: { holder: string; target: string }[] = [];
  #open: number;
  #settled = false;
  #resolve!: (receipt: WireReceipt) => void;
  #reject!: (error: unknown) => void;

  constructor(deps: CoordinatorDeps, request: PutRequest, plan: Plan, siblings: readonly Version[]) {
    this.deps = deps;
    this.request = request;
    this.siblings = siblings;
    this.#acknowledged = [deps.self];
    this.spare = [...plan.fallbacks];
    const owners = plan.owners.filter((id) => id !== deps.self);
    this.#open = owners.length;
    this.done = new Promise<WireReceipt>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    for (const owner of owners) new ReplicaSlot(this, owner).start();
    this.#settle();
  }

  /** `target` acknowledged, standing in for `hintFor` unless that is null. */
  acknowledge(target: string, hintFor: string | null): void {
    this.#acknowledged.push(target);
    if (hintFor !== null) {
      this.#fallbacks.push(target);
      this.#hints.push({ holder: target, target: hintFor });
      this.deps.metrics.count('hintsSent');
    }
  }

  /** A slot has finished, acknowledged or not. */
  slotDone(): void {
    this.#open--;
    this.#settle();
  }

  #settle(): void {
    if (this.#settled) return;
    const { w } = this.request;
    if (this.#acknowledged.length >= w) {
      this.#settled = true;
      this.#resolve({
        coordinator: this.deps.self,
        acknowledged: [...this.#acknowledged],
        fallbacks: [...this.#fallbacks],
        hints: this.#hints.map((h) => ({ holder: h.holder, target: h.target })),
      });
    } else if (this.#open === 0) {
      this.#settled = true;
      this.deps.metrics.count('quorumFailures');
      this.#reject(new QuorumError('put did not reach its write quorum', w, this.#acknowledged.length));
    }
  }
}

/**
 * One owner's part of a put: ship the siblings to the owner, or, each time a node does not answer, to the next
 * fallback with a hint naming the owner. A reply handler rather than an async loop: a put makes two of these and a
 * get three, and the promise and suspended function behind each await cost more than the rest of a slot.
 */
class ReplicaSlot implements ReplyHandler {
  readonly #replication: Replication;
  readonly #owner: string;
  #target: string | undefined;
  #hintFor: string | null = null;
  #finished = false;

  constructor(replication: Replication, owner: string) {
    this.#replication = replication;
    this.#owner = owner;
    this.#target = owner;
  }

  start(): void {
    try {
      const { peers } = this.#replication.deps;
      if (peers.isSuspected(this.#owner)) {
        // A suspected owner is still asked when no fallback is left to stand in for it (a cluster of N nodes).
        const fallback = takeFallback(this.#replication.spare, peers);
        if (fallback !== undefined) {
          this.#target = fallback;
          this.#hintFor = this.#owner;
        }
      }
      this.#ask();
    } catch (error) {
      this.#fail(error);
    }
  }

  onReply(reply: Reply | null): void {
    try {
      const replication = this.#replication;
      if (reply?.type === 'replicate-ack') {
        replication.acknowledge(this.#target!, this.#hintFor);
        this.#finish();
        return;
      }
      this.#target = takeFallback(replication.spare, replication.deps.peers);
      this.#hintFor = this.#owner;
      if (this.#target !== undefined) replication.deps.metrics.count('fallbacksUsed');
      this.#ask();
    } catch (error) {
      this.#fail(error);
    }
  }

  #ask(): void {
    const target = this.#target;
    if (target === undefined) {
      this.#finish();
      return;
    }
    const { deps, request, siblings } = this.#replication;
    deps.peers.send(
      target,
      { type: 'replicate', key: request.key, versions: siblings, hintFor: this.#hintFor, durable: request.durable },
      carryingTimeout(deps.requestTimeout, siblings),
      this,
    );
  }

  #fail(error: unknown): void {
    this.#replication.deps.logger.error({ error: String(error) }, 'replication slot failed');
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#replication.slotDone();
  }
}

/** Repairs the owners whose replies lack some of `merged`; `replies[i]` is what `replied[i]` answered. */
type Repairer = (
  replied: readonly string[],
  replies: readonly (readonly Version[])[],
  merged: readonly Version[],
) => void;

/** One read of R replicas, as state and methods (see {@link Replication}). */
class Read {
  /** Settles with the merged siblings after R replies, or fails once every slot has finished short of R. */
  readonly done: Promise<GetOutcome>;
  readonly deps: CoordinatorDeps;
  readonly key: Uint8Array;
  readonly partition: number;
  readonly spare: string[];
  readonly #r: number;
  /** Who replied, in order, and what each replied (a map as two arrays: a get holds N entries at most). */
  readonly #replied: string[] = [];
  readonly #replies: (readonly Version[])[] = [];
  readonly #repair: Repairer | null;
  #open: number;
  #settled = false;
  #resolve!: (outcome: GetOutcome) => void;
  #reject!: (error: unknown) => void;

  constructor(deps: CoordinatorDeps, key: Uint8Array, r: number, plan: Plan, repair: Repairer | null) {
    this.deps = deps;
    this.key = key;
    this.partition = plan.partition;
    this.#r = r;
    this.spare = [...plan.fallbacks];
    this.#repair = repair;
    this.#open = plan.owners.length;
    this.done = new Promise<GetOutcome>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    for (const owner of plan.owners) new ReadSlot(this, owner).start();
  }

  #merged(): Version[] {
    const all: Version[] = [];
    for (const versions of this.#replies) for (let i = 0; i < versions.length; i++) all.push(versions[i]!);
    return resolve([], all).siblings;
  }

  /** `id` answered `versions`. */
  reply(id: string, versions: readonly Version[]): void {
    const k = this.#replied.indexOf(id);
    if (k < 0) {
      this.#replied.push(id);
      this.#replies.push(versions);
    } else {
      this.#replies[k] = versions;
    }
  }

  /** A slot has finished, answered or not. */
  slotDone(): void {
    this.#open--;
    this.#settle();
  }

  #settle(): void {
    const count = this.#replied.length;
    if (!this.#settled && count >= this.#r) {
      this.#settled = true;
      this.#resolve({ siblings: this.#merged(), coordinator: this.deps.self, replied: [...this.#replied] });
    }
    if (this.#open > 0) return;
    if (!this.#settled) {
      this.#settled = true;
      this.deps.metrics.count('quorumFailures');
      this.#reject(new QuorumError('get did not reach its read quorum', this.#r, count));
    }
    if (this.#repair !== null) this.#repair(this.#replied, this.#replies, this.#merged());
  }
}

/** One owner's part of a get: its siblings, or those of the next fallback each time a node does not answer. */
class ReadSlot implements ReplyHandler {
  readonly #read: Read;
  #target: string | undefined;
  #finished = false;

  constructor(read: Read, owner: string) {
    this.#read = read;
    const { self, peers } = read.deps;
    // A suspected owner is still asked when no fallback is left to stand in for it (a cluster of N nodes).
    this.#target = owner === self || !peers.isSuspected(owner) ? owner : (takeFallback(read.spare, peers) ?? owner);
  }

  start(): void {
    try {
      this.#ask();
    } catch (error) {
      this.#fail(error);
    }
  }

  onReply(reply: Reply | null): void {
    try {
      if (reply?.type === 'read-reply') {
        this.#read.reply(this.#target!, reply.versions);
        this.#finish();
        return;
      }
      this.#target = takeFallback(this.#read.spare, this.#read.deps.peers);
      this.#ask();
    } catch (error) {
      this.#fail(error);
    }
  }

  #ask(): void {
    const target = this.#target;
    if (target === undefined) {
      this.#finish();
      return;
    }
    const read = this.#read;
    const deps = read.deps;
    if (target === deps.self) {
      deps.readWhole(read.key).then(
        (versions) => {
          read.reply(target, versions);
          this.#finish();
        },
        (error: unknown) => {
          // Still fetching and no holder answered: the next fallback stands in.
          if (!hasErrorCode(error, 'ERR_NOT_RESPONSIBLE')) {
            this.#fail(error);
            return;
          }
          this.#target = takeFallback(read.spare, deps.peers);
          this.#ask();
        },
      );
      return;
    }
    deps.peers.send(target, { type: 'read', key: read.key, requireHeld: false }, deps.requestTimeout, this);
  }

  #fail(error: unknown): void {
    this.#read.deps.logger.error({ error: String(error) }, 'read slot failed');
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#read.slotDone();
  }
}

/** `known` merged with the clocks of `versions`. */
function clockOfAll(known: VClock, versions: readonly Version[]): VClock {
  let out = known;
  for (const v of versions) out = merge(out, clockOf(v));
  return out;
}

/** The entries of `claimed` that `known` does not cover. */
function uncovered(claimed: VClock, known: VClock): VClock {
  return claimed.filter((e) => e.counter > counterOf(known, e.node));
}

/** The next fallback to try: the first one not suspected, else the first one left. */
function takeFallback(spare: string[], peers: Peers): string | undefined {
  const index = spare.findIndex((id) => !peers.isSuspected(id));
  const [taken] = spare.splice(index === -1 ? 0 : index, 1);
  return taken;
}

/** The error a peer's error reply stands for; any other reply where an answer was expected is a protocol error. */
function replyError(reply: Reply): DynameshError {
  if (reply.type === 'error') {
    return errorFromCode(
      reply.code,
      reply.message,
      reply.required !== null && reply.acknowledged !== null
        ? { required: reply.required, acknowledged: reply.acknowledged }
        : undefined,
    );
  }
  return errorFromCode('ERR_MALFORMED_FRAME', `unexpected ${reply.type} reply from ${reply.from}`);
}
