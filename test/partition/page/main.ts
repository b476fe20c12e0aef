/**
 * The partition test's page: opens this tab's node with fault injection and runs one client against it, a loop of
 * reads, read-modify-writes, blind puts and deletes over a small key set, so that writes conflict. Every operation
 * is pushed to the test as it happens (a write before it is issued, and again when it ends), so the history
 * outlives reloads and closed tabs. Query parameters: `cluster`, `server` (the signalling server), `seed`, `keys`
 * (how many), `think` (longest pause between operations, ms), `opTimeout` (ms before the client gives up waiting).
 * No UI: five tabs share two cores with their workers, and rendering would only take from them.
 */
import { openStore, type Store } from '../../../client/index.ts';
import { decodeValue } from '../../../client/values.ts';
import { openIndexedDbStorage } from '../../../worker/storage/indexeddb.ts';
import { Rng } from '../../sim/random.ts';
import {
  RECORD_BINDING,
  type DumpedVersion,
  type PageRecord,
  type PartitionPage,
  type PartitionReport,
  type StorageDump,
} from '../records.ts';

declare global {
  interface Window {
    store?: Store;
    partition?: PartitionPage;
    /** Why the store could not open, for the test to report. */
    partitionError?: string;
    /** Each failed attempt to open the store, as `code: message`. */
    partitionOpenErrors: string[];
  }
}

/** Error codes that mean the write stored nothing. */
const REFUSED = new Set(['ERR_STALE_CONTEXT', 'ERR_INVALID_ARGUMENT', 'ERR_TOO_LARGE']);
/** Error codes after which the client backs off: the cluster cannot serve it right now. */
const UNAVAILABLE = new Set(['ERR_QUORUM', 'ERR_TIMEOUT', 'ERR_CLOSED', 'ERR_NOT_RESPONSIBLE', 'HUNG']);

const params = new URLSearchParams(location.search);
const cluster = params.get('cluster') ?? 'partition';
const serverUrl = params.get('server') ?? location.origin;
const keyCount = Number(params.get('keys') ?? '12');
const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
const think = Number(params.get('think') ?? '20');
const opTimeout = Number(params.get('opTimeout') ?? '15000');
const seed = Number(params.get('seed') ?? '1');
const status = document.getElementById('status')!;
const utf8 = new TextDecoder();

type Attempt<T> = { ok: true; value: T } | { ok: false; code: string };

