/**
 * A running node taking over what a retired node of its profile left in its storage (`DynamoNode.absorb`): within
 * the tombstone grace its keys and hints reach the live cluster and nothing superseded comes back; past the grace
 * nothing is taken. On a small simulated cluster (virtual time, a quiet network).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeOptions } from '../../worker/node.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Version } from '../../worker/versions/version.ts';
import { text, utf8, values, world as settledWorld } from './cluster-world.ts';

const GRACE = 600_000;

/** Four settled nodes, N=3, seed 7: requests time out after 100 virtual ms. */
async function world(options: Partial<Pick<NodeOptions, 'tombstoneGrace'>> = {}) {
  const w = await settledWorld(4, { seed: 7, node: { requestTimeout: 100, ...options } });
  const read = async (key: string): Promise<string[]> => values(await w.settle(w.node('n1').get(key, { r: 3 })));
  const partitionOf = (key: string) => w.cluster.ring.partitionOf(text.encode(key));
  return { ...w, read, partitionOf };
}

/** A version of `key` coordinated by the retired node `gone`, as only it held it. */
async function goneVersion(key: string, value: string, partition: number, now: number): Promise<Version[]> {
  const scratch = new MemoryStorage();
  const { siblings } = await scratch.write(text.encode(key), partition, {
    node: 'gone',
    timestamp: now,
    context: [],
    value: text.encode(value),
    ifMatch: false,
  });
  return siblings;
}

describe('taking over a retired node', () => {
  it('hands its keys and hints to their owners within the grace, and brings back nothing superseded', async () => {
    const w = await world();
    const taker = w.node('n0');
    const source = new MemoryStorage();
    await source.putMeta('last-active', w.scheduler.now);
    // Keys only the retired node held.
    const only = Array.from({ length: 40 }, (_, i) => `only-${i}`);
    for (const key of only) {
      await source.apply(
        text.encode(key),
        w.partitionOf(key),
        await goneVersion(key, `v-${key}`, w.partitionOf(key), 1),
      );
    }
    // Keys it held old versions of: one overwritten since, one deleted since.
    const ownerOf = (key: string) => w.cluster.preferenceList(text.encode(key), 3)[0]!;
    for (const [key, next] of [
      ['overwritten', 'new'],
      ['deleted', null],
    ] as const) {
      await w.settle(taker.put(key, text.encode('old'), { w: 3 }));
      const old = await w.cluster.slot(ownerOf(key)).storage!.get(text.encode(key));
      const { context } = await w.settle(taker.get(key, { r: 3 }));
      if (next === null) await w.settle(taker.delete(key, { context, w: 3 }));
      else await w.settle(taker.put(key, text.encode(next), { context, w: 3 }));
      await source.apply(text.encode(key), w.partitionOf(key), old);
    }
    // A hint it held for a live owner.
    const target = w.cluster.preferenceList(text.encode('hinted'), 3).find((id) => id !== 'n0')!;
    await source.putHint({
      target,
      key: text.encode('hinted'),
      partition: w.partitionOf('hinted'),
      siblings: await goneVersion('hinted', 'for the owner', w.partitionOf('hinted'), 1),
    });

    const report = await w.settle(taker.absorb(source));
    assert.deepEqual(report, { keys: 42, hints: 1, dropped: false });
    assert.equal((await source.stats()).hints, 0);

    // The taker releases what it does not own, and delivers the hint.
    await w.scheduler.run(() => false, w.scheduler.now + 30_000);
    const stored = await w.cluster.slot('n0').storage!.partitionsWithData();
    const owned = stored.filter((p) => w.cluster.ring.preferenceList(p, 3).includes('n0'));
    assert.deepEqual(stored, owned, 'n0 still stores partitions it does not own');
    assert.equal((await w.cluster.slot('n0').storage!.stats()).hints, 0);
    for (const key of only) assert.deepEqual(await w.read(key), [`v-${key}`], key);
    assert.deepEqual(await w.read('overwritten'), ['new']);
    assert.deepEqual(await w.read('deleted'), []);
    const delivered = await w.cluster.slot(target).storage!.get(text.encode('hinted'));
    assert.deepEqual(
      delivered.map((v) => (v.value === null ? null : utf8.decode(v.value))),
      ['for the owner'],
    );
  });

  it('hands on every key of a page but one an owner refuses, and keeps that one', async () => {
    const w = await world();
    const taker = w.node('n0');
    const source = new MemoryStorage();
    await source.putMeta('last-active', w.scheduler.now);
    // Keys of one partition that n0 does not own: one page of its release.
    const owners = (key: string) => w.cluster.preferenceList(text.encode(key), 3);
    const names = Array.from({ length: 2000 }, (_, i) => `paged-${i}`).filter((k) => !owners(k).includes('n0'));
    const partition = w.partitionOf(names[0]!);
    const [refused, ...fine] = names.filter((k) => w.partitionOf(k) === partition).slice(0, 4);
    assert.ok(refused !== undefined && fine.length === 3);
    // The refused one: a retired node's version over one its owners hold, which they never saw.
    await w.settle(taker.put(refused, text.encode('honest'), { w: 3 }));
    const [held] = await w.cluster.slot(owners(refused)[0]!).storage!.get(text.encode(refused));
    const over = { dot: { node: 'gone', counter: 1, timestamp: 1 }, context: [held!.dot], value: text.encode('over') };
    await source.apply(text.encode(refused), partition, [over]);
    for (const key of fine)
      await source.apply(text.encode(key), partition, await goneVersion(key, `v-${key}`, partition, 1));

    await w.settle(taker.absorb(source));
    await w.scheduler.run(() => false, w.scheduler.now + 30_000);
    for (const key of fine) {
      assert.deepEqual(await w.read(key), [`v-${key}`], key);
      assert.deepEqual(await w.cluster.slot('n0').storage!.get(text.encode(key)), [], `n0 still holds ${key}`);
    }
    assert.deepEqual(await w.read(refused), ['honest']);
    assert.equal(
      (await w.cluster.slot('n0').storage!.get(text.encode(refused))).length,
      1,
      'n0 dropped the refused key',
    );
  });

  it('takes nothing from a retired node away longer than the tombstone grace', async () => {
    const w = await world({ tombstoneGrace: GRACE });
    await w.scheduler.advance(GRACE + 10_000);
    const source = new MemoryStorage();
    await source.putMeta('last-active', w.scheduler.now - GRACE - 1);
    await source.apply(
      text.encode('stale'),
      w.partitionOf('stale'),
      await goneVersion('stale', 'x', w.partitionOf('stale'), 1),
    );
    const before = await w.cluster.slot('n0').storage!.stats();
    const report = await w.settle(w.node('n0').absorb(source));
    assert.deepEqual(report, { keys: 0, hints: 0, dropped: true });
    assert.deepEqual(await w.cluster.slot('n0').storage!.stats(), before);
    assert.deepEqual(await w.read('stale'), []);
  });
});
