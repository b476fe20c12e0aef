/**
 * The benchmark app (test/bench/app) as the benchmarks use it: built by Vite into a temporary directory, opened as a
 * cluster of tabs, and weighed (the JS heap of a tab and of its node worker, after a garbage collection, through the
 * Chrome DevTools Protocol).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { build } from 'vite';
import type { BenchApp } from './app/main.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Builds the benchmark app into `outDir` (emptied first), as an app embedding the library is built. */
export async function buildApp(outDir: string, options: { minify?: boolean } = {}): Promise<void> {
  await build({
    configFile: false,
    root: join(HERE, 'app'),
    base: './',
    logLevel: 'warn',
    build: { outDir, emptyOutDir: true, target: 'es2022', ...(options.minify === false ? { minify: false } : {}) },
    worker: { format: 'es' },
  });
}

type BenchWindow = { bench?: BenchApp; benchError?: string };

/**
 * Opens `tabs` tabs of the app served at `origin` (tab `i` in `context(i)` when `context` is a function), all in cluster `cluster` with the extra `query` parameters, and
 * waits until every tab has every other one connected. Throws when a tab fails to open its store.
 */
export async function openAppCluster(
  context: BrowserContext | ((tab: number) => Promise<BrowserContext>),
  origin: string,
  cluster: string,
  tabs: number,
  query: Record<string, string> = {},
  log: (message: string) => void = () => {},
): Promise<Page[]> {
  const pages: Page[] = [];
  try {
    for (let i = 0; i < tabs; i++) {
      const page = await (typeof context === 'function' ? await context(i) : context).newPage();
      pages.push(page);
      page.on('pageerror', (error) => log(`tab ${i}: ${error.message}`));
      await page.goto(`${origin}/?${new URLSearchParams({ cluster, ...query }).toString()}`);
      await page.waitForFunction(
        () => (window as BenchWindow).bench !== undefined || (window as BenchWindow).benchError !== undefined,
        null,
        { timeout: 30_000 },
      );
      const failed = await page.evaluate(() => (window as BenchWindow).benchError);
      if (failed !== undefined) throw new Error(`tab ${i} could not open its store: ${failed}`);
    }
    await Promise.all(
      pages.map((page) =>
        page.waitForFunction(
          (others) => {
            const states = Object.values((window as BenchWindow).bench!.store.peers());
            return states.length === others && states.every((s) => s === 'connected');
          },
          tabs - 1,
          { timeout: 30_000, polling: 50 },
        ),
      ),
    );
    return pages;
  } catch (error) {
    await Promise.all(pages.map((page) => page.close().catch(() => {})));
    throw error;
  }
}

/** Used JS heap, bytes, after a full garbage collection. */
export interface Heaps {
  /** The page's main thread. */
  readonly page: number;
  /** Each dedicated worker of the page, by script URL. */
  readonly workers: { readonly url: string; readonly used: number }[];
}

/**
 * Collects garbage in `page` and in each of its dedicated workers, then reads their used JS heap
 * (`HeapProfiler.collectGarbage`, `Runtime.getHeapUsage`). Workers are reached through the page's own CDP session:
 * `Target.setAutoAttach` (which attaches to the workers already running as well), then
 * `Target.sendMessageToTarget`. The session is detached afterwards, so nothing stays attached to what is measured.
 */
export async function heapsAfterGc(context: BrowserContext, page: Page): Promise<Heaps> {
  const session = await context.newCDPSession(page);
  const workers: { sessionId: string; url: string }[] = [];
  const waiting = new Map<string, (reply: { result?: unknown; error?: { message: string } }) => void>();
  let next = 1;
  const sendTo = (sessionId: string, method: string): Promise<unknown> => {
    const id = next++;
    return new Promise((resolve, reject) => {
      waiting.set(`${sessionId}/${id}`, (reply) =>
        reply.error !== undefined ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(reply.result),
      );
      session
        .send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params: {} }) })
        .catch(reject);
    });
  };
  session.on('Target.attachedToTarget', (event) => {
    if (event.targetInfo.type === 'worker') workers.push({ sessionId: event.sessionId, url: event.targetInfo.url });
  });
  session.on('Target.receivedMessageFromTarget', (event) => {
    const reply = JSON.parse(event.message) as { id?: number; result?: unknown; error?: { message: string } };
    if (reply.id === undefined) return;
    const key = `${event.sessionId}/${reply.id}`;
    waiting.get(key)?.(reply);
    waiting.delete(key);
  });
  try {
    await session.send('HeapProfiler.collectGarbage');
    const { usedSize } = await session.send('Runtime.getHeapUsage');
    await session.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    // Attachments to running workers are announced as events; give them a moment to arrive.
    for (let i = 0; i < 20 && workers.length < page.workers().length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const used: Heaps['workers'] = [];
    for (const worker of workers) {
      await sendTo(worker.sessionId, 'HeapProfiler.collectGarbage');
      const heap = (await sendTo(worker.sessionId, 'Runtime.getHeapUsage')) as { usedSize: number };
      used.push({ url: worker.url, used: heap.usedSize });
    }
    return { page: usedSize, workers: used };
  } finally {
    await session.detach().catch(() => {});
  }
}

/** The used heap of the node worker among `heaps.workers`: the one whose script is the node's, else the largest. */
export function nodeWorkerHeap(heaps: Heaps): number | undefined {
  const node = heaps.workers.find((w) => /\/assets\/main-[^/]*\.js$/.test(w.url));
  if (node !== undefined) return node.used;
  return heaps.workers.length === 0 ? undefined : Math.max(...heaps.workers.map((w) => w.used));
}

/**
 * Whether `page` shares its main-thread JS heap with another of `pages` (Chromium may run tabs of one site in one
 * renderer process, whose main thread has one V8 isolate for all of them): compares `Runtime.getIsolateId`.
 */
export async function sharesIsolate(page: Page, pages: readonly Page[]): Promise<boolean> {
  const idOf = async (p: Page): Promise<string> => {
    const session = await p.context().newCDPSession(p);
    try {
      return (await session.send('Runtime.getIsolateId')).id;
    } finally {
      await session.detach().catch(() => {});
    }
  };
  const own = await idOf(page);
  for (const other of pages) if (other !== page && (await idOf(other)) === own) return true;
  return false;
}
