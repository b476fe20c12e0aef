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
import { type DynameshError, NotResponsibleError, QuorumError, errorFromCode, hasErrorCode } from '../errors.ts';
import type { Logger } from '../env.ts';
import { ContextCheck } from './context-check.ts';
import type { Holding } from '../membership/holders.ts';
import type { Peers, Reply } from '../transport/peers.ts';
import type { KeyBounds, WireReceipt } from '../wire/protocol.ts';
import type { Ring } from '../ring/ring.ts';
import {
  CounterTakenError,
  type LocalWrite,
  type LocalWriteOptions,
  type LocalWriteResult,
  type Storage,
} from '../storage/storage.ts';
import { type Signing, signVersion } from '../versions/proof.ts';
import type { DotHorizon } from '../versions/horizon.ts';
import type { VClock } from '../versions/vclock.ts';
import { type Version, clockOf, createVersion, sameSiblings } from '../versions/version.ts';
import { Read, Replication } from './rounds.ts';
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
  /**
   * Resolves true once this node holds `partition`, or false when it is not coming soon (see Ownership.whenHeld):
   * within a request timeout, or a forward timeout when `patient` (no other owner can take the request instead).
   */
  whenHeld(partition: number, patient?: boolean): Promise<boolean>;
  /** The members that hold a whole copy of `partition`, as learnt or asked now (see Holders.find). */
  findHolders(partition: number): Promise<Holding>;
  /** The members that hold a whole copy of `partition`, asked now (see Holders.probe). */
  probeHolders(partition: number): Promise<Holding>;
  /** The members known to hold a whole copy of `partition`, without asking (see Holders.known). */
  knownHolders(partition: number): readonly string[];
  /** The key's siblings on this node: its main store merged with any hints it holds for the key. */
  readLocal(key: Uint8Array): Promise<Version[]>;
  /** The key's siblings as this node answers a read: whole even while it still fetches the partition. */
  readWhole(key: Uint8Array): Promise<Version[]>;
  /** The current wall-clock time. */
  now(): number;
  /** This node's key, when it signs the versions it writes (proof.ts); absent, they go unsigned. */
  readonly signing?: Signing;
  /** Members that owned `partition` moments ago and no longer do (see ContextCheckDeps.formerOwners). */
  formerOwners(partition: number): readonly string[];
  /** Whether `node` was a member of a ring this node had moments ago (see ContextCheckDeps.wasMember). */
  wasMember(node: string): boolean;
  /**
   * Whether the current view has `node` as suspect: the signalling server stopped hearing its heartbeats, so it has
   * failed or frozen, where a request timing out may only mean it is busy.
   */
  viewSuspects(node: string): boolean;
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
export interface Plan {
  readonly partition: number;
  readonly owners: readonly string[];
  readonly fallbacks: readonly string[];
  /** How many failure domains the owners span: a put waits for min(W, this) of them (see Replication). */
  readonly spread: number;
  /** The ring the plan was made from, which knows each member's domain. */
  readonly ring: Ring;
}

/** Coordinates gets and puts for one node. */
export class Coordinator {
  readonly #deps: CoordinatorDeps;
  /** The ring the cached plans were made from, and its plans by partition. */
  #plannedRing: Ring | null = null;
  #plans: (Plan | undefined)[] = [];
  /** Refuses contexts naming versions never issued, and stale ones of conditional puts. */
  readonly #contexts: ContextCheck<Plan>;

