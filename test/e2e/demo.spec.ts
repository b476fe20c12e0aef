/**
 * The demo page as a person sees it. The only test that reads the page rather than `window.store`.
 */
import { readFile } from 'node:fs/promises';
import { expect, freshCluster, openCluster, test } from './fixtures.ts';

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
