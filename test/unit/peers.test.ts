import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../worker/env.ts';
import { isReply, Peers, type Reply } from '../../worker/transport/peers.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import { Scheduler, WORLD } from '../sim/scheduler.ts';

const key = new TextEncoder().encode('k');

interface Rig {
  readonly scheduler: Scheduler;
  readonly peers: Peers;
  /** Every message sent, in order, with its receiver. */
  readonly sent: { to: string; message: PeerMessage }[];
  /** Peers whose requests timed out, in order. */
  readonly timedOut: string[];
}

/** Peers on the simulation's virtual time; `clock` replaces the scheduler's clock when given. */
function rig(clock?: Clock): Rig {
  const scheduler = new Scheduler();
  const sent: { to: string; message: PeerMessage }[] = [];
  const timedOut: string[] = [];
  const peers = new Peers({
    self: 'me',
    clock: clock ?? scheduler.clock,
    timers: scheduler.timersFor(WORLD),
    random: () => 0.5,
    send: (to, message) => sent.push({ to, message }),
    suspicionMs: 1000,
    onTimeout: (to) => timedOut.push(to),
  });
  return { scheduler, peers, sent, timedOut };
}

/** Runs virtual time up to `until` ms. */
async function runUntil(scheduler: Scheduler, until: number): Promise<void> {
  await scheduler.run(() => false, until);
}

function ack(to: { message: PeerMessage }, from: string): Reply {
  return { type: 'replicate-ack', from, requestId: to.message.requestId };
}

