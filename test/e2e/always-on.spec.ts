/**
 * The always-on node (`npm run node`): the same node code in a Node.js process, WebRTC through @roamhq/wrtc and its
 * data on disk, in a failure domain of its own, so that every key has a replica on it and data written by tabs
 * outlives every tab.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Tab, expect, freshCluster, openTab, test } from './fixtures.ts';
import { startNodeProcess } from './always-on.ts';

/** Waits until every tab's view is `ids`, and every tab is connected and linked to every other member. */
async function waitForMembers(tabs: readonly Tab[], ids: readonly string[]): Promise<void> {
  const all = [...ids].sort();
  for (const tab of tabs) {
    const others = all.filter((id) => id !== tab.nodeId);
    await expect
      .poll(
        async () => {
          const state = await tab.mesh();
          return {
            members: [...state.members].sort(),
            connectedPeers: [...state.connectedPeers].sort(),
            openLinks: [...state.openLinks].sort(),
          };
        },
        { timeout: 30_000, message: `tab ${tab.nodeId} never reached all of ${all.join(', ')}` },
      )
      .toEqual({ members: all, connectedPeers: others, openLinks: others });
  }
}

test('data written by three tabs survives every tab closing: a tab of a fresh profile reads all 500 keys', async ({
  browser,
  context,
  server,
}) => {
  test.setTimeout(120_000);
  const cluster = freshCluster('always-on');
  const directory = await mkdtemp(join(tmpdir(), 'dynamesh-always-on-'));
  const node = await startNodeProcess(server.url, cluster, directory);
  try {
    const tabs: Tab[] = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(context, server, { cluster }));
    await waitForMembers(tabs, [node.nodeId, ...tabs.map((t) => t.nodeId)]);

    const keys = Array.from({ length: 500 }, (_, i) => `key-${i}`);
    await Promise.all(
      tabs.map((tab, t) =>
        tab.call(
          (store, keys) => Promise.all(keys.map((key) => store.put(key, `value of ${key}`))),
          keys.filter((_, i) => i % 3 === t),
        ),
      ),
    );
    await context.close();

    const fresh = await browser.newContext();
    try {
      const tab = await openTab(fresh, server, { cluster });
      const found = await tab.call(async (store, keys) => {
        const reads = await Promise.all(keys.map((key) => store.get(key)));
        return reads.filter((read, i) => read.values.length === 1 && read.values[0] === `value of ${keys[i]}`).length;
      }, keys);
      expect(found).toBe(keys.length);
    } finally {
      await fresh.close();
    }
  } finally {
    expect(await node.stop('SIGTERM'), 'the always-on node stops cleanly on SIGTERM').toBe(0);
    await rm(directory, { recursive: true, force: true });
  }
});
