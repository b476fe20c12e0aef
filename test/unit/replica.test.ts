/**
 * The replica side (worker/replication/replica.ts): whom a replica still fetching a partition asks when it answers a
 * read, and what it takes of versions shipped to it, and from whom.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Holding } from '../../worker/membership/holders.ts';
import { Metrics } from '../../worker/metrics.ts';
import { Replica, type ReplicaDeps } from '../../worker/replication/replica.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import type { Peers } from '../../worker/transport/peers.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';
import type { ReplicateMessage } from '../../worker/wire/protocol.ts';

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
    mayWrite: () => true,
    nextView: () => Promise.resolve(),
    clock: { now: () => 0 },
    holds: () => false,
    findHolders: (partition: number): Promise<Holding> => {
      probed.push(partition);
      return Promise.resolve({ holders: members.filter((m) => m !== 'self'), roots: new Map(), unanswered: 0 });
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

/**
 * A replica `self` owning partition 0 with `owner`, holding `stored` of key `k`: what it takes of versions shipped
 * to it, and from whom.
 */
async function guardedReplica(stored: Version[]) {
  const storage = new MemoryStorage();
  if (stored.length > 0) await storage.apply(text.encode('k'), 0, stored);
  const deps: ReplicaDeps = {
    self: 'self',
    storage,
    metrics: new Metrics(),
    peers: { isSuspected: () => false } as unknown as Peers,
    holderTimeout: 100,
    partitionOf: () => 0,
    owns: () => true,
    isOwner: (node) => node === 'owner' || node === 'self',
    mayWrite: (node) => node === 'owner' || node === 'self',
    nextView: () => Promise.resolve(),
    clock: { now: () => 0 },
    holds: () => true,
    findHolders: () => Promise.resolve({ holders: [], roots: new Map(), unanswered: 0 }),
    onlyOther: () => false,
  };
  const replicate = (from: string, versions: Version[]): ReplicateMessage => ({
    type: 'replicate',
    from,
    requestId: 1,
    key: text.encode('k'),
    versions,
    hintFor: null,
    durable: false,
  });
  const held = async (): Promise<string[]> =>
    (await storage.get(text.encode('k'))).map(
      (v) => `${v.dot.node}:${v.dot.counter}=${new TextDecoder().decode(v.value!)}`,
    );
  return { replica: new Replica(deps), replicate, held };
}

const written = (node: string, counter: number, value = `${node}:${counter}`, context: Version['context'] = []) =>
  createVersion(node, counter, 1, context, text.encode(value));

describe('a replica shipped versions by a node that does not own the partition', () => {
  it('takes what an owner ships on its word', async () => {
    const { replica, replicate, held } = await guardedReplica([written('writer', 1)]);
    await replica.replicate(
      replicate('owner', [written('writer', 2, 'w2', [{ node: 'writer', counter: 1, timestamp: 1 }])]),
    );
    assert.deepEqual(await held(), ['writer:2=w2']);
  });

  it("takes versions it could not tell from an honest fallback's or repairer's", async () => {
    const { replica, replicate, held } = await guardedReplica([written('writer', 1)]);
    await replica.replicate(replicate('fallback', [written('writer', 1), written('other', 4)]));
    assert.deepEqual(await held(), ['other:4=other:4', 'writer:1=writer:1']);
  });

  it('refuses a dot it holds with another value, storing none of what came with it', async () => {
    const { replica, replicate, held } = await guardedReplica([written('writer', 1)]);
    const planted = [written('writer', 1, 'evil'), written('other', 4)];
    await assert.rejects(replica.replicate(replicate('rogue', planted)), { code: 'ERR_UNAUTHORIZED' });
    assert.deepEqual(await held(), ['writer:1=writer:1']);
  });
});
