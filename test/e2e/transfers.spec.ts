/**
 * Membership change refuses no request: while a new owner streams in its partitions, the nodes that hold them keep
 * serving (reads are completed from a holder, puts go to an owner that holds), so neither a cluster that just formed
 * nor one that tabs join answers a request with an error.
 */
import type { Store } from '../../client/index.ts';
import { expect, freshCluster, openCluster, openTab, test, type Tab } from './fixtures.ts';

/** What a load loop in one tab saw: requests made, and every failure and stale read as text. */
interface LoadReport {
  readonly requests: number;
  readonly failures: string[];
}

/**
 * Runs put-then-get rounds over the tab's own keys for `ms` with the default quorums, and reports every request that
 * failed or read back anything but the value just written.
 */
function load(tab: Tab, prefix: string, ms: number): Promise<LoadReport> {
  return tab.call(
    async (store: Store, { prefix, ms }) => {
      const failures: string[] = [];
      let requests = 0;
      const end = Date.now() + ms;
      for (let i = 0; Date.now() < end; i++) {
        const key = `${prefix}:${i % 40}`;
        const value = `${prefix}#${i}`;
        try {
          requests++;
          const read = await store.get(key);
          requests++;
          await store.put(key, value, { context: read.context });
          requests++;
          const back = await store.get(key);
          if (back.values.length !== 1 || back.values[0] !== value)
            failures.push(`${key}: read ${JSON.stringify(back.values)} after writing ${value}`);
        } catch (error) {
          const e = error as { code?: string; message?: string };
          failures.push(`${key}: ${String(e.code)} ${String(e.message)}`);
        }
      }
      return { requests, failures };
    },
    { prefix, ms },
  );
}

test('a fresh 3-tab cluster answers every put(w=3) and get(r=3) once the first w=3 put succeeded', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('fresh');
  const tabs: Tab[] = [];
  for (let i = 0; i < 3; i++) tabs.push(await openTab(context, server, { cluster }));
  // The first put with w=3 needs all three tabs connected: that is the moment the cluster has formed.
  await expect
    .poll(async () => (await tabs[0]!.attempt((store) => store.put('first', 'formed', { w: 3 }), null)).ok, {
      timeout: 30_000,
    })
    .toBe(true);
  const failures: string[] = [];
  for (let i = 0; i < 60; i++) {
    const writer = tabs[i % 3]!;
    const reader = tabs[(i + 1) % 3]!;
    const key = `pair-${i}`;
    const put = await writer.attempt((store, key) => store.put(key, `value ${key}`, { w: 3 }), key);
    if (!put.ok) failures.push(`put ${key} in ${writer.nodeId}: ${put.code} ${put.message}`);
    const got = await reader.attempt((store, key) => store.get(key, { r: 3 }), key);
    if (!got.ok) failures.push(`get ${key} in ${reader.nodeId}: ${got.code} ${got.message}`);
    else if (JSON.stringify(got.value.values) !== JSON.stringify([`value ${key}`]))
      failures.push(`get ${key} in ${reader.nodeId} read ${JSON.stringify(got.value.values)}`);
  }
  expect(failures).toEqual([]);
});

test('two tabs joining a loaded cluster see no refused request, nor does the tab already in it', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('joins');
  // One tab with 2 MiB of data: the two joiners make a cluster of N=3 nodes, which has no fallback to stand in for
  // an owner that is still fetching, and each has a transfer of seconds ahead of it.
  const [first] = await openCluster(context, server, 1, { cluster });
  await first!.call(async (store) => {
    const value = 'x'.repeat(4096);
    for (let start = 0; start < 500; start += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => store.put(`loaded:${start + j}`, value, { w: 1 })));
    }
  }, null);

  const loads: Promise<LoadReport>[] = [];
  const joiners: Tab[] = [];
  for (let i = 0; i < 2; i++) {
    const tab = await openTab(context, server, { cluster });
    joiners.push(tab);
    // The first tab from the moment the default quorums (W=2, R=2) can be met, each joiner from its first moment
    // on, as an app would use it.
    if (i === 0) loads.push(load(first!, 'old', 20_000));
    loads.push(load(tab, `new${i}`, 12_000));
  }
  const reports = await Promise.all(loads);
  for (const report of reports) expect(report.requests).toBeGreaterThan(30);
  expect(reports.flatMap((r) => r.failures)).toEqual([]);

  // Every loaded key is there, read by the last joiner with every replica answering.
  const missing = await joiners[1]!.call(async (store) => {
    const out: string[] = [];
    for (let i = 0; i < 500; i++) {
      const { values } = await store.get(`loaded:${i}`, { r: 3 });
      if (values.length !== 1) out.push(`loaded:${i}`);
    }
    return out;
  }, null);
  expect(missing).toEqual([]);
});
