// The minimal app the benchmarks measure (test/bench/targets.ts): it embeds the library as an app would, opens a
// store for the cluster named in the URL, and exposes on `window.bench` timed bursts of puts, sequential puts and
// gets, and the batched-IndexedDB floor. The store is also `window.store`, as on the demo, so the helpers written for
// the demo (cluster-antientropy.ts) drive this app too.
//
// Query parameters: `cluster` (default `bench`); `dataPlane` (auto, transfer, relay); `faults=1`; and the integers
// `antiEntropyInterval`, `antiEntropyBytesPerSecond`.
import { type OpenStoreOptions, openStore, type Store } from '../../../client/index.ts';

/** How one burst went. */
export interface BurstResult {
  readonly issued: number;
  readonly acknowledged: number;
  /** Failures by error code. */
  readonly failures: Record<string, number>;
  readonly ms: number;
}

/** How reading a burst's keys back went. */
export interface VerifyResult {
  /** Keys that did not read back as exactly the value put: the sum of the four below. */
  readonly unreadable: number;
  /** Gets that failed, by error code. */
  readonly failures: Record<string, number>;
  /** Keys read back with no value. */
  readonly missing: number;
  /** Keys read back with more than one sibling. */
  readonly siblings: number;
  /** Keys read back with one value, not the one put. */
  readonly wrong: number;
}

/** How a run of sequential operations went. */
export interface SequentialResult {
  /** Latency of each successful operation, ms, timed around the call with `performance.now()`. */
  readonly latencies: number[];
  /** When the run began, ms since the epoch (`performance.timeOrigin` based): runs of several tabs share a time line. */
  readonly start: number;
  /** Wall time of the whole run, ms. */
  readonly ms: number;
  /** Failures by error code. */
  readonly failures: Record<string, number>;
  /** Gets that did not answer exactly one value of the length put. */
  readonly wrongReads: number;
}

/** What the benchmark reaches on `window.bench`. */
export interface BenchApp {
  readonly store: Store;
  /** Puts `count` keys of `valueBytes`-long values, `limit` outstanding at most (0: all at once). */
  burst(prefix: string, count: number, limit: number, valueBytes: number): Promise<BurstResult>;
  /** Reads `count` keys back, all at once; resolves to how many did not read back as written, and why. */
  verify(prefix: string, count: number, valueBytes: number): Promise<VerifyResult>;
  /** Puts per second of bare IndexedDB: `count` records of `valueBytes`, `perTransaction` to a transaction. */
  idbFloor(count: number, perTransaction: number, valueBytes: number): Promise<number>;
  /**
   * Puts (random bytes, `valueBytes` long, W=2) or gets (R=2) keys `${prefix}:0` … `${prefix}:${count - 1}` one
   * after another, timing each. Gets expect what a put run of the same prefix and length wrote.
   */
  sequential(op: 'put' | 'get', prefix: string, count: number, valueBytes: number): Promise<SequentialResult>;
  /** Puts (W=2) and gets (R=2) `count` keys one after another; the first refusal rejects the whole warm-up. */
  warmUp(prefix: string, count: number): Promise<void>;
  /**
   * Watches every key under `prefix` and records when each first notice arrived, ms since the epoch
   * (`performance.timeOrigin` based, so comparable with another tab's times).
   */
  watch(prefix: string): void;
  /** When the first notice of each watched key arrived, by key. */
  arrivals(): Record<string, number>;
  /**
   * Puts keys `${prefix}:0` … one after another as {@link BenchApp.sequential} does, and returns when each put
   * started, ms since the epoch (`performance.timeOrigin` based).
   */
  stampedPuts(prefix: string, count: number, valueBytes: number): Promise<number[]>;
}

const params = new URLSearchParams(location.search);
const app = document.getElementById('app');

function valueOf(prefix: string, i: number, bytes: number): string {
  const head = `${prefix}:${i}:`;
  return head + 'x'.repeat(Math.max(0, bytes - head.length));
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String(error);
}

