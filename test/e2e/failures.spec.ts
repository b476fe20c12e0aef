/**
 * Tabs fail: the survivors keep answering through the replicas that are left and through fallbacks (Dynamo's sloppy
 * quorum with hinted handoff).
 */
import { expect, freshCluster, openCluster, ringOf, test } from './fixtures.ts';

// Closing a tab is a crash as far as the cluster knows (the page does not leave): the server sees its socket drop
// and marks it suspect, and it leaves the view after `heartbeatTimeout` of silence, or two heartbeat intervals after a
// peer reports it. Long intervals keep the failed tabs in the ring while the test reads and writes, which is the
// window sloppy quorums exist for: failed, but not yet removed.
test.use({ serverOptions: { heartbeatInterval: 10_000, heartbeatTimeout: 30_000 } });

test('with two tabs holding replicas of a key closed, a get with R=1 answers and a put with W=2 succeeds through a fallback whose hint the receipt shows', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('failover');
  // Formed, transfers over: a new owner still fetching the key's partition from the two tabs that fail would not
  // coordinate puts of it until they leave the view (see the README's limitations).
  const tabs = await openCluster(context, server, 5, { cluster, dataPlane: 'relay' }, { settled: true });
  const key = 'failover-key';
  const members = await tabs[0]!.call(
    (store) => store.members().map(({ id, domain, placement }) => ({ id, domain, placement })),
    null,
  );
  const ring = await ringOf(tabs[0]!, members);
  const owners = ring.preferenceList(ring.partitionOf(new TextEncoder().encode(key)), 3);
  expect(owners).toHaveLength(3);
  const byId = new Map(tabs.map((t) => [t.nodeId, t]));
  const [survivor, ...doomed] = owners.map((id) => byId.get(id)!);
  const outsiders = tabs.filter((t) => !owners.includes(t.nodeId));
  const [client] = outsiders;

  // W=3: every owner holds the value before two of them go.
  await client!.call((store, key) => store.put(key, 'before the failure', { w: 3 }), key);
  for (const tab of tabs) {
    const expected = owners.includes(tab.nodeId) ? 1 : 0;
    await expect.poll(async () => (await tab.call((store) => store.metrics(), null)).storage.keys).toBe(expected);
  }

  for (const tab of doomed) await tab!.page.close();
  // Let the survivors take in the failure (the server saw the tabs' connections drop and pushed a view with them
  // suspect) so that the reads and writes below race only their own timeouts, not that burst of work.
  const doomedIds = doomed.map((t) => t!.nodeId);
  await expect
    .poll(() =>
      client!.call(
        (store, ids) =>
          store
            .members()
            .filter((m) => ids.includes(m.id))
            .map((m) => m.state),
        doomedIds,
      ),
    )
    .toEqual(['suspect', 'suspect']);

  const read = await client!.call((store, key) => store.get(key, { r: 1 }), key);
  expect(read.values).toEqual(['before the failure']);
  expect(read.receipt.replied).toEqual([survivor!.nodeId]);

  const write = await client!.call(
    (store, { key, context }) => store.put(key, 'during the failure', { w: 2, context }),
    { key, context: read.context },
  );
  const { receipt } = write;
  expect(receipt.coordinator).toBe(survivor!.nodeId);
  expect(receipt.acknowledged.length).toBeGreaterThanOrEqual(2);
  expect(receipt.fallbacks.length).toBeGreaterThanOrEqual(1);
  const outsiderIds = outsiders.map((t) => t.nodeId);
  for (const fallback of receipt.fallbacks) expect(outsiderIds).toContain(fallback);
  expect(receipt.hints.length).toBe(receipt.fallbacks.length);
  for (const hint of receipt.hints) {
    expect(receipt.fallbacks).toContain(hint.holder);
    expect(doomedIds).toContain(hint.target);
  }
  // The failed tabs were still members throughout: the ring the put used is the one they were in.
  expect(server.view(cluster)?.members.map((m) => m.id)).toEqual(members.map((m) => m.id).sort());
});
