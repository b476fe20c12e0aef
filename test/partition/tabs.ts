/**
 * The partition test's tabs. Each runs in a browser context of its own, so that `context.setOffline` cuts that one
 * tab off from the signalling server, and so that its storage is its own: closing the tab loses its node for good,
 * while a reload restarts the same node (its id in `sessionStorage`) on the same IndexedDB data.
 */
import type { Browser, BrowserContext, Page } from '@playwright/test';
import type { History } from './history.ts';
import { RECORD_BINDING, type PageRecord, type PartitionPage } from './records.ts';

declare global {
  interface Window {
    partition?: PartitionPage;
    partitionError?: string;
    partitionOpenErrors: string[];
  }
}

/** One tab and its browser context. */
export class Tab {
  /** The node id, known once the page has opened its store; the same across reloads. */
  nodeId = '';
  /** True while the page has its store and is not being reloaded or closed. */
  ready = false;
  /** True while the context is offline. */
  offline = false;
  /** True while a nemesis action holds this tab (reload, close, offline). */
  busy = false;
  /** How many times the page was loaded. */
  loads = 0;

  constructor(
    readonly label: string,
    readonly context: BrowserContext,
    readonly page: Page,
  ) {}

  /** Runs `fn(arg)` in the page; `fn` is sent as source, so it may use only its argument and the page's globals. */
  evaluate<A, R>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R> {
    // Playwright's own signature wants the argument's unboxed type, which a generic cannot name.
    return this.page.evaluate(fn as (arg: unknown) => R | Promise<R>, arg as unknown);
  }
}

/** Options of {@link Tabs}. */
export interface TabsOptions {
  readonly browser: Browser;
  /** The page's URL, query included. */
  readonly url: string;
  readonly history: History;
  /** Where uncaught page errors and notable console messages go. */
  readonly onPageError: (tab: Tab, message: string) => void;
  /** How long a page may take to open its store, ms. @default 60000 */
  readonly openTimeout?: number;
}

/** The live tabs of the run. */
export class Tabs {
  readonly live: Tab[] = [];
  /** Every tab ever opened, closed ones included. */
  readonly all: Tab[] = [];
  /** Failed attempts of pages to open their store (the page tries again), as `tab: code: message`. */
  readonly openErrors: string[] = [];
  /** Things that went other than designed (a reloaded tab that came back as another node). */
  readonly notes: string[] = [];
  readonly #options: TabsOptions;
  #opened = 0;

  constructor(options: TabsOptions) {
    this.#options = options;
  }

  /** The node ids of the live tabs. */
  nodeIds(): string[] {
    return this.live.map((t) => t.nodeId);
  }

  /** Opens a new tab (a new node) in a new context and waits until its store is open. */
  async open(): Promise<Tab> {
    const { browser, history, onPageError } = this.#options;
    const context = await browser.newContext();
    await context.exposeBinding(RECORD_BINDING, (_source, record: PageRecord) => history.add(record));
    const page = await context.newPage();
    const tab = new Tab(`t${++this.#opened}`, context, page);
    page.on('pageerror', (error) => onPageError(tab, `${error.name}: ${error.message}`));
    this.all.push(tab);
    this.live.push(tab);
    try {
      await page.goto(this.#options.url);
      await this.#waitReady(tab);
    } catch (error) {
      this.live.splice(this.live.indexOf(tab), 1);
      await context.close().catch(() => {});
      throw error;
    }
    return tab;
  }

  /** Reloads a tab: the same node restarts on its data. */
  async reload(tab: Tab): Promise<void> {
    tab.ready = false;
    await tab.page.reload();
    await this.#waitReady(tab);
  }

  /** Closes a tab and its context: its node and its data are gone. */
  async close(tab: Tab): Promise<void> {
    tab.ready = false;
    const i = this.live.indexOf(tab);
    if (i >= 0) this.live.splice(i, 1);
    await tab.context.close();
  }

  /** Cuts the tab's context off from the network, or restores it. */
  async setOffline(tab: Tab, offline: boolean): Promise<void> {
    await tab.context.setOffline(offline);
    tab.offline = offline;
  }

  /** Closes every tab. */
  async closeAll(): Promise<void> {
    await Promise.all(this.live.splice(0).map((t) => t.context.close().catch(() => {})));
  }

  async #waitReady(tab: Tab): Promise<void> {
    const handle = await tab.page.waitForFunction(
      () => (window.partition !== undefined ? window.partition.nodeId : (window.partitionError ?? null)),
      null,
      { timeout: this.#options.openTimeout ?? 60_000, polling: 100 },
    );
    const outcome = (await handle.jsonValue()) as string;
    const { nodeId, openErrors } = await tab.page.evaluate(() => ({
      nodeId: window.partition?.nodeId ?? null,
      openErrors: window.partitionOpenErrors,
    }));
    for (const error of openErrors) this.openErrors.push(`${tab.label}: ${error}`);
    if (nodeId === null) throw new Error(`tab ${tab.label} could not open its store: ${outcome}`);
    // A reload must restart the same node; a new id would mean the old one's data is orphaned.
    if (tab.nodeId !== '' && tab.nodeId !== nodeId)
      this.notes.push(`${tab.label} came back as ${nodeId}, not ${tab.nodeId}`);
    tab.nodeId = nodeId;
    tab.loads++;
    tab.ready = true;
  }
}
