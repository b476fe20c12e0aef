import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { storageContract } from '../storage-contract.ts';

let last: MemoryStorage | undefined;

storageContract(
  'memory',
  {
    async open() {
      last = new MemoryStorage();
      return last;
    },
    async reopen() {
      if (last === undefined) throw new Error('nothing was opened');
      return last.reopen();
    },
  },
  { describe, it },
);

describe('MemoryStorage.apply', () => {
  const text = new TextEncoder();
  const version = (node: string, counter: number, value: string) => ({
    dot: { node, counter, timestamp: counter },
    context: [],
    value: text.encode(value),
  });

  it('answers the siblings as they were after its merge, however late they are read', async () => {
    const storage = new MemoryStorage();
    const key = text.encode('k');
    const first = await storage.apply(key, 1, [version('a', 1, 'one')]);
    await storage.apply(key, 1, [{ ...version('b', 1, 'two'), context: [{ node: 'a', counter: 1, timestamp: 1 }] }]);
    assert.deepEqual(
      first.siblings.map((v) => v.dot.node),
      ['a'],
    );
    assert.deepEqual(
      (await storage.get(key)).map((v) => v.dot.node),
      ['b'],
    );
  });

  it('answers siblings whose values are copies of the stored ones', async () => {
    const storage = new MemoryStorage();
    const key = text.encode('k');
    const result = await storage.apply(key, 1, [version('a', 1, 'one')]);
    result.siblings[0]!.value!.fill(0x21);
    assert.equal(new TextDecoder().decode((await storage.get(key))[0]!.value!), 'one');
  });
});
