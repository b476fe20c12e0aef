/**
 * Random clients. Each honest client loops over operations on a small set of keys, so that writes conflict: reads,
 * read-modify-writes (a get, then a put with the context it returned), conditional puts, blind puts and deletes,
 * each through a node chosen at random among the running ones, with random R and W (or the nodes' defaults). Every
 * put's value starts with a unique write id (`c3:17`, see values.ts), and every write is recorded with the ids its
 * context was read with and, once acknowledged, its dot, for the checker.
 *
 * Misbehaving clients run beside them when asked ({@link WorkloadKind}), each with what it must get back:
 * - `hot`: many clients put blind, as fast as they can, to a few hot keys through random nodes (the "last seen" key
 *   every tab writes): success, or `ERR_TOO_MANY_SIBLINGS` / `ERR_TOO_LARGE` only once a node really holds the key
 *   at its bound;
 * - `forged`: a client reads a key, then puts or deletes with a corrupted or forged context (forge.ts): refused with
 *   `ERR_INVALID_ARGUMENT`, storing nothing;
 * - `oversize`: a client puts values over `maxValueBytes` (refused with `ERR_TOO_LARGE`, storing nothing) and large
 *   blind values to one key until its sibling set crosses the byte bound (then `ERR_TOO_LARGE`, storing nothing).
 * Any other answer is a violation. Separately, every get or put with R or W at most the default that fails for want
 * of replicas (`ERR_QUORUM`, `ERR_TIMEOUT`, or `ERR_CLOSED` from a node that is still running) is a refusal, which
 * the run counts as a failure where nothing but membership changes (see run.ts).
 */
import { decodeContext } from '../../worker/wire/context.ts';
import { DEFAULT_LIMITS } from '../../worker/wire/protocol.ts';
import type { DynamoNode, GetResult, PutResult } from '../../worker/node.ts';
import { MAX_CLOCK_ENTRIES, counterOf, prune } from '../../worker/versions/vclock.ts';
import type { WriteOutcome, WriteRecord } from './checker.ts';
import type { Cluster } from './cluster.ts';
import { FORGERIES, type Forgery, familyOf, forge } from './forge.ts';
import type { Rng } from './random.ts';
import type { Scheduler } from './scheduler.ts';
import { KEY_BYTES_BOUND, SIBLING_BOUND, valueId, writeValue } from './values.ts';
import { type Witness, storedPeak } from './witness.ts';

const utf8 = new TextEncoder();

/** The misbehaving clients a run can add to the honest ones. */
export type WorkloadKind = 'hot' | 'forged' | 'oversize';

/** Every misbehaving workload, in a stable order. */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = Object.freeze(['hot', 'forged', 'oversize']);

/** How clients choose R and W: drawn at random (1..N, the middle most often), or left to the nodes' defaults. */
export type QuorumChoice = 'random' | 'default';

/** The kinds of client operation and their relative weights. */
export interface OperationMix {
  /** A get alone. @default 20 */
  read: number;
  /** A get, then a put with its context. @default 35 */
  readModifyWrite: number;
  /** A get, then a put with its context and `ifMatch`. @default 15 */
  conditionalPut: number;
  /** A put with no context: a new sibling of whatever is there. @default 15 */
  blindPut: number;
  /** A get, then a delete with its context. @default 15 */
  delete: number;
}

/** The default mix. */
export const DEFAULT_MIX: Readonly<OperationMix> = Object.freeze({
  read: 20,
  readModifyWrite: 35,
  conditionalPut: 15,
  blindPut: 15,
  delete: 15,
});

/** A node call as the workload saw it; handed to {@link WorkloadOptions.onOperation}. */
export type OperationRecord =
  | {
      readonly kind: 'get';
      readonly client: string;
      readonly node: string;
      readonly key: string;
      readonly r: number;
      readonly start: number;
      readonly end: number;
      readonly result?: GetResult;
      /** The ids of the values read. */
      readonly values?: readonly string[];
      readonly error?: unknown;
    }
  | {
      readonly kind: 'put' | 'delete';
      readonly client: string;
      readonly node: string;
      readonly key: string;
      readonly w: number;
      readonly ifMatch: boolean;
      readonly start: number;
      readonly end: number;
      readonly write: WriteRecord;
      readonly result?: PutResult;
      readonly error?: unknown;
      /** What a misbehaving client meant by it, when one made it. */
      readonly misbehaviour?: string;
    };

