/**
 * A timeline of puts and gets in the live cluster, taken without changing the node: the benchmark patches a few
 * browser primitives inside each tab's node worker (through Playwright's `worker.evaluate`) to stamp when things
 * happen: a readwrite IndexedDB transaction starting and completing, a frame leaving (`RTCDataChannel.send` on the
 * transfer plane, `MessagePort.postMessage` on the relay plane) or arriving (the `message` event its link handles),
 * and the reply posted back to the page (an array on the port of calls.ts). The call's arrival is not stamped (its
 * port is attached before the stamps can be installed): a trace starts in the page. Stamps are
 * `performance.timeOrigin + now()`, comparable across tabs and workers of one machine. Operations run one at a time
 * from one tab, so every stamp inside one's window belongs to it.
 *
 * A put's time then splits into the consecutive {@link PUT_SEGMENTS}: "in flight" runs from the sender's `send` to
 * the receiving worker's `message` event (the data channel, plus the main-thread relay on the relay plane, plus the
 * wake-up of the receiving thread). With W=2 the replica that matters is the one whose ack left first. The local
 * write runs beside the replication and is reported apart.
 */
import type { Page, Worker } from 'playwright-core';
import { type Summary, summarize } from './cluster-stats.ts';

/** One stamped event in a worker. */
type TraceEvent = readonly [kind: 'in' | 'out' | 'tx-start' | 'tx-done' | 'send' | 'recv', at: number, id: number];

/**
 * The segments of a put, in order. The local write runs beside the replication (the replicate frame leaves once the
 * write has computed the new version, before it commits); its own time is {@link OperationTrace.beside}.
 */
export const PUT_SEGMENTS = [
  'page → worker → local write starts',
  'local write starts → replicate frame sent',
  'replicate frame in flight to the replica worker',
  'replica: frame → its write starts',
  'replica write (IndexedDB tx)',
  'replica commit → ack frame sent',
  'ack frame in flight to the coordinator worker',
  'coordinator: ack (and local commit) → reply posted',
  'worker → page (reply)',
] as const;

/** The segments of a get, in order. */
export const GET_SEGMENTS = [
  'page → worker → read frame sent',
  'read frame in flight to the replica worker',
  'replica: frame → answer sent (its IndexedDB reads)',
  'answer frame in flight to the coordinator worker',
  'coordinator: answer → reply posted',
  'worker → page (reply)',
] as const;

/** The traced operations, summarised per segment. */
export interface OperationTrace {
  /** Operations whose every segment was found. */
  readonly traced: number;
  /** Operations run. */
  readonly operations: number;
  readonly segments: Record<string, Summary>;
  /** The whole operation, timed in the page, over the traced ones. */
  readonly total: Summary;
  /** A step beside the segments, not on their path (a put's local write), when there is one. */
  readonly beside?: { readonly name: string; readonly summary: Summary };
}

type TraceGlobal = { __benchTrace?: TraceEvent[]; __benchTraceOn?: boolean; __name?: unknown };

const NODE_WORKER = /\/assets\/main-[^/]*\.js$/;

/** The node worker of a demo tab. */
function nodeWorker(page: Page): Worker {
  const workers = page.workers();
  const worker = workers.find((w) => NODE_WORKER.test(w.url())) ?? workers[0];
  if (worker === undefined) throw new Error('the tab has no worker to trace');
  return worker;
}

/**
 * Instruments the node worker of `page` as soon as it starts: call before the page loads the demo. Frame receipts
 * can only be stamped by wrapping the `onmessage` a link sets when its channel or port is attached, which happens
 * once peers connect, long after the worker starts. Stamps are kept only while a trace runs.
 */
export function traceWorkersOf(page: Page): void {
  page.on('worker', (worker) => {
    if (!NODE_WORKER.test(worker.url())) return;
    void worker
      .evaluate('self.__name ??= (f) => f;')
      .then(() => worker.evaluate(instrument))
      .catch(() => {});
  });
}