function optionsOf(): OpenStoreOptions {
  const integer = (name: 'antiEntropyInterval' | 'antiEntropyBytesPerSecond'): Partial<OpenStoreOptions> => {
    const text = params.get(name);
    if (text === null) return {};
    const value = Number(text);
    if (text === '' || !Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name}: not “${text}”`);
    return { [name]: value };
  };
  const dataPlane = params.get('dataPlane');
  if (dataPlane !== null && dataPlane !== 'auto' && dataPlane !== 'transfer' && dataPlane !== 'relay') {
    throw new RangeError(`dataPlane: not “${dataPlane}”`);
  }
  return {
    url: location.origin,
    cluster: params.get('cluster') ?? 'bench',
    ...(dataPlane !== null ? { dataPlane } : {}),
    ...(params.get('faults') === '1' ? { faults: true } : {}),
    ...integer('antiEntropyInterval'),
    ...integer('antiEntropyBytesPerSecond'),
  };
}

Promise.resolve()
  .then(() => openStore(optionsOf()))
  .then(
    (store) => {
      const arrivals: Record<string, number> = {};
      const bench: BenchApp = {
        store,
        async burst(prefix, count, limit, valueBytes) {
          const failures: Record<string, number> = {};
          let acknowledged = 0;
          const one = async (i: number): Promise<void> => {
            try {
              await store.put(`${prefix}:${i}`, valueOf(prefix, i, valueBytes));
              acknowledged++;
            } catch (error) {
              const code = codeOf(error);
              failures[code] = (failures[code] ?? 0) + 1;
            }
          };
          const started = performance.now();
          if (limit <= 0) await Promise.all(Array.from({ length: count }, (_, i) => one(i)));
          else {
            let next = 0;
            await Promise.all(
              Array.from({ length: Math.min(limit, count) }, async () => {
                while (next < count) await one(next++);
              }),
            );
          }
          return { issued: count, acknowledged, failures, ms: performance.now() - started };
        },
        async verify(prefix, count, valueBytes) {
          // All at once as well.
          const reads = await Promise.allSettled(Array.from({ length: count }, (_, i) => store.get(`${prefix}:${i}`)));
          const out = { failures: {} as Record<string, number>, missing: 0, siblings: 0, wrong: 0, unreadable: 0 };
          reads.forEach((r, i) => {
            if (r.status === 'rejected') {
              const code = codeOf(r.reason);
              out.failures[code] = (out.failures[code] ?? 0) + 1;
            } else if (r.value.values.length === 0) out.missing++;
            else if (r.value.values.length > 1) out.siblings++;
            else if (r.value.values[0] !== valueOf(prefix, i, valueBytes)) out.wrong++;
            else return;
            out.unreadable++;
          });
          return out;
        },
        async idbFloor(count, perTransaction, valueBytes) {
          const name = `bench-floor-${Math.random().toString(36).slice(2)}`;
          const db = await new Promise<IDBDatabase>((resolve, reject) => {
            const open = indexedDB.open(name, 1);
            open.onupgradeneeded = () => open.result.createObjectStore('keys');
            open.onsuccess = () => resolve(open.result);
            open.onerror = () => reject(open.error);
          });
          const value = new Uint8Array(valueBytes);
          const started = performance.now();
          for (let done = 0; done < count; done += perTransaction) {
            await new Promise<void>((resolve, reject) => {
              const tx = db.transaction('keys', 'readwrite', { durability: 'relaxed' });
              const keys = tx.objectStore('keys');
              for (let i = done; i < Math.min(count, done + perTransaction); i++) keys.put({ key: i, value }, i);
              tx.oncomplete = () => resolve();
              tx.onerror = () => reject(tx.error);
              tx.onabort = () => reject(tx.error ?? new Error('the transaction aborted'));
            });
          }
          const perSecond = (count / (performance.now() - started)) * 1000;
          db.close();
          indexedDB.deleteDatabase(name);
          return perSecond;
        },
        async sequential(op, prefix, count, valueBytes) {
          const value = new Uint8Array(valueBytes);
          crypto.getRandomValues(value);
          const latencies: number[] = [];
          const failures: Record<string, number> = {};
          let wrongReads = 0;
          const began = performance.now();
          for (let i = 0; i < count; i++) {
            const key = `${prefix}:${i}`;
            const started = performance.now();
            try {
              if (op === 'put') {
                await store.put(key, value, { w: 2 });
                latencies.push(performance.now() - started);
              } else {
                const result = await store.get(key, { r: 2 });
                latencies.push(performance.now() - started);
                const got = result.values[0];
                if (result.values.length !== 1 || !(got instanceof Uint8Array) || got.byteLength !== valueBytes) {
                  wrongReads++;
                }
              }
            } catch (error) {
              const code = codeOf(error);
              failures[code] = (failures[code] ?? 0) + 1;
            }
          }
          return {
            latencies,
            start: performance.timeOrigin + began,
            ms: performance.now() - began,
            failures,
            wrongReads,
          };
        },
        watch(prefix) {
          store.watch({ prefix }, (notice) => {
            const key = String(notice.key);
            arrivals[key] ??= performance.timeOrigin + performance.now();
          });
        },
        arrivals() {
          return { ...arrivals };
        },
        async stampedPuts(prefix, count, valueBytes) {
          const value = new Uint8Array(valueBytes);
          crypto.getRandomValues(value);
          const starts: number[] = [];
          for (let i = 0; i < count; i++) {
            starts.push(performance.timeOrigin + performance.now());
            await store.put(`${prefix}:${i}`, value, { w: 2 });
          }
          return starts;
        },
        async warmUp(prefix, count) {
          // No retry: a put or get refused by a cluster that says it is connected is a failure to report, not to wait out.
          const value = new Uint8Array(100);
          for (let i = 0; i < Math.max(count, 1); i++) {
            await store.put(`${prefix}:${i}`, value, { w: 2 });
            await store.get(`${prefix}:${i}`, { r: 2 });
          }
        },
      };
      (window as unknown as { bench: BenchApp }).bench = bench;
      (window as unknown as { store: Store }).store = store;
      if (app !== null) app.textContent = `${store.nodeId} ready`;
    },
    (error: unknown) => {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      if (app !== null) app.textContent = `failed: ${message}`;
      (window as unknown as { benchError: string }).benchError = message;
    },
  );
