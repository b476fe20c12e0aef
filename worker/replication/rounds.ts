/**
 * The two rounds a coordinator runs against replicas, each as state and reply handlers rather than closures (a put
 * makes one, and closures would be made afresh on every put): one put's replication to W replicas, and one read of R
 * replicas. Each owner's part is a slot that moves on to the next fallback of the ring walk when its node does not
 * answer; a put's fallback keeps what it is sent as a hint for the owner it stands in for.
 */
import { QuorumError, hasErrorCode } from '../errors.ts';
import type { Peers, Reply, ReplyHandler } from '../transport/peers.ts';
import type { WireReceipt } from '../wire/protocol.ts';
import { type Version, resolve } from '../versions/version.ts';
import { carryingTimeout } from '../wire/fit.ts';
import type { CoordinatorDeps, GetOutcome, Plan, PutRequest } from './coordinator.ts';

/**
 * Timeouts a slot forgives an owner that is busy rather than failed (see {@link busy}): a put's slot, the owner that
 * would bring a failure domain the put still lacks; a get's slot, any owner, whose versions a fallback lacks.
 */
export const BUSY_PATIENCE = 3;

/**
 * Whether `owner` is busy rather than failed: it spoke within the last {@link BUSY_PATIENCE} request timeouts, and the
 * view does not have it as suspect (the server stopped hearing its heartbeats).
 */
function busy(deps: CoordinatorDeps, owner: string): boolean {
  return !deps.viewSuspects(owner) && deps.peers.heardWithin(owner, BUSY_PATIENCE * deps.requestTimeout);
}

/**
 * One put's replication, as state and methods rather than closures: a put makes one, and closures would be made
 * afresh (and, under some bundlers, renamed) on every put.
 *
 * It succeeds once W replicas hold the siblings and those span min(W, D) failure domains, D being the domains the
 * key's owners span: the tabs of one browser profile share a domain and go down together, so W acknowledgements from
 * them alone would not outlive the profile while a replica elsewhere (an always-on node, another profile) had not
 * stored the put yet. So a slot whose owner would bring a domain the put lacks, and that is {@link busy} rather than
 * failed, asks that owner even when a timeout made this node suspect it, and asks it again on a timeout, up to
 * {@link BUSY_PATIENCE} times, before a fallback stands in: a fallback of a domain already in would not make the put
 * outlive it. A domain that cannot answer does not block the put: once every slot has finished, W
 * acknowledgements from any domains do.
 */
export class Replication {
  /** Settles with the receipt once W replicas hold the siblings, or fails once every slot has finished short of W. */
  readonly done: Promise<WireReceipt>;
  readonly deps: CoordinatorDeps;
  readonly request: PutRequest;
  readonly siblings: readonly Version[];
  /** The counter of the coordinator's new dot: the version it just issued, among {@link Replication.siblings}. */
  readonly fresh: number;
  readonly fallbacks: Fallbacks;
  readonly #acknowledged: string[] = [];
  /** The distinct domains of the acknowledged replicas. */
  readonly #domains: (string | undefined)[] = [];
  readonly #plan: Plan;
  readonly #fallbacks: string[] = [];
  readonly #hints: { holder: string; target: string }[] = [];
  #open: number;
  /** Whether the coordinator's own write has committed; until then the round can neither succeed on it nor fail. */
  #local = false;
  #settled = false;
  #resolve!: (receipt: WireReceipt) => void;
  #reject!: (error: unknown) => void;

  constructor(deps: CoordinatorDeps, request: PutRequest, plan: Plan, siblings: readonly Version[], fresh: number) {
    this.deps = deps;
    this.request = request;
    this.siblings = siblings;
    this.fresh = fresh;
    this.fallbacks = new Fallbacks(plan.fallbacks);
    this.#plan = plan;
    // The owners but this node (a preference list names each member once), without a filtered copy of the list.
    this.#open = plan.owners.length - (plan.owners.includes(deps.self) ? 1 : 0);
    this.done = new Promise<WireReceipt>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    for (const owner of plan.owners) if (owner !== deps.self) new ReplicaSlot(this, owner).start();
  }

