/**
 * The signalling service as two server processes on one real redis-server (`npm run server -- --redis URL`), each
 * spawned as a child process so that one can be killed outright (SIGKILL). Every tab is given both servers, its own
 * first: tabs on different processes form one cluster, and when a process dies its tabs go on through the other.
 */
import { randomBytes } from 'node:crypto';
import type { Page } from '@playwright/test';
import type { Store } from '../../client/index.ts';
import { startRedis, type RedisProcess } from '../redis-server.ts';
import { startServerProcess, type ServerProcess } from '../signaling-process.ts';
import { expect, freshCluster, type Tab, tabOf, test as base, waitForMesh } from './fixtures.ts';
import { STATIC_DIR_ENV } from './global-setup.ts';

interface Service {
  readonly redis: RedisProcess;
  /** Two processes of one service on `redis`. */
  readonly processes: readonly [ServerProcess, ServerProcess];
}

const test = base.extend<{ service: Service }>({
  // The processes take the heartbeat settings of the test's serverOptions, as the fixture's own server does.
  service: async ({ serverOptions }, use) => {
    const staticDir = process.env[STATIC_DIR_ENV];
    if (staticDir === undefined) throw new Error(`${STATIC_DIR_ENV} is not set: run through playwright.config.ts`);
    const redis = await startRedis();
    const prefix = `e2e-${randomBytes(4).toString('hex')}:`;
    const { heartbeatInterval, heartbeatTimeout } = serverOptions;
    const timing = [
      ...(heartbeatInterval === undefined ? [] : ['--heartbeat-interval', String(heartbeatInterval)]),
      ...(heartbeatTimeout === undefined ? [] : ['--heartbeat-timeout', String(heartbeatTimeout)]),
    ];
    const start = (id: string) =>
      startServerProcess([
        ...['--redis', redis.url, '--redis-prefix', prefix, '--process-id', id, '--static', staticDir],
        ...timing,
      ]);
    const processes: ServerProcess[] = [];
    try {
      processes.push(await start('one'), await start('two'));
      await use({ redis, processes: processes as [ServerProcess, ServerProcess] });
    } finally {
      await Promise.all(processes.map((server) => server.kill()));
      await redis.stop();
    }
  },
});

/** The demo page of `cluster` on `first`, told of every process, its own first. */
function pageUrl(first: ServerProcess, all: readonly ServerProcess[], cluster: string): string {
  const url = new URL('/', first.url);
  url.searchParams.set('cluster', cluster);
  for (const server of [first, ...all.filter((other) => other !== first)])
    url.searchParams.append('server', server.url);
  return url.href;
}

async function openOn(page: Page, first: ServerProcess, all: readonly ServerProcess[], cluster: string): Promise<Tab> {
  await page.goto(pageUrl(first, all, cluster));
  return tabOf(page);
}

/** Puts `count` keys named `prefix-i` one after another, keeping in `window.acked` the keys acknowledged. */
function startWorkload(tab: Tab, prefix: string, count: number): Promise<{ acked: string[]; failed: string[] }> {
  return tab.call(
    async (store: Store, { prefix, count }: { prefix: string; count: number }) => {
      const page = window as unknown as { acked: string[]; failed: string[] };
      page.acked = [];
      page.failed = [];
      for (let i = 0; i < count; i++) {
        const key = `${prefix}-${i}`;
        try {
          await store.put(key, `value of ${key}`);
          page.acked.push(key);
        } catch (error) {
          page.failed.push(`${key}: ${(error as { code?: string }).code ?? String(error)}`);
        }
      }
      return { acked: page.acked, failed: page.failed };
    },
    { prefix, count },
  );
}

const ackedSoFar = (tab: Tab) =>
  tab.page.evaluate(() => (window as unknown as { acked?: string[] }).acked?.length ?? 0);

test('tabs on two server processes form one cluster and lose no acknowledged put when one process is killed', async ({
  context,
  service,
}) => {
  test.setTimeout(240_000);
  const [one, two] = service.processes;
  const cluster = freshCluster('redis');
  const tabs: Tab[] = [];
  // Two tabs on each process, one at a time (two cores).
  for (const first of [one, two, one, two])
    tabs.push(await openOn(await context.newPage(), first, [one, two], cluster));
  await waitForMesh(tabs, 60_000);
  const [onOneA, onTwoA, onOneB, onTwoB] = tabs as [Tab, Tab, Tab, Tab];
  const ids = tabs.map((tab) => tab.nodeId);

  // Put through a tab of one process, get through a tab of the other, both ways.
  await onOneA.call((store) => store.put('from-one', 'written through process one'), null);
  await onTwoA.call((store) => store.put('from-two', 'written through process two'), null);
  const read = (tab: Tab, key: string) => tab.call(async (store, k) => (await store.get(k)).values, key);
  expect(await read(onTwoB, 'from-one')).toEqual(['written through process one']);
  expect(await read(onOneB, 'from-two')).toEqual(['written through process two']);

  const joinedBefore = await onTwoA.call(
    (store) => Object.fromEntries(store.members().map((member) => [member.id, member.joinedAt])),
    null,
  );

  // A workload from a tab of each process; process one is killed once it is under way.
  const workloads = [startWorkload(onOneA, 'one', 120), startWorkload(onTwoA, 'two', 120)];
  await expect
    .poll(async () => (await ackedSoFar(onOneA)) + (await ackedSoFar(onTwoA)), { timeout: 60_000 })
    .toBeGreaterThanOrEqual(40);
  await one.kill('SIGKILL');
  const results = await Promise.all(workloads);
  const acked = results.flatMap((result) => result.acked);
  test.info().annotations.push({
    type: 'workload',
    description: `${acked.length} puts acknowledged, ${results.flatMap((r) => r.failed).length} failed`,
  });
  expect(acked.length).toBeGreaterThanOrEqual(40);

  // The tabs of the killed process joined the other with their node ids: every tab sees all four alive, the two
  // that moved with a new join, the others with the join they had.
  const moved = new Set([onOneA.nodeId, onOneB.nodeId]);
  const expected = [...ids].sort().map((id) => [id, 'alive', moved.has(id) ? 'joined again' : 'same join']);
  for (const tab of tabs) {
    expect(await tab.call((store) => store.nodeId, null)).toBe(tab.nodeId);
    await expect
      .poll(
        () =>
          tab.call(
            (store, before) =>
              store
                .members()
                .map((m) => [m.id, m.state, m.joinedAt > (before[m.id] ?? 0) ? 'joined again' : 'same join'])
                .sort(),
            joinedBefore,
          ),
        { timeout: 30_000, message: `tab ${tab.nodeId} sees the moved tabs joined again` },
      )
      .toEqual(expected);
  }

  // Peers whose join changed connect to them anew (a new join time means a new connection): reads wait for that.
  await waitForMesh(tabs, 60_000);

  // Every acknowledged put is still there, read through a tab that moved and one that did not.
  for (const reader of [onOneB, onTwoB]) {
    const missing = await reader.call(async (store, keys) => {
      const lost: string[] = [];
      for (const key of keys) {
        const { values } = await store.get(key);
        if (!values.includes(`value of ${key}`)) lost.push(key);
      }
      return lost;
    }, acked);
    expect(missing, `acknowledged puts that ${reader.nodeId} cannot read`).toEqual([]);
  }
});
