/**
 * A cluster of tabs answers gets and puts with Dynamo's versioning: reads across tabs, siblings from concurrent
 * writes and their resolution, and conditional puts.
 */
import { DATA_PLANES, expect, freshCluster, openCluster, openTab, test, waitForMesh } from './fixtures.ts';

for (const dataPlane of DATA_PLANES) {
  test(`5 tabs form a view of 5 and a put in tab 1 is read in tab 5 (${dataPlane} data plane)`, async ({
    context,
    server,
  }) => {
    const cluster = freshCluster('five');
    const tabs = await openCluster(context, server, 5, { cluster, dataPlane });
    const ids = tabs.map((t) => t.nodeId).sort();
    expect(new Set(ids).size).toBe(5);
    expect(server.view(cluster)?.members.map((m) => m.id)).toEqual(ids);

    const value = { hello: 'world', plane: dataPlane, n: 42 };
    const put = await tabs[0]!.call((store, v) => store.put('greeting', v), value);
    expect(put.receipt.acknowledged.length).toBeGreaterThanOrEqual(2);

    const got = await tabs[4]!.call((store) => store.get('greeting'), null);
    expect(got.values).toEqual([value]);
    expect(got.receipt.coordinator).toBe(tabs[4]!.nodeId);
  });
}

test('concurrent puts from two tabs with the same context give two siblings, and a put with the merged context leaves one', async ({
  context,
  server,
}) => {
  const [a, b] = await openCluster(context, server, 2, { cluster: freshCluster('siblings'), dataPlane: 'transfer' });
  const first = await a!.call((store) => store.put('cart', 'milk', { w: 2 }), null);

  await Promise.all([
    a!.call((store, context) => store.put('cart', 'milk, eggs', { context }), first.context),
    b!.call((store, context) => store.put('cart', 'milk, bread', { context }), first.context),
  ]);
  // Both wrote over the same context, whoever coordinated each (a tab still fetching the key's partition hands its put
  // to one that holds it): neither put saw the other, and both stay.
  const conflicted = await a!.call((store) => store.get('cart', { r: 2 }), null);
  expect([...conflicted.values].sort()).toEqual(['milk, bread', 'milk, eggs']);

  await b!.call((store, context) => store.put('cart', 'milk, bread, eggs', { context }), conflicted.context);
  const resolved = await a!.call((store) => store.get('cart', { r: 2 }), null);
  expect(resolved.values).toEqual(['milk, bread, eggs']);
});

test('a put with ifMatch and a stale context fails with ERR_STALE_CONTEXT and stores nothing', async ({
  context,
  server,
}) => {
  const [a, b] = await openCluster(context, server, 2, { cluster: freshCluster('ifmatch'), dataPlane: 'relay' });
  const v1 = await a!.call((store) => store.put('doc', 'v1'), null);
  await b!.call((store, context) => store.put('doc', 'v2 from b', { context }), v1.context);

  const stale = await a!.attempt(
    (store, context) => store.put('doc', 'v3 from a', { context, ifMatch: true }),
    v1.context,
  );
  expect(stale).toMatchObject({ ok: false, code: 'ERR_STALE_CONTEXT' });

  const after = await a!.call((store) => store.get('doc', { r: 2 }), null);
  expect(after.values).toEqual(['v2 from b']);
  // The same conditional put with the current context goes through: it was the context that was refused.
  const current = await a!.attempt(
    (store, context) => store.put('doc', 'v3 from a', { context, ifMatch: true }),
    after.context,
  );
  expect(current.ok).toBe(true);
});

test('a tab on the transfer data plane and a tab on the relay data plane serve one cluster', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('mixed');
  const transfer = await openTab(context, server, { cluster, dataPlane: 'transfer' });
  const relay = await openTab(context, server, { cluster, dataPlane: 'relay' });
  await waitForMesh([transfer, relay]);

  const put = await transfer.attempt((store) => store.put('mixed', 'both planes', { w: 2 }), null);
  expect(put.ok).toBe(true);
  const read = await relay.call((store) => store.get('mixed', { r: 2 }), null);
  expect(read.values).toEqual(['both planes']);
});
