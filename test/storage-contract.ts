/**
 * The storage contract suite, written once and run against every engine (Voldemort's `AbstractStoreTest`): the
 * memory engine under Node's test runner, the IndexedDB engine in Chromium under web-test-runner. It takes the
 * runner's `describe`/`it` and asserts with chai, which runs in both places.
 */
import { assert, expect } from 'chai';
import type { ErrorCode } from '../worker/errors.ts';
import { hasErrorCode } from '../worker/errors.ts';
import type { Hint, LocalWrite, Storage, StoredKey } from '../worker/storage/storage.ts';
import { type ClockEntry, MAX_COUNTER } from '../worker/versions/vclock.ts';
import type { Version } from '../worker/versions/version.ts';

/** The part of a test runner the suite needs: node:test and mocha both fit. */
export interface TestApi {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void>): unknown;
}

/** How the suite gets storages. */
export interface StorageFactory {
  /** A new, empty storage. */
  open(): Promise<Storage>;
  /** The storage that `open` returned last, opened again after it was closed; absent when nothing persists. */
  reopen?(): Promise<Storage>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function clock(entries: Record<string, number>): ClockEntry[] {
  return Object.keys(entries)
    .sort()
    .map((node) => ({ node, counter: entries[node]!, timestamp: 1000 + entries[node]! }));
}

/** A version written by `node` as its `counter`th write, having read `context`. */
function version(
  node: string,
  counter: number,
  context: Record<string, number> = {},
  value: string | null = `${node}${counter}`,
): Version {
  return {
    dot: { node, counter, timestamp: 1000 + counter },
    context: clock(context),
    value: value === null ? null : bytes(value),
  };
}

/** Siblings as sortable text, `node:counter=value`, so that assertions read as the versions they expect. */
function show(siblings: readonly Version[]): string[] {
  return siblings
    .map((v) => `${v.dot.node}:${v.dot.counter}=${v.value === null ? '<tombstone>' : decoder.decode(v.value)}`)
    .sort();
}

function localWrite(node: string, value: string | null, context: Record<string, number> = {}, ifMatch = false) {
  return {
    node,
    timestamp: 5000,
    context: clock(context),
    value: value === null ? null : bytes(value),
    ifMatch,
  } satisfies LocalWrite;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length && i < b.length; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

function hex(key: Uint8Array): string {
  return [...key].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function showHints(hints: readonly Hint[]): string[] {
  return hints.map((h) => `${h.target}/${hex(h.key)}@${h.partition} ${show(h.siblings).join(' ')}`);
}

async function rejectsWithCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  let error: unknown = undefined;
  let rejected = false;
  try {
    await promise;
  } catch (e) {
    rejected = true;
    error = e;
  }
  assert.isTrue(rejected, `expected a rejection with ${code}`);
  assert.isTrue(hasErrorCode(error, code), `expected ${code}, got ${String(error)}`);
}

/** Registers the contract suite for the engine `name`. */
export function storageContract(name: string, factory: StorageFactory, { describe, it }: TestApi): void {
  /** Runs `body` on a fresh storage and closes it afterwards, whatever happens. */
  function test(title: string, body: (storage: Storage) => Promise<void>): void {
    it(title, async () => {
      const storage = await factory.open();
      try {
        await body(storage);
      } finally {
        await storage.close();
      }
    });
  }

  describe(`${name} storage contract`, () => {
    describe('get and apply', () => {
      test('returns no siblings for a key never stored', async (s) => {
        expect(await s.get(bytes('absent'))).to.deep.equal([]);
      });

      test('stores applied versions and returns them from get', async (s) => {
        const result = await s.apply(bytes('k'), 1, [version('a', 1)]);
        expect(result.changed).to.equal(true);
        expect(show(result.siblings)).to.deep.equal(['a:1=a1']);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=a1']);
      });

      test('returns versions with their dot, context and value intact', async (s) => {
        const v = version('b', 7, { a: 3, c: 2 }, 'hello');
        await s.apply(bytes('k'), 1, [v]);
        const [stored] = await s.get(bytes('k'));
        expect(stored!.dot).to.deep.equal(v.dot);
        expect(stored!.context).to.deep.equal(v.context);
        expect([...stored!.value!]).to.deep.equal([...v.value!]);
      });

      test('reports no change when applying a version already stored', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1)]);
        const again = await s.apply(bytes('k'), 1, [version('a', 1)]);
        expect(again.changed).to.equal(false);
        expect(show(again.siblings)).to.deep.equal(['a:1=a1']);
      });

      test('reports no change when applying a version a stored one supersedes', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 2, { a: 1 })]);
        const stale = await s.apply(bytes('k'), 1, [version('a', 1)]);
        expect(stale.changed).to.equal(false);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:2=a2']);
      });

      test('replaces a stored sibling that an applied version supersedes', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1), version('b', 1)]);
        const result = await s.apply(bytes('k'), 1, [version('c', 1, { a: 1 })]);
        expect(result.changed).to.equal(true);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['b:1=b1', 'c:1=c1']);
      });

      test('keeps concurrent versions as siblings', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1)]);
        await s.apply(bytes('k'), 1, [version('b', 1)]);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=a1', 'b:1=b1']);
      });

      test('stores a tombstone that supersedes a value and returns it', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1)]);
        await s.apply(bytes('k'), 1, [version('a', 2, { a: 1 }, null)]);
        const siblings = await s.get(bytes('k'));
        expect(show(siblings)).to.deep.equal(['a:2=<tombstone>']);
        expect(siblings[0]!.value).to.equal(null);
      });

      test('keeps the version it holds under a dot when another comes under it', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1, {}, 'planted')]);
        const result = await s.apply(bytes('k'), 1, [version('a', 1, {}, 'real')]);
        expect(result.changed).to.equal(false);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=planted']);
      });

      test('replaces another version under the dot of the fresh version its coordinator ships', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1, {}, 'planted'), version('b', 1)]);
        const real = version('a', 1, {}, 'real');
        const result = await s.apply(bytes('k'), 1, [real, version('b', 1)], { fresh: real });
        expect(result.changed).to.equal(true);
        expect(show(result.siblings)).to.deep.equal(['a:1=real', 'b:1=b1']);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=real', 'b:1=b1']);
        const again = await s.apply(bytes('k'), 1, [real], { fresh: real });
        expect(again.changed).to.equal(false);
      });

      test('takes a fresh version as plain when its node had a later one taken as fresh', async (s) => {
        await s.apply(bytes('k1'), 1, [version('a', 2, {}, 'second')], { fresh: version('a', 2, {}, 'second') });
        const rewrite = version('a', 1, {}, 'rewritten');
        await s.apply(bytes('k2'), 1, [version('a', 1, {}, 'acknowledged')]);
        const result = await s.apply(bytes('k2'), 1, [rewrite], { fresh: rewrite });
        expect(result.changed).to.equal(false);
        expect(show(await s.get(bytes('k2')))).to.deep.equal(['a:1=acknowledged']);
      });

      test('takes fresh versions of one node in concurrent applies only above the highest taken', async (s) => {
        const ten = version('a', 10, {}, 'ten');
        const nine = version('a', 9, {}, 'rewritten');
        await s.apply(bytes('k'), 1, [version('a', 9, {}, 'acknowledged')]);
        await Promise.all([
          s.apply(bytes('j'), 1, [ten], { fresh: ten }),
          s.apply(bytes('k'), 1, [nine], { fresh: nine }),
        ]);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:9=acknowledged']);
      });

      test('keeps keys apart from each other', async (s) => {
        await s.apply(bytes('k1'), 1, [version('a', 1)]);
        await s.apply(bytes('k2'), 1, [version('b', 1)]);
        expect(show(await s.get(bytes('k1')))).to.deep.equal(['a:1=a1']);
        expect(show(await s.get(bytes('k2')))).to.deep.equal(['b:1=b1']);
      });

      test('keeps every version when applies to one key run concurrently', async (s) => {
        const nodes = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, '0')}`);
        await Promise.all(nodes.map((n) => s.apply(bytes('k'), 1, [version(n, 1)])));
        expect(show(await s.get(bytes('k')))).to.deep.equal(nodes.map((n) => `${n}:1=${n}1`));
      });
    });

    describe('applyMany', () => {
      /** Seeds a storage with keys that the batch below adds to, supersedes and repeats. */
      async function seed(s: Storage): Promise<void> {
        await s.apply(bytes('old'), 3, [version('a', 1, {}, 'x'.repeat(400)), version('b', 1)]);
        await s.apply(bytes('same'), 3, [version('c', 2, { c: 1 })]);
      }

      const batch = () => [
        { key: bytes('new'), versions: [version('a', 1)] },
        { key: bytes('old'), versions: [version('d', 1, { a: 1 }, 'y')] },
        { key: bytes('same'), versions: [version('c', 1)] },
        { key: bytes('new'), versions: [version('e', 1), version('a', 1)] },
      ];

      const shown = (results: readonly { siblings: Version[]; changed: boolean }[]) =>
        results.map((r) => ({ changed: r.changed, siblings: show(r.siblings) }));

      test('merges a batch exactly as applying its entries one by one would', async (s) => {
        const single = await factory.open();
        try {
          await seed(s);
          await seed(single);
          const many = await s.applyMany(3, batch());
          const one: { siblings: Version[]; changed: boolean }[] = [];
          for (const e of batch()) one.push(await single.apply(e.key, 3, e.versions));
          expect(shown(many)).to.deep.equal(shown(one));
          expect(await s.stats()).to.deep.equal(await single.stats());
          const scan = async (x: Storage) => (await x.scanPartition(3)).map((k) => `${hex(k.key)} ${show(k.siblings)}`);
          expect(await scan(s)).to.deep.equal(await scan(single));
        } finally {
          await single.close();
        }
      });

      test('reports no change for an entry whose versions are already stored or superseded', async (s) => {
        await seed(s);
        const results = await s.applyMany(3, [
          { key: bytes('same'), versions: [version('c', 1)] },
          { key: bytes('old'), versions: [version('b', 1)] },
          { key: bytes('new'), versions: [version('a', 1)] },
        ]);
        expect(results.map((r) => r.changed)).to.deep.equal([false, false, true]);
        expect(show(results[0]!.siblings)).to.deep.equal(['c:2=c2']);
      });

      test('makes every key of the batch visible to a scan of its partition', async (s) => {
        const keys = ['p', 'q', 'r', 's'].map(bytes);
        await s.applyMany(
          9,
          keys.map((key, i) => ({ key, versions: [version('a', i + 1)] })),
        );
        expect((await s.scanPartition(9)).map((k) => hex(k.key))).to.deep.equal(keys.map(hex));
        expect(await s.partitionsWithData()).to.deep.equal([9]);
      });

      test('counts each new key of the batch once, with its bytes', async (s) => {
        await s.apply(bytes('before'), 2, [version('z', 1)]);
        const before = await s.stats();
        await s.applyMany(2, [
          { key: bytes('k1'), versions: [version('a', 1, {}, 'x'.repeat(700))] },
          { key: bytes('k2'), versions: [version('b', 1, {}, null)] },
          { key: bytes('k1'), versions: [version('c', 1, {}, 'x'.repeat(300))] },
          { key: bytes('before'), versions: [version('z', 1)] },
        ]);
        const after = await s.stats();
        expect(after.keys).to.equal(before.keys + 2);
        expect(after.bytes - before.bytes).to.be.at.least(700 + 300 + 2 + 2);
        expect(after.hints).to.equal(0);
      });

      test('shows each merge of the batch to a later get', async (s) => {
        await seed(s);
        await s.applyMany(3, batch());
        expect(show(await s.get(bytes('new')))).to.deep.equal(['a:1=a1', 'e:1=e1']);
        expect(show(await s.get(bytes('old')))).to.deep.equal(['b:1=b1', 'd:1=y']);
        expect(show(await s.get(bytes('same')))).to.deep.equal(['c:2=c2']);
      });

      test('answers no results for no entries and changes nothing', async (s) => {
        await seed(s);
        const before = await s.stats();
        expect(await s.applyMany(3, [])).to.deep.equal([]);
        expect(await s.stats()).to.deep.equal(before);
      });

      test("keeps stored data unchanged when the caller's arrays change after applyMany", async (s) => {
        const key = bytes('k');
        const value = bytes('value');
        const pending = s.applyMany(1, [{ key, versions: [{ ...version('a', 1), value }] }]);
        key.fill(0x21);
        value.fill(0x21);
        await pending;
        expect(decoder.decode((await s.get(bytes('k')))[0]!.value!)).to.equal('value');
      });
    });

    describe('write', () => {
      test('creates a version with the next dot over the given context and value', async (s) => {
        const w = localWrite('n', 'v', { a: 2 });
        const result = await s.write(bytes('k'), 1, w);
        expect(result.version.dot.node).to.equal('n');
        expect(result.version.dot.timestamp).to.equal(w.timestamp);
        expect(result.version.context).to.deep.equal(w.context);
        expect(decoder.decode(result.version.value!)).to.equal('v');
        expect(show(result.siblings)).to.deep.equal(show([result.version]));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([result.version]));
      });

      test('draws increasing counters that are never reused', async (s) => {
        const counters: number[] = [];
        for (const key of ['k1', 'k2', 'k1', 'k3', 'k2']) {
          counters.push((await s.write(bytes(key), 1, localWrite('n', key))).version.dot.counter);
        }
        for (let i = 1; i < counters.length; i++) expect(counters[i]).to.be.greaterThan(counters[i - 1]!);
      });

      test('draws distinct counters for writes that run concurrently', async (s) => {
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => s.write(bytes('k'), 1, localWrite('n', `v${i}`))),
        );
        const counters = results.map((r) => r.version.dot.counter);
        expect(new Set(counters).size).to.equal(counters.length);
        expect(await s.get(bytes('k'))).to.have.length(10);
      });

      test('draws a counter above any the stored siblings hold for the node', async (s) => {
        await s.apply(bytes('k2'), 1, [version('m', 1, { n: 90 })]);
        const fromStored = await s.write(bytes('k2'), 1, localWrite('n', 'y'));
        expect(fromStored.version.dot.counter).to.be.greaterThan(90);
        expect(show(await s.get(bytes('k2')))).to.deep.equal(show([version('m', 1), fromStored.version]));
        // A context naming a counter the node issued (through a stored sibling) is a read's, and is accepted.
        const over = await s.write(bytes('k2'), 1, localWrite('n', 'z', { m: 1, n: fromStored.version.dot.counter }));
        expect(show(over.siblings)).to.deep.equal(show([over.version]));
      });

      test('refuses a context naming a counter of the node above what it issued, storing nothing', async (s) => {
        const first = await s.write(bytes('k1'), 1, localWrite('n', 'one'));
        const before = await s.stats();
        for (const counter of [first.version.dot.counter + 1, 41, 2 ** 40]) {
          await rejectsWithCode(s.write(bytes('k2'), 1, localWrite('n', 'x', { n: counter })), 'ERR_INVALID_ARGUMENT');
        }
        expect(await s.get(bytes('k2'))).to.deep.equal([]);
        expect(await s.stats()).to.deep.equal(before);
        // The counter is raised only by the node's own writes: the refusals used none.
        const next = await s.write(bytes('k1'), 1, localWrite('n', 'two', { n: first.version.dot.counter }));
        expect(next.version.dot.counter).to.equal(first.version.dot.counter + 1);
      });

      test('accepts a context naming a counter the node issued for another key', async (s) => {
        const first = await s.write(bytes('k1'), 1, localWrite('n', 'one'));
        const other = await s.write(bytes('k2'), 1, localWrite('n', 'two', { n: first.version.dot.counter }));
        expect(other.version.dot.counter).to.equal(first.version.dot.counter + 1);
      });

      test('refuses to draw a counter at MAX_COUNTER, storing nothing, so that another owner coordinates', async (s) => {
        await s.apply(bytes('k'), 1, [version('m', 1, { n: MAX_COUNTER - 1 })]);
        const before = await s.stats();
        await rejectsWithCode(s.write(bytes('k'), 1, localWrite('n', 'x')), 'ERR_NOT_RESPONSIBLE');
        expect(show(await s.get(bytes('k')))).to.deep.equal(['m:1=m1']);
        expect(await s.stats()).to.deep.equal(before);
        const elsewhere = await s.write(bytes('k2'), 1, localWrite('n', 'y'));
        expect(elsewhere.version.dot.counter).to.equal(1);
      });

      test('keeps two writes by one node over empty contexts as siblings', async (s) => {
        const first = await s.write(bytes('k'), 1, localWrite('n', 'one'));
        const second = await s.write(bytes('k'), 1, localWrite('n', 'two'));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([first.version, second.version]));
      });

      test('replaces the siblings its context covers', async (s) => {
        const first = await s.write(bytes('k'), 1, localWrite('n', 'one'));
        await s.apply(bytes('k'), 1, [version('b', 1)]);
        const second = await s.write(bytes('k'), 1, localWrite('n', 'two', { n: first.version.dot.counter }));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([version('b', 1), second.version]));
      });

      test('rejects a conditional write over a stale context with ERR_STALE_CONTEXT and stores nothing', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1), version('b', 1)]);
        const before = await s.stats();
        await rejectsWithCode(s.write(bytes('k'), 1, localWrite('n', 'x', { a: 1 }, true)), 'ERR_STALE_CONTEXT');
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=a1', 'b:1=b1']);
        expect(await s.stats()).to.deep.equal(before);
      });

      test('does not use up a counter on a conditional write that fails', async (s) => {
        const first = await s.write(bytes('k1'), 1, localWrite('n', 'one'));
        await s.apply(bytes('k2'), 1, [version('a', 1)]);
        await rejectsWithCode(s.write(bytes('k2'), 1, localWrite('n', 'x', {}, true)), 'ERR_STALE_CONTEXT');
        const next = await s.write(bytes('k1'), 1, localWrite('n', 'two'));
        expect(next.version.dot.counter).to.equal(first.version.dot.counter + 1);
      });

      test('accepts a conditional write whose context covers every sibling', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1), version('b', 3, { b: 2 })]);
        const result = await s.write(bytes('k'), 1, localWrite('n', 'x', { a: 1, b: 3 }, true));
        expect(show(result.siblings)).to.deep.equal(show([result.version]));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([result.version]));
      });

      test('accepts a conditional write to a key never stored', async (s) => {
        const result = await s.write(bytes('k'), 1, localWrite('n', 'x', {}, true));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([result.version]));
      });

      test('writes a tombstone when the value is null', async (s) => {
        const first = await s.write(bytes('k'), 1, localWrite('n', 'x'));
        await s.write(bytes('k'), 1, localWrite('n', null, { n: first.version.dot.counter }));
        const siblings = await s.get(bytes('k'));
        expect(siblings).to.have.length(1);
        expect(siblings[0]!.value).to.equal(null);
      });
    });

    describe('write with a counter drawn before', () => {
      const PROOF = Uint8Array.from({ length: 96 }, (_, i) => i);

      test('stores the version under the drawn counter, with its proof', async (s) => {
        const counter = await s.drawCounter();
        const result = await s.write(bytes('k'), 1, { ...localWrite('n', 'v'), counter, proof: PROOF });
        expect(result.version.dot.counter).to.equal(counter);
        const [stored] = await s.get(bytes('k'));
        expect(stored!.dot.counter).to.equal(counter);
        expect([...stored!.proof!]).to.deep.equal([...PROOF]);
      });

      test('draws counters above every counter issued, drawn or drawn by a write, and above `above`', async (s) => {
        const written = (await s.write(bytes('k1'), 1, localWrite('n', 'x'))).version.dot.counter;
        const drawn = await s.drawCounter();
        expect(drawn).to.be.greaterThan(written);
        const next = (await s.write(bytes('k2'), 1, localWrite('n', 'y'))).version.dot.counter;
        expect(next).to.be.greaterThan(drawn);
        expect(await s.drawCounter(next + 50)).to.equal(next + 51);
      });

      test('refuses a drawn counter the key already names for the node, storing nothing', async (s) => {
        await s.apply(bytes('k'), 1, [version('m', 1, { n: 90 })]);
        const counter = await s.drawCounter();
        let error: unknown;
        try {
          await s.write(bytes('k'), 1, { ...localWrite('n', 'v'), counter, proof: PROOF });
        } catch (e) {
          error = e;
        }
        expect((error as { name?: string } | undefined)?.name).to.equal('CounterTakenError');
        expect((error as { highest?: number }).highest).to.equal(90);
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([version('m', 1)]));
      });

      test('takes a signed copy of a version in place of the unsigned one under its dot, and keeps it', async (s) => {
        // An id of the form derived from a key: only such nodes sign.
        const signer = 'kAAAAAAAAAAAAAAAA';
        const plain = version(signer, 3);
        await s.apply(bytes('k'), 1, [plain]);
        const signed = { ...version(signer, 3, {}, 'other'), proof: PROOF };
        const applied = await s.apply(bytes('k'), 1, [signed]);
        expect(applied.changed).to.equal(true);
        expect(show(await s.get(bytes('k')))).to.deep.equal([`${signer}:3=other`]);
        expect((await s.apply(bytes('k'), 1, [plain])).changed).to.equal(false);
        expect((await s.get(bytes('k')))[0]!.proof).to.not.equal(undefined);
      });
    });

    describe('write within bounds', () => {
      const bounds = { maxSiblings: 3, maxSiblingSetBytes: 4096 };
      const bounded = (node: string, value: string, context: Record<string, number> = {}): LocalWrite => ({
        ...localWrite(node, value, context),
        bounds,
      });

      test('refuses a write that would leave more siblings than maxSiblings with ERR_TOO_MANY_SIBLINGS, storing nothing', async (s) => {
        for (const value of ['a', 'b', 'c']) await s.write(bytes('k'), 1, bounded('n', value));
        const before = await s.stats();
        let error: unknown;
        try {
          await s.write(bytes('k'), 1, bounded('n', 'd'));
        } catch (e) {
          error = e;
        }
        assert.isTrue(hasErrorCode(error, 'ERR_TOO_MANY_SIBLINGS'), String(error));
        expect(String((error as Error).message)).to.match(/4 siblings.*limit of 3.*context/);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['n:1=a', 'n:2=b', 'n:3=c']);
        expect(await s.stats()).to.deep.equal(before);
        // No counter was drawn for it.
        const next = await s.write(bytes('k2'), 1, bounded('n', 'e'));
        expect(next.version.dot.counter).to.equal(4);
      });

      test('counts tombstones as siblings', async (s) => {
        await s.write(bytes('k'), 1, bounded('n', 'a'));
        await s.write(bytes('k'), 1, { ...localWrite('n', null), bounds });
        await s.write(bytes('k'), 1, bounded('n', 'b'));
        await rejectsWithCode(s.write(bytes('k'), 1, { ...localWrite('n', null), bounds }), 'ERR_TOO_MANY_SIBLINGS');
      });

      test('checks the bound atomically: of concurrent blind writes, exactly maxSiblings are stored', async (s) => {
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => s.write(bytes('k'), 1, bounded('n', `v${i}`))),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(3);
        for (const r of results) {
          if (r.status === 'rejected') assert.isTrue(hasErrorCode(r.reason, 'ERR_TOO_MANY_SIBLINGS'));
        }
        expect(await s.get(bytes('k'))).to.have.length(3);
      });

      test('accepts a write whose context resolves a set over the bound, and one that does not grow it', async (s) => {
        // Merges of writes accepted by different coordinators can take a set past the bound.
        await s.apply(
          bytes('k'),
          1,
          ['a', 'b', 'c', 'd', 'e'].map((node) => version(node, 1)),
        );
        await rejectsWithCode(s.write(bytes('k'), 1, bounded('n', 'x')), 'ERR_TOO_MANY_SIBLINGS');
        const replaced = await s.write(bytes('k'), 1, bounded('n', 'y', { a: 1 }));
        expect(replaced.siblings).to.have.length(5);
        const resolved = await s.write(
          bytes('k'),
          1,
          bounded('n', 'z', { b: 1, c: 1, d: 1, e: 1, n: replaced.version.dot.counter }),
        );
        expect(show(resolved.siblings)).to.deep.equal(show([resolved.version]));
        expect(show(await s.get(bytes('k')))).to.deep.equal(show([resolved.version]));
      });

      test('refuses a write that would leave more bytes than maxSiblingSetBytes with ERR_TOO_LARGE, storing nothing', async (s) => {
        const big = 'x'.repeat(1500);
        await s.write(bytes('k'), 1, bounded('n', big));
        await s.write(bytes('k'), 1, bounded('n', big));
        const before = await s.stats();
        let error: unknown;
        try {
          await s.write(bytes('k'), 1, bounded('n', big));
        } catch (e) {
          error = e;
        }
        assert.isTrue(hasErrorCode(error, 'ERR_TOO_LARGE'), String(error));
        expect(String((error as Error).message)).to.match(/over the limit of 4096 bytes.*maxSiblingSetBytes.*context/);
        expect(await s.get(bytes('k'))).to.have.length(2);
        expect(await s.stats()).to.deep.equal(before);
        // A put with the context of a read shrinks the set, and is accepted.
        const resolved = await s.write(bytes('k'), 1, bounded('n', big, { n: 2 }));
        expect(resolved.siblings).to.have.length(1);
      });

      test('checks nothing without bounds', async (s) => {
        for (let i = 0; i < 5; i++) await s.write(bytes('k'), 1, localWrite('n', `v${i}`));
        expect(await s.get(bytes('k'))).to.have.length(5);
      });
    });

    describe('scanPartition', () => {
      const inPartition = [[0x02], [0x01, 0x00], [0x01], [0x80], [0x7f, 0xff], [0x01, 0xff, 0x00], [0xff]].map(
        (b) => new Uint8Array(b),
      );
      const sorted = [...inPartition].sort(compareBytes);

      async function fill(s: Storage): Promise<void> {
        for (const key of inPartition) await s.apply(key, 7, [version('a', 1)]);
        await s.apply(new Uint8Array([0x01, 0x01]), 6, [version('a', 1)]);
        await s.apply(new Uint8Array([0x00]), 8, [version('a', 1)]);
      }

      const keysOf = (found: readonly StoredKey[]) => found.map((k) => hex(k.key));

      test("returns only the partition's keys, in byte order, with their siblings", async (s) => {
        await fill(s);
        const found = await s.scanPartition(7);
        expect(keysOf(found)).to.deep.equal(sorted.map(hex));
        for (const k of found) {
          expect(k.partition).to.equal(7);
          expect(show(k.siblings)).to.deep.equal(['a:1=a1']);
        }
      });

      test('returns nothing for a partition with no keys', async (s) => {
        await fill(s);
        expect(await s.scanPartition(5)).to.deep.equal([]);
      });

      test('pages through the partition with after and limit', async (s) => {
        await fill(s);
        const pages: string[][] = [];
        let after: Uint8Array | undefined;
        for (;;) {
          const page = await s.scanPartition(7, after === undefined ? { limit: 3 } : { after, limit: 3 });
          if (page.length === 0) break;
          expect(page.length).to.be.at.most(3);
          pages.push(keysOf(page));
          after = page[page.length - 1]!.key;
        }
        expect(pages.flat()).to.deep.equal(sorted.map(hex));
        expect(pages).to.have.length(Math.ceil(sorted.length / 3));
      });

      test('starts after a key that is not stored', async (s) => {
        await fill(s);
        const found = await s.scanPartition(7, { after: new Uint8Array([0x01, 0x05]) });
        const expected = sorted.filter((k) => compareBytes(k, new Uint8Array([0x01, 0x05])) > 0);
        expect(keysOf(found)).to.deep.equal(expected.map(hex));
      });

      test('returns nothing for a limit of zero', async (s) => {
        await fill(s);
        expect(await s.scanPartition(7, { limit: 0 })).to.deep.equal([]);
      });
    });

    describe('hints', () => {
      test('stores a hint apart from the main store', async (s) => {
        await s.putHint({ target: 't', key: bytes('k'), partition: 3, siblings: [version('a', 1)] });
        expect(showHints(await s.listHints())).to.deep.equal([`t/${hex(bytes('k'))}@3 a:1=a1`]);
        expect(await s.get(bytes('k'))).to.deep.equal([]);
      });

      test('merges a hint put for the same target and key', async (s) => {
        const key = bytes('k');
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('a', 1)] });
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('a', 2, { a: 1 })] });
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('b', 1), version('a', 1)] });
        const hints = await s.hintsFor(key);
        expect(hints).to.have.length(1);
        expect(show(hints[0]!.siblings)).to.deep.equal(['a:2=a2', 'b:1=b1']);
      });

      test('returns every hint for a key whatever its target, and no other key', async (s) => {
        await s.putHint({ target: 't2', key: bytes('k'), partition: 3, siblings: [version('a', 1)] });
        await s.putHint({ target: 't1', key: bytes('k'), partition: 3, siblings: [version('b', 1)] });
        await s.putHint({ target: 't1', key: bytes('other'), partition: 4, siblings: [version('c', 1)] });
        const hints = await s.hintsFor(bytes('k'));
        expect(hints.map((h) => h.target).sort()).to.deep.equal(['t1', 't2']);
        for (const h of hints) expect(hex(h.key)).to.equal(hex(bytes('k')));
        expect(await s.hintsFor(bytes('none'))).to.deep.equal([]);
      });

      test('lists hints in target and key order, by target, up to a limit', async (s) => {
        const put = (target: string, key: number) =>
          s.putHint({ target, key: new Uint8Array([key]), partition: 1, siblings: [version('a', 1)] });
        for (const [target, key] of [
          ['n2', 3],
          ['n1', 0x90],
          ['n2', 1],
          ['n1', 2],
          ['n3', 0],
        ] as const) {
          await put(target, key);
        }
        const all = (await s.listHints()).map((h) => `${h.target}/${hex(h.key)}`);
        expect(all).to.deep.equal(['n1/02', 'n1/90', 'n2/01', 'n2/03', 'n3/00']);
        const n2 = (await s.listHints({ target: 'n2' })).map((h) => `${h.target}/${hex(h.key)}`);
        expect(n2).to.deep.equal(['n2/01', 'n2/03']);
        const firstTwo = (await s.listHints({ limit: 2 })).map((h) => `${h.target}/${hex(h.key)}`);
        expect(firstTwo).to.deep.equal(all.slice(0, 2));
        expect(await s.listHints({ target: 'n9' })).to.deep.equal([]);
      });

      test('names every node a hint is held for, in order, once each, and none once they are delivered', async (s) => {
        expect(await s.hintTargets()).to.deep.equal([]);
        for (const [target, key] of [
          ['n2', 'a'],
          ['n1', 'b'],
          ['n2', 'c'],
          ['n10', 'd'],
        ] as const) {
          await s.putHint({ target, key: bytes(key), partition: 3, siblings: [version('a', 1)] });
        }
        expect(await s.hintTargets()).to.deep.equal(['n1', 'n10', 'n2']);
        for (const { target, key, siblings } of await s.listHints({ target: 'n2' })) {
          await s.deleteHint(target, key, siblings);
        }
        expect(await s.hintTargets()).to.deep.equal(['n1', 'n10']);
      });

      test('counts the hints held for one node only', async (s) => {
        for (const [target, key] of [
          ['n1', 'a'],
          ['n1', 'b'],
          ['n10', 'c'],
          ['n', 'd'],
        ] as const) {
          await s.putHint({ target, key: bytes(key), partition: 3, siblings: [version('a', 1)] });
        }
        expect(await s.hintCount('n1')).to.equal(2);
        expect(await s.hintCount('n10')).to.equal(1);
        expect(await s.hintCount('n2')).to.equal(0);
      });

      test('keeps a hint whole when it gained versions after delivery began', async (s) => {
        const key = bytes('k');
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('a', 1)] });
        const delivered = (await s.hintsFor(key))[0]!.siblings;
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('b', 1)] });
        expect(await s.deleteHint('t', key, delivered)).to.equal(false);
        expect(show((await s.hintsFor(key))[0]!.siblings)).to.deep.equal(['a:1=a1', 'b:1=b1']);
      });

      test('removes hinted versions that a delivered version supersedes', async (s) => {
        const key = bytes('k');
        await s.putHint({ target: 't', key, partition: 3, siblings: [version('a', 1)] });
        expect(await s.deleteHint('t', key, [version('a', 2, { a: 1 })])).to.equal(true);
        expect(await s.hintsFor(key)).to.deep.equal([]);
      });

      test('deletes the hint once every version is delivered, leaving other targets', async (s) => {
        const key = bytes('k');
        await s.putHint({ target: 't1', key, partition: 3, siblings: [version('a', 1), version('b', 1)] });
        await s.putHint({ target: 't2', key, partition: 3, siblings: [version('a', 1)] });
        expect(await s.deleteHint('t1', key, [version('a', 1), version('b', 1)])).to.equal(true);
        expect((await s.hintsFor(key)).map((h) => h.target)).to.deep.equal(['t2']);
        expect((await s.stats()).hints).to.equal(1);
      });

      test('reports a hint that is not held as gone', async (s) => {
        expect(await s.deleteHint('t', bytes('k'), [version('a', 1)])).to.equal(true);
      });
    });

    describe('deleteIfUnchanged', () => {
      test('deletes a key whose siblings are unchanged since they were read', async (s) => {
        await s.apply(bytes('k'), 4, [version('a', 1), version('b', 1)]);
        const read = await s.get(bytes('k'));
        expect(await s.deleteIfUnchanged(bytes('k'), read)).to.equal(true);
        expect(await s.get(bytes('k'))).to.deep.equal([]);
        expect(await s.scanPartition(4)).to.deep.equal([]);
      });

      test('keeps a key that gained a version after its siblings were read', async (s) => {
        await s.apply(bytes('k'), 4, [version('a', 1)]);
        const read = await s.get(bytes('k'));
        await s.apply(bytes('k'), 4, [version('b', 1)]);
        expect(await s.deleteIfUnchanged(bytes('k'), read)).to.equal(false);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=a1', 'b:1=b1']);
      });

      test('keeps a key whose sibling was superseded after its siblings were read', async (s) => {
        await s.apply(bytes('k'), 4, [version('a', 1)]);
        const read = await s.get(bytes('k'));
        await s.apply(bytes('k'), 4, [version('a', 2, { a: 1 }, null)]);
        expect(await s.deleteIfUnchanged(bytes('k'), read)).to.equal(false);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:2=<tombstone>']);
      });

      test('keeps a key whose stored values are not the ones named with the same dots', async (s) => {
        await s.apply(bytes('live'), 4, [version('a', 1, {}, 'alive')]);
        await s.apply(bytes('other'), 4, [version('b', 1, {}, 'mine')]);
        // The same dots, named as tombstones or with other bytes: not what is stored.
        expect(await s.deleteIfUnchanged(bytes('live'), [version('a', 1, {}, null)])).to.equal(false);
        expect(await s.deleteIfUnchanged(bytes('other'), [version('b', 1, {}, 'mind')])).to.equal(false);
        expect(show(await s.get(bytes('live')))).to.deep.equal(['a:1=alive']);
        expect(show(await s.get(bytes('other')))).to.deep.equal(['b:1=mine']);
      });

      test('counts neither the key nor its bytes once it is deleted', async (s) => {
        await s.apply(bytes('kept'), 4, [version('a', 1, {}, 'small')]);
        const before = await s.stats();
        await s.apply(bytes('gone'), 5, [version('b', 1, {}, 'x'.repeat(2000)), version('c', 1)]);
        expect(await s.deleteIfUnchanged(bytes('gone'), await s.get(bytes('gone')))).to.equal(true);
        expect(await s.stats()).to.deep.equal(before);
      });

      test('counts a key again once it is stored after its deletion', async (s) => {
        await s.apply(bytes('k'), 4, [version('a', 1)]);
        const once = await s.stats();
        await s.deleteIfUnchanged(bytes('k'), await s.get(bytes('k')));
        await s.apply(bytes('k'), 4, [version('a', 1)]);
        expect(await s.stats()).to.deep.equal(once);
        expect(show(await s.get(bytes('k')))).to.deep.equal(['a:1=a1']);
      });

      test('reports a key that is not stored as gone, changing nothing', async (s) => {
        await s.apply(bytes('other'), 4, [version('a', 1)]);
        const before = await s.stats();
        expect(await s.deleteIfUnchanged(bytes('k'), [version('a', 1)])).to.equal(true);
        expect(await s.stats()).to.deep.equal(before);
        expect(show(await s.get(bytes('other')))).to.deep.equal(['a:1=a1']);
      });

      test('leaves the hints for a deleted key in place', async (s) => {
        await s.apply(bytes('k'), 4, [version('a', 1)]);
        await s.putHint({ target: 't', key: bytes('k'), partition: 4, siblings: [version('b', 1)] });
        await s.deleteIfUnchanged(bytes('k'), await s.get(bytes('k')));
        expect(showHints(await s.hintsFor(bytes('k')))).to.deep.equal([`t/${hex(bytes('k'))}@4 b:1=b1`]);
      });
    });

    describe('partitionsWithData', () => {
      test('lists no partitions in a new storage', async (s) => {
        expect(await s.partitionsWithData()).to.deep.equal([]);
      });

      test('lists each partition holding keys once, in ascending order', async (s) => {
        const writes: [string, number][] = [
          ['a', 300],
          ['b', 2],
          ['c', 9],
          ['d', 2],
          ['e', 0],
          ['f', 300],
          ['g', 2],
        ];
        for (const [key, partition] of writes) await s.apply(bytes(key), partition, [version('a', 1)]);
        const expected = [...new Set(writes.map(([, p]) => p))].sort((x, y) => x - y);
        expect(await s.partitionsWithData()).to.deep.equal(expected);
      });

      test('drops a partition once its last key is deleted', async (s) => {
        for (const [key, partition] of [
          ['a', 1],
          ['b', 1],
          ['c', 2],
        ] as const) {
          await s.apply(bytes(key), partition, [version('a', 1)]);
        }
        await s.deleteIfUnchanged(bytes('a'), await s.get(bytes('a')));
        expect(await s.partitionsWithData()).to.deep.equal([1, 2]);
        await s.deleteIfUnchanged(bytes('c'), await s.get(bytes('c')));
        expect(await s.partitionsWithData()).to.deep.equal([1]);
      });

      test('does not list partitions that only hints hold', async (s) => {
        await s.apply(bytes('k'), 3, [version('a', 1)]);
        await s.putHint({ target: 't', key: bytes('h'), partition: 8, siblings: [version('a', 1)] });
        expect(await s.partitionsWithData()).to.deep.equal([3]);
      });
    });

    describe('meta', () => {
      test('returns a stored meta record by name', async (s) => {
        const record = { held: [3, 1, 200], since: 1234.5, node: 'n1', nested: { ok: true, none: null } };
        await s.putMeta('partitions', record);
        expect(await s.getMeta('partitions')).to.deep.equal(record);
      });

      test('returns undefined for a meta name never stored', async (s) => {
        await s.putMeta('other', 1);
        expect(await s.getMeta('absent')).to.equal(undefined);
      });

      test('replaces the record put earlier under the same name and keeps other names apart', async (s) => {
        await s.putMeta('a', { v: 1 });
        await s.putMeta('b', 'bee');
        await s.putMeta('a', [2]);
        expect(await s.getMeta('a')).to.deep.equal([2]);
        expect(await s.getMeta('b')).to.equal('bee');
      });

      test("keeps meta records apart from the engine's own bookkeeping", async (s) => {
        const first = await s.write(bytes('k'), 1, localWrite('n', 'x'));
        const before = await s.stats();
        for (const name of ['state', 'counter', 'keys', 'bytes', '']) await s.putMeta(name, { keys: -5, counter: 0 });
        expect(await s.stats()).to.deep.equal(before);
        const next = await s.write(bytes('k2'), 1, localWrite('n', 'y'));
        expect(next.version.dot.counter).to.equal(first.version.dot.counter + 1);
        expect(await s.getMeta('state')).to.deep.equal({ keys: -5, counter: 0 });
      });

      test('keeps a stored meta record unchanged when the caller changes the value it put', async (s) => {
        const record = { held: [1, 2], owner: { id: 'n1' } };
        const pending = s.putMeta('m', record);
        record.held.push(99);
        record.owner.id = 'changed';
        await pending;
        expect(await s.getMeta('m')).to.deep.equal({ held: [1, 2], owner: { id: 'n1' } });
      });

      test('keeps a stored meta record unchanged when the caller changes what a read returned', async (s) => {
        await s.putMeta('m', { held: [1, 2] });
        const read = (await s.getMeta('m')) as { held: number[] };
        read.held.push(99);
        expect(await s.getMeta('m')).to.deep.equal({ held: [1, 2] });
      });

      test('rejects a meta value that cannot be cloned with ERR_STORAGE, keeping the earlier one', async (s) => {
        await s.putMeta('m', 1);
        await rejectsWithCode(s.putMeta('m', { f: () => 1 }), 'ERR_STORAGE');
        expect(await s.getMeta('m')).to.equal(1);
      });
    });

    describe('stats', () => {
      test('counts nothing in a new storage', async (s) => {
        expect(await s.stats()).to.deep.equal({ keys: 0, bytes: 0, hints: 0 });
      });

      test('counts keys with tombstones, their bytes and hints', async (s) => {
        await s.apply(bytes('k1'), 1, [version('a', 1, {}, 'x'.repeat(300))]);
        await s.apply(bytes('k2'), 1, [version('a', 2, {}, null)]);
        await s.putHint({ target: 't', key: bytes('k3'), partition: 1, siblings: [version('a', 3)] });
        const stats = await s.stats();
        expect(stats.keys).to.equal(2);
        expect(stats.hints).to.equal(1);
        expect(stats.bytes).to.be.at.least(300 + 2 + 2);
      });

      test('counts fewer bytes once a large version is superseded by a small one', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1, {}, 'x'.repeat(5000))]);
        const large = (await s.stats()).bytes;
        await s.apply(bytes('k'), 1, [version('a', 2, { a: 1 }, 'y')]);
        const small = (await s.stats()).bytes;
        expect(large).to.be.at.least(5000);
        expect(small).to.be.below(large - 4900);
        expect((await s.stats()).keys).to.equal(1);
      });
    });

    describe('durability', () => {
      test('stores writes made with strict durability', async (s) => {
        const strict = { durability: 'strict' } as const;
        await s.apply(bytes('k1'), 1, [version('a', 1)], strict);
        const written = await s.write(bytes('k2'), 1, localWrite('n', 'x'), strict);
        await s.putHint({ target: 't', key: bytes('k3'), partition: 1, siblings: [version('b', 1)] }, strict);
        await s.applyMany(1, [{ key: bytes('k4'), versions: [version('c', 1)] }], strict);
        expect(show(await s.get(bytes('k1')))).to.deep.equal(['a:1=a1']);
        expect(show(await s.get(bytes('k4')))).to.deep.equal(['c:1=c1']);
        expect(show(await s.get(bytes('k2')))).to.deep.equal(show([written.version]));
        expect(await s.hintsFor(bytes('k3'))).to.have.length(1);
      });
    });

    describe('updates made at once', () => {
      test('commits every one, each seeing the ones made before it', async (s) => {
        const writes = Array.from({ length: 50 }, (_, i) => s.write(bytes(`k${i % 5}`), 1, localWrite('n', `v${i}`)));
        const applies = Array.from({ length: 20 }, (_, i) => s.apply(bytes(`a${i}`), 2, [version('m', i + 1)]));
        const hints = Array.from({ length: 10 }, (_, i) =>
          s.putHint({ target: 't', key: bytes(`h${i}`), partition: 3, siblings: [version('b', i + 1)] }),
        );
        const meta = s.putMeta('m', { n: 1 });
        const written = await Promise.all(writes);
        await Promise.all([...applies, ...hints, meta]);
        expect(new Set(written.map((w) => w.version.dot.counter)).size).to.equal(50);
        for (let k = 0; k < 5; k++) expect(await s.get(bytes(`k${k}`))).to.have.length(10);
        expect((await s.stats()).keys).to.equal(25);
        expect(await s.listHints()).to.have.length(10);
        expect(await s.getMeta('m')).to.deep.equal({ n: 1 });
      });

      test('fails a refused one alone, storing nothing of it, and commits the others', async (s) => {
        const bounds = { maxSiblings: 2, maxSiblingSetBytes: 1024 * 1024 };
        const results = await Promise.allSettled([
          s.write(bytes('k'), 1, { ...localWrite('n', 'one'), bounds }),
          s.write(bytes('k'), 1, { ...localWrite('n', 'two'), bounds }),
          s.write(bytes('k'), 1, { ...localWrite('n', 'three'), bounds }),
          s.write(bytes('other'), 1, localWrite('n', 'four')),
          s.putMeta('bad', { f: () => 1 }),
          s.putMeta('good', 1),
        ]);
        expect(results.map((r) => r.status)).to.deep.equal([
          'fulfilled',
          'fulfilled',
          'rejected',
          'fulfilled',
          'rejected',
          'fulfilled',
        ]);
        expect((results[2] as PromiseRejectedResult).reason.code).to.equal('ERR_TOO_MANY_SIBLINGS');
        expect(await s.get(bytes('k'))).to.have.length(2);
        expect(await s.get(bytes('other'))).to.have.length(1);
        expect(await s.getMeta('good')).to.equal(1);
        expect(await s.getMeta('bad')).to.equal(undefined);
      });
    });

    describe('isolation from callers', () => {
      test("keeps stored data unchanged when the caller's arrays change after apply", async (s) => {
        const key = bytes('k');
        const value = bytes('value');
        const context = clock({ b: 1 });
        const pending = s.apply(key, 1, [{ dot: { node: 'a', counter: 1, timestamp: 1 }, context, value }]);
        key[0] = 0x21;
        value.fill(0x21);
        context.push({ node: 'z', counter: 9, timestamp: 9 });
        await pending;
        const [stored] = await s.get(bytes('k'));
        expect(decoder.decode(stored!.value!)).to.equal('value');
        expect(stored!.context).to.deep.equal(clock({ b: 1 }));
        expect(await s.get(key)).to.deep.equal([]);
      });

      test("keeps stored data unchanged when the caller's arrays change after write and putHint", async (s) => {
        const key = bytes('k');
        const value = bytes('value');
        const context = clock({ a: 1 });
        const writing = s.write(key, 1, { ...localWrite('n', null), value, context });
        const hintKey = bytes('h');
        const hintValue = bytes('hinted');
        const hinting = s.putHint({
          target: 't',
          key: hintKey,
          partition: 1,
          siblings: [{ ...version('a', 1), value: hintValue }],
        });
        key.fill(0x21);
        value.fill(0x21);
        context.push({ node: 'z', counter: 9, timestamp: 9 });
        hintKey.fill(0x21);
        hintValue.fill(0x21);
        await Promise.all([writing, hinting]);
        const [written] = await s.get(bytes('k'));
        expect(decoder.decode(written!.value!)).to.equal('value');
        expect(written!.context).to.deep.equal(clock({ a: 1 }));
        const [hint] = await s.hintsFor(bytes('h'));
        expect(decoder.decode(hint!.siblings[0]!.value!)).to.equal('hinted');
      });

      test('keeps stored data unchanged when the caller changes what a read returned', async (s) => {
        await s.apply(bytes('k'), 1, [version('a', 1, {}, 'value')]);
        const [first] = await s.get(bytes('k'));
        first!.value!.fill(0x21);
        const [scanned] = await s.scanPartition(1);
        scanned!.key.fill(0x21);
        scanned!.siblings[0]!.value!.fill(0x21);
        expect(decoder.decode((await s.get(bytes('k')))[0]!.value!)).to.equal('value');
        expect(hex((await s.scanPartition(1))[0]!.key)).to.equal(hex(bytes('k')));
      });

      test('stores only the bytes of a value view, not the whole buffer behind it', async (s) => {
        const frame = new Uint8Array(64 * 1024).fill(7);
        const view = frame.subarray(100, 110);
        await s.apply(frame.subarray(0, 4), 1, [{ ...version('a', 1), value: view }]);
        const [stored] = await s.get(frame.subarray(0, 4));
        expect(stored!.value!.byteLength).to.equal(10);
        expect(stored!.value!.buffer.byteLength).to.be.below(1024);
      });
    });

    describe('close', () => {
      it('rejects every call with ERR_CLOSED once closed, and closes again quietly', async () => {
        const s = await factory.open();
        await s.close();
        await s.close();
        const key = bytes('k');
        await rejectsWithCode(s.get(key), 'ERR_CLOSED');
        await rejectsWithCode(s.apply(key, 1, [version('a', 1)]), 'ERR_CLOSED');
        await rejectsWithCode(s.applyMany(1, [{ key, versions: [version('a', 1)] }]), 'ERR_CLOSED');
        await rejectsWithCode(s.applyMany(1, []), 'ERR_CLOSED');
        await rejectsWithCode(s.write(key, 1, localWrite('n', 'x')), 'ERR_CLOSED');
        await rejectsWithCode(s.scanPartition(1), 'ERR_CLOSED');
        await rejectsWithCode(s.putHint({ target: 't', key, partition: 1, siblings: [] }), 'ERR_CLOSED');
        await rejectsWithCode(s.hintsFor(key), 'ERR_CLOSED');
        await rejectsWithCode(s.listHints(), 'ERR_CLOSED');
        await rejectsWithCode(s.deleteHint('t', key, []), 'ERR_CLOSED');
        await rejectsWithCode(s.deleteIfUnchanged(key, []), 'ERR_CLOSED');
        await rejectsWithCode(s.partitionsWithData(), 'ERR_CLOSED');
        await rejectsWithCode(s.getMeta('m'), 'ERR_CLOSED');
        await rejectsWithCode(s.putMeta('m', 1), 'ERR_CLOSED');
        await rejectsWithCode(s.stats(), 'ERR_CLOSED');
      });

      const reopen = factory.reopen?.bind(factory);
      if (reopen !== undefined) {
        it('keeps keys, hints and counts across close and reopen', async () => {
          const s = await factory.open();
          await s.apply(bytes('k'), 2, [version('a', 1)]);
          await s.putHint({ target: 't', key: bytes('h'), partition: 2, siblings: [version('b', 1)] });
          const stats = await s.stats();
          await s.close();
          const again = await reopen();
          try {
            expect(show(await again.get(bytes('k')))).to.deep.equal(['a:1=a1']);
            expect((await again.scanPartition(2)).map((k) => hex(k.key))).to.deep.equal([hex(bytes('k'))]);
            expect(showHints(await again.listHints())).to.deep.equal([`t/${hex(bytes('h'))}@2 b:1=b1`]);
            expect(await again.stats()).to.deep.equal(stats);
            expect(await again.partitionsWithData()).to.deep.equal([2]);
          } finally {
            await again.close();
          }
        });

        it('remembers the highest fresh version taken from each node across close and reopen', async () => {
          const s = await factory.open();
          const latest = version('a', 5, {}, 'latest');
          await s.apply(bytes('k'), 1, [version('a', 4, {}, 'acknowledged')]);
          await s.apply(bytes('j'), 1, [latest], { fresh: latest });
          await s.close();
          const again = await reopen();
          try {
            const rewrite = version('a', 4, {}, 'rewritten');
            const result = await again.apply(bytes('k'), 1, [rewrite], { fresh: rewrite });
            expect(result.changed).to.equal(false);
            expect(show(await again.get(bytes('k')))).to.deep.equal(['a:4=acknowledged']);
            const next = version('a', 6, {}, 'real');
            await again.apply(bytes('k'), 1, [version('a', 6, {}, 'planted')]);
            expect((await again.apply(bytes('k'), 1, [next], { fresh: next })).changed).to.equal(true);
            expect(show(await again.get(bytes('k')))).to.deep.equal(['a:4=acknowledged', 'a:6=real']);
          } finally {
            await again.close();
          }
        });

        it('keeps meta records across close and reopen', async () => {
          const s = await factory.open();
          await s.putMeta('held', { partitions: [4, 9], at: 77 });
          await s.close();
          const again = await reopen();
          try {
            expect(await again.getMeta('held')).to.deep.equal({ partitions: [4, 9], at: 77 });
          } finally {
            await again.close();
          }
        });

        it('keeps a deletion and its counts across close and reopen', async () => {
          const s = await factory.open();
          await s.apply(bytes('kept'), 1, [version('a', 1)]);
          const stats = await s.stats();
          await s.apply(bytes('gone'), 2, [version('b', 1)]);
          await s.deleteIfUnchanged(bytes('gone'), await s.get(bytes('gone')));
          await s.close();
          const again = await reopen();
          try {
            expect(await again.get(bytes('gone'))).to.deep.equal([]);
            expect(await again.stats()).to.deep.equal(stats);
            expect(await again.partitionsWithData()).to.deep.equal([1]);
          } finally {
            await again.close();
          }
        });

        it('keeps proofs, and draws counters above every drawn one, across close and reopen', async () => {
          const s = await factory.open();
          const proof = Uint8Array.from({ length: 96 }, (_, i) => 255 - i);
          const counter = await s.drawCounter();
          await s.write(bytes('k'), 1, { ...localWrite('n', 'x'), counter, proof });
          await s.close();
          const again = await reopen();
          try {
            const [stored] = await again.get(bytes('k'));
            expect([...stored!.proof!]).to.deep.equal([...proof]);
            expect(await again.drawCounter()).to.be.above(counter);
          } finally {
            await again.close();
          }
        });

        it('draws counters above every earlier one after close and reopen', async () => {
          const s = await factory.open();
          let last = 0;
          for (let i = 0; i < 3; i++)
            last = (await s.write(bytes(`k${i}`), 1, localWrite('n', 'x'))).version.dot.counter;
          await s.close();
          const again = await reopen();
          try {
            const next = await again.write(bytes('other'), 1, localWrite('n', 'y'));
            // Above, not necessarily next: an engine may reserve counters in blocks and skip the rest of one on reopen.
            expect(next.version.dot.counter).to.be.above(last);
          } finally {
            await again.close();
          }
        });
      }
    });
  });
}
