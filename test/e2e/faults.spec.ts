/**
 * Fault injection in real tabs: `store.faults` cuts a node from its peers in its own transport (a browser cannot
 * cut an established data channel from outside), quorums then fail where a real partition would fail them, and
 * healing restores service. A store opened without `faults: true` has no `store.faults` at all.
 */
import type { BrowserContext } from '@playwright/test';
import type { SignalingServer } from '../../signaling/server.ts';
import {
  DATA_PLANES,
  type Plane,
  type Tab,
  demoUrl,
  expect,
  freshCluster,
  tabOf,
  test,
  waitForMesh,
} from './fixtures.ts';

/** Opens the demo with `?faults=1` (or without it) in a new tab and waits for its store. */
async function openFaultTab(
  context: BrowserContext,
  server: SignalingServer,
  cluster: string,
  options: { readonly dataPlane?: Plane; readonly faults: boolean },
): Promise<Tab> {
  const url = new URL(
    demoUrl(server, { cluster, ...(options.dataPlane !== undefined ? { dataPlane: options.dataPlane } : {}) }),
  );
  if (options.faults) url.searchParams.set('faults', '1');
  const page = await context.newPage();
  await page.goto(url.href);
  return tabOf(page);
}

for (const dataPlane of DATA_PLANES) {
  test(`a tab that isolates itself from both others fails puts with ERR_QUORUM while they serve, and heal restores it (${dataPlane} data plane)`, async ({
    context,
    server,
  }) => {
    const cluster = freshCluster('faults');
    const tabs: Tab[] = [];
    for (let i = 0; i < 3; i++) tabs.push(await openFaultTab(context, server, cluster, { dataPlane, faults: true }));
    // Formed, transfers over: isolated earlier, the tab that holds every partition leaves the others unable to finish
    // fetching them, and they cannot coordinate their puts until it heals (see the README's limitations).
    await waitForMesh(tabs, 30_000, { settled: true });
    const [a, b, c] = tabs as [Tab, Tab, Tab];

    const before = await a.attempt((store) => store.put('k', 'before', { w: 2 }), null);
    expect(before.ok).toBe(true);

    const isolated = await a.call((store, ids) => store.faults!.isolate(ids), [b.nodeId, c.nodeId]);
    expect(isolated.isolated).toEqual([b.nodeId, c.nodeId].sort());

    const cut = await a.attempt((store) => store.put('k', 'from the isolated tab', { w: 2 }), null);
    expect(cut).toMatchObject({ ok: false, code: 'ERR_QUORUM' });
    const cutRead = await a.attempt((store) => store.get('k', { r: 2 }), null);
    expect(cutRead).toMatchObject({ ok: false, code: 'ERR_QUORUM' });

    // The other two still make both quorums between themselves.
    const written = await b.attempt((store) => store.put('during', 'written by b', { w: 2 }), null);
    expect(written.ok).toBe(true);
    const readByC = await c.call((store) => store.get('during', { r: 2 }), null);
    expect(readByC.values).toEqual(['written by b']);
    const writtenByC = await c.attempt((store) => store.put('k', 'written by c', { w: 2 }), null);
    expect(writtenByC.ok).toBe(true);

    const faults = await a.call(async (store) => (await store.metrics()).faults, null);
    expect(faults?.dropped).toBeGreaterThan(0);
    // Nothing was held: the cut drops, it does not delay.
    expect(faults?.delayed).toBe(0);

    const healed = await a.call((store) => store.faults!.heal(), null);
    expect(healed).toMatchObject({ isolated: [], dropRate: 0, delayMs: 0 });
    // The node still suspects the peers that let its requests time out, and skips them, until the suspicion lapses
    // (4 × requestTimeout) or it hears from them: as after a real partition heals, service returns within seconds.
    // Probes go to a key of their own: a put that misses its quorum may still leave a sibling behind.
    await expect
      .poll(async () => (await a.attempt((store) => store.put('probe', 'probe', { w: 2 }), null)).ok, {
        timeout: 10_000,
      })
      .toBe(true);
    const after = await a.attempt((store) => store.put('after', 'back in the cluster', { w: 2 }), null);
    expect(after.ok).toBe(true);
    const caughtUp = await a.call((store) => store.get('during', { r: 2 }), null);
    expect(caughtUp.values).toEqual(['written by b']);
    const readBack = await b.call((store) => store.get('after', { r: 2 }), null);
    expect(readBack.values).toEqual(['back in the cluster']);
  });
}

test('a tab opened without faults has no store.faults and its panel says fault injection is off', async ({
  context,
  server,
}) => {
  const tab = await openFaultTab(context, server, freshCluster('nofaults'), { faults: false });
  const seen = await tab.call(
    async (store) => ({ has: 'faults' in store, metrics: 'faults' in (await store.metrics()) }),
    null,
  );
  expect(seen).toEqual({ has: false, metrics: false });
  await expect(tab.page.getByTestId('faults-off')).toContainText('Fault injection is off');
  await expect(tab.page.getByTestId('fault-isolate')).toHaveCount(0);
});

test('the fault panel isolates this node, sets a drop rate and a delay, and heals', async ({ context, server }) => {
  const tab = await openFaultTab(context, server, freshCluster('panel'), { faults: true });
  const page = tab.page;
  const panel = page.getByTestId('faults');
  const state = page.getByTestId('fault-state');

  await panel.locator(`input[data-node="${tab.nodeId}"]`).check();
  await page.getByTestId('fault-isolate').click();
  await expect(state.locator('[data-field="isolated"]')).toContainText(tab.nodeId.slice(0, 8));

  await page.getByTestId('fault-drop').fill('25');
  await expect(state.locator('[data-field="dropRate"]')).toHaveText('25 %');
  await page.getByTestId('fault-delay').fill('120');
  await page.getByTestId('fault-delay').press('Enter');
  await expect(state.locator('[data-field="delayMs"]')).toHaveText('120 ms');
  expect(await tab.call((store) => store.faults!.state(), null)).toMatchObject({
    isolated: [tab.nodeId],
    dropRate: 0.25,
    delayMs: 120,
  });

  await page.getByTestId('fault-heal').click();
  await expect(state.locator('[data-field="isolated"]')).toHaveText('none');
  expect(await tab.call((store) => store.faults!.state(), null)).toMatchObject({
    isolated: [],
    dropRate: 0,
    delayMs: 0,
  });

  const refused = await tab.attempt((store) => store.faults!.dropRate(1.5), null);
  expect(refused).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
});
