/**
 * Fault injection in the node's transport: the pure fault state in virtual time (isolation, loss, delay, healing,
 * validation), and the links that run every message through it, over real `MessagePort`s.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../worker/env.ts';
import { hasErrorCode } from '../../worker/errors.ts';
import { Faults, MAX_FAULT_DELAY_MS } from '../../worker/transport/faults.ts';
import { CHUNK_PAYLOAD_BYTES } from '../../worker/wire/frames.ts';
import { Links } from '../../worker/transport/links.ts';
import { Rng } from '../sim/random.ts';
import { Scheduler } from '../sim/scheduler.ts';

const SELF = 'self';

interface Rig {
  readonly scheduler: Scheduler;
  readonly faults: Faults;
  /** Messages delivered, as `peer:label`, in delivery order. */
  readonly delivered: string[];
  /** Offers message `label` to `peer` through the faults. */
  send(peer: string, label: string): void;
}

function rig(seed = 1): Rig {
  const scheduler = new Scheduler();
  const faults = new Faults({
    self: SELF,
    random: new Rng(seed).asRandom(),
    clock: scheduler.clock,
    timers: scheduler.timersFor({ alive: true }),
  });
  const delivered: string[] = [];
  return {
    scheduler,
    faults,
    delivered,
    send: (peer, label) => faults.outgoing(peer, () => delivered.push(`${peer}:${label}`)),
  };
}

function invalidArgument(error: unknown): boolean {
  return hasErrorCode(error, 'ERR_INVALID_ARGUMENT');
}