describe('Peers', () => {
  it('sends a request with its envelope and resolves it with the reply', async () => {
    const { peers, sent } = rig();
    const reply = peers.request('a', { type: 'read', key, requireHeld: false }, 500);
    assert.equal(sent.length, 1);
    const { to, message } = sent[0]!;
    assert.equal(to, 'a');
    assert.deepEqual(Object.keys(message).sort(), ['from', 'key', 'requestId', 'requireHeld', 'type']);
    assert.equal(message.from, 'me');
    const answer: Reply = { type: 'read-reply', from: 'a', requestId: message.requestId, versions: [] };
    assert.equal(peers.settle(answer), true);
    assert.equal(await reply, answer);
    assert.equal(peers.pendingCount, 0);
  });

  it('puts off a request while its peer keeps answering others queued with it, and times it out once alone', async () => {
    const { scheduler, peers, sent, timedOut } = rig();
    const outcomes: (Reply | null)[] = [];
    for (let i = 0; i < 3; i++)
      void peers.request('busy', { type: 'read', key, requireHeld: false }, 500).then((r) => outcomes.push(r));
    // The peer answers the first two slowly, one every 400 ms: busy, not failed.
    await runUntil(scheduler, 400);
    peers.heard('busy');
    peers.settle(ack(sent[0]!, 'busy'));
    await runUntil(scheduler, 800);
    peers.heard('busy');
    peers.settle(ack(sent[1]!, 'busy'));
    await runUntil(scheduler, 999);
    assert.deepEqual(timedOut, [], 'nothing timed out while the peer answered');
    // The third, alone now and never answered, times out at the end of its current timeout.
    await runUntil(scheduler, 1000);
    assert.deepEqual(timedOut, ['busy']);
    assert.equal(outcomes.length, 3);
    assert.equal(outcomes[2], null);
  });

  it('times out requests to a peer that stopped answering, however many wait', async () => {
    const { scheduler, peers, timedOut } = rig();
    for (let i = 0; i < 3; i++) void peers.request('gone', { type: 'read', key, requireHeld: false }, 500);
    await runUntil(scheduler, 501);
    assert.deepEqual(timedOut, ['gone', 'gone', 'gone']);
  });

  it('refuses a reply from another node than the one asked, and a second reply', async () => {
    const { peers, sent } = rig();
    void peers.request('a', { type: 'read', key, requireHeld: false }, 500);
    assert.equal(peers.settle(ack(sent[0]!, 'b')), false);
    assert.equal(peers.settle(ack(sent[0]!, 'a')), true);
    assert.equal(peers.settle(ack(sent[0]!, 'a')), false);
  });

  it('resolves a request with null at its timeout and suspects the peer', async () => {
    const { scheduler, peers, timedOut } = rig();
    let outcome: Reply | null | undefined;
    void peers.request('a', { type: 'read', key, requireHeld: false }, 500).then((reply) => (outcome = reply));
    await runUntil(scheduler, 499);
    assert.equal(outcome, undefined);
    assert.equal(peers.isSuspected('a'), false);
    await runUntil(scheduler, 500);
    assert.equal(outcome, null);
    assert.deepEqual(timedOut, ['a']);
    assert.equal(peers.isSuspected('a'), true);
  });

  it('times out each request at its own deadline, whatever the order the timeouts were given in', async () => {
    const { scheduler, peers } = rig();
    const times: Record<string, number> = {};
    const ask = (to: string, timeoutMs: number): void => {
      void peers
        .request(to, { type: 'read', key, requireHeld: false }, timeoutMs)
        .then(() => (times[to] = scheduler.now));
    };
    ask('slow', 2000);
    ask('a', 500);
    await runUntil(scheduler, 100);
    ask('b', 500);
    ask('fast', 50);
    await runUntil(scheduler, 3000);
    assert.deepEqual(times, { fast: 150, a: 500, b: 600, slow: 2000 });
  });

  it('expires requests that time out together in the order they were made', async () => {
    const { scheduler, peers, sent, timedOut } = rig();
    // An answered request with the shorter timeout comes first, so that the shorter timeout is not the later one.
    void peers.request('answered', { type: 'read', key, requireHeld: false }, 500);
    peers.settle(ack(sent[0]!, 'answered'));
    void peers.request('long', { type: 'read', key, requireHeld: false }, 600);
    await runUntil(scheduler, 100);
    void peers.request('short', { type: 'read', key, requireHeld: false }, 500);
    await runUntil(scheduler, 1000);
    assert.deepEqual(timedOut, ['long', 'short']);
  });

  it('never times out a request that was answered, however many were made', async () => {
    const { scheduler, peers, sent, timedOut } = rig();
    for (let i = 0; i < 1000; i++) {
      void peers.request(`n${i % 7}`, { type: 'read', key, requireHeld: false }, 500);
      if (i % 10 === 0) await runUntil(scheduler, scheduler.now + 1);
    }
    for (const s of sent) assert.equal(peers.settle(ack(s, s.to)), true);
    await runUntil(scheduler, 5000);
    assert.deepEqual(timedOut, []);
    assert.equal(peers.pendingCount, 0);
  });

  it('still times out the unanswered requests among answered ones', async () => {
    const { scheduler, peers, sent, timedOut } = rig();
    for (let i = 0; i < 20; i++) {
      void peers.request(i % 5 === 0 ? 'mute' : 'talker', { type: 'read', key, requireHeld: false }, 500);
      await runUntil(scheduler, scheduler.now + 10);
    }
    for (const s of sent) if (s.to === 'talker') peers.settle(ack(s, 'talker'));
    await runUntil(scheduler, 2000);
    assert.deepEqual(timedOut, ['mute', 'mute', 'mute', 'mute']);
  });

  it('restarts the wait of a request when the clock goes back, rather than waiting for the clock to catch up', async () => {
    let offset = 0;
    const scheduler = new Scheduler();
    const { peers, timedOut } = rigOn(scheduler, { now: () => scheduler.now + offset });
    void peers.request('a', { type: 'read', key, requireHeld: false }, 500);
    offset = -1_000_000;
    await runUntil(scheduler, 1500);
    assert.deepEqual(timedOut, ['a']);
  });

  it('hands null to every waiting request when it closes, and to any made after', async () => {
    const { peers } = rig();
    const first = peers.request('a', { type: 'read', key, requireHeld: false }, 500);
    const second = peers.request('b', { type: 'read', key, requireHeld: false }, 500);
    peers.close();
    assert.deepEqual(await Promise.all([first, second]), [null, null]);
    assert.equal(await peers.request('c', { type: 'read', key, requireHeld: false }, 500), null);
    assert.equal(peers.pendingCount, 0);
  });

  it('calls a handler of send exactly once, never from inside send', async () => {
    const { peers, sent } = rig();
    const replies: (Reply | null)[] = [];
    const handler = { onReply: (reply: Reply | null) => replies.push(reply) };
    peers.send('a', { type: 'read', key, requireHeld: false }, 500, handler);
    assert.equal(peers.settle(ack(sent[0]!, 'a')), true);
    assert.equal(replies.length, 1);
    peers.close();
    peers.send('b', { type: 'read', key, requireHeld: false }, 500, handler);
    assert.equal(replies.length, 1);
    await Promise.resolve();
    assert.deepEqual(replies.slice(1), [null]);
  });

  it('counts the sync replies as replies and the sync requests as requests', () => {
    const envelope = { from: 'a', requestId: 1 };
    const replies: PeerMessage[] = [
      { type: 'sync-tree-reply', ...envelope, held: true, hashes: new Uint8Array(8) },
      { type: 'sync-keys-reply', ...envelope, entries: [], next: null },
    ];
    const requests: PeerMessage[] = [
      { type: 'sync-tree', ...envelope, partition: 0, level: 0, indexes: [0] },
      { type: 'sync-keys', ...envelope, partition: 0, leaves: [0], after: null, maxBytes: 1024 },
      { type: 'sync-push', ...envelope, partition: 0, entries: [] },
      { type: 'sync-drop', ...envelope, partition: 0, entries: [] },
    ];
    assert.deepEqual(replies.map(isReply), [true, true]);
    assert.deepEqual(requests.map(isReply), [false, false, false, false]);
  });
});

function rigOn(scheduler: Scheduler, clock: Clock): { peers: Peers; timedOut: string[] } {
  const timedOut: string[] = [];
  const peers = new Peers({
    self: 'me',
    clock,
    timers: scheduler.timersFor(WORLD),
    random: () => 0.5,
    send: () => {},
    suspicionMs: 1000,
    onTimeout: (to) => timedOut.push(to),
  });
  return { peers, timedOut };
}
