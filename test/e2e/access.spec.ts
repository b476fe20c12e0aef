/**
 * Who may talk to whom: clusters on one server never see each other, and a server with a secret admits only joins
 * with a valid token.
 */
import type { Page } from '@playwright/test';
import { mintToken } from '../../signaling/token.ts';
import type { Ring } from '../../worker/ring/ring.ts';
import { demoUrl, expect, freshCluster, openCluster, openTab, ringOf, test } from './fixtures.ts';

test('two clusters on one server are isolated', async ({ context, server }) => {
  const red = freshCluster('red');
  const blue = freshCluster('blue');
  const reds = await openCluster(context, server, 2, { cluster: red, dataPlane: 'transfer' });
  const blues = await openCluster(context, server, 2, { cluster: blue, dataPlane: 'relay' });
  const redIds = reds.map((t) => t.nodeId).sort();
  const blueIds = blues.map((t) => t.nodeId).sort();
  expect(server.view(red)?.members.map((m) => m.id)).toEqual(redIds);
  expect(server.view(blue)?.members.map((m) => m.id)).toEqual(blueIds);
  for (const [tabs, ids] of [
    [reds, redIds],
    [blues, blueIds],
  ] as const) {
    for (const tab of tabs) {
      const seen = await tab.call(
        (store) => ({ members: store.members().map((m) => m.id), peers: store.peers() }),
        null,
      );
      expect([...seen.members].sort()).toEqual(ids);
      expect(Object.keys(seen.peers)).toEqual(ids.filter((id) => id !== tab.nodeId));
    }
  }

  await reds[0]!.call((store) => store.put('same-key', 'red value', { w: 2 }), null);
  const blueRead = await blues[0]!.call((store) => store.get('same-key', { r: 2 }), null);
  expect(blueRead.values).toEqual([]);
  await blues[1]!.call((store) => store.put('same-key', 'blue value', { w: 2 }), null);
  const redRead = await reds[1]!.call((store) => store.get('same-key', { r: 2 }), null);
  expect(redRead.values).toEqual(['red value']);
});

test.describe('a server with a secret', () => {
  const secret = 'e2e-secret';
  test.use({ serverOptions: { secret } });

  test('refuses joins with a forged, an expired or another cluster’s token with ERR_UNAUTHORIZED, and admits a valid one', async ({
    context,
    server,
  }) => {
    const cluster = freshCluster('auth');
    const admitted = await openTab(context, server, { cluster, token: mintToken({ secret, cluster }) });
    const refused = {
      forged: mintToken({ secret: 'not-the-secret', cluster }),
      expired: mintToken({ secret, cluster, ttlSeconds: 60, now: Date.now() - 120_000 }),
      'for another cluster': mintToken({ secret, cluster: 'some-other-cluster' }),
    };
    for (const [what, token] of Object.entries(refused)) {
      const page = await context.newPage();
      await page.goto(demoUrl(server, { cluster, token }));
      await expect(page.getByTestId('error-code'), `the ${what} token`).toHaveText('ERR_UNAUTHORIZED');
      expect(await page.evaluate(() => (window as { store?: unknown }).store === undefined)).toBe(true);
    }
    expect(server.view(cluster)?.members.map((m) => m.id)).toEqual([admitted.nodeId]);
    expect(await admitted.call((store) => store.members().length, null)).toBe(1);
  });

  test('places every member’s tokens where the server’s placement puts them: each tab’s owners are that ring’s, and a put in one tab reads back in another', async ({
    context,
    server,
  }) => {
    const cluster = freshCluster('placed');
    const tabs = await openCluster(context, server, 4, { cluster, token: mintToken({ secret, cluster }) });
    const members = server.view(cluster)!.members;
    expect(members.every((m) => m.placement.length > 0)).toBe(true);
    const placed = await ringOf(
      tabs[0]!,
      members.map(({ id, domain, placement }) => ({ id, domain, placement })),
    );
    const unplaced = await ringOf(
      tabs[0]!,
      members.map(({ id, domain }) => ({ id, domain })),
    );
    const lists = (ring: Ring) => Array.from({ length: ring.partitions }, (_, p) => ring.preferenceList(p, 3));
    expect(lists(placed)).not.toEqual(lists(unplaced));
    for (const tab of tabs) {
      const held = await tab.call(
        async (store) => (await store.partitions()).map(({ partition, owners }) => ({ partition, owners })),
        null,
      );
      expect(held.length).toBeGreaterThan(0);
      for (const { partition, owners } of held) expect(owners).toEqual(placed.preferenceList(partition, 3));
    }
    await tabs[0]!.call((store) => store.put('placed-key', 'placed value', { w: 2 }), null);
    const read = await tabs[3]!.call((store) => store.get('placed-key', { r: 2 }), null);
    expect(read.values).toEqual(['placed value']);
  });

  test('takes the token out of the address bar, and keeps it for the tab’s reloads', async ({ context, server }) => {
    const cluster = freshCluster('auth-url');
    const token = mintToken({ secret, cluster });
    const opened = (page: Page) =>
      page.waitForFunction(() => (window as { store?: unknown }).store !== undefined, null, { timeout: 30_000 });
    // In the fragment, as the README says, and in the query, as links of earlier versions had it.
    for (const url of [demoUrl(server, { cluster, token }), `${server.url}/?cluster=${cluster}&token=${token}`]) {
      const page = await context.newPage();
      await page.goto(url);
      await opened(page);
      expect(page.url()).not.toContain(token);
      expect(page.url()).toContain(`cluster=${cluster}`);
      await page.reload();
      await opened(page);
      await page.close();
    }
  });
});