describe('Faults', () => {
  it('delivers at once and admits everything while no fault is in force', () => {
    const { faults, delivered, send } = rig();
    send('a', '1');
    send('b', '2');
    assert.deepEqual(delivered, ['a:1', 'b:2']);
    assert.equal(faults.admits('a'), true);
    assert.deepEqual(faults.state(), { isolated: [], dropRate: 0, delayMs: 0, dropped: 0, delayed: 0 });
  });

  it('drops messages to and from an isolated peer and lets the others through', () => {
    const { faults, delivered, send } = rig();
    faults.isolate(['a']);
    send('a', '1');
    send('b', '2');
    assert.deepEqual(delivered, ['b:2']);
    assert.equal(faults.admits('a'), false);
    assert.equal(faults.admits('b'), true);
    assert.equal(faults.state().dropped, 2);
  });

  it('cuts this node from every peer when its own id is isolated', () => {
    const { faults, delivered, send } = rig();
    faults.isolate([SELF]);
    for (const peer of ['a', 'b', 'c']) {
      send(peer, 'x');
      assert.equal(faults.admits(peer), false);
    }
    assert.deepEqual(delivered, []);
    assert.equal(faults.state().dropped, 6);
  });

  it('adds each isolation to the earlier ones and reports the isolated ids sorted', () => {
    const { faults } = rig();
    faults.isolate(['c']);
    faults.isolate(['a', 'c']);
    assert.deepEqual(faults.state().isolated, ['a', 'c']);
    assert.equal(faults.isCut('a'), true);
    assert.equal(faults.isCut('b'), false);
  });

  it('heals isolation, drop rate and delay at once', () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.isolate(['a']);
    faults.setDropRate(1);
    faults.setDelay(500);
    faults.heal();
    send('a', '1');
    assert.deepEqual(delivered, ['a:1']);
    assert.equal(faults.admits('a'), true);
    assert.equal(scheduler.pending, 0);
    const { isolated, dropRate, delayMs } = faults.state();
    assert.deepEqual({ isolated, dropRate, delayMs }, { isolated: [], dropRate: 0, delayMs: 0 });
  });

  it('drops about the given share of messages in and out at a drop rate', () => {
    const { faults, delivered, send } = rig(7);
    faults.setDropRate(0.3);
    const total = 20_000;
    let admitted = 0;
    for (let i = 0; i < total; i++) {
      send('a', String(i));
      if (faults.admits('a')) admitted++;
    }
    const outShare = 1 - delivered.length / total;
    const inShare = 1 - admitted / total;
    // 20 000 draws at p = 0.3: a standard deviation of 0.0032, so ±0.02 is over six of them.
    assert.ok(Math.abs(outShare - 0.3) < 0.02, `dropped ${outShare} of outgoing`);
    assert.ok(Math.abs(inShare - 0.3) < 0.02, `dropped ${inShare} of incoming`);
    assert.equal(faults.state().dropped, 2 * total - delivered.length - admitted);
  });

  it('drops every message at drop rate 1', () => {
    const { faults, delivered, send } = rig();
    faults.setDropRate(1);
    for (let i = 0; i < 100; i++) send('a', String(i));
    assert.equal(delivered.length, 0);
    assert.equal(faults.admits('a'), false);
  });

  it('holds each outgoing message for the delay and then sends it', async () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.setDelay(100);
    send('a', '1');
    await scheduler.advance(40);
    send('a', '2');
    await scheduler.advance(59);
    assert.deepEqual(delivered, []);
    await scheduler.advance(1);
    assert.deepEqual(delivered, ['a:1']);
    await scheduler.advance(40);
    assert.deepEqual(delivered, ['a:1', 'a:2']);
    assert.equal(faults.state().delayed, 2);
  });

  it('keeps the order of messages to one peer after the delay shrinks', async () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.setDelay(100);
    send('a', 'held');
    faults.setDelay(0);
    send('a', 'later');
    send('b', 'other peer');
    assert.deepEqual(delivered, ['b:other peer']);
    await scheduler.advance(100);
    assert.deepEqual(delivered, ['b:other peer', 'a:held', 'a:later']);
  });

  it('sends held messages at once, in their order per peer, when healed', async () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.setDelay(5_000);
    send('a', '1');
    send('b', '2');
    send('a', '3');
    faults.heal();
    assert.deepEqual(
      delivered.filter((m) => m.startsWith('a:')),
      ['a:1', 'a:3'],
    );
    assert.deepEqual(
      delivered.filter((m) => m.startsWith('b:')),
      ['b:2'],
    );
    await scheduler.advance(10_000);
    assert.equal(delivered.length, 3, 'a held message went out twice');
  });

  it('drops held messages when their peer is isolated before they go out', async () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.setDelay(100);
    send('a', '1');
    send('b', '2');
    faults.isolate(['a']);
    await scheduler.advance(100);
    assert.deepEqual(delivered, ['b:2']);
    assert.equal(faults.state().dropped, 1);
  });

  it('never sends held messages after close', async () => {
    const { scheduler, faults, delivered, send } = rig();
    faults.setDelay(100);
    send('a', '1');
    faults.close();
    await scheduler.advance(1_000);
    assert.deepEqual(delivered, []);
  });

  it('refuses a drop rate outside 0..1 with ERR_INVALID_ARGUMENT and keeps the one in force', () => {
    const { faults } = rig();
    faults.setDropRate(0.5);
    for (const p of [-0.1, 1.1, Number.NaN, '0.5', null]) {
      assert.throws(() => faults.setDropRate(p as number), invalidArgument, `accepted ${String(p)}`);
    }
    assert.equal(faults.state().dropRate, 0.5);
  });

  it('refuses a delay outside 0..60000 ms with ERR_INVALID_ARGUMENT', () => {
    const { faults } = rig();
    for (const ms of [-1, MAX_FAULT_DELAY_MS + 1, Number.NaN, Number.POSITIVE_INFINITY, '10']) {
      assert.throws(() => faults.setDelay(ms as number), invalidArgument, `accepted ${String(ms)}`);
    }
    faults.setDelay(MAX_FAULT_DELAY_MS);
    assert.equal(faults.state().delayMs, MAX_FAULT_DELAY_MS);
  });

  it('refuses node ids that are not an array of non-empty strings with ERR_INVALID_ARGUMENT', () => {
    const { faults } = rig();
    for (const ids of ['a', [''], [1], null]) {
      assert.throws(() => faults.isolate(ids as string[]), invalidArgument, `accepted ${JSON.stringify(ids)}`);
    }
    assert.deepEqual(faults.state().isolated, []);
  });
});

