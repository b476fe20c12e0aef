/** Membership rules and the rate limiter, driven by a hand-moved clock: no sockets, no timers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Membership, type MembershipOptions } from '../../signaling/membership.ts';
import { TokenBucket } from '../../signaling/rate-limit.ts';

const INTERVAL = 1000;
const TIMEOUT = 3000;
const GRACE = 10_000;

function setup(overrides: Partial<MembershipOptions> = {}) {
  const clock = { time: 1_000_000 };
  const membership = new Membership({
    heartbeatInterval: INTERVAL,
    heartbeatTimeout: TIMEOUT,
    suspectGrace: GRACE,
    maxMembersPerCluster: 64,
    // Members report from their join on, unless a test says otherwise: the tenure rule has tests of its own.
    reporterTenure: 0,
    now: () => clock.time,
    ...overrides,
  });
  /** Joins node `id` of `cluster` on connection `c-<id>` and asserts it was accepted. */
  const join = (id: string, cluster = 'main') => {
    const outcome = membership.join(`c-${id}`, { cluster, nodeId: id, domain: `d-${id}` });
    assert.ok(outcome.ok, `join of ${id} refused`);
    return outcome;
  };
  const states = (cluster = 'main') =>
    Object.fromEntries((membership.view(cluster)?.members ?? []).map((member) => [member.id, member.state]));
  const epoch = (cluster = 'main') => membership.view(cluster)?.epoch ?? -1;
  return { clock, membership, join, states, epoch };
}

