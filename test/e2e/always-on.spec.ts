/**
 * The always-on node (`npm run node`): the same node code in a Node.js process, WebRTC through @roamhq/wrtc and its
 * data on disk, in a failure domain of its own, so that every key has a replica on it and data written by tabs
 * outlives every tab.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from '@playwright/test';
import type { SignalingServer } from '../../signaling/server.ts';
import { type Tab, expect, freshCluster, openTab, test, waitForMesh } from './fixtures.ts';
import { type NodeProcess, spawnNode } from './always-on.ts';

/**
 * Waits until every tab sees every other and the always-on node `nodeId`, connected and linked to each, and, when
 * `settled`, until the tabs' transfers are over.
 */
function waitForMembers(tabs: readonly Tab[], nodeId: string, settled = false): Promise<void> {
  return waitForMesh(tabs, 30_000, { nodes: [nodeId], settled });
}

/**
 * Puts `value of KEY` under each key, spread over `tabs`, all at once; resolves once every put is acknowledged, to
 * the replicas that acknowledged each.
 */
async function writeAll(tabs: readonly Tab[], keys: readonly string[]): Promise<string[][]> {
  const acknowledged = await Promise.all(
    tabs.map((tab, t) =>
      tab.call(
        async (store, keys) =>
          (await Promise.all(keys.map((key) => store.put(key, `value of ${key}`)))).map((put) => [
            ...put.receipt.acknowledged,
          ]),
        keys.filter((_, i) => i % tabs.length === t),
      ),
    ),
  );
  return acknowledged.flat();
}

/** How many of `keys` a tab of a new browser context (a fresh profile) reads back with the value written. */
async function readFromFreshProfile(browser: Browser, server: SignalingServer, cluster: string, keys: string[]) {
  const fresh = await browser.newContext();
  try {
    const tab = await openTab(fresh, server, { cluster });
    return await tab.call(async (store, keys) => {
      const reads = await Promise.all(keys.map((key) => store.get(key)));
      return reads.filter((read, i) => read.values.length === 1 && read.values[0] === `value of ${keys[i]}`).length;
    }, keys);
  } finally {
    await fresh.close();
  }
}

const directories: string[] = [];
const processes: NodeProcess[] = [];

/** A node directory of its own, removed after the test. */
async function nodeDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'dynamesh-always-on-'));
  directories.push(directory);
  return directory;
}

/** Spawns a node process, stopped after the test if it still runs. */
function node(server: SignalingServer, cluster: string, directory: string): NodeProcess {
  const spawned = spawnNode(server.url, cluster, directory);
  processes.push(spawned);
  return spawned;
}

test.afterEach(async () => {
  await Promise.all(processes.splice(0).map((p) => p.stop('SIGKILL')));
  await Promise.all(directories.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

test('data written by three tabs survives every tab closing: a tab of a fresh profile reads all 500 keys', async ({
  browser,
  context,
  server,
}) => {
  const cluster = freshCluster('always-on');
  const always = node(server, cluster, await nodeDirectory());
  const { nodeId } = await always.joined;
  const tabs: Tab[] = [];
  for (let i = 0; i < 3; i++) tabs.push(await openTab(context, server, { cluster }));
  // Transfers over: while the node streams every partition to three new tabs at once it can be silent for seconds,
  // and a put then takes its second domain from a fallback tab (see the README's limitations).
  await waitForMembers(tabs, String(nodeId), true);

  const keys = Array.from({ length: 500 }, (_, i) => `key-${i}`);
  const acknowledged = await writeAll(tabs, keys);
  // The tabs share their profile's failure domain, the node has its own: each put waits for a second domain.
  expect(acknowledged.filter((replicas) => !replicas.includes(String(nodeId)))).toEqual([]);
  await context.close();

  expect(await readFromFreshProfile(browser, server, cluster, keys)).toBe(keys.length);
  expect(await always.stop('SIGTERM'), 'the always-on node stops cleanly on SIGTERM').toBe(0);
});

test('a restarted always-on node is the same node, with the keys it held', async ({ browser, context, server }) => {
  const cluster = freshCluster('always-on-restart');
  const directory = await nodeDirectory();
  const first = node(server, cluster, directory);
  const { nodeId, keys: before } = await first.joined;
  expect(before).toBe(0);
  const tab = await openTab(context, server, { cluster });
  await waitForMembers([tab], String(nodeId));
  const keys = Array.from({ length: 100 }, (_, i) => `key-${i}`);
  // Two members, N=3, W=2: a put is acknowledged once both hold it.
  await writeAll([tab], keys);
  expect(await first.stop('SIGINT'), 'the always-on node stops cleanly on SIGINT').toBe(0);

  const second = node(server, cluster, directory);
  const joined = await second.joined;
  expect(joined['nodeId']).toBe(nodeId);
  expect(joined['keys'], 'keys the restarted node loaded from disk').toBe(keys.length);
  await waitForMembers([tab], String(nodeId));
  await context.close();
  expect(await readFromFreshProfile(browser, server, cluster, keys)).toBe(keys.length);
});

test('a second node process refuses a directory another one runs', async ({ server }) => {
  const cluster = freshCluster('always-on-lock');
  const directory = await nodeDirectory();
  const running = node(server, cluster, directory);
  await running.joined;
  const second = node(server, cluster, directory);
  expect(await second.exited).toBe(1);
  const fatal = second.lines.find((line) => line['msg'] === 'the always-on node could not start');
  expect(JSON.stringify(fatal?.['err'])).toContain('in use by another process');
  // The first one runs on, undisturbed.
  expect(running.child.exitCode).toBeNull();
});

test('a node whose id another process takes over (its identity copied) stops, exit 1, for a supervisor to see', async ({
  server,
}) => {
  const cluster = freshCluster('always-on-copy');
  const original = await nodeDirectory();
  const first = node(server, cluster, original);
  const { nodeId } = await first.joined;
  const copy = await nodeDirectory();
  await copyFile(join(original, 'identity.json'), join(copy, 'identity.json'));
  const second = node(server, cluster, copy);
  expect((await second.joined)['nodeId']).toBe(nodeId);
  expect(await first.exited).toBe(1);
  expect(first.lines.some((line) => line['msg'] === 'another process joined with this node id: stopping')).toBe(true);
});