/** The record of a put or a delete. */
type WriteOperation = Extract<OperationRecord, { readonly write: WriteRecord }>;

/** `T` with its fields writable, for a record filled in field by field before it is handed out. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Options of a {@link Workload}. */
export interface WorkloadOptions {
  readonly cluster: Cluster;
  readonly scheduler: Scheduler;
  readonly rng: Rng;
  /** Node calls to make in all, over all clients. */
  readonly operations: number;
  /** Clients running at once. */
  readonly clients: number;
  /** The hot keys. */
  readonly keys: readonly string[];
  /** Replication factor N, the upper bound of random R and W. */
  readonly n: number;
  readonly mix?: Partial<OperationMix>;
  /** Longest pause between a client's operations, ms. @default 5 */
  readonly thinkTime?: number;
  /** Longest pause of a client after a call failed for want of replicas, ms. @default 100 */
  readonly backoff?: number;
  /** Called after every node call. */
  readonly onOperation?: (record: OperationRecord) => void;
  /** Misbehaving clients to run beside the honest ones. @default none */
  readonly kinds?: readonly WorkloadKind[];
  /** The keys the `hot` clients put blind to; no honest client touches them. @default ['hot0', 'hot1'] */
  readonly hotKeys?: readonly string[];
  /** The key the `oversize` clients fill with large blind values; no honest client touches it. @default 'big0' */
  readonly bigKey?: string;
  /** How R and W are chosen. @default 'random' */
  readonly quorums?: QuorumChoice;
  /** The nodes' default R and W. @default min(2, n) */
  readonly defaultQuorum?: number;
  /** The storage witness: the counters forgers aim past. Without it they aim past 0. */
  readonly witness?: Witness;
  /** The nodes' largest value, bytes. @default DEFAULT_LIMITS.maxValueBytes */
  readonly maxValueBytes?: number;
  /** Most siblings a put may leave of its key. @default SIBLING_BOUND */
  readonly maxSiblings?: number;
  /** Most bytes of a key's sibling set. @default KEY_BYTES_BOUND */
  readonly maxKeyBytes?: number;
}

/** Error codes that mean a write was refused before anything was stored. */
const REFUSED = new Set(['ERR_STALE_CONTEXT', 'ERR_INVALID_ARGUMENT', 'ERR_TOO_LARGE', 'ERR_TOO_MANY_SIBLINGS']);
/** Error codes that say the cluster could not serve the call right now. */
const UNAVAILABLE = new Set(['ERR_QUORUM', 'ERR_TIMEOUT', 'ERR_CLOSED']);
/**
 * Error codes an honest client may see in a faulty cluster; any other failure is a bug. A put over a context that
 * does not cover every sibling adds one, so it may meet the sibling bound.
 */
const EXPECTED = new Set(['ERR_QUORUM', 'ERR_TIMEOUT', 'ERR_STALE_CONTEXT', 'ERR_CLOSED', 'ERR_TOO_MANY_SIBLINGS']);

/** A call that failed for want of replicas although its quorum was at most the default. */
export interface Refusal {
  readonly kind: 'get' | 'put' | 'delete';
  readonly client: string;
  readonly node: string;
  readonly key: string;
  /** R or W. */
  readonly quorum: number;
  readonly start: number;
  readonly end: number;
  readonly code: string;
  readonly message: string;
}

/** What a misbehaving client's call must get back. */
interface Expectation {
  /** The misbehaviour, in words, for findings. */
  readonly what: string;
  /** Whether success is a right answer. */
  readonly mayStore: boolean;
  /** The refusals that are right answers (unavailability aside, which is judged apart). */
  readonly codes: readonly string[];
  /** True for a blind put to a hot or big key: a refusal at a bound must find the key at that bound somewhere. */
  readonly bounded: boolean;
}

