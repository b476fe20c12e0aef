/**
 * The shared-list example (examples/shared-list), built as its README says and served by a signalling server: tabs
 * that edit the list at once follow one another through `watch`, a tab opened later loads the list through `keys`, and
 * concurrent edits of one item end merged alike in every tab.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from '@playwright/test';
import type { Store } from '../../client/index.ts';
import { createSignalingServer, type SignalingServer } from '../../signaling/server.ts';
import { expect, freshCluster, test } from './fixtures.ts';

let appDir = '';
let server: SignalingServer;

test.beforeAll(async () => {
  const root = resolve(import.meta.dirname, '../..');
  appDir = await mkdtemp(join(tmpdir(), 'dynamesh-shared-list-'));
  const { build } = await import('vite');
  await build({
    configFile: join(root, 'examples/shared-list/vite.config.ts'),
    root: join(root, 'examples/shared-list'),
    logLevel: 'warn',
    build: { outDir: appDir, emptyOutDir: true },
  });
  server = await createSignalingServer({ port: 0, staticDir: appDir, logLevel: 'silent' });
});

test.afterAll(async () => {
  await server?.close();
  await rm(appDir, { recursive: true, force: true });
});

/** A tab of the app on `cluster`, once its list has loaded. */
async function openList(page: Page, cluster: string): Promise<Page> {
  await page.goto(`${server.url}/?server=${encodeURIComponent(server.url)}&cluster=${cluster}`);
  await expect(page.locator('#status')).toContainText('items', { timeout: 20_000 });
  return page;
}

/** The texts of the list, in its order, and which are done. */
function shown(page: Page): Promise<string[]> {
  return page
    .locator('#items li')
    .evaluateAll((lis) => lis.map((li) => `${li.classList.contains('done') ? '☑' : '☐'} ${li.textContent ?? ''}`));
}

test('tabs editing the shared list follow each other, a tab opened later loads it, and concurrent edits merge alike', async ({
  context,
}) => {
  const cluster = freshCluster('shared-list');
  const a = await openList(await context.newPage(), cluster);
  const b = await openList(await context.newPage(), cluster);

  await a.locator('#text').fill('milk');
  await a.locator('#add button').click();
  await b.locator('#text').fill('bread');
  await b.locator('#add button').click();
  await expect.poll(() => shown(b)).toEqual(['☐ milk✕', '☐ bread✕']);
  await expect.poll(() => shown(a)).toEqual(['☐ milk✕', '☐ bread✕']);

  // Both tabs tick "milk" at once: two concurrent versions, which every tab merges alike and puts back as one.
  await Promise.all([a, b].map((tab) => tab.locator('#items li', { hasText: 'milk' }).locator('input').check()));
  await expect.poll(() => shown(a)).toEqual(['☑ milk✕', '☐ bread✕']);
  await expect.poll(() => shown(b)).toEqual(['☑ milk✕', '☐ bread✕']);
  const milk = await a.locator('#items li', { hasText: 'milk' }).getAttribute('data-key');
  const versions = (tab: Page): Promise<number> =>
    tab.evaluate(
      async (key) =>
        (await (window as unknown as { list: { store: Store } }).list.store.get(key!, { r: 2 })).values.length,
      milk,
    );
  await expect.poll(() => versions(b)).toBe(1);

  const c = await openList(await context.newPage(), cluster);
  await expect.poll(() => shown(c)).toEqual(['☑ milk✕', '☐ bread✕']);

  await c.locator('#items li', { hasText: 'bread' }).locator('button').click();
  await expect.poll(() => shown(a)).toEqual(['☑ milk✕']);
});
