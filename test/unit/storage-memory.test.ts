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

describe('MemoryStorage meta records', () => {
  /** What getMeta answers for `value` put under a name. */
  async function roundTrip(value: unknown): Promise<unknown> {
    const storage = new MemoryStorage();
    await storage.putMeta('m', value);
    return storage.getMeta('m');
  }

  it('answers what structuredClone makes of plain data, copied by hand', async () => {
    const values: unknown[] = [
      { current: [{ id: 'n1', domain: 'd1' }], savedAt: 12.5, earlier: [{ members: [], replacedAt: -0 }] },
      [
        [3, 'x'],
        [NaN, null],
        [undefined, true],
      ],
      { nested: { deeper: { deepest: [Infinity, -Infinity, 2 ** 60, 'z'] } }, empty: {}, none: [] },
    ];
    for (const value of values) assert.deepStrictEqual(await roundTrip(value), structuredClone(value));
  });

  it('answers what structuredClone makes of anything else: holes, extra fields, instances, maps, bytes', async () => {
    const sparse: number[] = [];
    sparse[0] = 1;
    sparse[2] = 3;
    const tagged = Object.assign([1, 2], { tag: 'kept' });
    class Placement {
      constructor(readonly salt: string) {}
    }
    const own = JSON.parse('{"__proto__": {"x": 1}, "y": 2}') as unknown;
    const values: unknown[] = [
      sparse,
      tagged,
      new Placement('s'),
      { at: new Date(5), map: new Map([[1, 'a']]), set: new Set([2]), bytes: Uint8Array.of(1, 2) },
      { count: 10n },
      Object.assign(Object.create(null) as object, { bare: 1 }),
      own,
    ];
    for (const value of values) assert.deepStrictEqual(await roundTrip(value), structuredClone(value));
  });

  it('answers a copy of data frozen all the way down, which it may keep uncopied', async () => {
    const members = Object.freeze([
      Object.freeze({ id: 'n1', domain: 'd1' }),
      Object.freeze({ id: 'n2', domain: 'd2' }),
    ]);
    const record = { current: members, savedAt: 3, earlier: [] };
    const answer = (await roundTrip(record)) as typeof record;
    assert.deepStrictEqual(answer, structuredClone(record));
    assert.equal(Object.isFrozen(answer.current), false);
    assert.equal(Object.isFrozen(answer.current[0]), false);
  });

  it('copies a frozen record that holds something not frozen, so that changing that later changes nothing stored', async () => {
    const storage = new MemoryStorage();
    const inner = { id: 'n1', domain: 'd1' };
    await storage.putMeta('m', Object.freeze({ current: Object.freeze([inner]) }));
    inner.id = 'changed';
    assert.deepStrictEqual(await storage.getMeta('m'), { current: [{ id: 'n1', domain: 'd1' }] });
  });

  it('keeps shared and cyclic references, as structuredClone does', async () => {
    const shared = { id: 'n1' };
    const cyclic: { self?: unknown; list: unknown[] } = { list: [] };
    cyclic.self = cyclic;
    cyclic.list.push(cyclic);
    const sharing = (await roundTrip({ a: shared, b: [shared] })) as { a: object; b: object[] };
    assert.equal(sharing.a, sharing.b[0]);
    assert.notEqual(sharing.a, shared);
    const copy = (await roundTrip(cyclic)) as typeof cyclic;
    assert.equal(copy.self, copy);
    assert.equal(copy.list[0], copy);
  });
});