/** Runs in the worker: wraps the primitives that mark a put's steps. Closes over nothing. */
function instrument(): void {
  const g = self as unknown as TraceGlobal & { postMessage: (message: unknown, transfer?: unknown) => void };
  if (g.__benchTrace !== undefined) return;
  const events: TraceEvent[] = [];
  g.__benchTrace = events;
  g.__benchTraceOn = false;
  const origin = performance.timeOrigin;
  const now = (): number => origin + performance.now();
  let nextId = 1;
  self.addEventListener('message', (event) => g.__benchTraceOn && events.push(['in', origin + event.timeStamp, 0]));
  const post = g.postMessage.bind(self);
  g.postMessage = (message: unknown, transfer?: unknown) => {
    if (g.__benchTraceOn) events.push(['out', now(), 0]);
    post(message, transfer);
  };
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (this: IDBDatabase, ...args: Parameters<IDBDatabase['transaction']>) {
    const tx = transaction.apply(this, args);
    if (g.__benchTraceOn && args[1] === 'readwrite') {
      const id = nextId++;
      events.push(['tx-start', now(), id]);
      tx.addEventListener('complete', (event) => events.push(['tx-done', origin + event.timeStamp, id]));
    }
    return tx;
  } as IDBDatabase['transaction'];
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (this: RTCDataChannel, data: never) {
    if (g.__benchTraceOn) events.push(['send', now(), 0]);
    return send.call(this, data);
  } as RTCDataChannel['send'];
  const portPost = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (this: MessagePort, ...args: never[]) {
    // The page's calls and their answers travel as arrays on a port of their own (calls.ts); frames as buffers.
    if (g.__benchTraceOn) events.push([Array.isArray(args[0]) ? 'out' : 'send', now(), 0]);
    return (portPost as (...a: never[]) => void).apply(this, args);
  } as MessagePort['postMessage'];
  for (const proto of [RTCDataChannel.prototype, MessagePort.prototype]) {
    const handler = Object.getOwnPropertyDescriptor(proto, 'onmessage')!;
    Object.defineProperty(proto, 'onmessage', {
      configurable: true,
      enumerable: handler.enumerable ?? true,
      get(this: object) {
        return handler.get!.call(this);
      },
      set(this: object, listener: unknown) {
        const wrapped =
          typeof listener === 'function'
            ? function (this: unknown, event: MessageEvent) {
                if (g.__benchTraceOn) {
                  events.push([Array.isArray(event.data) ? 'in' : 'recv', origin + event.timeStamp, 0]);
                }
                return (listener as (e: MessageEvent) => unknown).call(this, event);
              }
            : listener;
        handler.set!.call(this, wrapped);
      },
    });
  }
}

/** Stamps of every node worker, taken while `pages[0]` runs `count` operations one at a time; and their windows. */
async function collect(
  pages: readonly Page[],
  args: { op: 'put' | 'get'; count: number; size: number; prefix: string },
): Promise<{ windows: [number, number][]; events: TraceEvent[][] }> {
  const workers = pages.map(nodeWorker);
  const ready = await Promise.all(
    workers.map((w) => w.evaluate(() => (self as TraceGlobal).__benchTrace !== undefined)),
  );
  if (!ready.every(Boolean)) throw new Error('a node worker was not instrumented: call traceWorkersOf before loading');
  const switchTo = (on: boolean): Promise<unknown> =>
    Promise.all(
      workers.map((w) =>
        w.evaluate((on) => {
          const g = self as TraceGlobal;
          g.__benchTrace!.length = 0;
          g.__benchTraceOn = on;
        }, on),
      ),
    );
  await switchTo(true);
  const windows = await pages[0]!.evaluate(async ({ op, count, size, prefix }) => {
    const store = (
      globalThis as unknown as {
        store: {
          put(k: string, v: Uint8Array, o: object): Promise<unknown>;
          get(k: string, o: object): Promise<unknown>;
        };
      }
    ).store;
    const value = crypto.getRandomValues(new Uint8Array(size));
    const out: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.timeOrigin + performance.now();
      if (op === 'put') await store.put(`${prefix}:${i}`, value, { w: 2 });
      else await store.get(`${prefix}:${i}`, { r: 2 });
      out.push([started, performance.timeOrigin + performance.now()]);
      // A pause, so that the replica that did not count finishes before the next window opens.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return out;
  }, args);
  const events = await Promise.all(workers.map((w) => w.evaluate(() => [...(self as TraceGlobal).__benchTrace!])));
  await switchTo(false);
  return { windows, events };
}

function summarise(
  names: readonly string[],
  rows: number[][],
  totals: number[],
  operations: number,
  beside?: { name: string; values: number[] },
): OperationTrace {
  return {
    ...(beside !== undefined ? { beside: { name: beside.name, summary: summarize(beside.values, 0) } } : {}),
    traced: totals.length,
    operations,
    segments: Object.fromEntries(
      names.map((name, i) => [
        name,
        summarize(
          rows.map((r) => r[i]!),
          0,
        ),
      ]),
    ),
    total: summarize(totals, 0),
  };
}