/** Findings kept in full; past this many only counted. */
const KEPT = 20;

/** One client's identity and what its current operation met. */
interface ClientState {
  readonly id: string;
  readonly rng: Rng;
  /** A call of the current operation failed for want of replicas. */
  unavailable: boolean;
  /** Write ids issued so far. */
  seq: number;
}

/** How a write is made, beyond its key and value. */
interface WriteCall {
  readonly kind: 'put' | 'delete';
  readonly key: string;
  readonly id: string;
  /** The value's size in bytes; 0 for the id alone. */
  readonly size?: number;
  /** The read whose context the write carries (null: blind). */
  readonly read: Read | null;
  /** A context to send instead of the read's (a forged one); the read still names what the client had seen. */
  readonly context?: string;
  readonly ifMatch: boolean;
  /** The node to call; a random available one when absent. */
  readonly via?: DynamoNode;
  /** What a misbehaving client expects. */
  readonly expect?: Expectation;
}

/** What a client read, for the write that follows. */
interface Read {
  readonly values: string[];
  readonly context: string;
  /** Virtual ms when the read was issued. */
  readonly at: number;
}

/** A node call in flight, for the watchdog. */
export interface InFlight {
  readonly client: string;
  readonly kind: string;
  readonly node: string;
  readonly key: string;
  readonly start: number;
}

/** Clients running a random workload, with the history they record. */
export class Workload {
  /** Every put and delete, in the order they were issued. */
  readonly writes: WriteRecord[] = [];
  /** Node calls made. */
  operations = 0;
  /** Node calls that succeeded. */
  succeeded = 0;
  /** Failed node calls by error code. */
  readonly failures: Record<string, number> = {};
  /** Failures no faulty cluster should cause (first few kept). */
  readonly unexpected: string[] = [];
  unexpectedCount = 0;
  /** Calls with at most the default quorum that failed for want of replicas (first {@link KEPT} kept). */
  readonly refusals: Refusal[] = [];
  refusalCount = 0;
  /** Misbehaving calls answered otherwise than they must be (first {@link KEPT} kept). */
  readonly violations: string[] = [];
  violationCount = 0;
  /** Calls made by misbehaving clients, by what they did. */
  readonly misbehaviours: Record<string, number> = {};
  /** Node calls in flight, by client. */
  readonly inFlight = new Map<string, InFlight>();
  readonly #options: WorkloadOptions;
  readonly #mix: OperationMix;
  /** The mix's kinds and weights, in the mix's order. */
  readonly #mixEntries: readonly (readonly [keyof OperationMix, number])[];
  readonly #mixTotal: number;
  readonly #backoff: number;
  readonly #defaultQuorum: number;
  readonly #maxValueBytes: number;
  readonly #maxSiblings: number;
  readonly #maxKeyBytes: number;
  #budget: number;
  #running = 0;

  constructor(options: WorkloadOptions) {
    this.#options = options;
    this.#mix = { ...DEFAULT_MIX, ...options.mix };
    this.#mixEntries = Object.entries(this.#mix) as [keyof OperationMix, number][];
    this.#mixTotal = Object.values(this.#mix).reduce((a, b) => a + b, 0);
    this.#budget = options.operations;
    this.#backoff = options.backoff ?? 100;
    this.#defaultQuorum = options.defaultQuorum ?? Math.min(2, options.n);
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_LIMITS.maxValueBytes;
    this.#maxSiblings = options.maxSiblings ?? SIBLING_BOUND;
    this.#maxKeyBytes = options.maxKeyBytes ?? KEY_BYTES_BOUND;
  }

  /** True once every client has finished. */
  get done(): boolean {
    return this.#running === 0 && this.#budget <= 0;
  }

  /** The keys the `hot` clients write. */
  get hotKeys(): readonly string[] {
    return this.#options.hotKeys ?? ['hot0', 'hot1'];
  }

  /** The key the `oversize` clients fill. */
  get bigKey(): string {
    return this.#options.bigKey ?? 'big0';
  }