describe('membership views', () => {
  it('gives the first member a view holding itself, alive, with its join time', () => {
    const { clock, join } = setup();
    const { view } = join('a');
    assert.deepEqual(view.members, [{ id: 'a', domain: 'd-a', placement: '', state: 'alive', joinedAt: clock.time }]);
    assert.equal(view.cluster, 'main');
  });

  it('puts the first counter a member signs in its view entry, as its latest join told', () => {
    const { membership } = setup();
    membership.join('c-a', { cluster: 'main', nodeId: 'a', domain: 'd-a', signedFrom: 1025 });
    membership.join('c-b', { cluster: 'main', nodeId: 'b', domain: 'd-b' });
    const outcome = membership.join('c-a2', { cluster: 'main', nodeId: 'a', domain: 'd-a', signedFrom: 3 });
    assert.ok(outcome.ok);
    const members = outcome.view.members;
    assert.equal(members.find((m) => m.id === 'a')!.signedFrom, 3);
    assert.equal('signedFrom' in members.find((m) => m.id === 'b')!, false);
  });

  it('reports the new view as changed on every join and keeps members sorted by id', () => {
    const { join } = setup();
    join('b');
    const { changes } = join('a');
    assert.equal(changes.views.length, 1);
    assert.deepEqual(
      changes.views[0]?.members.map((member) => member.id),
      ['a', 'b'],
    );
  });

  it('reports each change as a delta from the view before it: the members new or changed and the ids gone', () => {
    const { membership, join } = setup();
    const first = join('a');
    join('b');
    const left = membership.leave('c-a');
    const { changes } = join('c');
    const [delta] = changes.deltas ?? [];
    assert.deepEqual(
      delta?.upserts.map((member) => member.id),
      ['c'],
    );
    assert.deepEqual(delta?.removals, []);
    assert.equal(delta?.prevEpoch, left.views[0]?.epoch);
    assert.equal(delta?.epoch, changes.views[0]?.epoch);
    assert.deepEqual(left.deltas?.[0]?.removals, ['a']);
    assert.ok((left.deltas?.[0]?.prevEpoch ?? 0) > first.view.epoch);
  });

  it('grows the epoch on every change even when the clock stands still or steps back', () => {
    const { clock, membership, join, epoch } = setup();
    const seen: number[] = [];
    join('a');
    seen.push(epoch());
    join('b');
    seen.push(epoch());
    clock.time -= 60_000;
    join('c');
    seen.push(epoch());
    membership.leave('c-b');
    seen.push(epoch());
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `epochs ${seen.join(', ')}`);
  });

  it('takes the epoch from the clock so a re-formed cluster starts above its old epochs', () => {
    const { clock, membership, join, epoch } = setup();
    join('a');
    join('b');
    const before = epoch();
    membership.leave('c-a');
    membership.leave('c-b');
    assert.equal(membership.view('main'), undefined);
    clock.time += 1;
    join('a');
    assert.ok(epoch() > before);
  });

  it('does not bump the epoch for a heartbeat that changes nothing', () => {
    const { clock, membership, join, epoch } = setup();
    join('a');
    const before = epoch();
    clock.time += INTERVAL;
    const beat = membership.heartbeat('c-a');
    assert.ok(beat.ok);
    assert.equal(beat.changes.views.length, 0);
    assert.equal(epoch(), before);
  });

  it('keeps clusters apart', () => {
    const { membership, join } = setup();
    join('a', 'one');
    join('b', 'two');
    assert.deepEqual(
      membership.view('one')?.members.map((member) => member.id),
      ['a'],
    );
    assert.deepEqual(
      membership.view('two')?.members.map((member) => member.id),
      ['b'],
    );
  });

  it('refuses a join beyond maxMembersPerCluster but lets a member already there rejoin', () => {
    const { membership, join } = setup({ maxMembersPerCluster: 2 });
    join('a');
    join('b');
    const refused = membership.join('c-c', { cluster: 'main', nodeId: 'c', domain: 'd' });
    assert.equal(refused.ok ? 'ok' : refused.code, 'ERR_CLUSTER_FULL');
    const rejoin = membership.join('c-a2', { cluster: 'main', nodeId: 'a', domain: 'd-a' });
    assert.ok(rejoin.ok);
    assert.ok(membership.join('c-x', { cluster: 'other', nodeId: 'x', domain: 'd' }).ok);
  });

  it('counts a member against the holders of its latest join until it is no longer a member', () => {
    const { clock, membership } = setup();
    const joinAs = (connection: string, nodeId: string, holders: string[]) =>
      assert.ok(membership.join(connection, { cluster: 'main', nodeId, domain: 'd' }, holders).ok);
    joinAs('c1', 'a', ['x', 'shared']);
    joinAs('c2', 'b', ['x']);
    assert.deepEqual(
      [membership.held('x'), membership.held('shared'), membership.holds('main', 'a', 'x')],
      [2, 1, true],
    );
    // Taken over from elsewhere, the member moves to the new join's holders.
    joinAs('c3', 'a', ['y']);
    assert.deepEqual([membership.held('x'), membership.held('shared'), membership.held('y')], [1, 0, 1]);
    membership.leave('c2');
    assert.equal(membership.held('x'), 0);
    // A closed connection's member counts until its silence removes it.
    membership.disconnect('c3');
    assert.equal(membership.held('y'), 1);
    clock.time += TIMEOUT;
    membership.sweep();
    assert.equal(membership.held('y'), 0);
  });

  it('refuses a second join of one connection under another cluster or node id', () => {
    const { membership, join } = setup();
    join('a');
    const other = membership.join('c-a', { cluster: 'main', nodeId: 'z', domain: 'd' });
    assert.equal(other.ok ? 'ok' : other.code, 'ERR_INVALID_ARGUMENT');
    assert.ok(membership.join('c-a', { cluster: 'main', nodeId: 'a', domain: 'd-a' }).ok);
  });

  it('hands a node id to the newest connection and names the superseded one', () => {
    const { membership, join } = setup();
    join('a');
    const takeover = membership.join('c-a-new', { cluster: 'main', nodeId: 'a', domain: 'd-a' });
    assert.ok(takeover.ok);
    assert.equal(takeover.superseded, 'c-a');
    const stale = membership.heartbeat('c-a');
    assert.equal(stale.ok ? 'ok' : stale.code, 'ERR_NOT_JOINED');
    assert.ok(membership.heartbeat('c-a-new').ok);
  });

  it('removes a leaving member at once and forgets an emptied cluster', () => {
    const { membership, join } = setup();
    join('a');
    join('b');
    const changes = membership.leave('c-a');
    assert.deepEqual(
      changes.views[0]?.members.map((member) => member.id),
      ['b'],
    );
    membership.leave('c-b');
    assert.equal(membership.view('main'), undefined);
    assert.deepEqual(membership.clusterNames(), []);
  });
});

