/**
 * The physical floor of NOTES-chromium.md, measured in the browser the cluster benchmark runs, on the same machine,
 * in the same run: what a put or a get cannot beat whatever the cluster code does.
 *
 * - (a) a data-channel round trip between two tabs: a raw `RTCPeerConnection` pair in two pages of the context,
 *   the offer and answer carried through Playwright, one side echoing;
 * - (b) a main thread ⇄ worker `postMessage` round trip (a Blob-URL module worker echoing a `Uint8Array`);
 * - (c) one IndexedDB put in its own readwrite transaction with relaxed durability, in a worker, timed to `complete`;
 * - (d) one IndexedDB get in its own readonly transaction, in a worker.
 * Besides, for scale and not in the floor: (a′) the data-channel round trip between workers holding transferred
 * channels, and the node's storage write built up in bare IndexedDB: its record alone, into the indexed store, and
 * (c3) the whole read-modify-write transaction.
 *
 * Everything is timed inside the browser with `performance.now()`. Functions handed to `page.evaluate` are
 * serialised, so they close over nothing; tsx wraps named functions in `__name(...)`, which the pages define
 * (see {@link FLOOR_INIT_SCRIPT}).
 */
import type { BrowserContext, Page } from 'playwright-core';

/** Defines the helper tsx's transform calls in serialised functions; add it to every page of the context. */
export const FLOOR_INIT_SCRIPT = 'globalThis.__name ??= (f) => f;';

/** Latency samples of the floor, in ms, by value size in bytes. */
export interface FloorSamples {
  /** (a) data-channel round trip between two tabs. */
  readonly dataChannel: Record<number, number[]>;
  /**
   * Not part of the floor, for scale: (a) between two workers, each holding a negotiated channel of the connection
   * transferred to it, as the transfer plane runs.
   */
  readonly workerDataChannel: Record<number, number[]>;
  /** (b) main thread ⇄ worker postMessage round trip. */
  readonly workerHop: Record<number, number[]>;
  /** (c) IndexedDB single put, own transaction, relaxed durability, in a worker. */
  readonly idbPut: Record<number, number[]>;
  /** (d) IndexedDB single get, own transaction, in a worker. */
  readonly idbGet: Record<number, number[]>;
  /** Not part of the floor, for scale: (c) with the node's record (binary key in it, one version with its dot). */
  readonly idbRecord: Record<number, number[]>;
  /** Not part of the floor, for scale: the same into a store with the node's compound partition index. */
  readonly idbIndexedRecord: Record<number, number[]>;
  /**
   * Not part of the floor, for scale: one relaxed readwrite transaction over two stores that reads a key and a
   * counter row, then writes both — the node's storage write in bare IndexedDB, on the node's schema (a record keyed
   * by its binary key, a compound partition index, one version with its dot).
   */
  readonly idbReadModifyWrite: Record<number, number[]>;
}

/** Options of {@link measureFloor}. */
export interface FloorOptions {
  /** Value sizes in bytes. */
  readonly sizes: readonly number[];
  /** Samples kept per figure and size. @default 1000 */
  readonly samples?: number;
  /** Samples taken and dropped first, so that JIT and connection warm-up do not count. @default 100 */
  readonly warmup?: number;
}

const BLANK_PATH = '/__bench_blank';

/** Headers that make a document cross-origin isolated: without them Chromium clamps `performance.now()` to 100 µs. */
export const ISOLATION_HEADERS = Object.freeze({
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
});

/**
 * Serves every response of `origin` to `context` with {@link ISOLATION_HEADERS}, so timings in its pages and workers
 * have 5 µs resolution, and answers `BLANK_PATH` with an empty page. Socket.IO's requests pass untouched. The
 * documents this serves are the demo's own bytes; only the two headers are added.
 */
export async function isolate(context: BrowserContext, origin: string): Promise<void> {
  // A fulfilled document counts as public to Local Network Access, which then blocks its WebSocket to 127.0.0.1.
  await context.grantPermissions(['local-network-access'], { origin });
  await context.route(
    (url) => url.origin === origin,
    async (route) => {
      const { pathname } = new URL(route.request().url());
      if (pathname.startsWith('/socket.io/')) return route.continue();
      if (pathname === BLANK_PATH) {
        const body = '<!doctype html><meta charset="utf-8"><title>bench</title>';
        return route.fulfill({ contentType: 'text/html', body, headers: { ...ISOLATION_HEADERS } });
      }
      const response = await route.fetch();
      return route.fulfill({ response, headers: { ...response.headers(), ...ISOLATION_HEADERS } });
    },
  );
}

