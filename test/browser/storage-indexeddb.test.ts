import { expect } from 'chai';
import { deleteDB, openDB } from 'idb';
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

/** Records in `store` of database `name`, counted on a connection of its own. */
async function countIn(name: string, store: 'keys' | 'log'): Promise<number> {
  const db = await openDB(name);
  try {
    return await db.count(store);
  } finally {
    db.close();
  }
}

/** Resolves once the engine has compacted its whole log into the `keys` store (it does when writes pause). */
async function compacted(name: string): Promise<void> {
  for (let tries = 0; (await countIn(name, 'log')) > 0; tries++) {
    if (tries > 100) throw new Error('the log was not compacted within 5 s of the writes');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

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
    // In the `keys` store, where the filter is filled from (what is still logged at a reopen is replayed instead).
    await compacted(name);
    await first.close();
    const again = await openIndexedDbStorage(name);
    try {
      // At once (the filter is still being filled), and again later (filled): each write finds the stored sibling.
      const early = await again.write(keys[4999]!, 1, write('new'));
      expect(early.siblings).to.have.length(2);
      expect(await again.filterFilled()).to.equal(true);
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
  // A function can be neither structured-cloned nor encoded, so storing it fails.
  const bad: Version = {
    dot: { node: 'a', counter: 1, timestamp: (() => 1) as unknown as number },
    context: [],
    value: null,
  };
  const caught = (promise: Promise<unknown>): Promise<unknown> =>
    promise.then(
      () => undefined,
      (e: unknown) => e,
    );

  it('turns an IndexedDB failure into ERR_STORAGE with the original as cause, storing nothing', async () => {
    const storage = await openIndexedDbStorage(freshName());
    try {
      const key = new TextEncoder().encode('k');
      const error = await caught(storage.putHint({ target: 't', key, partition: 1, siblings: [bad] }));
      expect(hasErrorCode(error, 'ERR_STORAGE')).to.equal(true);
      expect((error as Error).cause).to.have.property('name', 'DataCloneError');
      expect(await storage.hintsFor(key)).to.deep.equal([]);
      expect(await storage.stats()).to.deep.equal({ keys: 0, bytes: 0, hints: 0 });
    } finally {
      await storage.close();
    }
  });

  it('fails a write the log cannot encode with ERR_STORAGE, alone: the writes committed beside it are stored', async () => {
    const storage = await openIndexedDbStorage(freshName());
    try {
      const [badKey, goodKey] = [new TextEncoder().encode('bad'), new TextEncoder().encode('good')];
      const good: Version = { dot: { node: 'a', counter: 2, timestamp: 1 }, context: [], value: null };
      const [error, result] = await Promise.all([
        caught(storage.apply(badKey, 1, [bad])),
        storage.apply(goodKey, 1, [good]),
      ]);
      expect(hasErrorCode(error, 'ERR_STORAGE')).to.equal(true);
      expect(result.changed).to.equal(true);
      expect(await storage.get(badKey)).to.deep.equal([]);
      expect(await storage.get(goodKey)).to.deep.equal([good]);
      expect((await storage.stats()).keys).to.equal(1);
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

describe('IndexedDB write-ahead log', () => {
  const encode = (s: string): Uint8Array => new TextEncoder().encode(s);
  const decode = (b: Uint8Array | null): string => (b === null ? '(tombstone)' : new TextDecoder().decode(b));
  const write = (value: string) => ({ node: 'n', timestamp: 1, context: [], value: encode(value), ifMatch: false });
  /** Version `counter` of node n, over every earlier one of n. */
  const version = (counter: number) => ({
    dot: { node: 'n', counter: counter + 1, timestamp: 1 },
    context: counter === 0 ? [] : [{ node: 'n', counter, timestamp: 1 }],
    value: encode(`v${counter}`),
  });
  /** Every key of partition `p` with its values, scanned in pages of `size`. */
  async function scanAll(storage: IndexedDbStorage, p: number, size: number): Promise<string[]> {
    const out: string[] = [];
    let after: Uint8Array | undefined;
    for (;;) {
      const page = await storage.scanPartition(p, after === undefined ? { limit: size } : { after, limit: size });
      if (page.length === 0) return out;
      for (const k of page) out.push(`${decode(k.key)}=${k.siblings.map((v) => decode(v.value)).join('|')}`);
      after = page[page.length - 1]!.key;
    }
  }

  it('logs a batch of writes as one record, then compacts it into the keys store once writes pause', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    try {
      const keys = Array.from({ length: 200 }, (_, i) => encode(`key-${i}`));
      await Promise.all(keys.map((k) => storage.write(k, 1, write('v'))));
      expect(await countIn(name, 'log')).to.be.within(1, 3);
      await compacted(name);
      expect(await countIn(name, 'keys')).to.equal(200);
      expect((await storage.get(keys[7]!)).map((v) => decode(v.value))).to.deep.equal(['v']);
      expect((await storage.stats()).keys).to.equal(200);
    } finally {
      await storage.close();
    }
  });

  it('replays what was logged and not compacted when the database is opened again', async () => {
    const name = freshName();
    const first = await openIndexedDbStorage(name);
    const kept = encode('kept');
    const removed = encode('removed');
    await first.write(kept, 4, write('a'));
    const stored = await first.write(removed, 4, write('b'));
    await compacted(name);
    // Logged, not compacted: a new sibling of one key and the removal of the other.
    await first.write(kept, 4, write('c'));
    await first.deleteIfUnchanged(removed, stored.siblings);
    expect(await countIn(name, 'log')).to.be.above(0);
    await first.close();
    const again = await openIndexedDbStorage(name);
    try {
      expect((await again.get(kept)).map((v) => decode(v.value)).sort()).to.deep.equal(['a', 'c']);
      expect(await again.get(removed)).to.deep.equal([]);
      expect(await scanAll(again, 4, 10)).to.deep.equal(['kept=a|c']);
      expect(await again.partitionsWithData()).to.deep.equal([4]);
      expect((await again.stats()).keys).to.equal(1);
      await compacted(name);
      expect(await countIn(name, 'keys')).to.equal(1);
      expect(await scanAll(again, 4, 10)).to.deep.equal(['kept=a|c']);
    } finally {
      await again.close();
    }
  });

  it('scans every key of a partition once while compaction copies it, in key order', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    try {
      const expected = Array.from({ length: 2000 }, (_, i) => `key-${String(i).padStart(4, '0')}=v`);
      await Promise.all(expected.map((e) => storage.write(encode(e.slice(0, 8)), 2, write('v'))));
      // Scanned again and again in small pages from the moment writes pause, which is when compaction starts.
      let rounds = 0;
      while ((await countIn(name, 'log')) > 0 || rounds === 0) {
        expect(await scanAll(storage, 2, 37)).to.deep.equal(expected);
        rounds++;
      }
      expect(await scanAll(storage, 2, 37)).to.deep.equal(expected);
    } finally {
      await storage.close();
    }
  });

  it('keeps the log bounded while writes keep coming to a few keys, with no pause to compact in', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    try {
      const hot = [encode('a'), encode('b'), encode('c')];
      // A commit each, one after another: a record each, of the same three keys, and never 200 ms without a write.
      for (let i = 0; i < 1200; i++) await storage.apply(hot[i % 3]!, 1, [version(i)]);
      const records = await countIn(name, 'log');
      expect(records).to.be.at.most(1024 + 1);
      expect((await storage.get(hot[0]!)).map((v) => v.dot.counter)).to.deep.equal([1198]);
    } finally {
      await storage.close();
    }
  });

  it('lists a partition whose every key was removed since the last compaction as holding no data', async () => {
    const name = freshName();
    const storage = await openIndexedDbStorage(name);
    try {
      const key = encode('only');
      const { siblings } = await storage.write(key, 9, write('v'));
      await compacted(name);
      expect(await storage.partitionsWithData()).to.deep.equal([9]);
      await storage.deleteIfUnchanged(key, siblings);
      expect(await storage.partitionsWithData()).to.deep.equal([]);
    } finally {
      await storage.close();
    }
  });
});
