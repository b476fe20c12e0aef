/**
 * Random clients. Each client loops over operations on a small hot set of keys, so that writes conflict: reads,
 * read-modify-writes (a get, then a put with the context it returned), conditional puts, blind puts and deletes,
 * each through a node chosen at random among the running ones, with random R and W. Every put's value is a unique
 * write id (`c3:17` as UTF-8), and every write is recorded with the ids its context was read with, for the checker.
 */
import { decodeContext } from '../../worker/wire/context.ts';
import type { DynamoNode, GetResult, PutResult } from '../../worker/node.ts';
import { MAX_CLOCK_ENTRIES, prune } from '../../worker/versions/vclock.ts';
import type { WriteOutcome, WriteRecord } from './checker.ts';
import type { Cluster } from './cluster.ts';
import type { Rng } from './random.ts';
import type { Scheduler } from './scheduler.ts';

const utf8 = new TextEncoder();
const text = new TextDecoder();

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
    };

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
}

/** Error codes that mean a write was refused before anything was stored. */
const REFUSED = new Set(['ERR_STALE_CONTEXT', 'ERR_INVALID_ARGUMENT', 'ERR_TOO_LARGE']);
/** Error codes that say the cluster could not serve the call right now. */
const UNAVAILABLE = new Set(['ERR_QUORUM', 'ERR_TIMEOUT', 'ERR_CLOSED']);
/** Error codes a client may see in a faulty cluster; any other failure is a bug. */
const EXPECTED = new Set(['ERR_QUORUM', 'ERR_TIMEOUT', 'ERR_STALE_CONTEXT', 'ERR_CLOSED']);

/** One client's identity and what its current operation met. */
interface ClientState {
  readonly id: string;
  readonly rng: Rng;
  /** A call of the current operation failed for want of replicas. */
  unavailable: boolean;
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
  /** Node calls in flight, by client. */
  readonly inFlight = new Map<string, InFlight>();
  readonly #options: WorkloadOptions;
  readonly #mix: OperationMix;
  readonly #mixTotal: number;
  readonly #backoff: number;
  #budget: number;
  #running = 0;

  constructor(options: WorkloadOptions) {
    this.#options = options;
    this.#mix = { ...DEFAULT_MIX, ...options.mix };
    this.#mixTotal = Object.values(this.#mix).reduce((a, b) => a + b, 0);
    this.#budget = options.operations;
    this.#backoff = options.backoff ?? 100;
  }

  /** True once every client has finished. */
  get done(): boolean {
    return this.#running === 0 && this.#budget <= 0;
  }

  /** Starts every client; the scheduler drives them. */
  start(): void {
    for (let i = 0; i < this.#options.clients; i++) {
      const id = `c${i}`;
      const rng = this.#options.rng.fork(id);
      this.#running++;
      void this.#client(id, rng).finally(() => this.#running--);
    }
  }

  async #client(id: string, rng: Rng): Promise<void> {
    const { scheduler, keys } = this.#options;
    const think = this.#options.thinkTime ?? 5;
    let seq = 0;
    const state: ClientState = { id, rng, unavailable: false };
    // Clients start spread out, so they do not all hit the first millisecond.
    await scheduler.sleep(rng.int(think + 1));
    while (this.#budget > 0) {
      const key = rng.pick(keys);
      const kind = this.#pickKind(rng);
      state.unavailable = false;
      if (kind === 'blindPut') {
        await this.#write(state, 'put', key, `${id}:${++seq}`, null, false);
      } else {
        const read = await this.#get(state, key);
        if (read !== null && kind !== 'read' && this.#budget > 0) {
          if (kind === 'delete') await this.#write(state, 'delete', key, `${id}:d${++seq}`, read, false);
          else await this.#write(state, 'put', key, `${id}:${++seq}`, read, kind === 'conditionalPut');
        }
      }
      // A client that found the cluster unavailable waits a while, as a real one would, rather than spend its
      // calls failing fast against the same fault.
      const pause = state.unavailable ? rng.between(Math.floor(this.#backoff / 2), this.#backoff) : rng.int(think + 1);
      if (pause > 0) await scheduler.sleep(pause);
    }
  }

  #pickKind(rng: Rng): keyof OperationMix {
    let x = rng.next() * this.#mixTotal;
    for (const [kind, weight] of Object.entries(this.#mix) as [keyof OperationMix, number][]) {
      if (x < weight) return kind;
      x -= weight;
    }
    return 'read';
  }

  /** A random quorum 1..N, the middle one most often. */
  #quorum(rng: Rng): number {
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
    const r = this.#quorum(rng);
    const start = this.#begin(client, 'get', node.id, key);
    try {
      const result = await node.get(key, { r });
      const values = result.values.map((v) => text.decode(v));
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

  async #write(
    state: ClientState,
    kind: 'put' | 'delete',
    key: string,
    id: string,
    read: Read | null,
    ifMatch: boolean,
  ): Promise<void> {
    const { id: client, rng } = state;
    const node = await this.#node(rng);
    const w = this.#quorum(rng);
    const start = this.#begin(client, kind, node.id, key);
    const options: { w: number; context?: string; ifMatch?: boolean } = { w };
    if (read !== null) options.context = read.context;
    if (ifMatch) options.ifMatch = true;
    let outcome: WriteOutcome = 'unknown';
    let result: PutResult | undefined;
    let failure: unknown;
    try {
      result = kind === 'put' ? await node.put(key, utf8.encode(id), options) : await node.delete(key, options);
      outcome = 'ok';
      this.succeeded++;
    } catch (error) {
      failure = error;
      outcome = REFUSED.has(codeOf(error)) ? 'failed' : 'unknown';
      this.#fail(state, error);
    } finally {
      this.inFlight.delete(client);
    }
    const end = this.#options.scheduler.now;
    const write: WriteRecord = {
      id,
      kind,
      key,
      parents: read?.values ?? [],
      w,
      outcome,
      readAt: read?.at ?? start,
      end,
      supersedes: read === null ? [] : superseded(read.context),
      ...(result !== undefined ? { coordinator: result.receipt.coordinator } : {}),
    };
    this.writes.push(write);
    const record = { kind, client, node: node.id, key, w, ifMatch, start, end, write };
    this.#options.onOperation?.(
      result !== undefined ? { ...record, result } : failure !== undefined ? { ...record, error: failure } : record,
    );
  }

  #begin(client: string, kind: string, node: string, key: string): number {
    this.#budget--;
    this.operations++;
    const start = this.#options.scheduler.now;
    this.inFlight.set(client, { client, kind, node, key, start });
    return start;
  }

  #fail(state: ClientState, error: unknown): void {
    const code = codeOf(error);
    if (UNAVAILABLE.has(code)) state.unavailable = true;
    this.failures[code] = (this.failures[code] ?? 0) + 1;
    if (!EXPECTED.has(code)) {
      this.unexpectedCount++;
      if (this.unexpected.length < 10)
        this.unexpected.push(error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
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
