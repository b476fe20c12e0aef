/**
 * Many puts at once, as an app importing a list or syncing an offline queue makes them: every one is acknowledged
 * (a busy replica is slow, not failed) and reads back. The speed of such bursts is `npm run bench`'s to measure.
 */
import { expect, freshCluster, openCluster, test } from './fixtures.ts';

test('3,000 puts issued at once from one tab of a 3-tab cluster are all acknowledged and all read back', async ({
  context,
  server,
}) => {
  // As an app would: the burst starts as soon as the tabs reach each other, while the new cluster's partitions may
  // still be settling among them.
  const tabs = await openCluster(context, server, 3, { cluster: freshCluster('burst'), dataPlane: 'transfer' });
  const outcome = await tabs[0]!.call(async (store) => {
    const failures: Record<string, number> = {};
    const results = await Promise.allSettled(
      Array.from({ length: 3000 }, (_, i) => store.put(`burst:${i}`, `value ${i}`)),
    );
    for (const r of results) {
      if (r.status === 'rejected') {
        const code = String((r.reason as { code?: string }).code);
        failures[code] = (failures[code] ?? 0) + 1;
      }
    }
    return { acknowledged: results.filter((r) => r.status === 'fulfilled').length, failures };
  }, null);
  expect(outcome).toEqual({ acknowledged: 3000, failures: {} });

  // Read back from another tab, as many at once.
  const wrong = await tabs[2]!.call(async (store) => {
    const reads = await Promise.all(Array.from({ length: 3000 }, (_, i) => store.get(`burst:${i}`)));
    return reads.flatMap((r, i) => (r.values.length === 1 && r.values[0] === `value ${i}` ? [] : [i]));
  }, null);
  expect(wrong).toEqual([]);
});
