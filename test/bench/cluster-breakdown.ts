/**
 * Where a put's time goes, without touching the node: the parts of its critical path timed one by one with the
 * project's own modules, in a worker of the same browser, then added up into a model to set beside the measured put.
 *
 * A put from a tab whose node coordinates the key (always so with 3 tabs and N=3) runs, in order: `encodeValue` and a
 * comlink call into the worker; the coordinator's local `storage.write` (one IndexedDB transaction that reads the key
 * and the counter row, then writes both); only then the replicate message, encoded, over a data channel, decoded by a
 * replica that runs `storage.apply` (another such transaction) and acks. With W=2 the first ack completes the put.
 * So: model put = client hop + write + (a) + apply + codec(replicate, ack). A get runs the local read and the remote
 * ones in parallel and needs R=2 answers: model get = client hop + (a) + readLocal + codec(read, read-reply).
 *
 * The two page- and worker-side entries (cluster-breakdown-page.ts, cluster-breakdown-worker.ts) are bundled with
 * Vite when the benchmark runs, so that they use exactly the code the demo runs.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext } from 'playwright-core';
import { build } from 'vite';
import type { BreakdownPage } from './cluster-breakdown-page.ts';
import type { PartSamples } from './cluster-breakdown-worker.ts';
import { type Summary, fmt, summarize } from './cluster-stats.ts';
import { type FloorSamples, blankPage } from './floor.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Writes issued at once to one storage, for the contention row. @default 4 */
export const CONCURRENT_WRITES = 4;

/** One row of the breakdown: a part (or a model, or a measured figure) by value size. */
export interface BreakdownRow {
  readonly name: string;
  readonly bySize: Record<number, Pick<Summary, 'p50' | 'p99'>>;
}

/** The breakdown's rows and what they say. */
export interface Breakdown {
  readonly rows: BreakdownRow[];
  readonly notes: string[];
}

/** What {@link measureBreakdown} needs from the rest of the run. */
export interface BreakdownOptions {
  readonly sizes: readonly number[];
  readonly samples: number;
  /** The cluster runs, to set the model beside. */
  readonly runs: readonly {
    plane: string;
    tabs: number;
    mode: string;
    op: string;
    size: number;
    summary: Summary;
  }[];
  /** The floor samples, for the data-channel round trip and the bare IndexedDB put. */
  readonly floor: FloorSamples;
}

async function bundle(entry: string): Promise<string> {
  const result = await build({
    configFile: false,
    logLevel: 'silent',
    publicDir: false,
    build: {
      write: false,
      minify: false,
      target: 'es2022',
      lib: { entry: join(HERE, entry), formats: ['es'], fileName: 'bundle' },
    },
  });
  const outputs = Array.isArray(result) ? result : [result];
  for (const output of outputs) {
    if (!('output' in output)) continue;
    for (const chunk of output.output) if (chunk.type === 'chunk' && chunk.isEntry) return chunk.code;
  }
  throw new Error(`bundling ${entry} gave no entry chunk`);
}

type BreakdownGlobal = { breakdownWorkerSource?: string; breakdown?: BreakdownPage };

