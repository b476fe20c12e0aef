/**
 * Hidden is not dead: a tab the browser holds still (frozen) stays in its cluster's view as `suspect` for the
 * server's `suspectGrace`, so its partitions do not move, while a tab that dies still leaves at `heartbeatTimeout`.
 *
 * How a freeze is staged: this headless Chromium (156) keeps every page `visible` whatever is tried (minimised
 * windows, background targets, tab switches, headful on the headless Ozone platform), and `Page.setWebLifecycleState`
 * `{ state: 'frozen' }` answers success but freezes nothing on a visible page: no `freeze` event, timers keep running.
 * So the test does what the browser does when it freezes a tab: fire `freeze` at the page (its own listener
 * announces it to the server), then stop the page's main thread, here with the debugger (`Debugger.pause`), so that
 * no heartbeat, ping answer or event handler runs, exactly the silence a frozen tab shows the server. Thawing is
 * `Debugger.resume` and the `resume` event.
 */
import type { CDPSession } from '@playwright/test';
import { expect, freshCluster, openCluster, test, type Tab } from './fixtures.ts';

const HEARTBEAT_INTERVAL = 400;
const HEARTBEAT_TIMEOUT = 2000;
const SUSPECT_GRACE = 5000;
/** Failure detection runs every 250 ms (the default sweep), and two cores are slow: what "a little" later means. */
const SLACK = 1500;

test.use({
  serverOptions: {
    heartbeatInterval: HEARTBEAT_INTERVAL,
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    suspectGrace: SUSPECT_GRACE,
  },
});

/** Fires `freeze` at the tab (unless `announce` is false), then stops its main thread; resolves once it is stopped. */
async function freeze(tab: Tab, announce = true): Promise<CDPSession> {
  if (announce) await tab.page.evaluate(() => document.dispatchEvent(new Event('freeze')));
  const cdp = await tab.page.context().newCDPSession(tab.page);
  await cdp.send('Debugger.enable');
  const paused = new Promise<void>((resolve) => cdp.once('Debugger.paused', () => resolve()));
  await cdp.send('Debugger.pause');
  // The page pauses at the next script it runs: the worker's next heartbeat tick, within one interval.
  await paused;
  return cdp;
}

/** Lets the tab run again and fires `resume` at it, as the browser does when it thaws a tab. */
async function thaw(tab: Tab, cdp: CDPSession): Promise<void> {
  await cdp.send('Debugger.resume');
  await cdp.send('Debugger.disable');
  await tab.page.evaluate(() => document.dispatchEvent(new Event('resume')));
}

/** Makes the tab's document say it is hidden and fires `visibilitychange`, as a hidden page's would. */
async function hide(tab: Tab): Promise<void> {
  // The page cannot be hidden here (see the top of the file).
  await tab.page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
}

/** The state of `id` in the tab's view, or `absent`. */
function stateIn(tab: Tab, id: string): Promise<string> {
  return tab.call((store, id) => store.members().find((m) => m.id === id)?.state ?? 'absent', id);
}

test('a frozen tab stays in the others’ view as suspect past heartbeatTimeout, and is alive again once it runs', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('frozen');
  const [awake, frozen] = await openCluster(context, server, 2, { cluster });
  const cdp = await freeze(frozen!);
  const stoppedAt = Date.now();
  await expect.poll(() => stateIn(awake!, frozen!.nodeId), { timeout: HEARTBEAT_TIMEOUT + SLACK }).toBe('suspect');
  // Well past the timeout at which a silent tab that never announced anything leaves the view.
  await awake!.page.waitForTimeout(stoppedAt + HEARTBEAT_TIMEOUT + SLACK - Date.now());
  expect(await stateIn(awake!, frozen!.nodeId)).toBe('suspect');
  expect(server.view(cluster)?.members.map((m) => [m.id, m.state])).toContainEqual([frozen!.nodeId, 'suspect']);
  expect((await server.stats()).inGrace).toBe(1);

  const joinedAt = server.view(cluster)?.members.find((m) => m.id === frozen!.nodeId)?.joinedAt;
  await thaw(frozen!, cdp);
  await expect.poll(() => stateIn(awake!, frozen!.nodeId)).toBe('alive');
  expect((await server.stats()).inGrace).toBe(0);
  // The same membership carried on: no re-join, so its peers keep their connection and the ring never changed.
  expect(server.view(cluster)?.members.find((m) => m.id === frozen!.nodeId)?.joinedAt).toBe(joinedAt);
  expect(await frozen!.call((store) => store.members().map((m) => m.state), null)).toEqual(['alive', 'alive']);
});

