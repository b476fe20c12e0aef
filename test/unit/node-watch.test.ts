/**
 * Watches on small simulated clusters of real nodes (virtual time, a quiet network): a watcher hears of writes made
 * elsewhere through its key's owners, through a join and an owner's failure, and of new keys under a prefix.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasErrorCode } from '../../worker/errors.ts';
import { createVersion } from '../../worker/versions/version.ts';
import { encodeMessage } from '../../worker/wire/codec.ts';
import type { WatchNotice } from '../../worker/node.ts';
import { Ring } from '../../worker/ring/ring.ts';
import { type World, text, utf8, world as settledWorld } from './cluster-world.ts';

/** A world of `size` nodes, seed 1, that all hold their partitions: requests time out after 100 virtual ms. */
function world(size: number): Promise<World> {
  return settledWorld(size, { node: { requestTimeout: 100 } });
}

/** The notices a listener received, as `key=value|value` strings. */
function recorder(): { notices: string[]; listener: (notice: WatchNotice) => void } {
  const notices: string[] = [];
  return {
    notices,
    listener: (n) => notices.push(`${utf8.decode(n.key)}=${n.values.map((v) => utf8.decode(v)).join('|')}`),
  };
}

/** A node that owns no copy of `key`: it hears only through notices sent over the network. */
function outsider(w: World, key: string, not: readonly string[] = []): string {
  const owners = w.cluster.preferenceList(text.encode(key), 3);
  const id = w.cluster.alive().find((id) => !owners.includes(id) && !not.includes(id));
  assert.ok(id !== undefined);
  return id;
}