/**
 * Opens a same-origin page with nothing in it: IndexedDB and Blob workers need a real origin, not `about:blank`.
 * The context must have gone through {@link isolate}.
 */
export async function blankPage(context: BrowserContext, origin: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${origin}${BLANK_PATH}`);
  if (!(await page.evaluate(() => crossOriginIsolated))) throw new Error('the bench page is not cross-origin isolated');
  return page;
}

/** Measures (a)–(d) in pages of `context` served from `origin`; the pages are closed afterwards. */
export async function measureFloor(
  context: BrowserContext,
  origin: string,
  options: FloorOptions,
): Promise<FloorSamples> {
  const samples = options.samples ?? 1000;
  const warmup = options.warmup ?? 100;
  const sizes = [...options.sizes];
  const a = await blankPage(context, origin);
  const b = await blankPage(context, origin);
  try {
    const channels = await dataChannelRoundTrips(a, b, sizes, samples, warmup);
    const workerHop = await a.evaluate(workerRoundTrips, { sizes, samples, warmup });
    const idb = await a.evaluate(indexedDbOps, { sizes, samples, warmup, source: `(${idbWorker.toString()})()` });
    return {
      dataChannel: channels.page,
      workerDataChannel: channels.worker,
      workerHop,
      idbPut: idb.put,
      idbGet: idb.get,
      idbRecord: idb.record,
      idbIndexedRecord: idb.indexed,
      idbReadModifyWrite: idb.rmw,
    };
  } finally {
    await a.close();
    await b.close();
  }
}

interface FloorGlobal {
  floorPc?: RTCPeerConnection;
  floorDc?: RTCDataChannel;
  floorWorker?: Worker;
}

/** The id of the negotiated channel that goes to a worker on each side, as the transfer plane does. */
const WORKER_CHANNEL_ID = 7;

/**
 * Connects a pair of pages and measures (a) on their main threads and (a′) between two workers holding a negotiated
 * channel of the same connection, transferred in the task that created it (what the transfer plane does).
 */
async function dataChannelRoundTrips(
  a: Page,
  b: Page,
  sizes: number[],
  samples: number,
  warmup: number,
): Promise<{ page: Record<number, number[]>; worker: Record<number, number[]> }> {
  const workerSource = `self.__name ??= (f) => f;\n(${channelWorker.toString()})()`;
  // Non-trickle: each side waits for ICE gathering to finish, so one description each way is enough.
  const offer = await a.evaluate(
    async ({ workerSource, id }) => {
      const g = globalThis as FloorGlobal;
      const pc = new RTCPeerConnection({ iceServers: [] });
      const dc = pc.createDataChannel('floor');
      dc.binaryType = 'arraybuffer';
      g.floorPc = pc;
      g.floorDc = dc;
      const url = URL.createObjectURL(new Blob([workerSource], { type: 'text/javascript' }));
      g.floorWorker = new Worker(url, { type: 'module' });
      const channel = pc.createDataChannel('floor-worker', { negotiated: true, id });
      g.floorWorker.postMessage({ channel, echo: false }, [channel as unknown as Transferable]);
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise<void>((resolve) => {
        if (pc.iceGatheringState === 'complete') resolve();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      });
      return pc.localDescription!.toJSON() as RTCSessionDescriptionInit;
    },
    { workerSource, id: WORKER_CHANNEL_ID },
  );
  const answer = await b.evaluate(
    async ({ offer, workerSource, id }) => {
      const g = globalThis as FloorGlobal;
      const pc = new RTCPeerConnection({ iceServers: [] });
      g.floorPc = pc;
      pc.ondatachannel = (event) => {
        const channel = event.channel;
        channel.binaryType = 'arraybuffer';
        channel.onmessage = (message: MessageEvent<ArrayBuffer>) => channel.send(message.data);
      };
      const url = URL.createObjectURL(new Blob([workerSource], { type: 'text/javascript' }));
      g.floorWorker = new Worker(url, { type: 'module' });
      const channel = pc.createDataChannel('floor-worker', { negotiated: true, id });
      g.floorWorker.postMessage({ channel, echo: true }, [channel as unknown as Transferable]);
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription(await pc.createAnswer());
      await new Promise<void>((resolve) => {
        if (pc.iceGatheringState === 'complete') resolve();
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      });
      return pc.localDescription!.toJSON() as RTCSessionDescriptionInit;
    },
    { offer, workerSource, id: WORKER_CHANNEL_ID },
  );
  try {
    const page = await a.evaluate(
      async ({ answer, sizes, samples, warmup }) => {
        const g = globalThis as FloorGlobal;
        const dc = g.floorDc!;
        await g.floorPc!.setRemoteDescription(answer);
        if (dc.readyState !== 'open') await new Promise((resolve) => dc.addEventListener('open', resolve));
        const out: Record<number, number[]> = {};
        for (const size of sizes) {
          const payload = new Uint8Array(size);
          crypto.getRandomValues(payload);
          const lat: number[] = [];
          for (let i = 0; i < warmup + samples; i++) {
            const echoed = new Promise((resolve) => (dc.onmessage = resolve));
            const started = performance.now();
            dc.send(payload);
            await echoed;
            if (i >= warmup) lat.push(performance.now() - started);
          }
          out[size] = lat;
        }
        return out;
      },
      { answer, sizes, samples, warmup },
    );
    const worker = await a.evaluate(
      ({ sizes, samples, warmup }) =>
        new Promise<Record<number, number[]>>((resolve, reject) => {
          const w = (globalThis as FloorGlobal).floorWorker!;
          w.onmessage = (event: MessageEvent<Record<number, number[]> | { error: string }>) =>
            'error' in event.data ? reject(new Error(String(event.data.error))) : resolve(event.data);
          w.postMessage({ sizes, samples, warmup });
        }),
      { sizes, samples, warmup },
    );
    return { page, worker };
  } finally {
    await Promise.all(
      [a, b].map((p) =>
        p.evaluate(() => {
          const g = globalThis as FloorGlobal;
          g.floorWorker?.terminate();
          g.floorPc?.close();
        }),
      ),
    );
  }
}

/** The body of a data-channel worker: echoes, or times round trips when asked; serialised, closes over nothing. */
function channelWorker(): void {
  const scope = self as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown): void;
  };
  let channel: RTCDataChannel | undefined;
  scope.onmessage = async (event: MessageEvent) => {
    const data = event.data as
      { channel: RTCDataChannel; echo: boolean } | { sizes: number[]; samples: number; warmup: number };
    if ('channel' in data) {
      const own = data.channel;
      channel = own;
      own.binaryType = 'arraybuffer';
      if (data.echo) own.onmessage = (message: MessageEvent<ArrayBuffer>) => own.send(message.data);
      return;
    }
    try {
      const dc = channel!;
      if (dc.readyState !== 'open') await new Promise((resolve) => dc.addEventListener('open', resolve));
      const out: Record<number, number[]> = {};
      for (const size of data.sizes) {
        const payload = crypto.getRandomValues(new Uint8Array(size));
        const lat: number[] = [];
        for (let i = 0; i < data.warmup + data.samples; i++) {
          const echoed = new Promise((resolve) => (dc.onmessage = resolve));
          const started = performance.now();
          dc.send(payload);
          await echoed;
          if (i >= data.warmup) lat.push(performance.now() - started);
        }
        out[size] = lat;
      }
      scope.postMessage(out);
    } catch (error) {
      scope.postMessage({ error: String(error) });
    }
  };
}

async function workerRoundTrips({
  sizes,
  samples,
  warmup,
}: {
  sizes: number[];
  samples: number;
  warmup: number;
}): Promise<Record<number, number[]>> {
  const source = 'self.onmessage = (event) => self.postMessage(event.data);';
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  const worker = new Worker(url, { type: 'module' });
  try {
    const out: Record<number, number[]> = {};
    for (const size of sizes) {
      // Structured-clone copies, as comlink sends a call's arguments unless told to transfer them.
      const payload = new Uint8Array(size);
      crypto.getRandomValues(payload);
      const lat: number[] = [];
      for (let i = 0; i < warmup + samples; i++) {
        const echoed = new Promise((resolve) => (worker.onmessage = resolve));
        const started = performance.now();
        worker.postMessage(payload);
        await echoed;
        if (i >= warmup) lat.push(performance.now() - started);
      }
      out[size] = lat;
    }
    return out;
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
}

interface IdbRequest {
  readonly sizes: number[];
  readonly samples: number;
  readonly warmup: number;
}

interface IdbResult {
  readonly put: Record<number, number[]>;
  readonly get: Record<number, number[]>;
  readonly rmw: Record<number, number[]>;
  readonly record: Record<number, number[]>;
  readonly indexed: Record<number, number[]>;
}

async function indexedDbOps({ sizes, samples, warmup, source }: IdbRequest & { source: string }): Promise<IdbResult> {
  const url = URL.createObjectURL(new Blob([`self.__name ??= (f) => f;\n${source}`], { type: 'text/javascript' }));
  const worker = new Worker(url, { type: 'module' });
  try {
    return await new Promise<IdbResult>((resolve, reject) => {
      worker.onmessage = (event: MessageEvent<IdbResult | { error: string }>) =>
        'error' in event.data ? reject(new Error(event.data.error)) : resolve(event.data);
      worker.onerror = (event) => reject(new Error(event.message));
      worker.postMessage({ sizes, samples, warmup });
    });
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
}

/** The body of the IndexedDB worker; serialised with `toString()`, so it closes over nothing. */
function idbWorker(): void {
  const scope = self as unknown as {
    onmessage: ((event: MessageEvent<{ sizes: number[]; samples: number; warmup: number }>) => void) | null;
    postMessage(message: unknown): void;
  };
  const done = (request: IDBRequest | IDBTransaction): Promise<void> =>
    new Promise((resolve, reject) => {
      if (request instanceof IDBTransaction) {
        request.oncomplete = () => resolve();
        request.onabort = request.onerror = () => reject(request.error ?? new Error('transaction aborted'));
      } else {
        request.onsuccess = () => resolve();
        request.onerror = () => reject(request.error ?? new Error('request failed'));
      }
    });
  scope.onmessage = async (event: MessageEvent<{ sizes: number[]; samples: number; warmup: number }>) => {
    const { sizes, samples, warmup } = event.data;
    const name = `bench-floor-${crypto.randomUUID()}`;
    try {
      const open = indexedDB.open(name, 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore('kv');
        open.result.createObjectStore('records', { keyPath: 'key' });
        // The node's schema (worker/storage/indexeddb.ts): binary keys in the record, a compound partition index.
        open.result.createObjectStore('keys', { keyPath: 'key' }).createIndex('partition', ['partition', 'key']);
        open.result.createObjectStore('meta');
      };
      await done(open);
      const db = open.result;
      const put: Record<number, number[]> = {};
      const get: Record<number, number[]> = {};
      const rmw: Record<number, number[]> = {};
      const record: Record<number, number[]> = {};
      const indexed: Record<number, number[]> = {};
      for (const size of sizes) {
        const value = new Uint8Array(size);
        crypto.getRandomValues(value);
        const puts: number[] = [];
        const gets: number[] = [];
        const records: number[] = [];
        const indexes: number[] = [];
        const rmws: number[] = [];
        const time = async (into: number[], keep: boolean, run: () => Promise<void>): Promise<void> => {
          const started = performance.now();
          await run();
          if (keep) into.push(performance.now() - started);
        };
        // The node's record: its binary key inside, one version with its dot.
        const recordOf = (key: Uint8Array, i: number, counter: number): object => ({
          key,
          partition: i % 256,
          siblings: [{ dot: { node: 'bench-coordinator-0001', counter, timestamp: Date.now() }, context: [], value }],
        });
        // Interleaved, so that every variant sees the same moments of a busy machine.
        for (let i = 0; i < warmup + samples; i++) {
          const keep = i >= warmup;
          await time(puts, keep, async () => {
            const tx = db.transaction('kv', 'readwrite', { durability: 'relaxed' });
            tx.objectStore('kv').put(value, `${size}:${i}`);
            await done(tx);
          });
          for (const [store, into] of [
            ['records', records],
            ['keys', indexes],
          ] as const) {
            await time(into, keep, async () => {
              const tx = db.transaction(store, 'readwrite', { durability: 'relaxed' });
              tx.objectStore(store).put(recordOf(new TextEncoder().encode(`${store}:${size}:${i}`), i, i + 1));
              await done(tx);
            });
          }
          await time(rmws, keep, async () => {
            const tx = db.transaction(['keys', 'meta'], 'readwrite', { durability: 'relaxed' });
            const keys = tx.objectStore('keys');
            const meta = tx.objectStore('meta');
            const key = new TextEncoder().encode(`rmw:${size}:${i}`);
            const old = keys.get(key);
            const state = meta.get('state');
            await Promise.all([done(old), done(state)]);
            const previous = (state.result as { counter: number; keys: number; bytes: number } | undefined) ?? {
              counter: 0,
              keys: 0,
              bytes: 0,
            };
            const counter = previous.counter + 1;
            keys.put(recordOf(key, i, counter));
            meta.put({ counter, keys: previous.keys + 1, bytes: previous.bytes + size }, 'state');
            await done(tx);
          });
        }
        for (let i = 0; i < warmup + samples; i++) {
          await time(gets, i >= warmup, async () => {
            await done(db.transaction('kv', 'readonly').objectStore('kv').get(`${size}:${i}`));
          });
        }
        record[size] = records;
        indexed[size] = indexes;
        put[size] = puts;
        get[size] = gets;
        rmw[size] = rmws;
      }
      db.close();
      await done(indexedDB.deleteDatabase(name));
      scope.postMessage({ put, get, rmw, record, indexed });
    } catch (error) {
      scope.postMessage({ error: String(error) });
    }
  };
}