test('a frozen tab leaves the view only when suspectGrace runs out, and comes back when it runs again', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('grace');
  const [awake, frozen] = await openCluster(context, server, 2, { cluster });
  const cdp = await freeze(frozen!);
  const stoppedAt = Date.now();
  await expect
    .poll(() => server.view(cluster)?.members.some((m) => m.id === frozen!.nodeId), {
      timeout: HEARTBEAT_TIMEOUT + SUSPECT_GRACE + SLACK,
      intervals: [50],
    })
    .toBe(false);
  const removedAfter = Date.now() - stoppedAt;
  // Its last heartbeat came at most one interval before it stopped.
  expect(removedAfter).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT + SUSPECT_GRACE - HEARTBEAT_INTERVAL);
  await expect.poll(() => stateIn(awake!, frozen!.nodeId)).toBe('absent');
  const failures = await (await fetch(`${server.url}/metrics`)).text();
  expect(failures).toContain('dynamesh_signaling_failures_detected_total{reason="grace"} 1');

  await thaw(frozen!, cdp);
  await expect.poll(() => stateIn(awake!, frozen!.nodeId)).toBe('alive');
});

test('a tab that crashes leaves the view within heartbeatTimeout', async ({ context, server }) => {
  const cluster = freshCluster('crash');
  const [awake, doomed] = await openCluster(context, server, 2, { cluster });
  const cdp = await context.newCDPSession(doomed!.page);
  const crashedAt = Date.now();
  const crashed = doomed!.page.waitForEvent('crash', { timeout: HEARTBEAT_TIMEOUT + SLACK });
  // Page.crash never answers: its renderer is gone.
  void cdp.send('Page.crash').catch(() => {});
  await expect
    .poll(() => server.view(cluster)?.members.some((m) => m.id === doomed!.nodeId), {
      timeout: HEARTBEAT_TIMEOUT + SLACK,
      intervals: [50],
    })
    .toBe(false);
  expect(Date.now() - crashedAt).toBeLessThan(HEARTBEAT_TIMEOUT + SLACK);
  await crashed;
  await expect.poll(() => stateIn(awake!, doomed!.nodeId)).toBe('absent');
});

test('a tab that announced it was hidden and then closes leaves the view within heartbeatTimeout', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('closed');
  const [awake, doomed] = await openCluster(context, server, 2, { cluster });
  await hide(doomed!);
  // Announced hidden, it keeps heartbeating from its worker: still alive well past the timeout.
  await awake!.page.waitForTimeout(HEARTBEAT_TIMEOUT + 500);
  expect(await stateIn(awake!, doomed!.nodeId)).toBe('alive');
  const closedAt = Date.now();
  await doomed!.page.close();
  await expect
    .poll(() => server.view(cluster)?.members.some((m) => m.id === doomed!.nodeId), {
      timeout: HEARTBEAT_TIMEOUT + SLACK,
      intervals: [50],
    })
    .toBe(false);
  expect(Date.now() - closedAt).toBeLessThan(HEARTBEAT_TIMEOUT + SLACK);
  await expect.poll(() => stateIn(awake!, doomed!.nodeId)).toBe('absent');
});

test('a hidden tab keeps heartbeating from its worker, and is kept as suspect when it then stops without a freeze event', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('hidden');
  const [awake, hidden] = await openCluster(context, server, 2, { cluster });
  await hide(hidden!);
  await awake!.page.waitForTimeout(HEARTBEAT_TIMEOUT + 500);
  expect(await stateIn(awake!, hidden!.nodeId)).toBe('alive');
  // A browser may freeze a hidden tab without the page's freeze listener getting a word out: the hidden announcement
  // alone earns the grace.
  const cdp = await freeze(hidden!, false);
  const stoppedAt = Date.now();
  await expect.poll(() => stateIn(awake!, hidden!.nodeId), { timeout: HEARTBEAT_TIMEOUT + SLACK }).toBe('suspect');
  await awake!.page.waitForTimeout(stoppedAt + HEARTBEAT_TIMEOUT + SLACK - Date.now());
  expect(await stateIn(awake!, hidden!.nodeId)).toBe('suspect');
  await thaw(hidden!, cdp);
  await expect.poll(() => stateIn(awake!, hidden!.nodeId)).toBe('alive');
});
