/**
 * `store.keys`: a coverage query over a cluster of real tabs, paged by its cursor.
 */
import { expect, freshCluster, openCluster, test } from './fixtures.ts';

test('keys lists exactly the live keys under a prefix across several pages, from any of 3 tabs', async ({
  context,
  server,
}) => {
  const tabs = await openCluster(context, server, 3, { cluster: freshCluster('keys'), dataPlane: 'transfer' });
  const [a, b, c] = tabs as [(typeof tabs)[0], (typeof tabs)[0], (typeof tabs)[0]];

  // Keys under two prefixes, written from different tabs, some of each deleted with the context read.
  const users = Array.from({ length: 23 }, (_, i) => `user:${String(i).padStart(2, '0')}`);
  const orders = Array.from({ length: 9 }, (_, i) => `order:${i}`);
  await a.call(async (store, keys) => {
    for (const key of keys) await store.put(key, { key }, { w: 3 });
  }, users);
  await b.call(
    async (store, keys) => {
      for (const key of keys) await store.put(key, key, { w: 3 });
    },
    [...orders, 'user', 'users:x'],
  );
  const deleted = ['user:03', 'user:17', 'order:4'];
  await c.call(async (store, keys) => {
    for (const key of keys) {
      const { context } = await store.get(key);
      await store.delete(key, { context, w: 3 });
    }
  }, deleted);

  const pages = await c.call(async (store) => {
    const out: { keys: (string | Uint8Array)[]; ms: number }[] = [];
    let cursor: string | null = null;
    do {
      const started = performance.now();
      const page: { keys: (string | Uint8Array)[]; cursor: string | null } = await store.keys({
        prefix: 'user:',
        limit: 5,
        cursor,
      });
      out.push({ keys: page.keys, ms: performance.now() - started });
      cursor = page.cursor;
    } while (cursor !== null);
    return out;
  }, null);

  const live = users.filter((k) => !deleted.includes(k)).sort();
  expect(pages.flatMap((p) => p.keys)).toEqual(live);
  expect(pages.map((p) => p.keys.length)).toEqual([5, 5, 5, 5, 1]);
  const partitions = await c.call((store) => store.config.partitions, null);
  console.log(
    `keys: ${pages.length} pages of up to 5 keys at Q=${partitions} with 3 tabs, ms each: ${pages
      .map((p) => p.ms.toFixed(0))
      .join(', ')}`,
  );

  const ordersListed = await a.call((store) => store.keys({ prefix: 'order:', limit: 1000 }), null);
  expect(ordersListed).toEqual({ keys: orders.filter((k) => k !== 'order:4'), cursor: null });
});

test('keys lists every live key from a tab of 4, asking its peers over their data channels for the partitions it does not hold', async ({
  context,
  server,
}) => {
  const tabs = await openCluster(context, server, 4, { cluster: freshCluster('keys-peers'), dataPlane: 'transfer' });
  const keys = Array.from({ length: 40 }, (_, i) => `doc:${String(i).padStart(2, '0')}`);
  await tabs[0]!.call(async (store, all) => {
    for (const key of all) await store.put(key, 1, { w: 3 });
  }, keys);

  const served = async (): Promise<number[]> =>
    Promise.all(tabs.slice(1).map((t) => t.call(async (store) => (await store.metrics()).node.keysServed, null)));
  const before = await served();
  const listed = await tabs[0]!.call(async (store) => {
    const started = performance.now();
    const page = await store.keys({ prefix: 'doc:', limit: 1000 });
    return { ...page, ms: performance.now() - started };
  }, null);
  expect(listed.keys).toEqual(keys);
  expect(listed.cursor).toBeNull();
  const after = await served();
  // With 4 tabs and N = 3 each holds about 3/4 of the partitions: the other quarter was answered by peers.
  expect(after.reduce((sum, n, i) => sum + n - before[i]!, 0)).toBeGreaterThan(0);
  const partitions = await tabs[0]!.call((store) => store.config.partitions, null);
  console.log(`keys: one page of 40 keys at Q=${partitions} with 4 tabs took ${listed.ms.toFixed(0)} ms`);
});
