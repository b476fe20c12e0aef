// The minimal app the burst benchmark measures (test/bench/burst.ts): it embeds the library as an app would, opens
// a store for the cluster named in the URL, and exposes timed bursts of puts and the batched-IndexedDB floor.
import { openStore, type Store } from '../../../client/index.ts';

/** How one burst went. */
export interface BurstResult {
  readonly issued: number;
  readonly acknowledged: number;
  /** Failures by error code. */
  readonly failures: Record<string, number>;
  readonly ms: number;
}

/** What the benchmark reaches on `window.bench`. */
export interface BenchApp {
  readonly store: Store;
  /** Puts `count` keys of `valueBytes`-long values, `limit` outstanding at most (0: all at once). */
  burst(prefix: string, count: number, limit: number, valueBytes: number): Promise<BurstResult>;
  /** Reads `count` keys back, all at once; resolves to how many did not read back as written (or failed). */
  verify(prefix: string, count: number, valueBytes: number): Promise<number>;
  /** Puts per second of bare IndexedDB: `count` records of `valueBytes`, `perTransaction` to a transaction. */
  idbFloor(count: number, perTransaction: number, valueBytes: number): Promise<number>;
}

const params = new URLSearchParams(location.search);
const app = document.getElementById('app');

function valueOf(prefix: string, i: number, bytes: number): string {
  const head = `${prefix}:${i}:`;
  return head + 'x'.repeat(Math.max(0, bytes - head.length));
}

openStore({ url: location.origin, cluster: params.get('cluster') ?? 'bench' }).then(
  (store) => {
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
            const code = String((error as { code?: unknown }).code);
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
        // All at once as well; a read that fails counts as not read back.
        const reads = await Promise.allSettled(Array.from({ length: count }, (_, i) => store.get(`${prefix}:${i}`)));
        return reads.filter(
          (r, i) =>
            r.status === 'rejected' ||
            r.value.values.length !== 1 ||
            r.value.values[0] !== valueOf(prefix, i, valueBytes),
        ).length;
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
    };
    (window as unknown as { bench: BenchApp }).bench = bench;
    if (app !== null) app.textContent = `${store.nodeId} ready`;
  },
  (error: unknown) => {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    if (app !== null) app.textContent = `failed: ${message}`;
    (window as unknown as { benchError: string }).benchError = message;
  },
);