/** Differences of consecutive marks. */
function steps(marks: number[]): number[] {
  return marks.slice(1).map((mark, i) => mark - marks[i]!);
}

/**
 * Runs `count` puts one at a time from `pages[0]` and splits each into {@link PUT_SEGMENTS}. Keys are
 * `${prefix}:${i}`, so {@link traceGets} with the same prefix reads them back.
 */
export async function tracePuts(
  pages: readonly Page[],
  count: number,
  size: number,
  prefix: string,
): Promise<OperationTrace> {
  const { windows, events } = await collect(pages, { op: 'put', count, size, prefix });
  const [own, ...replicas] = events;
  const rows: number[][] = [];
  const totals: number[] = [];
  const local: number[] = [];
  for (const [start, end] of windows) {
    const mine = own!.filter(([, at]) => at >= start && at <= end);
    const write = mine.find(([kind]) => kind === 'tx-start');
    const written = write && mine.find(([kind, , id]) => kind === 'tx-done' && id === write[2]);
    // Pipelined: the replicate frame leaves once the local write has computed the version, before it commits.
    const sent = write && mine.find(([kind, at]) => kind === 'send' && at >= write[1]);
    if (sent === undefined || written === undefined) continue;
    // The replica whose ack left first is the one that completed the quorum.
    let best: { recv: number; start: number; done: number; ack: number } | undefined;
    for (const list of replicas) {
      // Each step must follow the one before, so that a slow replica's leftovers from the previous put never match.
      const theirs = list.filter(([, at]) => at >= sent[1] && at <= end);
      const recv = theirs.find(([kind]) => kind === 'recv');
      const rs = recv && theirs.find(([kind, at]) => kind === 'tx-start' && at >= recv[1]);
      const rd = rs && theirs.find(([kind, , id]) => kind === 'tx-done' && id === rs[2]);
      const ack = rd && theirs.find(([kind, at]) => kind === 'send' && at >= rd[1]);
      if (recv && rs && rd && ack && (best === undefined || ack[1] < best.ack)) {
        best = { recv: recv[1], start: rs[1], done: rd[1], ack: ack[1] };
      }
    }
    const acked = best && mine.find(([kind, at]) => kind === 'recv' && at >= best.ack);
    const replied = acked && mine.find(([kind, at]) => kind === 'out' && at >= acked[1] && at >= written[1]);
    if (!best || !acked || !replied) continue;
    rows.push(
      steps([start, write![1], sent[1], best.recv, best.start, best.done, best.ack, acked[1], replied[1], end]),
    );
    totals.push(end - start);
    local.push(written[1] - write![1]);
  }
  return summarise(PUT_SEGMENTS, rows, totals, windows.length, {
    name: 'local write (IndexedDB tx), beside segments 2–8',
    values: local,
  });
}

/**
 * Runs `count` gets one at a time from `pages[0]` of keys {@link tracePuts} wrote, and splits each into
 * {@link GET_SEGMENTS}. The local read runs beside the remote ones and is not on the path once it is the faster.
 */
export async function traceGets(
  pages: readonly Page[],
  count: number,
  size: number,
  prefix: string,
): Promise<OperationTrace> {
  const { windows, events } = await collect(pages, { op: 'get', count, size, prefix });
  const [own, ...replicas] = events;
  const rows: number[][] = [];
  const totals: number[] = [];
  for (const [start, end] of windows) {
    const mine = own!.filter(([, at]) => at >= start && at <= end);
    const sent = mine.find(([kind]) => kind === 'send');
    if (sent === undefined) continue;
    // The replica whose answer left first is the one that completed R=2 with the local read.
    let best: { recv: number; reply: number } | undefined;
    for (const list of replicas) {
      const theirs = list.filter(([, at]) => at >= sent[1] && at <= end);
      const recv = theirs.find(([kind]) => kind === 'recv');
      const reply = recv && theirs.find(([kind, at]) => kind === 'send' && at >= recv[1]);
      if (recv && reply && (best === undefined || reply[1] < best.reply)) best = { recv: recv[1], reply: reply[1] };
    }
    const answered = best && mine.find(([kind, at]) => kind === 'recv' && at >= best.reply);
    const replied = answered && mine.find(([kind, at]) => kind === 'out' && at >= answered[1]);
    if (!best || !answered || !replied) continue;
    rows.push(steps([start, sent[1], best.recv, best.reply, answered[1], replied[1], end]));
    totals.push(end - start);
  }
  return summarise(GET_SEGMENTS, rows, totals, windows.length);
}
