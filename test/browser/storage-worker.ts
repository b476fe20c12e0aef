/**
 * A module worker for the browser tests: opens the IndexedDB storage where production runs it, inside a dedicated
 * worker, writes and reads back, and posts what it saw.
 */
import { hasErrorCode } from '../../worker/errors.ts';
import { openIndexedDbStorage } from '../../worker/storage/indexeddb.ts';

/** What the test page sends: the database to use. */
export interface WorkerRequest {
  readonly name: string;
}

/** What the worker posts back. */
export interface WorkerReply {
  /** The counter of the dot the worker's write drew. */
  readonly counter: number;
  /** The values `get` returned after the write, decoded as text. */
  readonly values: (string | null)[];
  /** True when a conditional write over a stale context failed with `ERR_STALE_CONTEXT` inside the worker. */
  readonly staleRejected: boolean;
  /** Set when anything failed. */
  readonly error?: string;
}

const scope = globalThis as unknown as {
  addEventListener(type: 'message', listener: (event: MessageEvent<WorkerRequest>) => void): void;
  postMessage(message: WorkerReply): void;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

scope.addEventListener('message', (event) => {
  void (async () => {
    try {
      const storage = await openIndexedDbStorage(event.data.name);
      const key = encoder.encode('worker-key');
      const written = await storage.write(key, 5, {
        node: 'w',
        timestamp: Date.now(),
        context: [],
        value: encoder.encode('from the worker'),
        ifMatch: false,
      });
      const values = (await storage.get(key)).map((v) => (v.value === null ? null : decoder.decode(v.value)));
      let staleRejected = false;
      try {
        await storage.write(key, 5, { node: 'w', timestamp: Date.now(), context: [], value: null, ifMatch: true });
      } catch (error) {
        staleRejected = hasErrorCode(error, 'ERR_STALE_CONTEXT');
      }
      await storage.close();
      scope.postMessage({ counter: written.version.dot.counter, values, staleRejected });
    } catch (error) {
      scope.postMessage({ counter: 0, values: [], staleRejected: false, error: String(error) });
    }
  })();
});