describe('failure detection', () => {
  it('keeps a member until heartbeatTimeout of silence and removes it at the first sweep after', () => {
    const { clock, membership, join, states } = setup();
    join('a');
    join('b');
    clock.time += TIMEOUT - 1;
    membership.heartbeat('c-a');
    assert.equal(membership.sweep().views.length, 0);
    clock.time += 1;
    const { views, failures } = membership.sweep();
    assert.deepEqual(failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
    assert.equal(views.length, 1);
    assert.deepEqual(states(), { a: 'alive' });
  });

  it('brings a silent member back on its next heartbeat with its original join time', () => {
    const { clock, membership, join, epoch } = setup();
    join('a');
    const joinedAt = join('b').view.members.find((member) => member.id === 'b')?.joinedAt;
    clock.time += TIMEOUT;
    membership.heartbeat('c-a');
    membership.sweep();
    const out = epoch();
    clock.time += 500;
    const beat = membership.heartbeat('c-b');
    assert.ok(beat.ok);
    assert.equal(beat.changes.views.length, 1);
    assert.ok(epoch() > out);
    assert.deepEqual(
      beat.view.members.find((member) => member.id === 'b'),
      {
        id: 'b',
        domain: 'd-b',
        placement: '',
        state: 'alive',
        joinedAt,
      },
    );
  });

  it('marks a disconnected member suspect at once and removes it after heartbeatTimeout', () => {
    const { clock, membership, join, states } = setup();
    join('a');
    join('b');
    const changes = membership.disconnect('c-b');
    assert.equal(changes.views.length, 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    clock.time += TIMEOUT;
    membership.heartbeat('c-a');
    assert.deepEqual(membership.sweep().failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive' });
    assert.equal(membership.stats().outOfView, 0);
  });

  it('restores a disconnected member that rejoins within heartbeatTimeout without it ever leaving the view', () => {
    const { clock, membership, join, states } = setup();
    join('a');
    join('b');
    membership.disconnect('c-b');
    clock.time += TIMEOUT / 2;
    const rejoin = membership.join('c-b2', { cluster: 'main', nodeId: 'b', domain: 'd-b' });
    assert.ok(rejoin.ok);
    assert.equal(rejoin.superseded, null);
    assert.equal(rejoin.view.members.find((member) => member.id === 'b')?.joinedAt, clock.time);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
  });

  it('marks a reported member suspect and removes it when it misses its next heartbeat deadline', () => {
    const { clock, membership, join, states } = setup();
    for (const id of ['a', 'b', 'c']) join(id);
    const report = membership.report('c-a', 'c');
    assert.ok(report.ok);
    assert.equal(report.state, 'suspect');
    assert.deepEqual(states(), { a: 'alive', b: 'alive', c: 'suspect' });
    clock.time += 2 * INTERVAL - 1;
    membership.heartbeat('c-a');
    membership.heartbeat('c-b');
    assert.deepEqual(membership.sweep().failures, []);
    clock.time += 1;
    assert.deepEqual(membership.sweep().failures, [{ cluster: 'main', nodeId: 'c', reason: 'unconfirmed' }]);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
  });

  it('keeps a reported member that heartbeats, suspect until the report expires, then alive', () => {
    const { clock, membership, join, states } = setup();
    for (const id of ['a', 'b', 'c']) join(id);
    membership.report('c-a', 'c');
    const step = (ms: number) => {
      clock.time += ms;
      for (const id of ['a', 'b', 'c']) membership.heartbeat(`c-${id}`);
      return membership.sweep();
    };
    step(INTERVAL);
    step(INTERVAL);
    assert.deepEqual(states(), { a: 'alive', b: 'alive', c: 'suspect' });
    const { views } = step(INTERVAL);
    assert.equal(views.length, 1);
    assert.deepEqual(states(), { a: 'alive', b: 'alive', c: 'alive' });
  });

  it('never removes a heartbeating member on one peer’s word, even in a cluster of two', () => {
    const { clock, membership, join, states } = setup();
    join('a');
    join('b');
    for (let i = 0; i < 5; i++) {
      assert.ok(membership.report('c-a', 'b').ok);
      clock.time += INTERVAL;
      membership.heartbeat('c-a');
      membership.heartbeat('c-b');
      assert.deepEqual(membership.sweep().failures, []);
    }
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
  });

  it('refuses reports from a member joined less than reporterTenure ago, changing nothing', () => {
    const { clock, membership, join, states } = setup({ reporterTenure: 2 * INTERVAL });
    for (const id of ['a', 'b', 'c']) join(id);
    clock.time += INTERVAL;
    for (const id of ['a', 'b', 'c']) membership.heartbeat(`c-${id}`);
    join('d');
    join('e');
    clock.time += INTERVAL;
    for (const id of ['a', 'b', 'c', 'd', 'e']) membership.heartbeat(`c-${id}`);
    // d and e joined a second ago: their word counts for nothing yet, however many they are.
    for (const reporter of ['d', 'e']) {
      const refused = membership.report(`c-${reporter}`, 'a');
      assert.ok(!refused.ok && refused.code === 'ERR_UNAUTHORIZED', JSON.stringify(refused));
    }
    assert.equal(states().a, 'alive');
    // a has been joined for two seconds: its report counts.
    assert.equal((membership.report('c-a', 'd') as { state: string }).state, 'suspect');
  });

  it('removes a member reported by a strict majority of the others and holds it out until heartbeatTimeout', () => {
    const { clock, membership, join, states } = setup();
    for (const id of ['a', 'b', 'c', 'd', 'e']) join(id);
    assert.equal((membership.report('c-a', 'e') as { state: string }).state, 'suspect');
    assert.equal((membership.report('c-b', 'e') as { state: string }).state, 'suspect');
    const third = membership.report('c-c', 'e');
    assert.ok(third.ok);
    assert.equal(third.state, 'removed');
    assert.deepEqual(third.changes.failures, [{ cluster: 'main', nodeId: 'e', reason: 'majority' }]);
    clock.time += TIMEOUT - 1;
    const held = membership.heartbeat('c-e');
    assert.ok(held.ok);
    assert.equal(held.changes.views.length, 0);
    assert.equal(states().e, undefined);
    clock.time += 1;
    membership.heartbeat('c-e');
    assert.equal(states().e, 'alive');
  });

  it('refuses reports of oneself, of non-members and from a member out of the view', () => {
    const { clock, membership, join } = setup();
    join('a');
    join('b');
    join('x', 'other');
    const code = (outcome: { ok: boolean; code?: string }) => (outcome.ok ? 'ok' : outcome.code);
    assert.equal(code(membership.report('c-a', 'a')), 'ERR_INVALID_ARGUMENT');
    assert.equal(code(membership.report('c-a', 'x')), 'ERR_NOT_MEMBER');
    assert.equal(code(membership.report('c-a', 'nobody')), 'ERR_NOT_MEMBER');
    assert.equal(code(membership.report('c-nobody', 'a')), 'ERR_NOT_JOINED');
    clock.time += TIMEOUT;
    membership.heartbeat('c-a');
    membership.sweep();
    assert.equal(code(membership.report('c-b', 'a')), 'ERR_NOT_MEMBER');
  });
});

describe('grace for hidden and frozen tabs', () => {
  /** Moves the clock by `ms`, heartbeating `alive` first so that only the others fall silent, then sweeps. */
  const pass = (
    { clock, membership }: ReturnType<typeof setup>,
    ms: number,
    alive: readonly string[] = ['a'],
  ): ReturnType<Membership['sweep']> => {
    clock.time += ms;
    for (const id of alive) membership.heartbeat(`c-${id}`);
    return membership.sweep();
  };

  it('keeps a member that announced its tab hidden in the view as suspect past heartbeatTimeout of silence', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    assert.ok(membership.lifecycle('c-b', 'hidden').ok);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
    const { failures, views } = pass(cluster, TIMEOUT);
    assert.deepEqual(failures, []);
    assert.equal(views.length, 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    pass(cluster, GRACE - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
  });

  it('reports the start of a grace once, with the announced state and its end', () => {
    const cluster = setup();
    const { clock, membership, join } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'frozen');
    const announcedAt = clock.time;
    assert.deepEqual(pass(cluster, TIMEOUT).graces, [
      { cluster: 'main', nodeId: 'b', state: 'frozen', until: announcedAt + TIMEOUT + GRACE },
    ]);
    assert.deepEqual(pass(cluster, 1000).graces, []);
    assert.equal(membership.stats().inGrace, 1);
    assert.equal(membership.stats().suspect, 1);
  });

  it('removes a silent announced member when the grace ends, with failure reason grace', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'frozen');
    pass(cluster, TIMEOUT + GRACE - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    const { failures } = pass(cluster, 1);
    assert.deepEqual(failures, [{ cluster: 'main', nodeId: 'b', reason: 'grace' }]);
    assert.deepEqual(states(), { a: 'alive' });
    assert.equal(membership.stats().inGrace, 0);
  });

  it('ends the grace on a heartbeat: the member is alive again with its join time, and a new silence starts over', () => {
    const cluster = setup();
    const { membership, join, states, epoch } = cluster;
    join('a');
    const joinedAt = join('b').view.members.find((member) => member.id === 'b')?.joinedAt;
    membership.lifecycle('c-b', 'frozen');
    pass(cluster, TIMEOUT + GRACE / 2);
    const during = epoch();
    const beat = membership.heartbeat('c-b');
    assert.ok(beat.ok);
    assert.equal(beat.changes.views.length, 1);
    assert.ok(epoch() > during);
    assert.deepEqual(
      beat.view.members.find((member) => member.id === 'b'),
      {
        id: 'b',
        domain: 'd-b',
        placement: '',
        state: 'alive',
        joinedAt,
      },
    );
    assert.equal(membership.stats().inGrace, 0);
    // Still announced frozen (it never said active), so the next silence gets a whole grace again.
    pass(cluster, TIMEOUT + GRACE - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    assert.deepEqual(pass(cluster, 1).failures, [{ cluster: 'main', nodeId: 'b', reason: 'grace' }]);
  });

  it('ends the grace on active, after which silence fails the member at heartbeatTimeout', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'hidden');
    pass(cluster, TIMEOUT);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    const active = membership.lifecycle('c-b', 'active');
    assert.ok(active.ok);
    assert.equal(active.changes.views.length, 1);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
    pass(cluster, TIMEOUT - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
    assert.deepEqual(pass(cluster, 1).failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
  });

  it('still fails a silent member that never announced at heartbeatTimeout, beside one in grace', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    join('c');
    membership.lifecycle('c-b', 'hidden');
    pass(cluster, TIMEOUT - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'alive', c: 'alive' });
    const { failures } = pass(cluster, 1);
    assert.deepEqual(failures, [{ cluster: 'main', nodeId: 'c', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
  });

  it('removes an announced member whose connection closed at heartbeatTimeout of silence, grace or not', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    join('c');
    membership.lifecycle('c-b', 'hidden');
    membership.lifecycle('c-c', 'frozen');
    // b's tab closes before its silence reaches the timeout; c's closes during its grace.
    membership.disconnect('c-b');
    assert.deepEqual(states(), { a: 'alive', b: 'suspect', c: 'alive' });
    pass(cluster, TIMEOUT - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect', c: 'alive' });
    const { failures } = pass(cluster, 1);
    assert.deepEqual(failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive', c: 'suspect' });
    pass(cluster, GRACE / 2);
    membership.disconnect('c-c');
    assert.deepEqual(membership.sweep().failures, [{ cluster: 'main', nodeId: 'c', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive' });
    assert.equal(membership.stats().outOfView, 0);
  });

  it('keeps the grace of an announced member whose connection stopped answering pings', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'frozen');
    pass(cluster, TIMEOUT);
    membership.disconnect('c-b', 'unanswered');
    pass(cluster, GRACE - 1);
    assert.deepEqual(states(), { a: 'alive', b: 'suspect' });
    assert.deepEqual(pass(cluster, 1).failures, [{ cluster: 'main', nodeId: 'b', reason: 'grace' }]);
    assert.equal(membership.stats().outOfView, 0);
  });

  it('forgets the announcement on a new join, so the rejoined member fails at heartbeatTimeout', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'hidden');
    assert.ok(membership.join('c-b2', { cluster: 'main', nodeId: 'b', domain: 'd-b' }).ok);
    assert.deepEqual(pass(cluster, TIMEOUT).failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive' });
  });

  it('does not remove a reported announced member at the report deadline, but does on a majority of reports', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    for (const id of ['a', 'b', 'c', 'd']) join(id);
    membership.lifecycle('c-d', 'frozen');
    membership.report('c-a', 'd');
    assert.deepEqual(pass(cluster, 2 * INTERVAL, ['a', 'b', 'c']).failures, []);
    assert.equal(states()['d'], 'suspect');
    const report = membership.report('c-b', 'd');
    assert.ok(report.ok);
    assert.equal(report.state, 'removed');
    assert.deepEqual(report.changes.failures, [{ cluster: 'main', nodeId: 'd', reason: 'majority' }]);
    assert.deepEqual(states(), { a: 'alive', b: 'alive', c: 'alive' });
  });

  it('gives no grace when suspectGrace is 0', () => {
    const cluster = setup({ suspectGrace: 0 });
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    membership.lifecycle('c-b', 'frozen');
    assert.deepEqual(pass(cluster, TIMEOUT).failures, [{ cluster: 'main', nodeId: 'b', reason: 'heartbeat' }]);
    assert.deepEqual(states(), { a: 'alive' });
  });

  it('counts a lifecycle announcement as a heartbeat that brings a silent member back', () => {
    const cluster = setup();
    const { membership, join, states } = cluster;
    join('a');
    join('b');
    pass(cluster, TIMEOUT);
    assert.deepEqual(states(), { a: 'alive' });
    const hidden = membership.lifecycle('c-b', 'hidden');
    assert.ok(hidden.ok);
    assert.deepEqual(states(), { a: 'alive', b: 'alive' });
  });

  it('refuses lifecycle announcements from connections that hold no seat', () => {
    const { membership, join, states } = setup();
    join('a');
    const stranger = membership.lifecycle('c-nobody', 'frozen');
    assert.equal(stranger.ok ? 'ok' : stranger.code, 'ERR_NOT_JOINED');
    // A tab superseded by a reload of itself no longer speaks for the node.
    assert.ok(membership.join('c-a2', { cluster: 'main', nodeId: 'a', domain: 'd-a' }).ok);
    const superseded = membership.lifecycle('c-a', 'frozen');
    assert.equal(superseded.ok ? 'ok' : superseded.code, 'ERR_NOT_JOINED');
    membership.leave('c-a2');
    join('b');
    const left = membership.lifecycle('c-a2', 'hidden');
    assert.equal(left.ok ? 'ok' : left.code, 'ERR_NOT_JOINED');
    assert.deepEqual(states(), { b: 'alive' });
  });
});

describe('signal routing and node metrics', () => {
  it('routes a signal to the connection of a member of the sender’s view', () => {
    const { membership, join } = setup();
    join('a');
    join('b');
    assert.deepEqual(membership.route('c-a', 'b'), { ok: true, from: 'a', connection: 'c-b' });
  });

  it('refuses to route to oneself, another cluster, a disconnected member, or from outside the view', () => {
    const { clock, membership, join } = setup();
    join('a');
    join('b');
    join('c');
    join('x', 'other');
    const code = (outcome: { ok: boolean; code?: string }) => (outcome.ok ? 'ok' : outcome.code);
    assert.equal(code(membership.route('c-a', 'a')), 'ERR_INVALID_ARGUMENT');
    assert.equal(code(membership.route('c-a', 'x')), 'ERR_NOT_MEMBER');
    assert.equal(code(membership.route('c-nobody', 'a')), 'ERR_NOT_JOINED');
    membership.disconnect('c-c');
    assert.equal(code(membership.route('c-a', 'c')), 'ERR_NOT_MEMBER');
    clock.time += TIMEOUT;
    membership.heartbeat('c-a');
    membership.sweep();
    assert.equal(code(membership.route('c-b', 'a')), 'ERR_NOT_MEMBER');
  });

  it('keeps each member’s latest metrics snapshot and drops it when the member leaves', () => {
    const { clock, membership, join } = setup();
    join('a');
    join('b');
    membership.setMetrics('c-a', { puts: 1 });
    clock.time += 10;
    membership.setMetrics('c-a', { puts: 2, gets: 5 });
    membership.setMetrics('c-b', { puts: 7 });
    assert.deepEqual(membership.metrics('main'), {
      a: { at: clock.time, values: { puts: 2, gets: 5 } },
      b: { at: clock.time, values: { puts: 7 } },
    });
    membership.leave('c-b');
    assert.deepEqual(Object.keys(membership.metrics('main')), ['a']);
    const refused = membership.setMetrics('c-nobody', { puts: 1 });
    assert.equal(refused.ok ? 'ok' : refused.code, 'ERR_NOT_JOINED');
  });

  it('counts members by state and those out of the view', () => {
    const { clock, membership, join } = setup();
    for (const id of ['a', 'b', 'c']) join(id);
    join('x', 'other');
    membership.report('c-a', 'b');
    clock.time += TIMEOUT;
    for (const id of ['a', 'b', 'x']) membership.heartbeat(`c-${id}`);
    membership.sweep();
    assert.deepEqual(membership.stats(), { clusters: 2, alive: 3, suspect: 0, inGrace: 0, outOfView: 1 });
  });
});

describe('token bucket', () => {
  it('allows a burst and then refuses until time refills it at the configured rate', () => {
    const clock = { time: 0 };
    const bucket = new TokenBucket(10, 3, () => clock.time);
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [true, true, true, false]);
    clock.time += 99;
    assert.equal(bucket.take(), false);
    clock.time += 1;
    assert.equal(bucket.take(), true);
    clock.time += 10_000;
    const taken = Array.from({ length: 5 }, () => bucket.take()).filter(Boolean).length;
    assert.equal(taken, 3);
  });

  it('neither mints tokens nor jams when the clock steps back', () => {
    const clock = { time: 1000 };
    const bucket = new TokenBucket(10, 1, () => clock.time);
    assert.equal(bucket.take(), true);
    clock.time -= 500;
    assert.equal(bucket.take(), false);
    clock.time += 100;
    assert.equal(bucket.take(), true);
  });
});
