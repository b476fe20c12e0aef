/**
 * Profiles a burst: like bench:burst's first run, with V8's sampling profiler on every page and node worker, and
 * prints the browser's CPU by thread during the burst, then the functions that took the most self time in each page
 * and worker (the .cpuprofile files go to `--out`, for DevTools). A tool for finding where a put's time goes.
 *
 *   node --import tsx test/bench/burst-profile.ts [--tabs 3] [--count 5000] [--limit 0] [--out DIR] [--separate]
 *
 * `--limit` puts at most that many outstanding at once (0: all at once), as bench:burst's second run does with 64.
 *
 * The tabs share one Chromium profile on disk; `--separate` gives each its own (a Chromium each), as bench does by
 * default.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CDPSession, type Page, chromium } from 'playwright-core';
import { pino } from 'pino';
import { build } from 'vite';
import { createSignalingServer } from '../../signaling/server.ts';
import type { BenchApp } from './app/main.ts';
import { CPU_GROUPS, ChromiumCpu } from './cluster-cpu.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    tabs: { type: 'string', default: '3' },
    count: { type: 'string', default: '5000' },
    limit: { type: 'string', default: '0' },
    out: { type: 'string', default: '' },
    separate: { type: 'boolean', default: false },
  },
});

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A worker attached through its page's session, reached by `Target.sendMessageToTarget`. */
class Child {
  #next = 1;
  readonly #waiting = new Map<number, (result: unknown) => void>();
  constructor(
    readonly session: CDPSession,
    readonly sessionId: string,
    readonly name: string,
  ) {}
  send(method: string, params: object = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      void this.session.send('Target.sendMessageToTarget', {
        sessionId: this.sessionId,
        message: JSON.stringify({ id, method, params }),
      });
    });
  }
  receive(message: string): void {
    const parsed = JSON.parse(message) as { id?: number; result?: unknown; error?: unknown };
    if (parsed.id === undefined) return;
    this.#waiting.get(parsed.id)?.(parsed.result ?? parsed.error);
    this.#waiting.delete(parsed.id);
  }
}

function summary(profile: Profile, top = 30): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const deltas = new Map<number, number>();
  profile.samples.forEach((id, i) => deltas.set(id, (deltas.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const self = new Map<string, number>();
  let total = 0;
  for (const [id, us] of deltas) {
    const n = byId.get(id)!;
    const file = n.callFrame.url.split('/').pop() ?? '';
    const key = `${n.callFrame.functionName || '(anon)'} ${file}:${n.callFrame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  return rows
    .map(([k, us]) => `${(us / 1000).toFixed(1).padStart(8)} ms ${((us / total) * 100).toFixed(1).padStart(5)}%  ${k}`)
    .join('\n');
}

async function main(): Promise<void> {
  const tabs = Number(values.tabs);
  const count = Number(values.count);
  const outDir = values.out || mkdtempSync(join(tmpdir(), 'dynamesh-profile-'));
  const app = mkdtempSync(join(tmpdir(), 'dynamesh-bench-app-'));
  const profileDir = mkdtempSync(join(tmpdir(), 'dynamesh-bench-profile-'));
  await build({
    configFile: false,
    root: join(HERE, 'app'),
    base: './',
    logLevel: 'warn',
    build: { outDir: app, emptyOutDir: true, target: 'es2022', minify: false },
    worker: { format: 'es' },
  });
  const server = await createSignalingServer({
    port: 0,
    host: '127.0.0.1',
    staticDir: app,
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
  const marker = String(Math.random()).slice(2);
  const launch = (dir: string) =>
    chromium.launchPersistentContext(dir, {
      executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
      args: ['--disable-gpu', '--disable-dev-shm-usage', `--dynamesh-bench=${marker}`],
    });
  const contexts = [await launch(profileDir)];
  if (values.separate)
    for (let i = 1; i < Number(values.tabs); i++)
      contexts.push(await launch(mkdtempSync(join(tmpdir(), 'dynamesh-bench-profile-'))));
  const cpu = new ChromiumCpu(marker);
  try {
    const cluster = `profile-${Date.now()}`;
    const pages: Page[] = [];
    const children: Child[] = [];
    const sessions: { session: CDPSession; name: string }[] = [];
    for (let i = 0; i < tabs; i++) {
      const context = contexts[i % contexts.length]!;
      const page = await context.newPage();
      const session = await context.newCDPSession(page);
      sessions.push({ session, name: `page${i}` });
      session.on('Target.attachedToTarget', (event) => {
        const child = new Child(session, event.sessionId, `worker${i}`);
        children.push(child);
      });
      session.on('Target.receivedMessageFromTarget', (event) => {
        children.find((c) => c.sessionId === event.sessionId)?.receive(event.message);
      });
      await session.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
      await page.goto(`${server.url}/?cluster=${cluster}`);
      await page.waitForFunction(() => 'bench' in window || 'benchError' in window, null, { timeout: 30_000 });
      pages.push(page);
    }
    for (const page of pages) {
      await page.waitForFunction(
        (others) =>
          Object.values((window as unknown as { bench: BenchApp }).bench.store.peers()).filter((s) => s === 'connected')
            .length === others,
        tabs - 1,
        { timeout: 30_000 },
      );
    }
    for (const { session } of sessions) {
      await session.send('Profiler.enable');
      await session.send('Profiler.setSamplingInterval', { interval: 200 });
      await session.send('Profiler.start');
    }
    for (const child of children) {
      await child.send('Profiler.enable');
      await child.send('Profiler.setSamplingInterval', { interval: 200 });
      await child.send('Profiler.start');
    }
    const threadsBefore = cpu.threads();
    const before = cpu.sample();
    const wallBefore = performance.now();
    const result = await pages[0]!.evaluate(
      ({ count, limit }) => (window as unknown as { bench: BenchApp }).bench.burst('p', count, limit, 100),
      { count, limit: Number(values.limit) },
    );
    const after = cpu.sample();
    const threadsAfter = cpu.threads();
    const deltas = [...threadsAfter]
      .map(([k, v]) => [k, v - (threadsBefore.get(k) ?? 0)] as const)
      .sort((a, b) => b[1] - a[1]);
    for (const [k, v] of deltas.slice(0, 16)) process.stdout.write(`  ${v.toFixed(0).padStart(6)} ms  ${k}\n`);
    const wall = performance.now() - wallBefore;
    process.stdout.write(`${JSON.stringify(result)} ${((result.acknowledged / result.ms) * 1000).toFixed(0)}/s\n`);
    for (const g of CPU_GROUPS) {
      process.stdout.write(`${(((after[g] - before[g]) / wall) * 100).toFixed(0).padStart(4)}% of a core  ${g}\n`);
    }
    const all: { name: string; profile: Profile }[] = [];
    for (const { session, name } of sessions) {
      const { profile } = (await session.send('Profiler.stop')) as unknown as { profile: Profile };
      all.push({ name, profile });
    }
    for (const child of children) {
      const { profile } = (await child.send('Profiler.stop')) as { profile: Profile };
      all.push({ name: child.name, profile });
    }
    for (const { name, profile } of all) {
      writeFileSync(join(outDir, `${name}.cpuprofile`), JSON.stringify(profile));
      process.stdout.write(`\n== ${name}\n${summary(profile)}\n`);
    }
    process.stdout.write(`\nprofiles in ${outDir}\n`);
  } finally {
    for (const context of contexts) await context.close();
    await server.close();
    rmSync(app, { recursive: true, force: true });
    rmSync(profileDir, { recursive: true, force: true });
  }
}

await main();
