/**
 * The replica side of a read of a partition this node still fetches: whom it asks, and when it answers with its own
 * copy (worker/replication/replica.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Holding } from '../../worker/membership/holders.ts';
import { Metrics } from '../../worker/metrics.ts';
import { Replica, type ReplicaDeps } from '../../worker/replication/replica.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Peers } from '../../worker/transport/peers.ts';

const text = new TextEncoder();

/** A replica that owns partition 0 and is still fetching it, in a view of `members`; it records whom it asks. */
async function fetchingReplica(members: readonly string[]) {
  const storage = new MemoryStorage();
  const key = text.encode('k');
  await storage.write(key, 0, { node: 'self', timestamp: 1, context: [], value: text.encode('mine'), ifMatch: false });
  const probed: number[] = [];
  const asked: string[] = [];
  const peers = {
    isSuspected: () => false,
    request: (to: string) => {
      asked.push(to);
      return Promise.resolve(null);
    },
  } as unknown as Peers;
  const deps: ReplicaDeps = {
    self: 'self',
    storage,
    metrics: new Metrics(),
    peers,
    holderTimeout: 100,
    partitionOf: () => 0,
    owns: () => true,
    isOwner: () => true,
    nextView: () => Promise.resolve(),
    clock: { now: () => 0 },
    holds: () => false,
    findHolders: (partition: number): Promise<Holding> => {
      probed.push(partition);
      return Promise.resolve({
        holders: members.filter((m) => m !== 'self'),
        storing: [],
        roots: new Map(),
        unanswered: 0,
      });
    },
    onlyOther: (node) => members.every((m) => m === 'self' || m === node),
  };
  return { replica: new Replica(deps), key, probed, asked };
}

describe('a replica still fetching a partition', () => {
  it('answers the only other member with its own copy, asking nobody who holds the partition', async () => {
    const { replica, key, probed, asked } = await fetchingReplica(['self', 'asker']);
    const versions = await replica.readWhole(key, 'asker');
    assert.deepEqual(
      versions.map((v) => new TextDecoder().decode(v.value!)),
      ['mine'],
    );
    assert.deepEqual(probed, []);
    assert.deepEqual(asked, []);
  });

  it('asks who holds the partition, and a holder other than the asker, when there is one', async () => {
    const { replica, key, probed, asked } = await fetchingReplica(['self', 'asker', 'holder']);
    await replica.readWhole(key, 'asker');
    assert.deepEqual(probed, [0]);
    assert.deepEqual(asked, ['holder']);
  });
});