  /** The coordinator's own copy has committed: it counts toward W. */
  acknowledgeLocal(): void {
    this.#local = true;
    this.#acknowledged.unshift(this.deps.self);
    this.#countDomain(this.deps.self);
    this.#settle();
  }

  /** The coordinator's own write failed: the put fails with that error, whatever the replicas answer. */
  abandon(): void {
    this.#settled = true;
    this.done.catch(() => {});
  }

  /** `target` acknowledged, standing in for `hintFor` unless that is null. */
  acknowledge(target: string, hintFor: string | null): void {
    this.#acknowledged.push(target);
    this.#countDomain(target);
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

  /** Whether an acknowledgement from `node` would bring a failure domain the put still needs. */
  wantsDomainOf(node: string): boolean {
    const domain = this.#plan.ring.domainOf(node);
    return this.#domains.length < Math.min(this.request.w, this.#plan.spread) && !this.#domains.includes(domain);
  }

  #countDomain(node: string): void {
    const domain = this.#plan.ring.domainOf(node);
    if (!this.#domains.includes(domain)) this.#domains.push(domain);
  }

  #settle(): void {
    if (this.#settled || !this.#local) return;
    const { w } = this.request;
    const spread = this.#domains.length >= Math.min(w, this.#plan.spread) || this.#open === 0;
    if (this.#acknowledged.length >= w && spread) {
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
  readonly #patience = new Patience();
  #finished = false;

  constructor(replication: Replication, owner: string) {
    this.#replication = replication;
    this.#owner = owner;
    this.#target = owner;
  }

  start(): void {
    try {
      const { peers } = this.#replication.deps;
      if (peers.isSuspected(this.#owner) && !this.#awaitsDomain()) {
        // A suspected owner is still asked when no fallback is left to stand in for it (a cluster of N nodes).
        const fallback = this.#replication.fallbacks.take(peers);
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
      const next = this.#patience.next(
        this.#owner,
        this.#target,
        reply,
        replication.fallbacks,
        replication.deps.peers,
        () => this.#awaitsDomain(),
      );
      if (next !== this.#owner) {
        this.#hintFor = this.#owner;
        if (next !== undefined) replication.deps.metrics.count('fallbacksUsed');
      }
      this.#target = next;
      this.#ask();
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Whether the owner would bring a domain the put lacks, and is busy rather than failed (see Replication). */
  #awaitsDomain(): boolean {
    return this.#replication.wantsDomainOf(this.#owner) && busy(this.#replication.deps, this.#owner);
  }

  #ask(): void {
    const target = this.#target;
    if (target === undefined) {
      this.#finish();
      return;
    }
    const { deps, request, siblings, fresh } = this.#replication;
    const { key, durable } = request;
    deps.peers.send(
      target,
      { type: 'replicate', key, versions: siblings, hintFor: this.#hintFor, durable, fresh },
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
export type Repairer = (
  replied: readonly string[],
  replies: readonly (readonly Version[])[],
  merged: readonly Version[],
) => void;

/** One read of R replicas, as state and methods (see {@link Replication}). */
export class Read {
  /** Settles with the merged siblings after R replies, or fails once every slot has finished short of R. */
  readonly done: Promise<GetOutcome>;
  readonly deps: CoordinatorDeps;
  readonly key: Uint8Array;
  readonly partition: number;
  readonly fallbacks: Fallbacks;
  readonly #r: number;
  /** Who replied, in order, and what each replied (a map as two arrays: a get holds N entries at most). */
  readonly #replied: string[] = [];
  readonly #replies: (readonly Version[])[] = [];
  /** Fallbacks that answered with nothing, counted once every slot has finished (see {@link Read.reply}). */
  readonly #empty: string[] = [];
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
    this.fallbacks = new Fallbacks(plan.fallbacks);
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

  /**
   * `id` answered `versions`, standing in for `owner` (itself, when an owner). A fallback that has nothing for the key
   * knows nothing of it: its empty answer counts toward R only once every slot has finished, so that it never wins
   * the race against an owner that is slow to answer with the key's versions.
   */
  reply(id: string, versions: readonly Version[], owner: string = id): void {
    if (id !== owner && versions.length === 0) {
      this.#empty.push(id);
      return;
    }
    this.#record(id, versions);
  }

  #record(id: string, versions: readonly Version[]): void {
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
    // Only while R is short: an answer built from replicas that have the key does not name those that had nothing.
    if (this.#open === 0 && this.#replied.length < this.#r)
      for (const id of this.#empty.splice(0)) this.#record(id, []);
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

/**
 * One owner's part of a get: its siblings, or those of the next fallback each time a node does not answer. An owner
 * that is {@link busy} rather than failed is asked again on a timeout, up to {@link BUSY_PATIENCE} times, before a
 * fallback stands in: a fallback most likely has nothing for the key, and an owner slow to answer with the key's
 * versions (while it takes in transfers, say) would otherwise leave a read of R = 1 empty.
 */
class ReadSlot implements ReplyHandler {
  readonly #read: Read;
  readonly #owner: string;
  #target: string | undefined;
  readonly #patience = new Patience();
  #finished = false;

  constructor(read: Read, owner: string) {
    this.#read = read;
    this.#owner = owner;
    const { self, peers } = read.deps;
    // A suspected owner is still asked when no fallback is left to stand in for it (a cluster of N nodes).
    this.#target = owner === self || !peers.isSuspected(owner) ? owner : (read.fallbacks.take(peers) ?? owner);
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
        this.#read.reply(this.#target!, reply.versions, this.#owner);
        this.#finish();
        return;
      }
      const { deps, fallbacks } = this.#read;
      this.#target = this.#patience.next(this.#owner, this.#target, reply, fallbacks, deps.peers, () =>
        busy(deps, this.#owner),
      );
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
          read.reply(target, versions, this.#owner);
          this.#finish();
        },
        (error: unknown) => {
          // Still fetching and no holder answered: the next fallback stands in.
          if (!hasErrorCode(error, 'ERR_NOT_RESPONSIBLE')) {
            this.#fail(error);
            return;
          }
          this.#target = read.fallbacks.take(deps.peers);
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

/** A slot's choice of whom to ask next after its target failed to answer for an owner. */
class Patience {
  /** Timeouts the owner is forgiven when no fallback is left to stand in for it. */
  #left = 1;
  /** Timeouts the owner is forgiven while it is busy rather than failed (see {@link BUSY_PATIENCE}). */
  #busyLeft = BUSY_PATIENCE;

  /**
   * Who to ask after `target` failed to answer for `owner` (`reply` an error, or null on a timeout). When the owner
   * itself timed out: the owner again while `busy()` says it is busy rather than failed, up to
   * {@link BUSY_PATIENCE} times. Else the next fallback; or, when none is left and the owner itself timed out, the
   * owner again, once (a busy owner is not a failed one). Undefined when nobody is left.
   */
  next(
    owner: string,
    target: string | undefined,
    reply: Reply | null,
    fallbacks: Fallbacks,
    peers: Peers,
    busy: () => boolean,
  ): string | undefined {
    const timedOut = reply === null && target === owner;
    if (timedOut && this.#busyLeft > 0 && busy()) {
      this.#busyLeft--;
      return owner;
    }
    const fallback = fallbacks.take(peers);
    if (fallback === undefined && timedOut && this.#left > 0) {
      this.#left--;
      return owner;
    }
    return fallback;
  }
}

/**
 * The fallbacks of a round's ring walk not taken yet, shared by its slots. The plan's list is copied only when a slot
 * first takes one: most rounds never do, and the walk of a large cluster names nearly every member.
 */
class Fallbacks {
  readonly #walk: readonly string[];
  #left: string[] | undefined;

  constructor(walk: readonly string[]) {
    this.#walk = walk;
  }

  /** The next fallback to try: the first one not suspected, else the first one left. */
  take(peers: Peers): string | undefined {
    const left = (this.#left ??= [...this.#walk]);
    const index = left.findIndex((id) => !peers.isSuspected(id));
    const [taken] = left.splice(index === -1 ? 0 : index, 1);
    return taken;
  }
}
