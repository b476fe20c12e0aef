/**
 * `keys`, the coverage query, on small simulated clusters of real nodes (virtual time): listing across partitions
 * and pages, tombstones hidden, owners that do not answer or do not hold a partition yet replaced by others.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasErrorCode } from '../../worker/errors.ts';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import type { KeysOptions } from '../../worker/node.ts';
import type { NetworkConditions } from '../sim/network.ts';
import { type World, text, unsettledWorld, utf8, world as settledWorld } from './cluster-world.ts';

/** A world of `size` nodes, seed 7, that all hold their partitions: requests time out after 100 virtual ms. */
function world(size: number, conditions: Partial<NetworkConditions> = {}): Promise<World> {
  return settledWorld(size, { seed: 7, node: { requestTimeout: 100 }, conditions });
}

/** Writes `keys` (value: the key) through n0, with W = 3 so that every owner stores each. */
async function write(w: World, keys: readonly string[]): Promise<void> {
  for (const key of keys) await w.settle(w.node('n0').put(key, text.encode(key), { w: 3 }));
}

/** Every page of a listing from `node`, in order. */
async function pages(w: World, node: string, options: KeysOptions): Promise<string[][]> {
  const out: string[][] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await w.settle(w.node(node).keys(cursor === undefined ? options : { ...options, cursor }));
    out.push(page.keys.map((k) => utf8.decode(k)));
    if (page.cursor === null) return out;
    cursor = page.cursor;
  }
}

const sorted = (keys: readonly string[]): string[] =>
  [...keys].sort((a, b) => Buffer.compare(text.encode(a), text.encode(b)));

