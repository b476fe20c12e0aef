/**
 * A node restarted (a browser restart) still knows who owned its partitions moments before: the ring history is kept
 * in its storage (worker/membership/ring-history.ts), so an old owner still releasing a partition is believed as it
 * was before the restart, rather than refused as any member that never owned it would be.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createVersion } from '../../worker/versions/version.ts';
import { encodeMessage } from '../../worker/wire/codec.ts';
import { N, dots, world } from './sync-world.ts';
import { text } from './cluster-world.ts';

describe('a restarted node', () => {
  it('takes a push from a node that owned the partition moments before the restart', async () => {
    const w = await world(4);
    const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`);
    const before = new Map(keys.map((k) => [k, w.cluster.preferenceList(text.encode(k), N)]));
    w.cluster.join();
    await w.scheduler.advance(200);
    // A key whose partition one of its owners (`old`) lost to the new node, and kept another (`keeper`).
    const found = keys
      .map((key) => {
        const now = w.cluster.preferenceList(text.encode(key), N);
        const was = before.get(key)!;
        return { key, old: was.find((id) => !now.includes(id)), keeper: was.find((id) => now.includes(id)) };
      })
      .find((f) => f.old !== undefined && f.keeper !== undefined)!;
    assert.ok(found, 'a join moved some partition away from one of its owners');
    const { key, old, keeper } = found as { key: string; old: string; keeper: string };
    await w.cluster.crash(keeper);
    w.cluster.restart(keeper);
    await w.until(() => w.node(keeper).fetchingCount() === 0, 'the restarted node has loaded');
    // A write only the old owner holds, pushed as its release would push it.
    const version = createVersion(old, 1_000, w.scheduler.now, [], text.encode('released'));
    const partition = w.cluster.ring.partitionOf(text.encode(key));
    const entries = [{ key: text.encode(key), versions: [version] }];
    w.node(keeper).receive(old, encodeMessage({ type: 'sync-push', from: old, requestId: 1, partition, entries }));
    await w.scheduler.advance(100);
    assert.ok((await dots(w.cluster, keeper, key)).includes(`${old}:1000`));
    await w.cluster.close();
  });
});
