/**
 * The partition test: five real tabs, each a node and a client running a mixed workload at N=3, R=2, W=2, while a
 * seeded nemesis partitions them, closes, opens and reloads tabs, restarts the signalling server and takes a tab
 * offline, for `PARTITION_MS` (default 60 s). Then everything heals; the test waits until every partition's owners
 * hold it with one Merkle root, reads every key with R=3, and checks the recorded history with the simulation's
 * checker: no acknowledged write lost, no sibling lost, no superseded value back, replicas identical. It prints one
 * JSON line of figures. Environment: `PARTITION_MS`, `PARTITION_SEED` (the nemesis's; default from the clock, and
 * printed), `PARTITION_CONVERGE_MS` (the cap on convergence, default 120 s). Logs, the history and the verdict go to
 * the test's output directory.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { Ring } from '../../worker/ring/ring.ts';
import { type FinalKey, type ReplicaState, check } from '../sim/checker.ts';
import { Rng } from '../sim/random.ts';
import { convergence } from './convergence.ts';
import { PAGE_DIR_ENV } from './global-setup.ts';
import { EXPECTED_CODES, History } from './history.ts';
import { Nemesis } from './nemesis.ts';
import type { PartitionReport, StorageDump } from './records.ts';
import { SignalingProcess, freePort, startPageServer } from './servers.ts';
import { type Tab, Tabs } from './tabs.ts';

const TABS = 5;
const N = 3;
const KEYS = 12;
const RUN_MS = integerEnv('PARTITION_MS', 60_000);
const SEED = integerEnv('PARTITION_SEED', Date.now() % 1_000_000);
const CONVERGE_CAP_MS = integerEnv('PARTITION_CONVERGE_MS', 120_000);
/** How long a client waits for one call before it gives up on it (recorded as `HUNG`). */
const OP_TIMEOUT_MS = 15_000;
const SHOWN = 5;

test.setTimeout(RUN_MS + CONVERGE_CAP_MS + 240_000);