  /** Starts every client; the scheduler drives them. */
  start(): void {
    const kinds = this.#options.kinds ?? [];
    const run = (id: string, loop: (state: ClientState) => Promise<void>): void => {
      const state: ClientState = { id, rng: this.#options.rng.fork(id), unavailable: false, seq: 0 };
      this.#running++;
      void loop(state).finally(() => this.#running--);
    };
    for (let i = 0; i < this.#options.clients; i++) run(`c${i}`, (state) => this.#client(state));
    // Misbehaving clients draw from their own streams, so that adding them leaves the honest clients' draws alone.
    const { clients } = this.#options;
    if (kinds.includes('hot')) for (let i = 0; i < Math.max(4, clients); i++) run(`h${i}`, (s) => this.#hot(s));
    if (kinds.includes('forged'))
      for (let i = 0; i < Math.max(1, Math.floor(clients / 4)); i++) run(`f${i}`, (s) => this.#forger(s));
    if (kinds.includes('oversize')) run('o0', (s) => this.#oversize(s));
  }

  async #client(state: ClientState): Promise<void> {
    const { scheduler, keys } = this.#options;
    const { id, rng } = state;
    const think = this.#options.thinkTime ?? 5;
    // Clients start spread out, so they do not all hit the first millisecond.
    await scheduler.sleep(rng.int(think + 1));
    while (this.#budget > 0) {
      const key = rng.pick(keys);
      const kind = this.#pickKind(rng);
      state.unavailable = false;
      if (kind === 'blindPut') {
        await this.#write(state, { kind: 'put', key, id: `${id}:${++state.seq}`, read: null, ifMatch: false });
      } else {
        const read = await this.#get(state, key);
        if (read !== null && kind !== 'read' && this.#budget > 0) {
          if (kind === 'delete')
            await this.#write(state, { kind: 'delete', key, id: `${id}:d${++state.seq}`, read, ifMatch: false });
          else
            await this.#write(state, {
              kind: 'put',
              key,
              id: `${id}:${++state.seq}`,
              read,
              ifMatch: kind === 'conditionalPut',
            });
        }
      }
      await this.#pause(state, think);
    }
  }

  /** A hot-key client: blind puts through random nodes, with hardly a pause. */
  async #hot(state: ClientState): Promise<void> {
    const { rng } = state;
    const keys = this.hotKeys;
    const expect: Expectation = {
      what: 'blind put to a hot key',
      mayStore: true,
      codes: ['ERR_TOO_MANY_SIBLINGS', 'ERR_TOO_LARGE'],
      bounded: true,
    };
    await this.#options.scheduler.sleep(rng.int(2));
    while (this.#budget > 0) {
      state.unavailable = false;
      const key = rng.pick(keys);
      await this.#write(state, {
        kind: 'put',
        key,
        id: `${state.id}:${++state.seq}`,
        read: null,
        ifMatch: false,
        expect,
      });
      await this.#pause(state, 1);
    }
  }