  constructor(deps: CoordinatorDeps) {
    this.#deps = deps;
    this.#contexts = new ContextCheck<Plan>({
      self: deps.self,
      metrics: deps.metrics,
      horizon: deps.horizon,
      ring: () => deps.ring(),
      readLocal: (key) => deps.readLocal(key),
      readReplicas: async (key, r, plan) => (await this.#read(key, r, plan, false)).siblings,
      readAll: (key, plan) => this.#readAll(key, plan),
      readAt: (node, key) => this.#readAt(node, key),
      formerOwners: (partition) => deps.formerOwners(partition),
      wasMember: (node) => deps.wasMember(node),
    });
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
      const owners = Object.freeze(walk.slice(0, this.#deps.n));
      plan = Object.freeze({
        partition,
        owners,
        fallbacks: Object.freeze(walk.slice(this.#deps.n)),
        spread: new Set(owners.map((owner) => ring.domainOf(owner))).size,
        ring,
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
    // Owners that refused to coordinate for now (still fetching, or on another view), and those of them asked again
    // once found holding the partition: each is asked again once at most.
    const refused = new Set<string>();
    const askedAgain = new Set<string>();
    let lastError: DynameshError | undefined;
    // Each step plans afresh: a forward can take seconds, and the view may change meanwhile.
    for (let plan = this.plan(request.key); ; plan = this.plan(request.key)) {
      const owner = plan.owners.includes(self) && !tried.has(self);
      let local = owner && (await this.#mayCoordinate(plan));
      let next = local ? undefined : this.#nextCoordinator(plan, tried);
      // No other owner could coordinate: this one, still fetching, does once its transfer ends, waiting as long as a
      // forward would (a new cluster's transfers on a busy machine) rather than fail the put.
      if (!local && next === undefined) local = owner && (await this.#deps.whenHeld(plan.partition, true));
      if (!local && next === undefined) next = await this.#refusedHolder(plan, refused, askedAgain);
      if (local) {
        try {
          return await this.coordinatePut(request, plan);
        } catch (error) {
          // Refused by this node's own store (it may not draw another dot): another owner coordinates.
          if (!hasErrorCode(error, 'ERR_NOT_RESPONSIBLE')) throw error;
          tried.add(self);
          lastError = error as DynameshError;
          continue;
        }
      }
      if (next === undefined) break;
      tried.add(next);
      const forwarded = await this.#forwardPut(request, next);
      if ('outcome' in forwarded) return forwarded.outcome;
      if (forwarded.lastError !== undefined && !askedAgain.has(next)) refused.add(next);
      lastError = forwarded.lastError ?? lastError;
    }
    this.#deps.metrics.count('quorumFailures');
    // The cause in the message too: only code and message cross to the page.
    const last = lastError === undefined ? '' : ` (last refusal: ${lastError.message})`;
    throw new QuorumError(`no node of the key's preference list could coordinate the put${last}`, request.w, 0, {
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
    // The context as checked: entries pruned from the key's clocks are left out of it (context-check.ts).
    const context = await this.#contexts.check(request, plan);
    const checked = context === request.context ? request : { ...request, context };
    // Pipelined: the other replicas get the new version as soon as the local write has computed it (its dot drawn
    // durably), while it commits; this node counts toward W only once committed.
    let replication: Replication | undefined;
    let local: LocalWriteResult;
    try {
      local = await this.#writeLocal(checked, plan, (early) => {
        replication ??= this.#replicate(request, plan, early);
      });
    } catch (error) {
      // The put fails with the local error; replicas already asked keep what they got, as after any failed put.
      replication?.abandon();
      throw error;
    }
    metrics.count('localWrites');
    const done = (replication ??= this.#replicate(request, plan, local));
    done.acknowledgeLocal();
    const receipt = await done.done;
    return { context: clockOf(local.version), receipt };
  }

  /**
   * Step: ships the siblings of the local write `result` to the other replicas. A method rather than a closure made
   * per put: where function names are kept (esbuild's keepNames, under tsx), each such closure is renamed with a
   * `defineProperty` that costs more than the rest of the step.
   */
  #replicate(request: PutRequest, plan: Plan, result: LocalWriteResult): Replication {
    return new Replication(this.#deps, request, plan, result.siblings, result.version.dot.counter);
  }

  /**
   * Step: whether this owner may coordinate now. It must hold the partition (the dot invariant); while it fetches,
   * an owner that holds it coordinates instead, and only when none does does this one wait a little for its transfer
   * — unless every member answered that none holds it: then there is nothing to transfer.
   */
  async #mayCoordinate(plan: Plan): Promise<boolean> {
    const { self, holds, findHolders, whenHeld } = this.#deps;
    if (holds(plan.partition)) return true;
    const { holders, unanswered } = await findHolders(plan.partition);
    if (plan.owners.some((id) => id !== self && holders.includes(id))) return holds(plan.partition);
    // Every member answered and none holds a copy (a new cluster): there is nothing to fetch, as the rebalancer
    // concludes when it marks such a partition held, and no put need wait for it to get this far.
    if (holders.length === 0 && unanswered === 0) return true;
    return whenHeld(plan.partition);
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
  async #writeLocal(
    request: PutRequest,
    plan: Plan,
    onComputed: (early: LocalWriteResult) => void,
  ): Promise<LocalWriteResult> {
    const { self, storage, metrics, signing } = this.#deps;
    const write: LocalWrite = {
      node: self,
      timestamp: this.#deps.now(),
      context: request.context,
      value: request.value,
      ifMatch: request.ifMatch,
      bounds: this.#deps.bounds,
    };
    const options = { durability: request.durable ? 'strict' : 'relaxed', onComputed } as const;
    try {
      if (signing === undefined) return await storage.write(request.key, plan.partition, write, options);
      return await this.#writeSigned(request.key, plan.partition, write, options, signing);
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
   * The local write of a node that signs: the counter drawn first, so that the version can be signed before its
   * transaction (which cannot wait for WebCrypto), and drawn again above a counter the key already names.
   */
  async #writeSigned(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options: LocalWriteOptions,
    signing: Signing,
  ): Promise<LocalWriteResult> {
    const { storage } = this.#deps;
    let above = 0;
    for (;;) {
      const counter = await storage.drawCounter(above);
      const made = createVersion(write.node, counter, write.timestamp, write.context, write.value);
      const { proof } = await signVersion(key, made, signing);
      try {
        return await storage.write(key, partition, { ...write, counter, proof }, options);
      } catch (error) {
        if (!(error instanceof CounterTakenError)) throw error;
        above = error.highest;
      }
    }
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
   * Step: an owner of `plan` that refused the put and holds the partition now, asked afresh, once each; undefined
   * when none does. An owner still fetching refuses in favour of one that holds, so a fetching owner that refused
   * moments before its transfer ended can be the very one every owner asked later points to: without asking it
   * again, the put would fail just as the partition can take it.
   */
  async #refusedHolder(plan: Plan, refused: Set<string>, askedAgain: Set<string>): Promise<string | undefined> {
    if (!plan.owners.some((id) => refused.has(id))) return undefined;
    const { holders } = await this.#deps.probeHolders(plan.partition);
    const holder = plan.owners.find((id) => refused.has(id) && holders.includes(id));
    if (holder === undefined) return undefined;
    refused.delete(holder);
    askedAgain.add(holder);
    return holder;
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
            { type: 'replicate', key, versions: merged, hintFor: null, durable: false, fresh: null },
            carryingTimeout(this.#deps.requestTimeout, merged),
          );
        }
      } catch (error) {
        this.#deps.logger.warn({ error: String(error), owner }, 'read repair failed');
      }
    }
  }
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