describe('watch', () => {
  it('tells a watcher outside the key owners of a put made on another node', async () => {
    const w = await world(5);
    const watcher = outsider(w, 'k');
    const writer = outsider(w, 'k', [watcher]);
    const seen = recorder();
    w.node(watcher).watch({ key: 'k' }, seen.listener);
    await w.settle(w.node(writer).put('k', text.encode('v1')));
    await w.scheduler.run(() => seen.notices.length > 0);
    assert.deepEqual(seen.notices, ['k=v1']);
  });

  it('tells a new key watch the value the key holds already', async () => {
    const w = await world(5);
    await w.settle(w.node('n1').put('k', text.encode('stored before')));
    const seen = recorder();
    w.node(outsider(w, 'k')).watch({ key: 'k' }, seen.listener);
    await w.scheduler.run(() => seen.notices.length > 0);
    assert.deepEqual(seen.notices, ['k=stored before']);
  });

  it('delivers each write once although every owner tells of it', async () => {
    const w = await world(5);
    const watcher = outsider(w, 'k');
    const seen = recorder();
    w.node(watcher).watch({ key: 'k' }, seen.listener);
    const first = await w.settle(w.node(watcher).put('k', text.encode('v1')));
    await w.settle(w.node(watcher).put('k', text.encode('v2'), { context: first.context }));
    // Until every owner has stored both writes and told of them: the hints round and the handoff are quiet by then.
    await w.scheduler.run(() => w.scheduler.now > 2000);
    assert.deepEqual(seen.notices, ['k=v1', 'k=v2']);
  });

  it('gives a notice a context that a put supersedes the told value with', async () => {
    const w = await world(4);
    const watcher = outsider(w, 'k');
    const contexts: string[] = [];
    w.node(watcher).watch({ key: 'k' }, (n) => contexts.push(n.context));
    await w.settle(w.node('n0').put('k', text.encode('v1')));
    await w.scheduler.run(() => contexts.length > 0);
    await w.settle(w.node('n1').put('k', text.encode('v2'), { context: contexts[0]! }));
    const read = await w.settle(w.node('n2').get('k'));
    assert.deepEqual(
      read.values.map((v) => utf8.decode(v)),
      ['v2'],
    );
  });

  it('keeps telling a watcher of a key through a join and the failure of one of its owners', async () => {
    const w = await world(5);
    const watcher = outsider(w, 'k');
    const seen = recorder();
    w.node(watcher).watch({ key: 'k' }, seen.listener);
    let last = await w.settle(w.node(watcher).put('k', text.encode('before')));
    await w.scheduler.run(() => seen.notices.includes('k=before'));

    const joined = w.cluster.join();
    await w.scheduler.run(() => w.node(joined).fetchingCount() === 0 && w.node(watcher).members.length === 6);
    last = await w.settle(w.node(watcher).put('k', text.encode('after join'), { context: last.context }));
    await w.scheduler.run(() => seen.notices.includes('k=after join'));

    const owner = w.cluster.preferenceList(text.encode('k'), 3).find((id) => id !== watcher)!;
    await w.cluster.fail(owner);
    const writer = w.cluster.alive().find((id) => id !== watcher && id !== owner)!;
    await w.settle(w.node(writer).put('k', text.encode('owner down'), { context: last.context }));
    await w.scheduler.run(() => seen.notices.includes('k=owner down'));
    await w.scheduler.run(() => !w.node(watcher).members.some((m) => m.id === owner));
    const next = await w.settle(w.node(writer).get('k'));
    await w.settle(w.node(writer).put('k', text.encode('owner gone'), { context: next.context }));
    await w.scheduler.run(() => seen.notices.includes('k=owner gone'));
    assert.deepEqual(seen.notices, ['k=before', 'k=after join', 'k=owner down', 'k=owner gone']);
  });

  it('tells a watcher promptly once every owner its key had at the start has failed', async () => {
    const w = await world(8);
    // A key and a watcher that owns no copy of it before nor after its three owners are gone.
    let key = '';
    let watcher = '';
    for (let i = 0; watcher === ''; i++) {
      key = `moving-${i}`;
      const owners = w.cluster.preferenceList(text.encode(key), 3);
      const after = new Ring(w.cluster.members.filter((m) => !owners.includes(m.id)));
      const next = after.preferenceList(after.partitionOf(text.encode(key)), 3);
      watcher = w.cluster.alive().find((id) => !owners.includes(id) && !next.includes(id)) ?? '';
    }
    const owners = w.cluster.preferenceList(text.encode(key), 3);
    const seen = recorder();
    w.node(watcher).watch({ key }, seen.listener);
    for (const owner of owners) {
      await w.cluster.fail(owner);
      await w.scheduler.run(() => !w.node(watcher).members.some((m) => m.id === owner));
    }
    const started = w.scheduler.now;
    await w.settle(w.node(watcher).put(key, text.encode('new owners')));
    await w.scheduler.run(() => seen.notices.includes(`${key}=new owners`));
    // Well within the renewal period (10 s): the new owners hold the watch since the views that made them owners.
    assert.ok(w.scheduler.now - started < 500, `told after ${w.scheduler.now - started} ms`);
  });

  it('makes good by a read, on resync, a write told while the watcher was cut off', async () => {
    const w = await world(5);
    const watcher = outsider(w, 'k');
    const writer = outsider(w, 'k', [watcher]);
    const seen = recorder();
    w.node(watcher).watch({ key: 'k' }, seen.listener);
    const first = await w.settle(w.node(writer).put('k', text.encode('v1')));
    await w.scheduler.run(() => seen.notices.length === 1);
    w.network.partition(new Map([[watcher, 'b']]));
    // W=3: every owner has stored it, and told of it into the cut, before the cut heals.
    await w.settle(w.node(writer).put('k', text.encode('missed'), { context: first.context, w: 3 }));
    w.network.heal();
    w.node(watcher).resyncWatches();
    await w.scheduler.run(() => seen.notices.length === 2, w.scheduler.now + 5000);
    assert.deepEqual(seen.notices, ['k=v1', 'k=missed']);
  });

  it('tells a prefix watcher of writes to new keys under the prefix, and of no other key', async () => {
    const w = await world(5);
    const seen = recorder();
    w.node('n0').watch({ prefix: 'user/' }, seen.listener);
    await w.settle(w.node('n1').put('user/1', text.encode('ann')));
    await w.settle(w.node('n2').put('other', text.encode('x')));
    await w.settle(w.node('n3').put('user/2', text.encode('bob')));
    await w.scheduler.run(() => seen.notices.length >= 2);
    await w.scheduler.run(() => w.scheduler.now > 2000);
    assert.deepEqual(seen.notices.sort(), ['user/1=ann', 'user/2=bob']);
  });

  it('tells an ended watch of nothing more', async () => {
    const w = await world(4);
    const seen = recorder();
    const unwatch = w.node('n0').watch({ key: 'k' }, seen.listener);
    await w.settle(w.node('n1').put('k', text.encode('v1')));
    await w.scheduler.run(() => seen.notices.length > 0);
    unwatch();
    await w.settle(w.node('n1').put('k', text.encode('v2')));
    await w.scheduler.run(() => w.scheduler.now > 2000);
    assert.deepEqual(seen.notices, ['k=v1']);
  });

  it('drops a notice from a member that owns no copy of the key, and takes one from an owner', async () => {
    const w = await world(5);
    const watcher = outsider(w, 'k');
    const stranger = outsider(w, 'k', [watcher]);
    const owner = w.cluster.preferenceList(text.encode('k'), 3)[0]!;
    const seen = recorder();
    w.node(watcher).watch({ key: 'k' }, seen.listener);
    const notice = (from: string, value: string) =>
      encodeMessage({
        type: 'notice',
        from,
        requestId: 0,
        key: text.encode('k'),
        versions: [createVersion(from, 1, 1, [], text.encode(value))],
      });
    w.node(watcher).receive(stranger, notice(stranger, 'made up'));
    w.node(watcher).receive(owner, notice(owner, 'told'));
    await w.scheduler.run(() => seen.notices.length > 0);
    assert.deepEqual(seen.notices, ['k=told']);
    assert.equal(w.node(watcher).metrics().noticesRefused, 1);
  });

  it('refuses a watch past maxWatches with ERR_TOO_MANY_WATCHES', async () => {
    const w = await world(3);
    const node = w.node('n0');
    for (let i = 0; i < 1024; i++) node.watch({ key: `k${i}` }, () => {});
    assert.throws(
      () => node.watch({ key: 'one more' }, () => {}),
      (error) => hasErrorCode(error, 'ERR_TOO_MANY_WATCHES'),
    );
  });

  it('refuses an empty key or prefix with ERR_INVALID_ARGUMENT', async () => {
    const w = await world(3);
    assert.throws(
      () => w.node('n0').watch({ prefix: '' }, () => {}),
      (error) => hasErrorCode(error, 'ERR_INVALID_ARGUMENT'),
    );
  });
});
