/**
 * What IndexedDB charges for: one request per record against one request per transaction. Writes `--records`
 * records shaped as the node stores them (key, partition, one 100-byte sibling; the `partition` index), `--batch` to a
 * relaxed transaction, in one page of a Chromium profile on disk, first as one `put` per record into the keys store,
 * then as one `put` of the whole batch into a log store; each way `--repeat` times, alternating. Prints records per
 * second for each. A script that prints figures, not a test.
 *
 *   node --import tsx test/bench/idb-requests.ts [--records 20000] [--batch 256] [--repeat 2]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    records: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '256' },
    repeat: { type: 'string', default: '2' },
  },
});
const records = Number(values.records);
const batch = Number(values.batch);
const repeat = Number(values.repeat);
for (const [name, n] of Object.entries({ records, batch, repeat })) {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} takes an integer ≥ 1`);
}

/** Runs in the page: records per second of each way, in the order run. */
async function measure(args: { records: number; batch: number; repeat: number }): Promise<[string, number][]> {
  const open = (name: string): Promise<IDBDatabase> =>
    new Promise((resolve, reject) => {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore('keys', { keyPath: 'key' }).createIndex('partition', ['partition', 'key']);
        request.result.createObjectStore('log');
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  const record = (i: number): object => ({
    key: new TextEncoder().encode(`key-${i}-${Math.random()}`),
    partition: i % 256,
    siblings: [
      { dot: { node: 'abcdefghijkl', counter: i, timestamp: Date.now() }, context: [], value: new Uint8Array(100) },
    ],
  });
  const out: [string, number][] = [];
  for (let r = 0; r < args.repeat; r++) {
    for (const way of ['a put per record', 'a put per transaction (log)']) {
      const db = await open(`bench-${way}-${r}-${Math.random()}`);
      const started = performance.now();
      for (let done = 0; done < args.records; done += args.batch) {
        await new Promise<void>((resolve, reject) => {
          const tx = db.transaction(['keys', 'log'], 'readwrite', { durability: 'relaxed' });
          const rows = Array.from({ length: Math.min(args.batch, args.records - done) }, (_, i) => record(done + i));
          if (way === 'a put per record') for (const row of rows) tx.objectStore('keys').put(row);
          else tx.objectStore('log').put(rows, done);
          tx.oncomplete = () => resolve();
          tx.onabort = () => reject(tx.error);
        });
      }
      out.push([way, (args.records / (performance.now() - started)) * 1000]);
      db.close();
    }
  }
  return out;
}

const server = createServer((_, response) => response.end('<!doctype html><title>idb</title>')).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const profile = mkdtempSync(join(tmpdir(), 'dynamesh-idb-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  // tsx names functions through a helper the page lacks.
  await page.evaluate('globalThis.__name ??= (f) => f;');
  const load = loadavg()[0]!;
  const results = await page.evaluate(measure, { records, batch, repeat });
  process.stdout.write(
    `IndexedDB on disk, ${records} records of ~150 B, ${batch} to a transaction (load ${load.toFixed(2)})\n`,
  );
  for (const [way, perSecond] of results)
    process.stdout.write(`${perSecond.toFixed(0).padStart(8)} records/s  ${way}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'idb-requests', records, batch, load, results })}\n`);
} finally {
  await context.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