describe('DynamoNode.keys', () => {
  it('lists exactly the live keys under a prefix, in byte order, across pages', async () => {
    const w = await world(5);
    const users = Array.from({ length: 23 }, (_, i) => `user:${String(i).padStart(2, '0')}`);
    await write(w, [...users, 'post:1', 'post:2', 'usex', 'use']);
    const listed = await pages(w, 'n3', { prefix: 'user:', limit: 5 });
    assert.deepEqual(listed.flat(), sorted(users));
    assert.deepEqual(
      listed.map((p) => p.length),
      [5, 5, 5, 5, 3],
    );
  });

  it('lists every key when no prefix is given', async () => {
    const w = await world(4);
    const keys = ['a', 'b', 'c\u00e9', 'z'];
    await write(w, keys);
    assert.deepEqual((await pages(w, 'n1', { limit: 1000 })).flat(), sorted(keys));
  });

  it('hides a key whose every sibling is a tombstone', async () => {
    const w = await world(4);
    await write(w, ['k:1', 'k:2', 'k:3']);
    const { context } = await w.settle(w.node('n2').get('k:2'));
    await w.settle(w.node('n2').delete('k:2', { context, w: 3 }));
    assert.deepEqual((await pages(w, 'n1', { prefix: 'k:' })).flat(), ['k:1', 'k:3']);
  });

  it('sends one message per peer and page, however many partitions it asks of each', async () => {
    const w = await world(5);
    await write(w, ['x']);
    const page = await w.settle(w.node('n0').keys({ prefix: 'x' }));
    assert.deepEqual(
      page.keys.map((k) => utf8.decode(k)),
      ['x'],
    );
    // n0 holds 3/5 of the 256 partitions; the rest go to at most 4 peers, one message each.
    assert.ok(page.messages >= 1 && page.messages <= 4, `${page.messages} messages`);
  });

  it('asks another owner of each partition whose chosen owner does not answer', async () => {
    const w = await world(5);
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    await write(w, keys);
    await w.cluster.crash('n1');
    const listed = await pages(w, 'n0', { prefix: 'k', limit: 7 });
    assert.deepEqual(listed.flat(), sorted(keys));
  });

  it('fails with ERR_QUORUM when no owner of some partition answers', async () => {
    const w = await world(4);
    await write(w, ['k']);
    await w.cluster.crash('n1');
    await w.cluster.crash('n2');
    await w.cluster.crash('n3');
    const failure = await w.settle(w.node('n0').keys()).then(
      () => assert.fail('the listing succeeded'),
      (error: unknown) => error,
    );
    assert.ok(hasErrorCode(failure, 'ERR_QUORUM'), String(failure));
  });

  it('lists every key from a node that joined and is still fetching its partitions', async () => {
    // Slow links: the new node's transfers take seconds of virtual time.
    const w = await world(3, { baseLatency: 40 });
    const keys = Array.from({ length: 40 }, (_, i) => `item:${i}`);
    await write(w, keys);
    const joined = w.cluster.join();
    await w.scheduler.run(() => w.node(joined).ring.has(joined) && w.node(joined).fetchingCount() > 0);
    assert.ok(w.node(joined).fetchingCount() > 0, 'the new node is fetching');
    const listed = await w.settle(w.node(joined).keys({ prefix: 'item:', limit: 1000 }));
    assert.deepEqual(
      listed.keys.map((k) => utf8.decode(k)),
      sorted(keys),
    );
    // Asked by the others, it refuses what it is still fetching, and they ask the next owner.
    assert.ok(w.node(joined).fetchingCount() > 0, 'the new node is still fetching');
    for (const other of ['n0', 'n1', 'n2']) {
      const page = await w.settle(w.node(other).keys({ prefix: 'item:', limit: 1000 }));
      assert.deepEqual(
        page.keys.map((k) => utf8.decode(k)),
        sorted(keys),
        `listed from ${other}`,
      );
    }
  });

  it('lists a key written after a join from a node still handing its partition over to the new owner', async () => {
    const w = await world(3, { baseLatency: 40 });
    await write(
      w,
      Array.from({ length: 200 }, (_, i) => `before:${i}`),
    );
    const old = w.node('n0').ring;
    const joined = w.cluster.join();
    await w.scheduler.run(() => ['n0', 'n1', 'n2', joined].every((id) => w.node(id).ring.has(joined)));
    const ring = w.node(joined).ring;
    const releasing = new Map<string, Set<number>>();
    for (const id of ['n0', 'n1', 'n2']) {
      const states = await w.settle(w.node(id).partitions());
      releasing.set(id, new Set(states.filter((p) => p.state === 'releasing').map((p) => p.partition)));
    }
    // A key of a partition the new node takes over from a node that no longer owns it, but still holds it.
    let key = '';
    let former = '';
    for (let i = 0; key === ''; i++) {
      const candidate = `after:${i}`;
      const partition = ring.partitionOf(text.encode(candidate));
      const giver = old.preferenceList(partition, 3).find((id) => releasing.get(id)?.has(partition) === true);
      if (giver !== undefined) [key, former] = [candidate, giver];
    }
    const owners = ring.preferenceList(ring.partitionOf(text.encode(key)), 3);
    assert.ok(owners.includes(joined) && !owners.includes(former));
    await w.settle(w.node(owners.find((id) => id !== joined)!).put(key, text.encode(key)));
    const listed = await w.settle(w.node(former).keys({ prefix: 'after:' }));
    assert.deepEqual(
      listed.keys.map((k) => utf8.decode(k)),
      [key],
    );
  });

  it('refuses to a member that asks the partitions it is still fetching, and answers those it holds', async () => {
    const w = await world(3, { baseLatency: 40 });
    await write(w, ['a', 'b']);
    const joined = w.cluster.join();
    const node = w.node(joined);
    await w.scheduler.run(() => node.ring.has(joined) && node.fetchingCount() > 0);
    // Past the view the cluster publishes for the join, which would otherwise replace the one naming the probe.
    await w.scheduler.advance(50);
    const states = await w.settle(node.partitions());
    const fetching = states.find((p) => p.state === 'fetching')!.partition;
    const held = states.find((p) => p.state === 'held')?.partition;
    const unowned = Array.from({ length: node.ring.partitions }, (_, p) => p).find(
      (p) => !node.ring.preferenceList(p, 3).includes(joined),
    )!;
    // A member of the view that is no node: it sends one `keys` message and keeps the reply.
    const replies: PeerMessage[] = [];
    const probe = w.network.attach('probe', { alive: true }, (_from, frame) => replies.push(decodeMessage(frame)));
    node.setMembers([...w.cluster.members, { id: 'probe', domain: 'probe' }]);
    const asks = [fetching, unowned, ...(held === undefined ? [] : [held])]
      .sort((x, y) => x - y)
      .map((partition) => ({ partition, after: null }));
    probe.send(
      joined,
      encodeMessage({ type: 'keys', from: 'probe', requestId: 1, asks, prefix: new Uint8Array(0), limit: 10 }),
    );
    const answer = (): PeerMessage | undefined => replies.find((r) => r.type === 'keys-reply' && r.requestId === 1);
    await w.scheduler.run(() => answer() !== undefined, w.scheduler.now + 5000);
    const reply = answer();
    assert.ok(reply !== undefined, 'the node answered');
    assert.equal(reply.type, 'keys-reply');
    assert.ok(reply.type === 'keys-reply');
    assert.ok(reply.refused.includes(fetching), 'a partition being fetched is refused');
    assert.ok(reply.refused.includes(unowned), 'a partition it does not own is refused');
    assert.deepEqual(
      reply.pages.map((p) => p.partition),
      held === undefined ? [] : [held],
    );
  });

  it('refuses a limit outside 1 to 1000, a prefix that is no key, and a cursor not made by keys()', async () => {
    const w = await world(3);
    await write(w, ['b1', 'b2']);
    const node = w.node('n0');
    for (const options of [
      { limit: 0 },
      { limit: 1001 },
      { limit: 2.5 },
      { prefix: 5 as unknown as string },
      { cursor: 'not a cursor' },
      { prefix: 'a', cursor: (await w.settle(node.keys({ limit: 1 }))).cursor! },
    ]) {
      const failure = await w.settle(node.keys(options)).then(
        () => assert.fail(`accepted ${JSON.stringify(options)}`),
        (error: unknown) => error,
      );
      assert.ok(hasErrorCode(failure, 'ERR_INVALID_ARGUMENT'), String(failure));
    }
  });

  it('lists the keys of a new cluster from its first node as it starts, waiting for its partitions, not refusing', async () => {
    const w = unsettledWorld(1, { seed: 11, node: { requestTimeout: 100 } });
    const node = w.node('n0');
    assert.notEqual(node.fetchingCount(), 0, 'the node has not marked its partitions held yet');
    const listing = await w.settle(node.keys({ prefix: '' }));
    assert.deepEqual(listing.keys, []);
  });
});
