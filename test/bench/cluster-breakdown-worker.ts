/**
 * The worker half of the put breakdown (cluster-breakdown.ts): the project's own storage engine and codec, timed
 * inside a worker as the node runs them, and an echo that answers a comlink call the shape of `NodeHost.put`.
 * Bundled by Vite at run time and loaded from a Blob URL.
 */
import * as Comlink from 'comlink';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import { openIndexedDbStorage } from '../../worker/storage/indexeddb.ts';
import type { Version } from '../../worker/versions/version.ts';

/** Latency samples in ms by part name, then by value size. */
export type PartSamples = Record<string, Record<number, number[]>>;

const NODE = 'bench-coordinator-0001';
const PEER = 'bench-replica-0002';

/** What the breakdown worker exposes through comlink. */
export const breakdownApi = {
  /** Answers like a successful `NodeHost.put`: an outcome holding a context and a receipt. */
  echo(_key: string, _value: Uint8Array, _options: object): { ok: true; value: object } {
    return {
      ok: true,
      value: {
        context: 'AZGJlbmNoLWNvb3JkaW5hdG9yLTAwMDEBzwAAAZMQoA',
        receipt: { coordinator: NODE, acknowledged: [NODE, PEER], fallbacks: [], hints: [] },
      },
    };
  },

  /**
   * Times the storage operations of a put and a get on a fresh database: the coordinator's `write`, a replica's
   * `apply` of the shipped siblings, and `readLocal` (`get` and `hintsFor` together), each on its own key; and,
   * interleaved with them, the same transaction as `write` in bare IndexedDB (`bareWrite`), which tells the engine's
   * own cost from the transaction's.
   */
  async storage(sizes: number[], samples: number, warmup: number, concurrency: number): Promise<PartSamples> {
    const name = `bench-breakdown-${crypto.randomUUID()}`;
    const storage = await openIndexedDbStorage(name);
    const bare = await openBare(`${name}-bare`);
    const out: PartSamples = { write: {}, bareWrite: {}, apply: {}, readLocal: {}, concurrentWrite: {} };
    try {
      for (const size of sizes) {
        const value = crypto.getRandomValues(new Uint8Array(size));
        const key = (kind: string, i: number): Uint8Array<ArrayBuffer> =>
          new TextEncoder().encode(`${kind}:${size}:${i}`);
        const writes: number[] = [];
        const bareWrites: number[] = [];
        const applies: number[] = [];
        const reads: number[] = [];
        for (let i = 0; i < warmup + samples; i++) {
          let started = performance.now();
          const { siblings } = await storage.write(
            key('w', i),
            i % 256,
            { node: NODE, timestamp: Date.now(), context: [], value, ifMatch: false },
            { durability: 'relaxed' },
          );
          if (i >= warmup) writes.push(performance.now() - started);
          started = performance.now();
          await bareWrite(bare, key('b', i), i % 256, value);
          if (i >= warmup) bareWrites.push(performance.now() - started);
          started = performance.now();
          await storage.apply(key('a', i), i % 256, siblings as Version[], { durability: 'relaxed' });
          if (i >= warmup) applies.push(performance.now() - started);
          started = performance.now();
          await Promise.all([storage.get(key('w', i)), storage.hintsFor(key('w', i))]);
          if (i >= warmup) reads.push(performance.now() - started);
        }
        // Writes issued together, as concurrent puts reach one node: each one's latency from a common start.
        const together: number[] = [];
        for (let round = 0; round < Math.ceil(samples / concurrency); round++) {
          const started = performance.now();
          await Promise.all(
            Array.from({ length: concurrency }, (_, j) =>
              storage
                .write(
                  key(`c${round}`, j),
                  j,
                  { node: NODE, timestamp: Date.now(), context: [], value, ifMatch: false },
                  { durability: 'relaxed' },
                )
                .then(() => together.push(performance.now() - started)),
            ),
          );
        }
        out['write']![size] = writes;
        out['bareWrite']![size] = bareWrites;
        out['apply']![size] = applies;
        out['readLocal']![size] = reads;
        out['concurrentWrite']![size] = together;
      }
      return out;
    } finally {
      await storage.close();
      bare.close();
      for (const db of [name, `${name}-bare`]) {
        await new Promise((resolve) => {
          const request = indexedDB.deleteDatabase(db);
          request.onsuccess = request.onerror = request.onblocked = resolve;
        });
      }
    }
  },

  /** Times MessagePack encode plus checked decode of the messages a put and a get exchange, in ms per message. */
  codec(sizes: number[], samples: number, warmup: number): PartSamples {
    const out: PartSamples = { replicate: {}, ack: {}, read: {}, readReply: {} };
    for (const size of sizes) {
      const value = crypto.getRandomValues(new Uint8Array(size));
      const key = new TextEncoder().encode(`key:${size}:000001`);
      const versions: Version[] = [{ dot: { node: NODE, counter: 1, timestamp: Date.now() }, context: [], value }];
      const messages: Record<string, PeerMessage> = {
        replicate: {
          type: 'replicate',
          from: NODE,
          requestId: 1,
          key,
          versions,
          hintFor: null,
          durable: false,
          fresh: null,
        },
        ack: { type: 'replicate-ack', from: PEER, requestId: 1 },
        read: { type: 'read', from: NODE, requestId: 2, key, requireHeld: false },
        readReply: { type: 'read-reply', from: PEER, requestId: 2, versions },
      };
      for (const [part, message] of Object.entries(messages)) {
        const lat: number[] = [];
        for (let i = 0; i < warmup + samples; i++) {
          const started = performance.now();
          decodeMessage(encodeMessage(message));
          if (i >= warmup) lat.push(performance.now() - started);
        }
        out[part]![size] = lat;
      }
    }
    return out;
  },
};

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('request failed'));
  });
}

/** A database with the node's schema (worker/storage/indexeddb.ts), driven without idb. */
async function openBare(name: string): Promise<IDBDatabase> {
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => {
    open.result.createObjectStore('keys', { keyPath: 'key' }).createIndex('partition', ['partition', 'key']);
    open.result.createObjectStore('meta');
  };
  return request(open);
}

/** What `IndexedDbStorage.write` does to a new key, in bare IndexedDB: read key and state, write both. */
async function bareWrite(
  db: IDBDatabase,
  key: Uint8Array<ArrayBuffer>,
  partition: number,
  value: Uint8Array,
): Promise<void> {
  const tx = db.transaction(['keys', 'meta'], 'readwrite', { durability: 'relaxed' });
  const done = new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = tx.onerror = () => reject(tx.error ?? new Error('transaction aborted'));
  });
  const keys = tx.objectStore('keys');
  const meta = tx.objectStore('meta');
  const [, state] = await Promise.all([request(keys.get(key)), request(meta.get('state'))]);
  const previous = (state as { counter: number; keys: number; bytes: number } | undefined) ?? {
    counter: 0,
    keys: 0,
    bytes: 0,
  };
  const counter = previous.counter + 1;
  const dot = { node: NODE, counter, timestamp: Date.now() };
  keys.put({ key, partition, siblings: [{ dot, context: [], value }] });
  meta.put({ counter, keys: previous.keys + 1, bytes: previous.bytes + value.byteLength }, 'state');
  await done;
}

/** The type the page side wraps. */
export type BreakdownApi = typeof breakdownApi;

Comlink.expose(breakdownApi);