test(`acknowledged writes survive ${RUN_MS / 1000} s of partitions, closed and reloaded tabs, server restarts and an offline tab, and replicas converge`, async ({
  browser,
}, testInfo) => {
  const pageDir = process.env[PAGE_DIR_ENV];
  if (pageDir === undefined) throw new Error(`${PAGE_DIR_ENV} is not set: run through playwright.partition.config.ts`);
  const nemesisLog = testInfo.outputPath('nemesis.log');
  writeFileSync(nemesisLog, `seed ${SEED}, ${RUN_MS} ms\n`);
  const log = (line: string): void => appendFileSync(nemesisLog, `${line}\n`);

  const server = new SignalingProcess({
    port: await freePort(),
    heartbeatInterval: 300,
    heartbeatTimeout: 1500,
    logFile: testInfo.outputPath('signaling.log'),
  });
  await server.start();
  const pages = await startPageServer(pageDir);
  const cluster = `partition-${SEED}`;
  const url = new URL('/', pages.url);
  url.search = new URLSearchParams({
    cluster,
    server: server.url,
    seed: String(SEED),
    keys: String(KEYS),
    think: '20',
    opTimeout: String(OP_TIMEOUT_MS),
  }).toString();

  const history = new History();
  const pageErrors: string[] = [];
  const tabs = new Tabs({
    browser,
    url: url.href,
    history,
    onPageError: (tab, message) => {
      pageErrors.push(`${tab.label} (${tab.nodeId}): ${message}`);
      log(`page error in ${tab.label}: ${message}`);
    },
  });
  const nemesis = new Nemesis({
    rng: new Rng(SEED).fork('nemesis'),
    tabs,
    server,
    log,
    // Shorter faults in a short run, so that the three kinds of partition, which cannot overlap, all fit in it.
    duration: RUN_MS >= 45_000 ? [2000, 6000] : [1500, 3500],
    safeToClose: async () => {
      const reports = await Promise.all(tabs.live.filter((t) => t.ready).map((t) => report(t).catch(() => null)));
      return reports.every((r) => r !== null && r.partitions.every((p) => p.state !== 'fetching'));
    },
  });

  try {
    // One at a time: on two cores, parallel page loads only slow each other.
    for (let i = 0; i < TABS; i++) await tabs.open();
    log(`tabs: ${tabs.live.map((t) => `${t.label}=${t.nodeId}`).join(' ')}`);

    const runStart = Date.now();
    nemesis.start();
    await new Promise((done) => setTimeout(done, RUN_MS));
    await nemesis.stop();
    const runMs = Date.now() - runStart;
    log('nemesis stopped; stopping clients');

    // Clients stop before the heal, so that what converges is the final state.
    await Promise.all(tabs.live.map((t) => t.evaluate(() => window.partition?.stop(), null)));
    for (const tab of tabs.live) {
      if (tab.offline) await tabs.setOffline(tab, false);
      await tab.evaluate(() => window.store?.faults?.heal(), null);
    }
    if (!server.running) await server.start();
    const healedAt = Date.now();
    log('healed; waiting for convergence');

    const live = tabs.nodeIds();
    let convergeMs: number | null = null;
    let lastProblems: string[] = [];
    for (;;) {
      const reports = await Promise.all(tabs.live.map((t) => report(t)));
      const state = convergence(reports, live);
      if (state.converged) {
        convergeMs = Date.now() - healedAt;
        break;
      }
      lastProblems = state.problems;
      if (Date.now() - healedAt > CONVERGE_CAP_MS) break;
      await new Promise((done) => setTimeout(done, 500));
    }
    log(convergeMs === null ? `not converged: ${lastProblems.join(' / ')}` : `converged in ${convergeMs} ms`);

    // Final reads with R = N through every tab: after convergence they must all answer, and agree.
    const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);
    const reads = await Promise.all(tabs.live.map((t) => finalRead(t, keys)));
    const readProblems: string[] = [];
    const values = keys.map((key, i) => {
      const answers = reads.map((r) => r[i]!);
      const texts = answers.map((a) => (a.ok ? `[${[...a.values].sort().join(', ')}]` : a.code));
      if (new Set(texts).size > 1 || answers.some((a) => !a.ok)) {
        readProblems.push(`${key}: ${tabs.live.map((t, j) => `${t.label} read ${texts[j]}`).join(', ')}`);
      }
      const first = answers.find((a) => a.ok);
      return first?.ok === true ? first.values : [];
    });

    const dumps = new Map<string, StorageDump>();
    for (const tab of tabs.live) dumps.set(tab.nodeId, await tab.evaluate(() => window.partition!.dump(), null));
    // How each tab ended up: its view, its peer connections and its links, for a failure's report.
    const endStates = await Promise.all(
      tabs.live.map(async (t) => ({
        tab: t.label,
        node: t.nodeId,
        ...(await t.evaluate(async () => {
          const store = window.store!;
          const metrics = await store.metrics();
          return {
            counters: metrics.node,
            epoch: store.view()?.epoch ?? null,
            members: store.members().map((m) => `${m.id}:${m.state}`),
            peers: store.peers(),
            openLinks: metrics.links.filter((l) => l.open).map((l) => l.peer),
          };
        }, null)),
      })),
    );
    const { members, partitions } = await tabs.live[0]!.evaluate(
      () => ({
        members: window.store!.members().map(({ id, domain, placement }) => ({ id, domain, placement })),
        partitions: window.store!.config.partitions,
      }),
      null,
    );
    const ring = new Ring(members, { partitions });
    const final: FinalKey[] = keys.map((key, i) => {
      const owners = ring.preferenceList(ring.partitionOf(new TextEncoder().encode(key)), N);
      const replicas: ReplicaState[] = owners.map((node) => ({ node, versions: dumps.get(node)?.keys[key] ?? [] }));
      return { key, values: values[i]!, replicas };
    });

    const writes = history.writes();
    const verdict = check(writes, final);
    const failures = history.failures();
    const unexpected = Object.keys(failures).filter((code) => !EXPECTED_CODES.has(code));
    const result = {
      seed: SEED,
      runMs,
      tabs: TABS,
      tabsOpened: tabs.all.length,
      operations: history.operations,
      succeeded: history.succeeded(),
      acknowledged: verdict.acknowledged,
      failures,
      faults: nemesis.counts,
      closesDeferred: nemesis.closesDeferred,
      serverDownMs: nemesis.serverOutages,
      lost: verdict.lost.length,
      siblingsLost: verdict.siblingsLost.length,
      resurrected: verdict.resurrected.length,
      phantoms: verdict.phantoms.length,
      divergentKeys: verdict.divergent.length,
      finalReadProblems: readProblems.length,
      convergeMs,
      unended: history.unended,
      hintsLeft: [...dumps.values()].reduce((sum, d) => sum + d.hints, 0),
      offline: nemesis.offline.map((e) => ({
        ms: e.end - e.start,
        peersBefore: e.connectedPeersBefore,
        peersMidway: e.connectedPeersMidway,
        okCallsWhileOffline: history.completions.filter(
          (c) => c.node === e.node && c.ok && c.end > e.start && c.end < e.end,
        ).length,
      })),
      openRetries: tabs.openErrors.length,
      nodeWarnings: history.logs.length,
      pageErrors: pageErrors.length,
      nemesisErrors: nemesis.errors.length,
    };
    console.log(JSON.stringify(result));

    const details = {
      lost: verdict.lost.slice(0, SHOWN).map((l) => ({ ...l, history: history.excerpt(l.key, l.id) })),
      resurrected: verdict.resurrected.slice(0, SHOWN).map((r) => ({ ...r, history: history.excerpt(r.key, r.id) })),
      phantoms: verdict.phantoms.slice(0, SHOWN),
      divergent: verdict.divergent.slice(0, SHOWN),
      notConverged: lastProblems,
      readProblems,
      endStates,
      unexpected,
      pageErrors: pageErrors.slice(0, SHOWN),
      nemesisErrors: nemesis.errors.slice(0, SHOWN),
      tabNotes: tabs.notes,
      openErrors: tabs.openErrors,
      anomalies: history.anomalies.slice(0, SHOWN),
    };
    writeFileSync(testInfo.outputPath('verdict.json'), JSON.stringify({ result, details }, null, 2));
    await testInfo.attach('verdict', { path: testInfo.outputPath('verdict.json'), contentType: 'application/json' });
    writeFileSync(testInfo.outputPath('history.json'), JSON.stringify({ writes, gets: history.gets }));
    writeFileSync(testInfo.outputPath('node-logs.jsonl'), history.logs.map((l) => JSON.stringify(l)).join('\n'));
    const partitionOf = (key: string): number => ring.partitionOf(new TextEncoder().encode(key));
    writeFileSync(
      testInfo.outputPath('final.json'),
      JSON.stringify(
        { members, final: final.map((f) => ({ ...f, partition: partitionOf(f.key) })), dumps: [...dumps.values()] },
        null,
        1,
      ),
    );

    // Soft: a failed run reports every finding at once, convergence first since it explains much of the rest.
    expect.soft(convergeMs, `convergence within ${CONVERGE_CAP_MS} ms: ${lastProblems.join(' / ')}`).not.toBeNull();
    expect.soft(readProblems, 'final reads that failed or disagree').toEqual([]);
    const see = `(history excerpts in ${testInfo.outputPath('verdict.json')})`;
    expect
      .soft(
        verdict.lost.map((l) => `${l.id} of ${l.key}, which ends as [${l.finalValues.join(', ')}]`),
        `acknowledged writes lost ${see}`,
      )
      .toEqual([]);
    expect
      .soft(
        verdict.resurrected.map((r) => `${r.id} of ${r.key}, superseded by ${r.supersededBy} (${r.by})`),
        `superseded values back ${see}`,
      )
      .toEqual([]);
    expect.soft(details.phantoms, 'values nobody wrote').toEqual([]);
    expect
      .soft(
        verdict.divergent.map(
          (d) => `${d.key}: ${d.replicas.map((r) => `${r.node} has ${r.versions.length}`).join(', ')}`,
        ),
        `replicas that differ ${see}`,
      )
      .toEqual([]);
    expect.soft(unexpected, 'error codes no fault explains').toEqual([]);
    expect.soft(history.anomalies, 'records out of order').toEqual([]);
    expect.soft(pageErrors, 'uncaught errors in the tabs').toEqual([]);
    expect.soft(nemesis.errors, 'nemesis actions that failed').toEqual([]);
    expect.soft(tabs.notes, 'reloads that did not restart the same node').toEqual([]);
    // openStore may fail while the server is down, but only with a stable code (README: ERR_TIMEOUT).
    expect
      .soft(
        tabs.openErrors.filter((e) => !/^t\d+: ERR_[A-Z_]+:/.test(e)),
        'openStore failures without an error code',
      )
      .toEqual([]);
  } finally {
    await nemesis.stop().catch(() => {});
    await tabs.closeAll();
    await pages.close();
    await server.close();
  }
});

/**
 * Every key read with R = N through one tab. A read that finds no quorum is tried again a few times: a peer that
 * timed out during the run stays suspected for a while after the heal.
 */
async function finalRead(
  tab: Tab,
  keys: readonly string[],
): Promise<({ ok: true; values: string[] } | { ok: false; code: string })[]> {
  let answers = await tab.evaluate(({ keys, n }) => window.partition!.read(keys, n), { keys, n: N });
  for (let round = 0; round < 5 && answers.some((a) => !a.ok); round++) {
    await new Promise((done) => setTimeout(done, 1000));
    const again = await tab.evaluate(({ keys, n }) => window.partition!.read(keys, n), { keys, n: N });
    answers = answers.map((a, i) => (a.ok ? a : again[i]!));
  }
  return answers;
}

/** One tab's partitions report. */
function report(tab: Tab): Promise<PartitionReport> {
  return tab.evaluate(() => window.partition!.report(), null);
}

function integerEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer`);
  return value;
}
