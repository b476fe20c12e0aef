/**
 * Fixtures of the end-to-end tests: a real signalling server per test, serving the demo built by the global setup,
 * a fresh cluster name per test, and tabs of the demo page driven through the `window.store` it exposes.
 */
import { randomBytes } from 'node:crypto';
import { test as base, expect, type BrowserContext, type Page } from '@playwright/test';
import type { Store } from '../../client/index.ts';
import { createSignalingServer, type SignalingServer, type SignalingServerOptions } from '../../signaling/server.ts';
import { type Member, Ring } from '../../worker/ring/ring.ts';
import { STATIC_DIR_ENV } from './global-setup.ts';

/** The two ways frames reach a tab's worker. */
export const DATA_PLANES = ['transfer', 'relay'] as const;

/** One of {@link DATA_PLANES}. */
export type Plane = (typeof DATA_PLANES)[number];

/** What a call into a tab's store settled to: the value, or the error's stable code. */
export type Attempt<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: string; readonly name: string; readonly message: string };

/** What a tab's store reports about its cluster and connections. */
export interface MeshState {
  readonly members: string[];
  readonly connectedPeers: string[];
  readonly openLinks: string[];
}

/** Options of {@link openTab}. */
export interface TabOptions {
  readonly cluster: string;
  readonly dataPlane?: Plane;
  readonly token?: string;
  /** Most peer connections of the tab (`OpenStoreOptions.maxLinks`). */
  readonly maxLinks?: number;
  /** Ms after which a connection kept only for use is closed (`OpenStoreOptions.linkIdleMs`). */
  readonly linkIdleMs?: number;
  /** Replication factor of the tab's node (every tab of a cluster must agree). */
  readonly n?: number;
}

/** One tab of the demo page, whose `window.store` the test drives. */
export class Tab {
  constructor(
    readonly page: Page,
    readonly nodeId: string,
    readonly dataPlane: string,
  ) {}

  /**
   * Runs `fn(store, arg)` in the page and resolves to what it returns. `fn` is sent as source text, so it may use
   * only its arguments and the page's globals; `arg` and the result must survive Playwright's serialisation.
   */
  call<A, R>(fn: (store: Store, arg: A) => R | Promise<R>, arg: A): Promise<R> {
    return this.page.evaluate(
      async ({ source, arg }) => {
        const store = (window as unknown as { store?: Store }).store;
        if (store === undefined) throw new Error('window.store is not set');
        const run = (0, eval)(`(${source})`) as (store: Store, arg: unknown) => unknown;
        return (await run(store, arg)) as R;
      },
      { source: fn.toString(), arg },
    );
  }

  /** Like {@link Tab.call}, but a rejection comes back as its `code`, `name` and `message` instead of throwing. */
  attempt<A, R>(fn: (store: Store, arg: A) => R | Promise<R>, arg: A): Promise<Attempt<R>> {
    return this.page.evaluate(
      async ({ source, arg }) => {
        const store = (window as unknown as { store?: Store }).store;
        if (store === undefined) throw new Error('window.store is not set');
        const run = (0, eval)(`(${source})`) as (store: Store, arg: unknown) => unknown;
        try {
          return { ok: true as const, value: (await run(store, arg)) as R };
        } catch (error) {
          const e = error as { code?: unknown; name?: unknown; message?: unknown };
          return { ok: false as const, code: String(e.code), name: String(e.name), message: String(e.message) };
        }
      },
      { source: fn.toString(), arg },
    );
  }

  /** Members in the tab's view, peers it is connected to, and the worker's open links. */
  mesh(): Promise<MeshState> {
    return this.call(async (store) => {
      const metrics = await store.metrics();
      return {
        members: store.members().map((m) => m.id),
        connectedPeers: Object.entries(store.peers())
          .filter(([, state]) => state === 'connected')
          .map(([peer]) => peer),
        openLinks: metrics.links.filter((l) => l.open).map((l) => l.peer),
      };
    }, null);
  }
}

/** The URL of the demo page on `server` for a cluster. */
export function demoUrl(server: SignalingServer, options: TabOptions): string {
  const url = new URL('/', server.url);
  url.searchParams.set('cluster', options.cluster);
  if (options.dataPlane !== undefined) url.searchParams.set('dataPlane', options.dataPlane);
  if (options.maxLinks !== undefined) url.searchParams.set('maxLinks', String(options.maxLinks));
  if (options.n !== undefined) url.searchParams.set('n', String(options.n));
  if (options.linkIdleMs !== undefined) url.searchParams.set('linkIdleMs', String(options.linkIdleMs));
  // In the fragment, as a user should pass it: the browser never sends it to a server.
  if (options.token !== undefined) url.hash = new URLSearchParams({ token: options.token }).toString();
  return url.href;
}

