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
} from './errors.ts';
import type { Logger } from './env.ts';
import type { Peers, Reply } from './peers.ts';
import type { WireReceipt } from './protocol.ts';
import type { Ring } from './ring.ts';
import type { Storage } from './storage/storage.ts';
import type { VClock } from './vclock.ts';
import { type Version, clockOf, contextCoversAll, resolve, sameSiblings } from './version.ts';
import type { Metrics } from './metrics.ts';

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
  readonly fallbacks: string[];
}

/** Coordinates gets and puts for one node. */
export class Coordinator {
  readonly #deps: CoordinatorDeps;

  constructor(deps: CoordinatorDeps) {
    this.#deps = deps;
  }

  /** The partition, preference list and fallbacks for `key` under the current ring. */
  plan(key: Uint8Array): Plan {
    const ring = this.#deps.ring();
    const partition = ring.partitionOf(key);
    const walk = ring.walk(partition);
    return { partition, owners: walk.slice(0, this.#deps.n), fallbacks: walk.slice(this.#deps.n) };
  }

  /** Puts (or deletes, when `value` is null) as coordinator when this node owns the key, else forwards. */
  async put(request: PutRequest): Promise<PutOutcome> {
    const plan = this.plan(request.key);
    if (plan.owners.includes(this.#deps.self)) return this.coordinatePut(request, plan);
    return this.#forwardPut(request, plan);
  }

  /** Coordinates a put this node owns; `NotResponsibleError` when it does not. */
  async coordinatePut(request: PutRequest, plan: Plan = this.plan(request.key)): Promise<PutOutcome> {
    const { self, storage, metrics } = this.#deps;
    if (!plan.owners.includes(self)) {
      throw new NotResponsibleError(`node ${self} is not in the preference list of this key`);
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
    const { self, peers, metrics } = this.#deps;
    const acknowledged = [self];
    const fallbacks: string[] = [];
    const hints: { holder: string; target: string }[] = [];
    const spare = [...plan.fallbacks];
    const owners = plan.owners.filter((id) => id !== self);
    const receipt = (): WireReceipt => ({
      coordinator: self,
      acknowledged: [...acknowledged],
      fallbacks: [...fallbacks],
      hints: hints.map((h) => ({ ...h })),
    });

    return new Promise<WireReceipt>((resolvePut, rejectPut) => {
      let open = owners.length;
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        if (acknowledged.length >= request.w) {
          settled = true;
          resolvePut(receipt());
        } else if (open === 0) {
          settled = true;
          metrics.count('quorumFailures');
          rejectPut(new QuorumError('put did not reach its write quorum', request.w, acknowledged.length));
        }
      };
      const runSlot = async (owner: string): Promise<void> => {
        let target: string | undefined = owner;
        let hintFor: string | null = null;
        if (peers.isSuspected(owner)) {
          target = takeFallback(spare, peers);
          hintFor = owner;
        }
        while (target !== undefined) {
          const reply = await peers.request(
            target,
            { type: 'replicate', key: request.key, versions: siblings, hintFor, durable: request.durable },
            this.#deps.requestTimeout,
          );
          if (reply?.type === 'replicate-ack') {
            acknowledged.push(target);
            if (hintFor !== null) {
              fallbacks.push(target);
              hints.push({ holder: target, target: hintFor });
              metrics.count('hintsSent');
            }
            return;
          }
          target = takeFallback(spare, peers);
          hintFor = owner;
          if (target !== undefined) metrics.count('fallbacksUsed');
        }
      };
      for (const owner of owners) {
        void runSlot(owner)
          .catch((error: unknown) => this.#deps.logger.error({ error: String(error) }, 'replication slot failed'))
          .finally(() => {
            open--;
            settle();
          });
      }
      settle();
    });
  }

  /** Step: hands the put to the first owner that answers; only their errors that are final stop the walk. */
  async #forwardPut(request: PutRequest, plan: Plan): Promise<PutOutcome> {
    const { peers, metrics } = this.#deps;
    const candidates = [...plan.owners].sort((a, b) => Number(peers.isSuspected(a)) - Number(peers.isSuspected(b)));
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
    const { self, peers, metrics } = this.#deps;
    const replies = new Map<string, Version[]>();
    const spare = [...plan.fallbacks];

    return new Promise<GetOutcome>((resolveGet, rejectGet) => {
      let open = plan.owners.length;
      let settled = false;
      const merged = (): Version[] => resolve([], [...replies.values()].flat()).siblings;
      const settle = (): void => {
        if (!settled && replies.size >= r) {
          settled = true;
          resolveGet({ siblings: merged(), coordinator: self, replied: [...replies.keys()] });
        }
        if (open > 0) return;
        if (!settled) {
          settled = true;
          metrics.count('quorumFailures');
          rejectGet(new QuorumError('get did not reach its read quorum', r, replies.size));
        }
        if (repair) void this.#repair(key, plan, replies, merged());
      };
      const runSlot = async (owner: string): Promise<void> => {
        let target: string | undefined =
          owner === self || !peers.isSuspected(owner) ? owner : takeFallback(spare, peers);
        while (target !== undefined) {
          if (target === self) {
            replies.set(self, await this.#deps.readLocal(key));
            return;
          }
          const reply: Reply | null = await peers.request(target, { type: 'read', key }, this.#deps.requestTimeout);
          if (reply?.type === 'read-reply') {
            replies.set(target, [...reply.versions]);
            return;
          }
          target = takeFallback(spare, peers);
        }
      };
      for (const owner of plan.owners) {
        void runSlot(owner)
          .catch((error: unknown) => this.#deps.logger.error({ error: String(error) }, 'read slot failed'))
          .finally(() => {
            open--;
            settle();
          });
      }
    });
  }

  /** Step: sends the merged siblings to each owner that replied with less. */
  async #repair(
    key: Uint8Array,
    plan: Plan,
    replies: ReadonlyMap<string, Version[]>,
    merged: Version[],
  ): Promise<void> {
    const { self, peers, metrics, storage } = this.#deps;
    for (const owner of plan.owners) {
      const seen = replies.get(owner);
      if (seen === undefined || sameSiblings(seen, merged)) continue;
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
