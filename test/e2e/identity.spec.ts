/**
 * A tab's node identity: kept in `sessionStorage` across a reload (with the node's IndexedDB data), and never shared
 * by a duplicated tab, which copies `sessionStorage` but finds the id's Web Lock held.
 */
import { expect, freshCluster, openCluster, openTab, tabOf, test, waitForMesh } from './fixtures.ts';

test('a reloaded tab keeps its node id and the data in its database', async ({ context, server }) => {
  const [a, b] = await openCluster(context, server, 2, { cluster: freshCluster('reload'), dataPlane: 'transfer' });
  await a!.call((store) => store.put('kept', 'across the reload', { w: 2 }), null);
  const keysOf = async (tab: typeof a) => (await tab!.call((store) => store.metrics(), null)).storage.keys;
  await expect.poll(() => keysOf(a)).toBe(1);

  await a!.page.reload();
  const reloaded = await tabOf(a!.page);
  expect(reloaded.nodeId).toBe(a!.nodeId);
  // Before any request reaches it, the restarted node already holds the key: it reopened its own database.
  expect(await keysOf(reloaded)).toBe(1);

  await waitForMesh([reloaded, b!]);
  const read = await reloaded.call((store) => store.get('kept', { r: 2 }), null);
  expect(read.values).toEqual(['across the reload']);
  expect([...read.receipt.replied].sort()).toEqual([a!.nodeId, b!.nodeId].sort());
});

test('a duplicated tab gets a new node id', async ({ context, server }) => {
  const original = await openTab(context, server, { cluster: freshCluster('duplicate'), dataPlane: 'transfer' });
  await original.page.evaluate(() => sessionStorage.setItem('e2e:copied', 'yes'));

  // window.open from the tab gives the new tab a copy of the opener's sessionStorage, as duplicating a tab does.
  const opened = context.waitForEvent('page');
  await original.page.evaluate((url) => void window.open(url), original.page.url());
  const duplicate = await tabOf(await opened);

  expect(await duplicate.page.evaluate(() => sessionStorage.getItem('e2e:copied'))).toBe('yes');
  expect(duplicate.nodeId).not.toBe(original.nodeId);
  await waitForMesh([original, duplicate]);
});