/** Waits until `page` has opened its store; resolves to the tab. */
/** The ring `tab`'s node computes from `members`: in the cluster's Q, as the signalling server told it. */
export async function ringOf(tab: Tab, members: readonly Member[]): Promise<Ring> {
  const partitions = await tab.call((store) => store.config.partitions, null);
  return new Ring(members, { partitions });
}

export async function tabOf(page: Page): Promise<Tab> {
  await page.waitForFunction(() => (window as unknown as { store?: unknown }).store !== undefined, null, {
    timeout: 20_000,
  });
  const { nodeId, dataPlane } = await page.evaluate(() => {
    const store = (window as unknown as { store: Store }).store;
    return { nodeId: store.nodeId, dataPlane: store.dataPlane };
  });
  return new Tab(page, nodeId, dataPlane);
}

/** Opens the demo in a new tab of `context` and waits for its store. */
export async function openTab(context: BrowserContext, server: SignalingServer, options: TabOptions): Promise<Tab> {
  const page = await context.newPage();
  await page.goto(demoUrl(server, options));
  const tab = await tabOf(page);
  if (options.dataPlane !== undefined) expect(tab.dataPlane).toBe(options.dataPlane);
  return tab;
}

/**
 * Opens `count` tabs of one cluster and waits until every tab sees all of them and reaches each over its data plane
 * (as `openStore` does for its planned links), not for their partition transfers: requests are served meanwhile.
 * `settled` waits for those too, for a test whose premise needs a formed cluster.
 */
export async function openCluster(
  context: BrowserContext,
  server: SignalingServer,
  count: number,
  options: TabOptions,
  { settled = false }: { settled?: boolean } = {},
): Promise<Tab[]> {
  const tabs: Tab[] = [];
  // One at a time: on two cores, parallel page loads only make each slower, and a failure names its tab.
  for (let i = 0; i < count; i++) tabs.push(await openTab(context, server, options));
  await waitForMesh(tabs, 30_000, { settled });
  return tabs;
}

/**
 * Waits until every tab sees every other in its view, connected, with an open data link, and, when `settled`, until no
 * tab is still fetching or releasing a partition: a cluster that has finished forming. `nodes` are members that are
 * not tabs (always-on nodes), which every tab must see and reach too.
 */
export async function waitForMesh(
  tabs: readonly Tab[],
  timeout = 30_000,
  { settled = false, nodes = [] }: { settled?: boolean; nodes?: readonly string[] } = {},
): Promise<void> {
  const ids = [...tabs.map((t) => t.nodeId), ...nodes].sort();
  for (const tab of tabs) {
    const others = ids.filter((id) => id !== tab.nodeId);
    await expect
      .poll(
        async () => {
          const state = await tab.mesh();
          return {
            members: [...state.members].sort(),
            connectedPeers: [...state.connectedPeers].sort(),
            openLinks: [...state.openLinks].sort(),
          };
        },
        { timeout, message: `tab ${tab.nodeId} never reached all of ${ids.join(', ')}` },
      )
      .toEqual({ members: ids, connectedPeers: others, openLinks: others });
  }
  if (!settled) return;
  for (const tab of tabs) {
    await expect
      .poll(
        () =>
          tab.call(
            async (store) => (await store.partitions()).filter((p) => p.state !== 'held').map((p) => p.partition),
            null,
          ),
        { timeout, message: `tab ${tab.nodeId} never finished its partition transfers` },
      )
      .toEqual([]);
  }
}

/** A cluster name no other test uses. */
export function freshCluster(label: string): string {
  return `e2e-${label}-${randomBytes(4).toString('hex')}`;
}

interface Fixtures {
  /** Options of the test's signalling server, on top of the fixture's. */
  serverOptions: SignalingServerOptions;
  /** A real signalling server on 127.0.0.1, on a free port, serving the built demo. */
  server: SignalingServer;
  /** Uncaught errors of the test's pages, as `page url: message`; any makes the test fail. */
  pageErrors: string[];
}

/** The test function with the dynamesh fixtures. */
export const test = base.extend<Fixtures>({
  serverOptions: [{}, { option: true }],
  server: async ({ serverOptions }, use) => {
    const staticDir = process.env[STATIC_DIR_ENV];
    if (staticDir === undefined) throw new Error(`${STATIC_DIR_ENV} is not set: run through playwright.config.ts`);
    const server = await createSignalingServer({
      port: 0,
      host: '127.0.0.1',
      staticDir,
      logLevel: process.env['LOG_LEVEL'] ?? 'silent',
      ...serverOptions,
    });
    await use(server);
    await server.close();
  },
  pageErrors: [
    async ({ context }, use, testInfo) => {
      const errors: string[] = [];
      context.on('page', (page) => {
        page.on('pageerror', (error) => errors.push(`${page.url()}: ${error.name}: ${error.message}`));
      });
      await use(errors);
      if (errors.length > 0) await testInfo.attach('page errors', { body: errors.join('\n') });
      expect(errors, 'uncaught errors in the tabs').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
