/**
 * Hinted handoff on small simulated clusters of real nodes: hints reach their owners, or the current owners when
 * their node left the view, and are forgotten once delivered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createVersion } from '../../worker/versions/version.ts';
import type { Cluster } from '../sim/cluster.ts';
import { N, dots, world } from './sync-world.ts';
import { text, utf8 } from './cluster-world.ts';

/** Hints held in node `id`'s data, by target. */
async function hintTargets(cluster: Cluster, id: string): Promise<string[]> {
  return (await cluster.slot(id).data.reopen().listHints()).map((h) => h.target);
}

describe('Handoff', () => {
  it('delivers the hints held for a node that left the view to the current owners, then deletes them', async () => {
    const w = await world(5, { hintInterval: 500 });
    const key = 'orphan';
    const owners = w.cluster.preferenceList(text.encode(key), N);
    const leaving = owners[2]!;
    await w.cluster.crash(leaving);
    const put = await w.settle(w.node(owners[0]!).put(key, text.encode('v'), { w: N }));
    const holder = put.receipt.hints[0]?.holder;
    assert.ok(holder !== undefined, 'the put left a hint');
    assert.deepEqual(await hintTargets(w.cluster, holder), [leaving]);
    await w.cluster.leave(leaving);
    const now = w.cluster.preferenceList(text.encode(key), N);
    assert.ok(!now.includes(leaving));
    await w.until(async () => (await w.cluster.hintsHeld()) === 0, 'hint rerouted');
    for (const id of now) assert.equal((await dots(w.cluster, id, key)).length, 1, `${id} lacks the write`);
    assert.ok(w.node(holder).metrics().hintsRerouted >= 1);
  });

  it('keeps a hint for a node that left the view while one of the current owners is unreachable', async () => {
    const w = await world(5, { hintInterval: 500 });
    const key = 'orphan';
    const owners = w.cluster.preferenceList(text.encode(key), N);
    const leaving = owners[2]!;
    await w.cluster.crash(leaving);
    const put = await w.settle(w.node(owners[0]!).put(key, text.encode('v'), { w: N }));
    const holder = put.receipt.hints[0]!.holder;
    await w.cluster.leave(leaving);
    const now = w.cluster.preferenceList(text.encode(key), N);
    const away = now.find((id) => id !== holder)!;
    await w.cluster.crash(away);
    await w.scheduler.advance(10_000);
    assert.deepEqual(await hintTargets(w.cluster, holder), [leaving]);
    w.cluster.restart(away);
    await w.until(async () => (await w.cluster.hintsHeld()) === 0, 'hint rerouted');
  });

  // ---- found in review: these fail today (see the report)

  it('reroutes a hint for a departed node even while many hints wait for a crashed member', async () => {
    const w = await world(5, { hintInterval: 500 });
    const holder = 'n4';
    const crashed = 'n0';
    await w.cluster.crash(crashed);
    const handle = w.cluster.slot(holder).storage!;
    const ring = w.cluster.ring;
    // More hints for the crashed member than one round lists (the default batch is 64, listed four times over).
    for (let i = 0; i < 300; i++) {
      const key = text.encode(`waiting-${i}`);
      const siblings = [createVersion('n1', i + 1, 1, [], text.encode('w'))];
      await handle.putHint({ target: crashed, key, partition: ring.partitionOf(key), siblings });
    }
    // One hint for a node that is no longer in the view (its id sorts after the crashed member's).
    const key = text.encode('orphan');
    const siblings = [createVersion('n2', 1, 1, [], text.encode('v'))];
    await handle.putHint({ target: 'zz-departed', key, partition: ring.partitionOf(key), siblings });
    await w.scheduler.advance(20_000);
    assert.ok(!(await hintTargets(w.cluster, holder)).includes('zz-departed'), 'the orphan hint is still held');
    for (const id of ring.preferenceList(ring.partitionOf(key), N)) {
      if (id === crashed) continue;
      assert.equal((await dots(w.cluster, id, 'orphan')).length, 1, `${id} lacks the rerouted write`);
    }
  });

  it('does not bring a collected delete back through the hints it held before an absence longer than the grace', async () => {
    const w = await world(4, { hintInterval: 500, antiEntropyInterval: 500, tombstoneGrace: 5_000 });
    const key = 'doomed';
    const owners = w.cluster.preferenceList(text.encode(key), N);
    const [first, second] = owners;
    await w.cluster.crash(second!);
    const put = await w.settle(w.node(first!).put(key, text.encode('old'), { w: N }));
    const holder = put.receipt.hints[0]?.holder;
    assert.ok(holder !== undefined, 'the put left a hint');
    // The fallback goes away with its hint; the owner comes back and the key is deleted everywhere it is owned.
    await w.cluster.crash(holder);
    w.cluster.restart(second!);
    await w.until(async () => (await dots(w.cluster, second!, key)).length > 0, 'owner repaired');
    const read = await w.settle(w.node(first!).get(key, { r: N }));
    await w.settle(w.node(first!).delete(key, { context: read.context, w: N }));
    await w.until(async () => {
      for (const id of owners) if ((await dots(w.cluster, id, key)).length > 0) return false;
      return true;
    }, 'tombstone collected');
    // Back after more than the grace: it drops its old copies, and must not hand the old write on either.
    w.cluster.restart(holder);
    await w.scheduler.advance(10_000);
    const after = await w.settle(w.node(first!).get(key, { r: N }));
    assert.deepEqual(
      after.values.map((v) => utf8.decode(v)),
      [],
    );
  });
});
