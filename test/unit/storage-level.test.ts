import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasErrorCode } from '../../worker/errors.ts';
import { type LevelStorage, openLevelStorage } from '../../worker/storage/level.ts';
import { storageContract } from '../storage-contract.ts';

const root = await mkdtemp(join(tmpdir(), 'dynamesh-level-'));
after(() => rm(root, { recursive: true, force: true }));

let made = 0;
let lastDirectory: string | undefined;

function freshDirectory(): string {
  return join(root, String(made++));
}

storageContract(
  'LevelDB',
  {
    async open(): Promise<LevelStorage> {
      lastDirectory = freshDirectory();
      return openLevelStorage(lastDirectory);
    },
    async reopen(): Promise<LevelStorage> {
      if (lastDirectory === undefined) throw new Error('nothing was opened');
      return openLevelStorage(lastDirectory);
    },
  },
  { describe, it },
);

describe('LevelStorage', () => {
  const text = new TextEncoder();
  const version = (node: string, counter: number, value: string) => ({
    dot: { node, counter, timestamp: counter },
    context: [],
    value: text.encode(value),
  });

  it('refuses a directory that another open storage holds, with ERR_STORAGE', async () => {
    const directory = freshDirectory();
    const first = await openLevelStorage(directory);
    try {
      await assert.rejects(openLevelStorage(directory), (error: unknown) => {
        assert.ok(hasErrorCode(error, 'ERR_STORAGE'));
        assert.match(String((error as Error).message), /in use by another process/);
        return true;
      });
    } finally {
      await first.close();
    }
  });

  it('keeps every write that settled before close, from many calls sharing batches', async () => {
    const directory = freshDirectory();
    const storage = await openLevelStorage(directory);
    const writes = [];
    for (let i = 0; i < 300; i++)
      writes.push(storage.apply(text.encode(`k${i}`), i % 7, [version('a', i + 1, `v${i}`)]));
    await Promise.all(writes);
    await storage.close();
    const again = await openLevelStorage(directory);
    try {
      assert.equal((await again.stats()).keys, 300);
      const [stored] = await again.get(text.encode('k299'));
      assert.equal(new TextDecoder().decode(stored!.value!), 'v299');
      // Keys 5, 12, …, 299 fall in partition 5.
      assert.equal((await again.scanPartition(5)).length, 43);
    } finally {
      await again.close();
    }
  });

  it('shows a local write before its batch is written only under a counter reserved on disk', async () => {
    const storage = await openLevelStorage(freshDirectory());
    try {
      const shown: number[] = [];
      const write = (value: string) =>
        storage.write(
          text.encode('k'),
          1,
          { node: 'me', timestamp: 1, context: [], value: text.encode(value), ifMatch: false },
          { onComputed: (result) => shown.push(result.version.dot.counter) },
        );
      const first = await write('one');
      const second = await write('two');
      // The first write raised the reservation in its own batch; the second found it on disk.
      assert.deepEqual(shown, [second.version.dot.counter]);
      assert.ok(first.version.dot.counter < second.version.dot.counter);
    } finally {
      await storage.close();
    }
  });
});