describe('Links with faults', () => {
  /** Two links joined by a real MessageChannel, as a relay port joins a worker to its data channel. */
  function pair(
    faults: Faults | undefined,
    receiverFaults?: Faults,
  ): { sender: Links; received: Uint8Array[]; invalid: string[]; close(): void } {
    const channel = new MessageChannel();
    const received: Uint8Array[] = [];
    const invalid: string[] = [];
    const sender = new Links({
      maxMessageBytes: 1 << 20,
      logger: silentLogger,
      ...(faults !== undefined ? { faults } : {}),
      onMessage: () => {},
      onInvalid: () => {},
    });
    const receiver = new Links({
      maxMessageBytes: 1 << 20,
      logger: silentLogger,
      onMessage: (_from, message) => received.push(message),
      onInvalid: (_from, reason) => invalid.push(reason),
      ...(receiverFaults !== undefined ? { faults: receiverFaults } : {}),
    });
    sender.attachPort('b', channel.port1);
    receiver.attachPort('a', channel.port2);
    return {
      sender,
      received,
      invalid,
      close: () => {
        sender.close();
        receiver.close();
      },
    };
  }

  /** Resolves once `received` holds `count` messages (a busy machine delivers late, never out of order), or after 5 s. */
  async function arrived(received: readonly Uint8Array[], count: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (received.length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** Faults of node `self` at a drop rate of 0.5 whose draws are `draws` in turn: a draw under 0.5 drops. */
  function scripted(self: string, draws: number[]): Faults {
    const scheduler = new Scheduler();
    const faults = new Faults({
      self,
      random: () => draws.shift() ?? 1,
      clock: scheduler.clock,
      timers: scheduler.timersFor({ alive: true }),
    });
    faults.setDropRate(0.5);
    return faults;
  }

  const bytesOf = (messages: readonly Uint8Array[]): number[][] => messages.map((m) => [...m]);

  it('drops one message of a task on its way out, before bundling, and sends the others', async () => {
    const faults = scripted('a', [0.9, 0.1, 0.9]);
    const link = pair(faults);
    try {
      for (const n of [1, 2, 3]) link.sender.send('b', new Uint8Array([n]));
      await arrived(link.received, 2);
      assert.deepEqual(bytesOf(link.received), [[1], [3]]);
      assert.deepEqual(link.invalid, []);
      assert.equal(faults.state().dropped, 1);
      assert.equal(link.sender.dropped, 0, 'no frame was dropped');
    } finally {
      link.close();
    }
  });

  it('judges the messages of an arriving bundle one by one, after unbundling', async () => {
    const faults = scripted('b', [0.9, 0.1, 0.9]);
    const link = pair(undefined, faults);
    try {
      for (const n of [1, 2, 3]) link.sender.send('b', new Uint8Array([n]));
      await arrived(link.received, 2);
      assert.deepEqual(bytesOf(link.received), [[1], [3]]);
      assert.deepEqual(link.invalid, []);
      assert.equal(faults.state().dropped, 1);
    } finally {
      link.close();
    }
  });

  it('drops a message cut into chunks whole, so the next message after healing arrives intact', async () => {
    const faults = new Faults({
      self: 'a',
      random: Math.random,
      clock: { now: () => Date.now() },
      timers: {
        setTimeout: (callback, ms) => setTimeout(callback, ms),
        clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      },
    });
    const link = pair(faults);
    try {
      const large = new Uint8Array(3 * CHUNK_PAYLOAD_BYTES).fill(7);
      faults.isolate(['b']);
      link.sender.send('b', large);
      const deadline = Date.now() + 5000;
      while (faults.state().dropped < 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 5));
      faults.heal();
      link.sender.send('b', large);
      link.sender.send('b', new Uint8Array([1, 2, 3]));
      // Had the message sent while isolated got through, it would come first, ahead of these two.
      await arrived(link.received, 2);
      assert.deepEqual(
        link.received.map((m) => m.byteLength),
        [large.byteLength, 3],
      );
      assert.deepEqual(link.invalid, []);
      assert.equal(faults.state().dropped, 1);
    } finally {
      link.close();
    }
  });
});
