/**
 * The membership store on Redis against a real redis-server on a loopback port: two stores with one prefix play two
 * server processes of one service. Each test has a prefix of its own; the clock is injected.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import type { ClusterView } from '../../signaling/events.ts';
import { RedisMembershipStore } from '../../signaling/redis-store.ts';
import { startRedis, type RedisProcess } from '../redis-server.ts';

const HEARTBEAT_TIMEOUT = 3000;

let redis: RedisProcess;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

/** Two processes of one service (`a` and `b`) on a fresh prefix, with one clock the test moves. */
function service(t: TestContext, { maxMembersPerCluster = 1000 } = {}) {
  const prefix = `test-${randomBytes(4).toString('hex')}:`;
  const clock = { now: 1_000_000 };
  const process = (processId: string) => {
    const client = new Redis(redis.url);
    t.after(() => client.quit());
    return new RedisMembershipStore({
      redis: client,
      prefix,
      processId,
      sweepInterval: 250,
      membership: {
        heartbeatInterval: 1000,
        heartbeatTimeout: HEARTBEAT_TIMEOUT,
        suspectGrace: 0,
        maxMembersPerCluster,
        now: () => clock.now,
      },
    });
  };
  return { a: process('a'), b: process('b'), clock, prefix };
}

const join = (nodeId: string, cluster = 'main') => ({ cluster, nodeId, domain: `d-${nodeId}` });
const ids = (view: ClusterView | undefined) => view?.members.map((member) => member.id) ?? [];