  /** A forger: reads a key, then writes over it with a corrupted or forged context. */
  async #forger(state: ClientState): Promise<void> {
    const { rng } = state;
    const { scheduler, cluster, keys, witness } = this.#options;
    const think = this.#options.thinkTime ?? 5;
    const targets = [...keys, ...((this.#options.kinds ?? []).includes('hot') ? this.hotKeys : [])];
    await scheduler.sleep(rng.int(think + 1));
    while (this.#budget > 0) {
      state.unavailable = false;
      const key = rng.pick(targets);
      const read = await this.#get(state, key);
      if (this.#budget <= 0) break;
      const forgery: Forgery = rng.pick(FORGERIES);
      // A context naming the coordinator's own future goes to an owner of the key, which coordinates it.
      const owners = cluster.preferenceList(utf8.encode(key), this.#options.n);
      const available = cluster.available();
      const reachable = owners.filter((id) => available.includes(id));
      const via =
        forgery === 'own-future' && reachable.length > 0 ? cluster.node(rng.pick(reachable))! : await this.#node(rng);
      const context = forge(forgery, {
        rng,
        real: read?.context ?? '',
        coordinator: via.id,
        others: cluster.memberIds().filter((id) => id !== via.id),
        issued: (node) => witness?.issued(node) ?? 0,
        now: scheduler.now,
      });
      const family = familyOf(forgery);
      const kind = rng.chance(0.8) ? 'put' : 'delete';
      await this.#write(state, {
        kind,
        key,
        id: `${state.id}:${kind === 'delete' ? 'd' : ''}${++state.seq}`,
        read,
        context,
        ifMatch: kind === 'put' && rng.chance(0.3),
        via,
        expect: {
          what: `${kind} with ${family === 'out-of-range' ? 'an' : 'a'} ${family} context (${forgery})`,
          mayStore: false,
          codes: ['ERR_INVALID_ARGUMENT'],
          bounded: false,
        },
      });
      await this.#pause(state, think);
    }
  }

  /** An oversize client: values over the value limit anywhere, and large blind values to one key. */
  async #oversize(state: ClientState): Promise<void> {
    const { rng } = state;
    const { scheduler, keys } = this.#options;
    const max = this.#maxValueBytes;
    await scheduler.sleep(rng.int(20));
    while (this.#budget > 0) {
      state.unavailable = false;
      if (rng.chance(0.5)) {
        const key = rng.pick([...keys, this.bigKey]);
        await this.#write(state, {
          kind: 'put',
          key,
          id: `${state.id}:${++state.seq}`,
          size: max + 1 + rng.int(4096),
          read: null,
          ifMatch: false,
          expect: { what: 'a value over maxValueBytes', mayStore: false, codes: ['ERR_TOO_LARGE'], bounded: false },
        });
      } else {
        await this.#write(state, {
          kind: 'put',
          key: this.bigKey,
          id: `${state.id}:${++state.seq}`,
          size: rng.between(Math.floor(max / 8), max),
          read: null,
          ifMatch: false,
          expect: {
            what: 'a large blind put',
            mayStore: true,
            codes: ['ERR_TOO_LARGE', 'ERR_TOO_MANY_SIBLINGS'],
            bounded: true,
          },
        });
      }
      await this.#pause(state, 60, 20);
    }
  }

  /**
   * A client that found the cluster unavailable waits a while, as a real one would, rather than spend its calls
   * failing fast against the same fault; otherwise it thinks for up to `think` ms (at least `least`).
   */
  async #pause(state: ClientState, think: number, least = 0): Promise<void> {
    const { rng } = state;
    const pause = state.unavailable ? rng.between(Math.floor(this.#backoff / 2), this.#backoff) : rng.int(think + 1);
    const ms = Math.max(least, pause);
    if (ms > 0) await this.#options.scheduler.sleep(ms);
  }

  #pickKind(rng: Rng): keyof OperationMix {
    let x = rng.next() * this.#mixTotal;
    for (const [kind, weight] of this.#mixEntries) {
      if (x < weight) return kind;
      x -= weight;
    }
    return 'read';
  }

  /** A quorum: the nodes' default, or random 1..N with the middle one most often. */
  #quorum(rng: Rng): number | undefined {
    if (this.#options.quorums === 'default') return undefined;
    const n = this.#options.n;
    const x = rng.next();
    if (x < 0.6) return Math.min(n, Math.floor(n / 2) + 1);
    if (x < 0.8) return n;
    return 1;
  }

  async #node(rng: Rng): Promise<DynamoNode> {
    const { cluster, scheduler } = this.#options;
    for (;;) {
      const available = cluster.available();
      if (available.length > 0) return cluster.node(rng.pick(available))!;
      await scheduler.sleep(10);
    }
  }

  async #get(state: ClientState, key: string): Promise<Read | null> {
    const { id: client, rng } = state;
    const node = await this.#node(rng);
    const quorum = this.#quorum(rng);
    const r = quorum ?? this.#defaultQuorum;
    const start = this.#begin(client, 'get', node.id, key);
    try {
      const result = await node.get(key, quorum === undefined ? {} : { r: quorum });
      const values = result.values.map(valueId);
      this.succeeded++;
      this.#options.onOperation?.({
        kind: 'get',
        client,
        node: node.id,
        key,
        r,
        start,
        end: this.#options.scheduler.now,
        result,
        values,
      });
      return { values, context: result.context, at: start };
    } catch (error) {
      this.#fail(state, error);
      this.#refused('get', state, node, key, r, start, error);
      this.#options.onOperation?.({
        kind: 'get',
        client,
        node: node.id,
        key,
        r,
        start,
        end: this.#options.scheduler.now,
        error,
      });
      return null;
    } finally {
      this.inFlight.delete(client);
    }
  }

  async #write(state: ClientState, call: WriteCall): Promise<void> {
    const { id: client, rng } = state;
    const { kind, key, id, read, ifMatch, expect } = call;
    const node = call.via ?? (await this.#node(rng));
    const quorum = this.#quorum(rng);
    const w = quorum ?? this.#defaultQuorum;
    const start = this.#begin(client, kind, node.id, key);
    const options: { w?: number; context?: string; ifMatch?: boolean } = {};
    if (quorum !== undefined) options.w = quorum;
    const context = call.context ?? read?.context;
    if (context !== undefined) options.context = context;
    if (ifMatch) options.ifMatch = true;
    const value = kind === 'put' ? writeValue(id, call.size) : null;
    let outcome: WriteOutcome = 'unknown';
    let result: PutResult | undefined;
    let failure: unknown;
    if (expect !== undefined) this.misbehaviours[expect.what] = (this.misbehaviours[expect.what] ?? 0) + 1;
    try {
      result = value !== null ? await node.put(key, value, options) : await node.delete(key, options);
      outcome = 'ok';
      this.succeeded++;
    } catch (error) {
      failure = error;
      outcome = REFUSED.has(codeOf(error)) ? 'failed' : 'unknown';
      if (expect === undefined) this.#fail(state, error);
      else this.#tally(state, error);
      this.#refused(kind, state, node, key, w, start, error);
    } finally {
      this.inFlight.delete(client);
    }
    const end = this.#options.scheduler.now;
    const dot = result === undefined ? undefined : this.#dotOf(result);
    // Optional fields are set one by one, not spread in: spreading optional parts into a literal takes V8's generic
    // object copy, which cost more than the rest of this bookkeeping, and it runs for every write.
    const write: Mutable<WriteRecord> = {
      id,
      kind,
      key,
      parents: read?.values ?? [],
      w,
      outcome,
      readAt: read?.at ?? start,
      end,
      supersedes: read === null || call.context !== undefined ? [] : superseded(read.context),
    };
    if (result !== undefined) write.coordinator = result.receipt.coordinator;
    if (dot !== undefined) write.dot = dot;
    if (failure !== undefined) write.code = codeOf(failure);
    if (expect !== undefined && !expect.mayStore) write.storesNothing = true;
    this.writes.push(write);
    if (expect !== undefined) await this.#judge(expect, write, node, value, failure, ifMatch);
    const record: Mutable<WriteOperation> = { kind, client, node: node.id, key, w, ifMatch, start, end, write };
    if (expect !== undefined) record.misbehaviour = expect.what;
    if (result !== undefined) record.result = result;
    else if (failure !== undefined) record.error = failure;
    this.#options.onOperation?.(record);
  }

  /** The dot an acknowledged write was stored under: its coordinator's entry in the context it returned. */
  #dotOf(result: PutResult): { node: string; counter: number } | undefined {
    const node = result.receipt.coordinator;
    try {
      return { node, counter: counterOf(decodeContext(result.context), node) };
    } catch (error) {
      this.#bug(`an acknowledged write returned a context that does not decode: ${errorText(error)}`);
      return undefined;
    }
  }

  /** Checks a misbehaving call's answer against what it must be. */
  async #judge(
    expect: Expectation,
    write: WriteRecord,
    node: DynamoNode,
    value: Uint8Array | null,
    failure: unknown,
    ifMatch: boolean,
  ): Promise<void> {
    const where = `${write.key} via ${node.id}${ifMatch ? ' with ifMatch' : ''}`;
    if (failure === undefined) {
      if (!expect.mayStore)
        this.#violate(
          `${expect.what} was accepted: ${write.id} on ${where}, coordinated by ${write.coordinator ?? '?'}` +
            (write.dot !== undefined ? ` as dot ${write.dot.node}:${write.dot.counter}` : ''),
        );
      return;
    }
    const code = codeOf(failure);
    if (UNAVAILABLE.has(code)) return;
    if (!expect.codes.includes(code)) {
      this.#violate(
        `${expect.what} failed with ${code}, not ${expect.codes.join(' or ')}: ${write.id} on ${where}: ` +
          (failure instanceof Error ? failure.message : String(failure)),
      );
      return;
    }
    if (!expect.bounded || (code !== 'ERR_TOO_MANY_SIBLINGS' && code !== 'ERR_TOO_LARGE')) return;
    // A blind put adds a sibling and its bytes: refused, it must have met a set that no room was left in.
    const peak = await storedPeak(this.#options.cluster, utf8.encode(write.key));
    const added = (value?.byteLength ?? 0) + 2048;
    if (code === 'ERR_TOO_MANY_SIBLINGS' && peak.count < this.#maxSiblings)
      this.#violate(
        `${expect.what} was refused with ${code} while no node held more than ${peak.count} siblings of ` +
          `${write.key} (bound ${this.#maxSiblings}): ${write.id} via ${node.id}`,
      );
    if (code === 'ERR_TOO_LARGE' && peak.bytes + added <= this.#maxKeyBytes)
      this.#violate(
        `${expect.what} was refused with ${code} while no node held more than ${peak.bytes} bytes of ` +
          `${write.key}, and the put adds at most ${added} (bound ${this.#maxKeyBytes}): ${write.id} via ${node.id}`,
      );
  }

  #begin(client: string, kind: string, node: string, key: string): number {
    this.#budget--;
    this.operations++;
    const start = this.#options.scheduler.now;
    this.inFlight.set(client, { client, kind, node, key, start });
    return start;
  }

  /** Counts a failed call; an error no faulty cluster causes is a bug. */
  #fail(state: ClientState, error: unknown): void {
    const code = this.#tally(state, error);
    if (!EXPECTED.has(code)) this.#bug(errorText(error));
  }

  #tally(state: ClientState, error: unknown): string {
    const code = codeOf(error);
    if (UNAVAILABLE.has(code)) state.unavailable = true;
    this.failures[code] = (this.failures[code] ?? 0) + 1;
    return code;
  }

  #bug(text: string): void {
    this.unexpectedCount++;
    if (this.unexpected.length < 10) this.unexpected.push(text);
  }

  #violate(text: string): void {
    this.violationCount++;
    if (this.violations.length < KEPT) this.violations.push(text);
  }

  /** Records a refusal: a call with at most the default quorum that failed for want of replicas. */
  #refused(
    kind: Refusal['kind'],
    state: ClientState,
    node: DynamoNode,
    key: string,
    quorum: number,
    start: number,
    error: unknown,
  ): void {
    const code = codeOf(error);
    if (quorum > this.#defaultQuorum) return;
    // A call on a node that closed (its tab went away) is not the cluster's refusal; one on a running node is.
    const closedHere = code === 'ERR_CLOSED' && this.#options.cluster.nodes.get(node.id)?.node !== node;
    if (!UNAVAILABLE.has(code) || closedHere) return;
    this.refusalCount++;
    if (this.refusals.length < KEPT)
      this.refusals.push({
        kind,
        client: state.id,
        node: node.id,
        key,
        quorum,
        start,
        end: this.#options.scheduler.now,
        code,
        message: error instanceof Error ? error.message : String(error),
      });
  }
}

/**
 * What a write over `context` supersedes: the versions whose dots the context covers. The coordinator prunes the
 * context to make room for its own entry, so it is pruned here the same way, to one entry fewer than the maximum,
 * which can only make it cover less.
 */
function superseded(context: string): { node: string; counter: number }[] {
  return prune(decodeContext(context), MAX_CLOCK_ENTRIES - 1).map((e) => ({ node: e.node, counter: e.counter }));
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'unknown';
}

function errorText(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
