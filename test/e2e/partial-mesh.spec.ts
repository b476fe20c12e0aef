/**
 * The partial mesh: tabs whose bound on peer connections (`maxLinks`) is smaller than the cluster still serve every
 * key, their frames to the members they have no connection to going through the signalling server's relay, and a
 * tab opens a connection on first use to a peer it sends to; no tab ever holds more connections than its bound.
 */
import { DATA_PLANES, expect, freshCluster, openTab, ringOf, test, type Tab, type TabOptions } from './fixtures.ts';
import type { SignalingServer } from '../../signaling/server.ts';
import type { BrowserContext } from '@playwright/test';

/** Peer connections a tab holds now (opening or open). */
function connections(tab: Tab): Promise<number> {
  return tab.call((store) => Object.keys(store.peers()).length, null);
}

/**
 * Opens `count` tabs one after another and waits until each sees all of them (not for links, which are bounded), and,
 * when `settled`, until their transfers are over: with N = 1 every link is one of use, and while transfers use every
 * peer the most recently used change by the moment, so a test of the link one request opens needs them done.
 */
async function openBounded(
  context: BrowserContext,
  server: SignalingServer,
  count: number,
  options: TabOptions,
  settled = false,
): Promise<Tab[]> {
  const tabs: Tab[] = [];
  for (let i = 0; i < count; i++) tabs.push(await openTab(context, server, options));
  const ids = tabs.map((t) => t.nodeId).sort();
  for (const tab of tabs) {
    await expect.poll(async () => (await tab.mesh()).members.sort(), { timeout: 30_000 }).toEqual(ids);
    if (!settled) continue;
    await expect
      .poll(
        () => tab.call(async (store) => (await store.partitions()).filter((p) => p.state !== 'held').length, null),
        { timeout: 30_000, message: `tab ${tab.nodeId} never finished its partition transfers` },
      )
      .toBe(0);
  }
  return tabs;
}

/** Frames the server relayed so far. */
async function relayedByServer(server: SignalingServer): Promise<number> {
  return (await server.metrics.framesRelayed.get()).values[0]?.value ?? 0;
}

for (const dataPlane of DATA_PLANES) {
  test(`5 tabs bound to 2 connections each put and read every key, through the relay where they are not linked (${dataPlane} data plane)`, async ({
    context,
    server,
  }) => {
    const tabs = await openBounded(context, server, 5, { cluster: freshCluster('bounded'), maxLinks: 2, dataPlane });
    for (const tab of tabs) expect(await connections(tab)).toBeLessThanOrEqual(2);

    for (const [i, tab] of tabs.entries()) {
      const put = await tab.call((store, k) => store.put(`key-${k}`, `value from tab ${k}`), i);
      expect(put.receipt.acknowledged.length).toBeGreaterThanOrEqual(2);
    }
    for (const reader of tabs) {
      const values = await reader.call(async (store, count) => {
        const out: unknown[] = [];
        for (let k = 0; k < count; k++) out.push((await store.get(`key-${k}`)).values);
        return out;
      }, tabs.length);
      expect(values).toEqual(tabs.map((_, k) => [`value from tab ${k}`]));
      expect(await connections(reader)).toBeLessThanOrEqual(2);
    }

    // Each tab links at most 2 of its 4 peers, so frames to the others went through the server.
    expect(await relayedByServer(server)).toBeGreaterThan(0);
    const relayed = await Promise.all(
      tabs.map((tab) => tab.call(async (store) => (await store.metrics()).relayedFrames, null)),
    );
    expect(relayed.reduce((sum, r) => sum + r.sent, 0)).toBeGreaterThan(0);
    expect(relayed.reduce((sum, r) => sum + r.received, 0)).toBeGreaterThan(0);
    for (const tab of tabs) expect(await connections(tab)).toBeLessThanOrEqual(2);
  });
}

test('a tab that forwards a put to a peer it has no connection to opens one on first use, within its bound', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('first-use');
  // N = 1: a node shares no partition with any other, so every connection it holds is one opened on first use.
  const tabs = await openBounded(context, server, 5, { cluster, maxLinks: 2, n: 1 }, true);
  const [from] = tabs;
  const peers = await from!.call((store) => store.peers(), null);
  const target = tabs.find((t) => t !== from && peers[t.nodeId] === undefined);
  expect(target, 'with 4 peers and a bound of 2, some peer has no connection').toBeDefined();

  // A key whose one owner is the target, on the ring every tab computes from the view.
  const view = server.view(cluster)!;
  const ring = await ringOf(
    from!,
    view.members.map(({ id, domain, placement }) => ({ id, domain, placement })),
  );
  let key = '';
  for (let i = 0; key === ''; i++) {
    const candidate = `first-use-${i}`;
    if (ring.preferenceList(ring.partitionOf(new TextEncoder().encode(candidate)), 1)[0] === target!.nodeId)
      key = candidate;
  }

  const put = await from!.call((store, k) => store.put(k, 'forwarded', { w: 1 }), key);
  expect(put.receipt.coordinator).toBe(target!.nodeId);
  // The put went through the server's relay at once; the link follows.
  const started = Date.now();
  await expect
    .poll(() => from!.call((store, id) => store.peers()[id], target!.nodeId), { timeout: 30_000 })
    .toBe('connected');
  console.log(`first-use link up ${Date.now() - started} ms after the forwarded put`);
  expect(await connections(from!)).toBeLessThanOrEqual(2);
  const read = await from!.call((store, k) => store.get(k, { r: 1 }), key);
  expect(read.values).toEqual(['forwarded']);
});

test('both tabs close a connection opened on first use once it is idle for linkIdleMs, and neither reports the other', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('idle');
  // N = 1: no partners, so the connection is kept for use only.
  const tabs = await openBounded(context, server, 3, { cluster, maxLinks: 1, n: 1, linkIdleMs: 5000 }, true);
  const [from] = tabs;
  const view = server.view(cluster)!;
  const ring = await ringOf(
    from!,
    view.members.map(({ id, domain, placement }) => ({ id, domain, placement })),
  );
  const target = tabs.find((t) => t !== from)!;
  let key = '';
  for (let i = 0; key === ''; i++) {
    const candidate = `idle-${i}`;
    if (ring.preferenceList(ring.partitionOf(new TextEncoder().encode(candidate)), 1)[0] === target.nodeId)
      key = candidate;
  }
  await from!.call((store, k) => store.put(k, 'once', { w: 1 }), key);
  await expect
    .poll(() => from!.call((store, id) => store.peers()[id], target.nodeId), { timeout: 30_000 })
    .toBe('connected');

  // Nothing more goes between them: each side lets the connection go, and says so to the other.
  await expect
    .poll(() => from!.call((store, id) => store.peers()[id] ?? 'none', target.nodeId), { timeout: 30_000 })
    .toBe('none');
  await expect
    .poll(() => target.call((store, id) => store.peers()[id] ?? 'none', from!.nodeId), { timeout: 30_000 })
    .toBe('none');
  // A connection closed on purpose is no failure: every member stays alive in the view.
  expect(server.view(cluster)!.members.map((m) => m.state)).toEqual(['alive', 'alive', 'alive']);
  const read = await target.call((store, k) => store.get(k, { r: 1 }), key);
  expect(read.values).toEqual(['once']);
});