describe('membership on Redis', () => {
  it('shows a member joined on one process in the view the other process reads', async (t) => {
    const { a, b } = service(t);
    const joined = await a.join('s1', join('n1'), ['address x'], 'x');
    assert.ok(joined.ok);
    const seen = await b.view('main');
    assert.deepEqual(ids(seen), ['n1']);
    assert.equal(seen?.epoch, joined.view.epoch);
  });

  it('gives every change a larger epoch than the last, whichever process makes it', async (t) => {
    const { a, b } = service(t);
    const epochs: number[] = [];
    for (const [store, id] of [
      [a, 'n1'],
      [b, 'n2'],
      [a, 'n3'],
      [b, 'n4'],
    ] as const) {
      const joined = await store.join(`s-${id}`, join(id), [], 'x');
      assert.ok(joined.ok);
      epochs.push(joined.view.epoch);
    }
    assert.deepEqual(
      epochs,
      [...epochs].sort((x, y) => x - y),
    );
    assert.equal(new Set(epochs).size, 4);
    assert.deepEqual(ids(await a.view('main')), ['n1', 'n2', 'n3', 'n4']);
  });

  it('keeps every member of joins racing on two processes, each view with its own epoch', async (t) => {
    const { a, b } = service(t);
    const nodes = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const results = await Promise.all(
      nodes.map((id, i) => (i % 2 === 0 ? a : b).join(`s-${id}`, join(id), [`address ${i % 3}`], 'x')),
    );
    const epochs = results.map((result) => (result.ok ? result.view.epoch : -1));
    assert.equal(new Set(epochs).size, nodes.length, 'no two commits got one epoch');
    assert.deepEqual(ids(await b.view('main')), nodes);
    // The quota counts agree with the members, though their joins raced.
    assert.deepEqual(await Promise.all([0, 1, 2].map((i) => a.held(`address ${i}`))), [7, 7, 6]);
  });

  it('pushes a change as a delta from the view before it', async (t) => {
    const { a, b } = service(t);
    const first = await a.join('s1', join('n1'), [], 'x');
    await b.join('s2', join('n2'), [], 'x');
    assert.ok(first.ok);
    const left = await a.leave('s1');
    assert.deepEqual(
      left.deltas?.map(({ removals, upserts }) => ({ removals, upserts })),
      [{ removals: ['n1'], upserts: [] }],
    );
    const view = await b.view('main');
    assert.equal(left.deltas?.[0]?.epoch, view?.epoch);
    assert.ok((left.deltas?.[0]?.prevEpoch ?? 0) > first.view.epoch);
  });

  it('hears a heartbeat on the process its member joined on without rewriting the cluster', async (t) => {
    const { a, b, clock, prefix } = service(t);
    await a.join('s1', join('n1'), [], 'x');
    const before = await b.view('main');
    const raw = new Redis(redis.url);
    t.after(() => raw.quit());
    const rev = await raw.hget(`${prefix}c:main`, 'rev');
    clock.now += HEARTBEAT_TIMEOUT - 1;
    const beat = await a.heartbeat('s1');
    assert.ok(beat.ok);
    assert.deepEqual(beat.changes.views, []);
    assert.equal(await raw.hget(`${prefix}c:main`, 'rev'), rev);
    assert.equal(await raw.hget(`${prefix}seen:main`, 'n1'), String(clock.now));
    clock.now += HEARTBEAT_TIMEOUT - 1;
    // Silent past the timeout since its join, heard since: the other process's sweep keeps it.
    await a.sweep();
    const swept = await b.sweep();
    assert.deepEqual(swept.failures, []);
    assert.deepEqual(await b.view('main'), before);
  });

  it('fails a member whose process stopped sweeping, from the sweep of another process', async (t) => {
    const { a, b, clock } = service(t);
    await a.join('s1', join('gone'), [], 'x');
    await b.join('s2', join('stays'), [], 'x');
    await a.sweep();
    // Process a dies: nothing of it runs any more. Process b and its member go on.
    clock.now += 1000;
    await b.heartbeat('s2');
    await b.sweep();
    clock.now += HEARTBEAT_TIMEOUT;
    await b.heartbeat('s2');
    const swept = await b.sweep();
    assert.deepEqual(swept.failures, [{ cluster: 'main', nodeId: 'gone', reason: 'heartbeat' }]);
    assert.deepEqual(ids(await b.view('main')), ['stays']);
    // The member of a dead process is dropped once out of its view: it holds no place against the quotas.
    assert.equal((await b.stats()).outOfView, 0);
  });

  it('keeps nothing in Redis of a member that left, beside its cluster', async (t) => {
    const { a, b, prefix } = service(t);
    await a.join('s1', join('leaves'), ['address x'], 'x');
    await b.join('s2', join('stays'), [], 'x');
    await a.heartbeat('s1');
    await a.setMetrics('s1', { puts: 1 });
    await a.leave('s1');
    const raw = new Redis(redis.url);
    t.after(() => raw.quit());
    assert.deepEqual(await raw.hkeys(`${prefix}seen:main`), []);
    assert.deepEqual(await raw.hkeys(`${prefix}metrics:main`), []);
    assert.deepEqual(await raw.hgetall(`${prefix}held`), {});
  });

  it('takes a member over when its tab joins again through another process', async (t) => {
    const { a, b } = service(t);
    await a.join('old', join('n1'), [], 'x');
    const joined = await b.join('new', join('n1'), [], 'x');
    assert.ok(joined.ok);
    assert.equal(joined.superseded, 'old');
    const refused = await a.heartbeat('old');
    assert.deepEqual(refused.ok ? 'ok' : refused.code, 'ERR_NOT_JOINED');
    const beat = await b.heartbeat('new');
    assert.ok(beat.ok);
    assert.deepEqual(ids(beat.view), ['n1']);
  });

  it('sweeps once an interval, whichever process asks first', async (t) => {
    const { a, b, clock } = service(t);
    await a.join('s1', join('quiet'), [], 'x');
    clock.now += HEARTBEAT_TIMEOUT;
    const first = await a.sweep();
    const second = await b.sweep();
    assert.deepEqual([first.failures.length, second.failures.length], [1, 0]);
  });

  it('refuses a member past the cap of its cluster, counted over both processes', async (t) => {
    const { a, b } = service(t, { maxMembersPerCluster: 2 });
    assert.ok((await a.join('s1', join('n1'), [], 'x')).ok);
    assert.ok((await b.join('s2', join('n2'), [], 'x')).ok);
    const third = await a.join('s3', join('n3'), [], 'x');
    assert.equal(third.ok ? 'ok' : third.code, 'ERR_CLUSTER_FULL');
  });
});
