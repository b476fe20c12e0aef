/**
 * The demo page as a person sees it. The only test that reads the page rather than `window.store`.
 */
import { readFile } from 'node:fs/promises';
import { demoUrl, expect, freshCluster, openCluster, openTab, tabOf, test, waitForMesh } from './fixtures.ts';

test('a screenshot of the demo with 3 tabs shows 3 members, each connected', async ({ context, server }, testInfo) => {
  // No dataPlane parameter: the page picks its own, as it does for a person.
  const tabs = await openCluster(context, server, 3, { cluster: freshCluster('screenshot') });
  const [first] = tabs;
  const page = first!.page;
  await page.bringToFront();

  await expect(page.getByTestId('node-id')).toHaveText(first!.nodeId);
  await expect(page.getByTestId('member-count')).toHaveText('3');
  const members = page.getByTestId('members').locator('li');
  await expect(members).toHaveCount(3);
  const listed = await members.evaluateAll((items) =>
    items.map((li) => ({ id: li.getAttribute('data-member-id'), peer: li.getAttribute('data-peer') })),
  );
  expect(listed.map((m) => m.id).sort()).toEqual(tabs.map((t) => t.nodeId).sort());
  for (const member of listed) expect(member.peer).toBe(member.id === first!.nodeId ? 'self' : 'connected');
  await expect(page.getByTestId('ring')).toBeVisible();

  const path = testInfo.outputPath('demo-with-3-tabs.png');
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach('demo with 3 tabs', { path, contentType: 'image/png' });
  // The file is a PNG at least as large as the viewport.
  const png = await readFile(path);
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const viewport = page.viewportSize()!;
  expect(png.readUInt32BE(16)).toBe(viewport.width);
  expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(viewport.height);
});

test('a second tab of the demo shows its partitions fetched until every one is held', async ({ context, server }) => {
  const cluster = freshCluster('transfer');
  const first = await openTab(context, server, { cluster });
  // Enough data that the second tab's copy takes seconds at the throttled rate below, so its panel shows the rows.
  const keys = 400;
  await first.call(async (store, keys) => {
    const value = new Uint8Array(1024);
    for (let i = 0; i < keys; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, keys - i) }, (_, j) => store.put(`transfer:${i + j}`, value, { w: 1 })),
      );
    }
  }, keys);
  const url = new URL(demoUrl(server, { cluster }));
  url.searchParams.set('transferBytesPerSecond', String(64 * 1024));
  const page = await context.newPage();
  await page.goto(url.href);
  const second = await tabOf(page);
  await waitForMesh([first, second]);
  const q = await second.call((store) => store.config.partitions, null);

  const panel = page.getByTestId('transfer-panel');
  await expect(panel).toBeVisible();
  // While the copy streams in, the panel lists partitions being fetched, each with a progress bar.
  const fetchingRow = panel.locator('[data-testid="transfer-row"][data-state="fetching"]').first();
  await expect(fetchingRow).toBeVisible();
  await expect(fetchingRow.getByRole('progressbar')).toBeVisible();
  expect(Number(await page.getByTestId('partitions-fetching').textContent())).toBeGreaterThan(0);

  // With two members and N = 3, the second tab owns every partition: all of them end up held.
  await expect(page.getByTestId('partitions-fetching')).toHaveText('0', { timeout: 60_000 });
  await expect(page.getByTestId('partitions-held')).toHaveText(String(q));
  await expect(page.getByTestId('partitions-releasing')).toHaveText('0');
  await expect(panel.getByTestId('transfer-row')).toHaveCount(0);
  const fetched = panel.getByTestId('transfer-counters').locator('[data-counter="partitionsFetched"]');
  await expect.poll(async () => Number(await fetched.textContent())).toBeGreaterThan(0);
  const stored = await second.call((store) => store.metrics().then((m) => m.storage.keys), null);
  expect(stored).toBe(keys);
});
