/**
 * The held-partition bookkeeping: what survives a reload, and how waiting for a partition ends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ownership } from '../../worker/membership/ownership.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { Scheduler } from '../sim/scheduler.ts';
import { settle } from '../sim/settle.ts';

/** Lets every pending microtask chain finish. */
const drain = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Ownership', () => {
  it('keeps the held partitions across a reopen of its storage', async () => {
    const data = new MemoryStorage();
    const first = new Ownership(data.reopen());
    await first.markHeld(3);
    await first.markHeld(1);
    await first.markHeld(7);
    await first.forget(3);
    const second = new Ownership(data.reopen());
    await second.load();
    assert.deepEqual(second.held(), [1, 7]);
    assert.ok(second.holds(7));
    assert.ok(!second.holds(3));
  });

  it('resolves a wait with true when the partition is marked held', async () => {
    const scheduler = new Scheduler();
    const ownership = new Ownership(new MemoryStorage());
    const waiting = ownership.whenHeld(5, 1000, scheduler.timersFor({ alive: true }));
    await scheduler.advance(10);
    await ownership.markHeld(5);
    assert.equal(await settle(scheduler, waiting), true);
    assert.equal(scheduler.now, 10);
  });

  it('resolves a wait with true when a reload finds the partition held', async () => {
    const scheduler = new Scheduler();
    const data = new MemoryStorage();
    await new Ownership(data.reopen()).markHeld(2);
    const reloaded = new Ownership(data.reopen());
    const waiting = reloaded.whenHeld(2, 1000, scheduler.timersFor({ alive: true }));
    await reloaded.load();
    assert.equal(await settle(scheduler, waiting), true);
    assert.ok(scheduler.now < 1000);
  });

  it('resolves a wait with false once its time is up', async () => {
    const scheduler = new Scheduler();
    const ownership = new Ownership(new MemoryStorage());
    const waiting = ownership.whenHeld(5, 300, scheduler.timersFor({ alive: true }));
    assert.equal(await settle(scheduler, waiting), false);
    assert.equal(scheduler.now, 300);
    await ownership.markHeld(5);
    assert.equal(await ownership.whenHeld(5, 300, scheduler.timersFor({ alive: true })), true);
  });

  it('ends every wait with false when closed, and answers later waits with false at once', async () => {
    const scheduler = new Scheduler();
    const ownership = new Ownership(new MemoryStorage());
    const timers = scheduler.timersFor({ alive: true });
    const waits = [ownership.whenHeld(1, 10_000, timers), ownership.whenHeld(2, 10_000, timers)];
    ownership.close();
    // Not a single virtual ms may pass: close itself must end the waits.
    await drain();
    const outcomes = await Promise.race([Promise.all(waits), drain().then(() => 'pending' as const)]);
    assert.deepEqual(outcomes, [false, false]);
    assert.equal(await Promise.race([ownership.whenHeld(3, 10_000, timers), drain().then(() => 'pending')]), false);
  });

  it('keeps the last held set when several changes are saved together', async () => {
    const data = new MemoryStorage();
    const ownership = new Ownership(data.reopen());
    await Promise.all([
      ownership.markHeld(1),
      ownership.markHeld(2),
      ownership.markHeld(3),
      ownership.forget(2),
      ownership.markHeld(4),
    ]);
    const reloaded = new Ownership(data.reopen());
    await reloaded.load();
    assert.deepEqual(reloaded.held(), [1, 3, 4]);
  });

  it('has saved a partition once marking it held resolves, whatever save was finishing meanwhile', async () => {
    // A second change can come at any microtask of the first one's save: try each of the first few.
    for (let delay = 0; delay < 12; delay++) {
      const data = new MemoryStorage();
      const ownership = new Ownership(data.reopen());
      const first = ownership.markHeld(1);
      let hops = delay;
      while (hops-- > 0) await Promise.resolve();
      await ownership.markHeld(2);
      await first;
      // Whatever else was still running has finished too: the set left in storage is final.
      await drain();
      const reloaded = new Ownership(data.reopen());
      await reloaded.load();
      assert.deepEqual(reloaded.held(), [1, 2], `second change ${delay} microtasks after the first`);
    }
  });

  it('reports progress of a transfer, and 1 once held', async () => {
    const ownership = new Ownership(new MemoryStorage());
    assert.equal(ownership.progress(9), 0);
    ownership.setProgress(9, 0.4);
    assert.equal(ownership.progress(9), 0.4);
    ownership.setProgress(9, 7);
    assert.equal(ownership.progress(9), 1);
    ownership.setProgress(9, 0.5);
    await ownership.markHeld(9);
    assert.equal(ownership.progress(9), 1);
    await ownership.forget(9);
    assert.equal(ownership.progress(9), 0);
  });

  it('forgets every held partition at once, durably', async () => {
    const data = new MemoryStorage();
    const ownership = new Ownership(data.reopen());
    await ownership.markHeld(1);
    await ownership.markHeld(2);
    await ownership.forgetAll();
    assert.deepEqual(ownership.held(), []);
    const reloaded = new Ownership(data.reopen());
    await reloaded.load();
    assert.deepEqual(reloaded.held(), []);
  });
});
