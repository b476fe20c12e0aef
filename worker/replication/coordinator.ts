/**
 * The coordinator of gets and puts, as named steps over a per-request state (after Voldemort's routed pipeline):
 * choose replicas, write locally, replicate in parallel with fallbacks, count acknowledgements, repair reads.
 *
 * A put is coordinated by a node of the key's preference list, which draws the new dot from its own counter and
 * ships the key's whole sibling set (see version.ts for why the whole set). Other nodes forward the put to one.
 * A get may be coordinated by any node. Each replica slot that does not answer within the per-node timeout is
 * handed to the next fallback of the ring walk, which keeps what it is sent as a hint for the owner it stands in for.
 */
import {
  type DynameshError,
  NotResponsibleError,
  QuorumError,
  StaleContextError,
  errorFromCode,
  hasErrorCode,
} from '../errors.ts';
import type { Logger } from '../env.ts';
import type { Peers, Reply, ReplyHandler } from '../transport/peers.ts';
import type { WireReceipt } from '../wire/protocol.ts';
import type { Ring } from '../ring/ring.ts';
import type { Storage } from '../storage/storage.ts';
import type { VClock } from '../versions/vclock.ts';
import { type Version, clockOf, contextCoversAll, resolve, sameSiblings } from '../versions/version.ts';
import type { Metrics } from '../metrics.ts';

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
  /** The ring of the current view. */
  ring(): Ring;
  /**
   * True when this node holds a complete copy of `partition`. An owner still fetching one neither coordinates its
   * puts (its new dot could claim to follow earlier dots of its own that it does not have yet) nor answers its reads.
   */
  holds(partition: number): boolean;
  /** Resolves true once this node holds `partition`, or false when it is not coming soon (see Ownership.whenHeld). */
  whenHeld(partition: number): Promise<boolean>;
  /** The key's siblings on this node: its main store merged with any hints it holds for the key. */
  readLocal(key: Uint8Array): Promise<Version[]>;
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

  /** Puts (or deletes, when `value` is null) as coordinator when this node owns the key, else forwards. */
  async put(request: PutRequest): Promise<PutOutcome> {
    const plan = this.plan(request.key);
    if (plan.owners.includes(this.#deps.self) && (await this.#deps.whenHeld(plan.partition)))
      return this.coordinatePut(request, plan);
    return this.#forwardPut(request, plan);
  }

  /** Coordinates a put this node owns; `NotResponsibleError` when it does not. */
  async coordinatePut(request: PutRequest, plan: Plan = this.plan(request.key)): Promise<PutOutcome> {
    const { self, storage, metrics } = this.#deps;
    if (!plan.owners.includes(self)) {
      throw new NotResponsibleError(`node ${self} is not in the preference list of this key`);
    }
    if (!(await this.#deps.whenHeld(plan.partition))) {
      throw new NotResponsibleError(`node ${self} is still fetching partition ${plan.partition}`);
    }
    if (request.ifMatch) await this.#checkNotStale(request, plan);
    const local = await storage.write(
      request.key,
      plan.partition,
      {
        node: self,
        timestamp: this.#deps.now(),
        context: request.context,
        value: request.value,
        ifMatch: request.ifMatch,
      },
      { durability: request.durable ? 'strict' : 'relaxed' },
    );
    metrics.count('localWrites');
    const receipt = await this.#replicate(request, plan, local.siblings);
    return { context: clockOf(local.version), receipt };
  }

  /** Step: a conditional put first reads R replicas and refuses when any holds a version its context has not seen. */
  async #checkNotStale(request: PutRequest, plan: Plan): Promise<void> {
    const read = await this.#read(request.key, request.r, plan, false);
    if (!contextCoversAll(request.context, read.siblings)) {
      this.#deps.metrics.count('staleContexts');
      throw new StaleContextError('the key holds a version that the given context has not seen');
    }
  }

  /**
   * Step: ships the sibling set to the other owners in parallel, replacing each one that does not answer by the
   * next fallback with a hint. Resolves once W replicas (this node included) hold it; the others keep going.
   */
  #replicate(request: PutRequest, plan: Plan, siblings: readonly Version[]): Promise<WireReceipt> {
    return new Replication(this.#deps, request, plan, siblings).done;
  }

  /** Step: hands the put to the first owner that answers; only their errors that are final stop the walk. */
  async #forwardPut(request: PutRequest, plan: Plan): Promise<PutOutcome> {
    const { peers, metrics } = this.#deps;
    // Unsuspected owners first, each group in preference order (what a stable sort on suspicion gives).
    const candidates: string[] = [];
    const suspected: string[] = [];
    for (const owner of plan.owners) {
      if (owner !== this.#deps.self) (peers.isSuspected(owner) ? suspected : candidates).push(owner);
    }
    for (const owner of suspected) candidates.push(owner);
    let lastError: DynameshError | undefined;
    for (const owner of candidates) {
      metrics.count('forwards');
      const reply = await peers.request(
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
      if (reply === null) continue;
      if (reply.type === 'coordinate-reply') return { context: reply.context, receipt: reply.receipt };
      const error = replyError(reply);
      if (!hasErrorCode(error, 'ERR_NOT_RESPONSIBLE')) throw error;
      lastError = error;
    }
    metrics.count('quorumFailures');
    throw new QuorumError("no node of the key's preference list could coordinate the put", request.w, 0, {
      cause: lastError,
    });
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
            this.#deps.requestTimeout,
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
        this.#target = takeFallback(this.#replication.spare, peers);
        this.#hintFor = this.#owner;
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
      deps.requestTimeout,
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
  readonly #owner: string;
  #target: string | undefined;
  #finished = false;

  constructor(read: Read, owner: string) {
    this.#read = read;
    this.#owner = owner;
    const { self, peers } = read.deps;
    this.#target = owner === self || !peers.isSuspected(owner) ? owner : undefined;
    if (this.#target === undefined) this.#target = takeFallback(read.spare, peers);
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
      if (this.#owner === target && !deps.holds(read.partition)) {
        // Still fetching the partition: wait a little for the transfer, else ask the next fallback instead.
        deps.whenHeld(read.partition).then(
          (held) => {
            if (!held) this.#target = takeFallback(read.spare, deps.peers);
            this.#ask();
          },
          (error: unknown) => this.#fail(error),
        );
        return;
      }
      deps.readLocal(read.key).then(
        (versions) => {
          read.reply(target, versions);
          this.#finish();
        },
        (error: unknown) => this.#fail(error),
      );
      return;
    }
    deps.peers.send(target, { type: 'read', key: read.key }, deps.requestTimeout, this);
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
