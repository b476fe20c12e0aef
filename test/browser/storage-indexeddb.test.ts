import { expect } from 'chai';
import { deleteDB } from 'idb';
import { hasErrorCode } from '../../worker/errors.ts';
import type { Version } from '../../worker/versions/version.ts';
import { openIndexedDbStorage } from '../../worker/storage/indexeddb.ts';
import type { IndexedDbStorage } from '../../worker/storage/indexeddb.ts';
import { storageContract } from '../storage-contract.ts';
import type { WorkerReply } from './storage-worker.ts';

/** Mocha's globals, as web-test-runner provides them. */
const { describe, it, after } = globalThis as unknown as {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>): void;
  after(fn: () => Promise<void>): void;
};

const run = `dynamesh-test-${Date.now()}`;
const names: string[] = [];

/** A database name no other test has used. */
function freshName(): string {
  const name = `${run}-${names.length}`;
  names.push(name);
  return name;
}

let lastName: string | undefined;

storageContract(
  'IndexedDB',
  {
    async open(): Promise<IndexedDbStorage> {
      lastName = freshName();
      return openIndexedDbStorage(lastName);
    },
    async reopen(): Promise<IndexedDbStorage> {
      if (lastName === undefined) throw new Error('nothing was opened');
      return openIndexedDbStorage(lastName);
    },
  },
  { describe, it },
);

describe('IndexedDB pipelined writes', () => {
  const write = (value: string) => ({
    node: 'n',
    timestamp: 1,
    context: [],
    value: new TextEncoder().encode(value),
    ifMatch: false,
    bounds: { maxSiblings: 32, maxSiblingSetBytes: 1 << 22 },
  });

  it('shows a write before its commit, with what it commits, once its counter is reserved durably', async () => {
    const storage = await openIndexedDbStorage(freshName());
    try {
      const key = new TextEncoder().encode('k');
      const first: unknown[] = [];
      // Nothing is reserved yet when the database is new: the first write is shown only as it commits.
      await storage.write(key, 1, write('a'), { onComputed: (r) => first.push(r) });
      expect(first).to.deep.equal([]);
      let early: unknown;
      let settled = false;
      const pending = storage.write(key, 1, write('b'), {
        onComputed: (r) => {
          early = r;
          expect(settled).to.equal(false);
        },
      });
      void pending.then(() => (settled = true));
      const result = await pending;
      expect(early).to.deep.equal(result);
    } finally {
      await storage.close();
    }
  });

  it('merges a write into the siblings stored before a reopen, whether or not its key filter is filled yet', async () => {
    const name = freshName();
    const first = await openIndexedDbStorage(name);
    const keys = Array.from({ length: 5000 }, (_, i) => new TextEncoder().encode(`key-${i}`));
    await Promise.all(keys.map((k) => first.write(k, 1, write('old'))));
    await first.close();
    const again = await openIndexedDbStorage(name);
    try {
      // At once (the filter is still being filled), and again later (filled): each write finds the stored sibling.
      const early = await again.write(keys[4999]!, 1, write('new'));
      expect(early.siblings).to.have.length(2);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const late = await Promise.all(keys.slice(0, 100).map((k) => again.write(k, 1, write('new'))));
      for (const result of late) expect(result.siblings).to.have.length(2);
      const fresh = await again.write(new TextEncoder().encode('never-written'), 1, write('x'));
      expect(fresh.siblings).to.have.length(1);
    } finally {
      await again.close();
    }
  });

  it('never issues a counter twice across a reopen, even one only shown before its commit', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    const key = new TextEncoder().encode('k');
    const counters: number[] = [];
    for (let i = 0; i < 5; i++) counters.push((await storage.write(key, 1, write(`v${i}`))).version.dot.counter);
    await storage.close();
    const again = await openIndexedDbStorage(name);
    try {
      const next = (await again.write(key, 1, write('after'))).version.dot.counter;
      expect(next).to.be.above(Math.max(...counters));
    } finally {
      await again.close();
    }
  });
});

describe('IndexedDB storage failures', () => {
  it('turns an IndexedDB failure into ERR_STORAGE with the original as cause, storing nothing', async () => {
    const storage = await openIndexedDbStorage(freshName());
    try {
      const key = new TextEncoder().encode('k');
      // A function cannot be structured-cloned, so IndexedDB refuses the put.
      const bad: Version = {
        dot: { node: 'a', counter: 1, timestamp: (() => 1) as unknown as number },
        context: [],
        value: null,
      };
      let error: unknown;
      try {
        await storage.apply(key, 1, [bad]);
      } catch (e) {
        error = e;
      }
      expect(hasErrorCode(error, 'ERR_STORAGE')).to.equal(true);
      expect((error as Error).cause).to.have.property('name', 'DataCloneError');
      expect(await storage.get(key)).to.deep.equal([]);
      expect(await storage.stats()).to.deep.equal({ keys: 0, bytes: 0, hints: 0 });
    } finally {
      await storage.close();
    }
  });

  it('closes itself when another connection deletes its database, and then rejects with ERR_CLOSED', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    await deleteDB(name);
    let error: unknown;
    try {
      await storage.get(new Uint8Array([1]));
    } catch (e) {
      error = e;
    }
    expect(hasErrorCode(error, 'ERR_CLOSED')).to.equal(true);
  });
});

describe('IndexedDB storage in a dedicated module worker', () => {
  it('writes and reads back inside the worker, and the page then reads what it wrote', async () => {
    const name = freshName();
    const worker = new Worker(new URL('./storage-worker.ts', import.meta.url), { type: 'module' });
    try {
      const reply = await new Promise<WorkerReply>((resolve, reject) => {
        worker.addEventListener('message', (event: MessageEvent<WorkerReply>) => resolve(event.data));
        worker.addEventListener('error', (event) => reject(new Error(`worker failed: ${event.message}`)));
        worker.postMessage({ name });
      });
      expect(reply.error).to.equal(undefined);
      expect(reply.values).to.deep.equal(['from the worker']);
      expect(reply.staleRejected).to.equal(true);
      const storage = await openIndexedDbStorage(name);
      try {
        const [stored] = await storage.get(new TextEncoder().encode('worker-key'));
        expect(stored!.dot).to.include({ node: 'w', counter: reply.counter });
        expect(new TextDecoder().decode(stored!.value!)).to.equal('from the worker');
      } finally {
        await storage.close();
      }
    } finally {
      worker.terminate();
    }
  });
});

after(async () => {
  await Promise.all(names.map((name) => deleteDB(name)));
});