/** Times the parts of a put and a get in a page of `context` and models both from them. */
export async function measureBreakdown(
  context: BrowserContext,
  origin: string,
  options: BreakdownOptions,
): Promise<Breakdown> {
  const sizes = [...options.sizes];
  const samples = options.samples;
  const warmup = Math.min(100, samples);
  const [workerSource, pageSource] = await Promise.all([
    bundle('cluster-breakdown-worker.ts'),
    bundle('cluster-breakdown-page.ts'),
  ]);
  const page = await blankPage(context, origin);
  let hop: Record<number, number[]>;
  let storage: PartSamples;
  let codec: PartSamples;
  try {
    await page.evaluate(
      (source) => void ((globalThis as BreakdownGlobal).breakdownWorkerSource = source),
      workerSource,
    );
    await page.addScriptTag({ content: pageSource, type: 'module' });
    await page.waitForFunction(() => (globalThis as BreakdownGlobal).breakdown !== undefined);
    const args = { sizes, samples, warmup, concurrency: CONCURRENT_WRITES };
    hop = await page.evaluate(
      (a) => (globalThis as BreakdownGlobal).breakdown!.clientHop(a.sizes, a.samples, a.warmup),
      args,
    );
    storage = await page.evaluate(
      (a) => (globalThis as BreakdownGlobal).breakdown!.storage(a.sizes, a.samples, a.warmup, a.concurrency),
      args,
    );
    codec = await page.evaluate(
      (a) => (globalThis as BreakdownGlobal).breakdown!.codec(a.sizes, a.samples, a.warmup),
      args,
    );
  } finally {
    await page.close();
  }

  const s = (lat: number[] | undefined): Summary => summarize(lat ?? [], 0);
  const part = (samplesBySize: Record<number, number[]>): Record<number, Summary> =>
    Object.fromEntries(sizes.map((size) => [size, s(samplesBySize[size])]));
  const sum = (...parts: Record<number, Summary>[]): Record<number, Pick<Summary, 'p50' | 'p99'>> =>
    Object.fromEntries(
      sizes.map((size) => [
        size,
        {
          p50: parts.reduce((t, p) => t + p[size]!.p50, 0),
          p99: parts.reduce((t, p) => t + p[size]!.p99, 0),
        },
      ]),
    );
  // Codec time per message pair: the sum of both messages' encode + decode.
  const pair = (x: string, y: string): Record<number, Summary> =>
    Object.fromEntries(
      sizes.map((size) => {
        const a = codec[x]![size]!;
        const b = codec[y]![size]!;
        return [size, s(a.map((v, i) => v + (b[i] ?? 0)))];
      }),
    );

  const clientHop = part(hop);
  const write = part(storage['write']!);
  const bareWrite = part(storage['bareWrite']!);
  const apply = part(storage['apply']!);
  const readLocal = part(storage['readLocal']!);
  const together = part(storage['concurrentWrite']!);
  const putCodec = pair('replicate', 'ack');
  const getCodec = pair('read', 'readReply');
  const channel = part(options.floor.dataChannel);
  const bareput = part(options.floor.idbPut);
  const rmw = part(options.floor.idbReadModifyWrite);
  const workerHop = part(options.floor.workerHop);
  const modelPut = sum(clientHop, write, channel, apply, putCodec);
  const modelGet = sum(clientHop, channel, readLocal, getCodec);

  const measured = (op: string): BreakdownRow | undefined => {
    const first = options.runs.find((r) => r.op === op && r.mode === 'sequential');
    if (first === undefined) return undefined;
    const bySize: BreakdownRow['bySize'] = {};
    for (const r of options.runs) {
      if (r.op === op && r.mode === 'sequential' && r.plane === first.plane && r.tabs === first.tabs) {
        bySize[r.size] = { p50: r.summary.p50, p99: r.summary.p99 };
      }
    }
    return { name: `measured ${op}, ${first.plane}, ${first.tabs} tabs, sequential`, bySize };
  };

  const rows: BreakdownRow[] = [
    { name: '1 client: encodeValue + comlink call (put shape)', bySize: clientHop },
    { name: '2 coordinator storage.write, relaxed', bySize: write },
    { name: '  the same transaction in bare IndexedDB, interleaved', bySize: bareWrite },
    { name: '3 (a) data-channel round trip', bySize: channel },
    { name: '4 replica storage.apply, relaxed', bySize: apply },
    { name: '5 codec: replicate + ack, encode+decode', bySize: putCodec },
    { name: 'model put = 1+2+3+4+5', bySize: modelPut },
  ];
  const putRow = measured('put');
  if (putRow !== undefined) rows.push(putRow);
  rows.push(
    { name: '6 readLocal (get ‖ hintsFor)', bySize: readLocal },
    { name: '7 codec: read + read-reply', bySize: getCodec },
    { name: 'model get = 1+3+6+7', bySize: modelGet },
  );
  const getRow = measured('get');
  if (getRow !== undefined) rows.push(getRow);
  rows.push(
    { name: `(a') data channel worker to worker, for scale`, bySize: part(options.floor.workerDataChannel) },
    { name: `(c) bare IndexedDB put, for scale`, bySize: bareput },
    { name: `(c1) the node's record, bare put`, bySize: part(options.floor.idbRecord) },
    { name: `(c2) (c1) into the store with the partition index`, bySize: part(options.floor.idbIndexedRecord) },
    { name: `(c3) (c2) + reads of key and counter row, counter write`, bySize: rmw },
    { name: `(b) bare postMessage round trip, for scale`, bySize: workerHop },
    { name: `${CONCURRENT_WRITES} storage.writes issued together, each`, bySize: together },
  );

  const notes: string[] = [];
  const size = sizes[0]!;
  const model = modelPut[size]!.p50;
  const share = (label: string, x: number): string => `${label} ${((100 * x) / model).toFixed(0)}%`;
  notes.push(
    `model put p50 at ${size} B: ${model.toFixed(3)} ms — ` +
      [
        share('client hop', clientHop[size]!.p50),
        share('local write', write[size]!.p50),
        share('data channel', channel[size]!.p50),
        share('replica apply', apply[size]!.p50),
        share('codec', putCodec[size]!.p50),
      ].join(', '),
  );
  const record = part(options.floor.idbRecord)[size]!.p50;
  const indexed = part(options.floor.idbIndexedRecord)[size]!.p50;
  notes.push(
    `storage.write is ${(write[size]!.p50 / bareput[size]!.p50).toFixed(1)}× a bare IndexedDB put (c) and ` +
      `${(write[size]!.p50 / bareWrite[size]!.p50).toFixed(1)}× the same transaction in bare IndexedDB timed ` +
      `beside it: the engine's JavaScript (idb, copies, resolve, recount) adds ` +
      `${fmt(write[size]!.p50 - bareWrite[size]!.p50, 3)} ms. In the floor run, the node's record costs ` +
      `${fmt(record - bareput[size]!.p50, 3)} ms over a bare put (c1 − c), the partition index ` +
      `${fmt(indexed - record, 3)} ms (c2 − c1), reading the key and the counter row before writing ` +
      `${fmt(rmw[size]!.p50 - indexed, 3)} ms (c3 − c2). The local write and the replica's apply run one after ` +
      `the other, so a put pays two such transactions where the floor counts one bare put.`,
  );
  notes.push(
    `the client hop is ${(clientHop[size]!.p50 / workerHop[size]!.p50).toFixed(1)}× a bare postMessage round trip ` +
      `(comlink's message wrapping plus encodeValue).`,
  );
  if (putRow?.bySize[size] !== undefined) {
    const rest = putRow.bySize[size].p50 - model;
    notes.push(
      `measured put p50 minus the model: ${rest.toFixed(3)} ms — the parts cost more in the live cluster than alone ` +
        `(see the trace above: wake-ups of the other tab's worker, frames in flight, writes beside other tabs' work).`,
    );
  }
  return { rows, notes };
}