/** Runs `op`, giving up (as `HUNG`) after `opTimeout`; the call itself may still complete later. */
async function attempt<T>(op: () => Promise<T>): Promise<Attempt<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<Attempt<T>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, code: 'HUNG' }), opTimeout);
  });
  try {
    return await Promise.race([
      op().then(
        (value): Attempt<T> => ({ ok: true, value }),
        (error: unknown): Attempt<T> => ({ ok: false, code: codeOf(error) }),
      ),
      hung,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.name : 'unknown';
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * Opens the store, trying again while the server is down (the nemesis restarts it), as an app would. Every failed
 * attempt is kept in `window.partitionOpenErrors` for the test: one without a stable code breaks the API's contract.
 */
async function open(): Promise<Store> {
  for (let tries = 1; ; tries++) {
    try {
      return await openStore({ url: serverUrl, cluster, n: 3, r: 2, w: 2, faults: true });
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      const message = error instanceof Error ? error.message : String(error);
      window.partitionOpenErrors.push(`${typeof code === 'string' ? code : 'no code'}: ${message}`);
      if (tries >= 10) throw error;
      await sleep(500);
    }
  }
}

class Client implements PartitionPage {
  readonly nodeId: string;
  readonly client: string;
  running = true;
  readonly #store: Store;
  readonly #rng: Rng;
  readonly #push: (record: PageRecord) => Promise<void>;
  #seq = 0;
  #loop: Promise<void> = Promise.resolve();

  constructor(store: Store, push: (record: PageRecord) => Promise<void>) {
    this.#store = store;
    this.nodeId = store.nodeId;
    const incarnation = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
    this.client = `${store.nodeId}.${incarnation}`;
    this.#rng = new Rng(seed).fork(this.client);
    this.#push = push;
  }

  start(): void {
    this.#loop = this.#run().catch((error: unknown) => {
      // The binding is gone (the test is tearing the page down): nothing can be recorded, so nothing may be done.
      this.running = false;
      console.warn('partition client stopped', error);
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.#loop;
  }

  async #run(): Promise<void> {
    const rng = this.#rng;
    while (this.running) {
      const key = rng.pick(keys);
      const x = rng.next();
      let unavailable: boolean;
      if (x < 0.15) {
        unavailable = await this.#write('put', key, null);
      } else {
        const read = await this.#get(key);
        unavailable = read === null;
        if (read !== null && this.running && x >= 0.3) {
          unavailable = await this.#write(x < 0.42 ? 'delete' : 'put', key, read);
        }
      }
      // A client that met an unavailable cluster waits a while, as a real one would, rather than spin on the fault.
      await sleep(unavailable ? rng.between(100, 300) : rng.int(think + 1));
    }
  }

  async #get(key: string): Promise<{ values: string[]; context: string; at: number } | null> {
    const start = Date.now();
    const result = await attempt(() => this.#store.get(key, { r: 2 }));
    const base = { type: 'get', client: this.client, node: this.nodeId, key, r: 2, start, end: Date.now() } as const;
    if (!result.ok) {
      await this.#push({ ...base, ok: false, code: result.code });
      return null;
    }
    const values = result.value.values.map(text);
    await this.#push({ ...base, ok: true, values });
    return { values, context: result.value.context, at: start };
  }

  /** Returns true when the cluster could not serve the write. */
  async #write(
    kind: 'put' | 'delete',
    key: string,
    read: { values: string[]; context: string; at: number } | null,
  ): Promise<boolean> {
    const seq = ++this.#seq;
    const id = kind === 'put' ? `${this.client}:${seq}` : `${this.client}:d${seq}`;
    const start = Date.now();
    await this.#push({
      type: 'begin',
      client: this.client,
      node: this.nodeId,
      id,
      kind,
      key,
      w: 2,
      parents: read?.values ?? [],
      context: read?.context ?? null,
      readAt: read?.at ?? start,
      start,
    });
    const options = read === null ? { w: 2 } : { w: 2, context: read.context };
    const result = await attempt(() =>
      kind === 'put' ? this.#store.put(key, id, options) : this.#store.delete(key, options),
    );
    const end = Date.now();
    if (result.ok) {
      await this.#push({
        type: 'end',
        client: this.client,
        node: this.nodeId,
        id,
        outcome: 'ok',
        end,
        coordinator: result.value.receipt.coordinator,
      });
      return false;
    }
    await this.#push({
      type: 'end',
      client: this.client,
      node: this.nodeId,
      id,
      outcome: REFUSED.has(result.code) ? 'failed' : 'unknown',
      code: result.code,
      end,
    });
    return UNAVAILABLE.has(result.code);
  }

  async report(): Promise<PartitionReport> {
    const store = this.#store;
    const partitions = await store.partitions();
    return {
      node: this.nodeId,
      members: store.members().map((m) => m.id),
      epoch: store.view()?.epoch ?? null,
      partitions,
    };
  }

  async dump(): Promise<StorageDump> {
    // A second connection to the node's own database: reads only, beside the worker's connection.
    const storage = await openIndexedDbStorage(`dynamesh:${cluster}:${this.nodeId}`);
    try {
      const out: Record<string, DumpedVersion[]> = {};
      for (const partition of await storage.partitionsWithData()) {
        let after: Uint8Array | undefined;
        for (;;) {
          const page = await storage.scanPartition(
            partition,
            after === undefined ? { limit: 500 } : { after, limit: 500 },
          );
          for (const stored of page) {
            out[utf8.decode(stored.key)] = stored.siblings.map((v) => ({
              node: v.dot.node,
              counter: v.dot.counter,
              value: v.value === null ? null : text(decodeValue(v.value)),
            }));
          }
          if (page.length < 500) break;
          after = page[page.length - 1]!.key;
        }
      }
      const { hints } = await storage.stats();
      return { node: this.nodeId, keys: out, hints };
    } finally {
      await storage.close();
    }
  }

  async read(
    keys: readonly string[],
    r: number,
  ): Promise<({ ok: true; values: string[] } | { ok: false; code: string })[]> {
    return Promise.all(
      keys.map(async (key) => {
        const result = await attempt(() => this.#store.get(key, { r }));
        return result.ok ? { ok: true as const, values: result.value.values.map(text) } : result;
      }),
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  window.partitionOpenErrors = [];
  const push = (window as unknown as Record<string, unknown>)[RECORD_BINDING];
  if (typeof push !== 'function') throw new Error(`the test did not expose ${RECORD_BINDING}`);
  const store = await open();
  window.store = store;
  const client = new Client(store, push as (record: PageRecord) => Promise<void>);
  window.partition = client;
  store.on('log', (entry) => {
    if (entry.level !== 'warn' && entry.level !== 'error') return;
    let fields: string;
    try {
      fields = JSON.stringify(entry.fields);
    } catch {
      fields = String(entry.fields);
    }
    void (push as (record: PageRecord) => Promise<void>)({
      type: 'log',
      node: store.nodeId,
      time: entry.time,
      level: entry.level,
      msg: entry.msg,
      fields,
    }).catch(() => {});
  });
  status.textContent = `node ${store.nodeId}`;
  if (params.get('workload') !== '0') client.start();
}

main().catch((error: unknown) => {
  window.partitionError = `${codeOf(error)}: ${error instanceof Error ? error.message : String(error)}`;
  status.textContent = window.partitionError;
});
