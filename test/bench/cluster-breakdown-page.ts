/**
 * The page half of the put breakdown (cluster-breakdown.ts): starts the breakdown worker from the Blob-URL source
 * the harness put in `globalThis.breakdownWorkerSource`, and exposes `globalThis.breakdown` to time a comlink call
 * shaped like `store.put` (value encoded with the client's own `encodeValue`, transferred as the client does).
 * Bundled by Vite at run time.
 */
import * as Comlink from 'comlink';
import { encodeValue } from '../../client/values.ts';
import type { BreakdownApi, PartSamples } from './cluster-breakdown-worker.ts';

interface BreakdownGlobal {
  breakdownWorkerSource?: string;
  breakdown?: BreakdownPage;
}

/** What the page exposes to the harness. */
export interface BreakdownPage {
  /** Times `encodeValue` plus a comlink round trip carrying a put's arguments and result, in ms. */
  clientHop(sizes: number[], samples: number, warmup: number): Promise<Record<number, number[]>>;
  storage(sizes: number[], samples: number, warmup: number, concurrency: number): Promise<PartSamples>;
  codec(sizes: number[], samples: number, warmup: number): Promise<PartSamples>;
}

const g = globalThis as BreakdownGlobal;
const url = URL.createObjectURL(new Blob([g.breakdownWorkerSource!], { type: 'text/javascript' }));
const remote = Comlink.wrap<BreakdownApi>(new Worker(url, { type: 'module' }));

g.breakdown = {
  async clientHop(sizes, samples, warmup) {
    const out: Record<number, number[]> = {};
    for (const size of sizes) {
      const value = crypto.getRandomValues(new Uint8Array(size));
      const lat: number[] = [];
      for (let i = 0; i < warmup + samples; i++) {
        const started = performance.now();
        const bytes = encodeValue(value);
        await remote.echo(`s:${size}:${i}`, Comlink.transfer(bytes, [bytes.buffer]), { w: 2 });
        if (i >= warmup) lat.push(performance.now() - started);
      }
      out[size] = lat;
    }
    return out;
  },
  storage: (sizes, samples, warmup, concurrency) => remote.storage(sizes, samples, warmup, concurrency),
  codec: (sizes, samples, warmup) => remote.codec(sizes, samples, warmup),
};
