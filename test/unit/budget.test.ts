/**
 * The byte budget of background work, on the simulation's virtual clock and timers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ByteBudget } from '../../worker/transport/budget.ts';
import type { Clock } from '../../worker/env.ts';
import { Scheduler } from '../sim/scheduler.ts';

/** Runs virtual time until `promise` settles or `cap` ms pass; resolves with the virtual time it settled at, or null. */
async function settledAt(scheduler: Scheduler, promise: Promise<unknown>, cap = 60_000): Promise<number | null> {
  let at: number | null = null;
  void promise.then(() => (at = scheduler.now));
  await scheduler.run(() => at !== null, scheduler.now + cap);
  return at;
}

describe('ByteBudget', () => {
  it('lets one second of bytes be spent at once', async () => {
    const scheduler = new Scheduler();
    const budget = new ByteBudget(1000, scheduler.clock, scheduler.timersFor({ alive: true }));
    assert.equal(budget.available(), 1000);
    assert.equal(await settledAt(scheduler, budget.ready(1000)), 0);
  });

  it('waits when spent until the rate has refilled what is asked', async () => {
    const scheduler = new Scheduler();
    const budget = new ByteBudget(1000, scheduler.clock, scheduler.timersFor({ alive: true }));
    budget.spend(1000);
    assert.equal(budget.available(), 0);
    const at = await settledAt(scheduler, budget.ready(250));
    assert.equal(at, 250);
  });

  it('refills at its rate and never above one second of bytes', async () => {
    const scheduler = new Scheduler();
    const budget = new ByteBudget(2000, scheduler.clock, scheduler.timersFor({ alive: true }));
    budget.spend(2000);
    await scheduler.advance(500);
    assert.equal(budget.available(), 1000);
    await scheduler.advance(10_000);
    assert.equal(budget.available(), 2000);
  });

  it('makes a debt from overspending be paid before the next spend', async () => {
    const scheduler = new Scheduler();
    const budget = new ByteBudget(1000, scheduler.clock, scheduler.timersFor({ alive: true }));
    budget.spend(3000);
    const at = await settledAt(scheduler, budget.ready(1000));
    assert.equal(at, 3000);
  });

  it('caps a wait for more than one second of bytes at one second of refill', async () => {
    const scheduler = new Scheduler();
    const budget = new ByteBudget(1000, scheduler.clock, scheduler.timersFor({ alive: true }));
    budget.spend(1000);
    assert.equal(await settledAt(scheduler, budget.ready(1_000_000)), 1000);
  });

  it('rejects a rate that is not a positive finite number', () => {
    const scheduler = new Scheduler();
    const timers = scheduler.timersFor({ alive: true });
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new ByteBudget(rate, scheduler.clock, timers), RangeError);
    }
  });

  it('keeps refilling after the wall clock is set back', async () => {
    const scheduler = new Scheduler();
    // A wall clock that an operator (or NTP) sets back by an hour; the timers keep running as before.
    let offset = 0;
    const clock: Clock = { now: () => scheduler.now + offset };
    const budget = new ByteBudget(1000, clock, scheduler.timersFor({ alive: true }));
    budget.spend(1000);
    offset = -3_600_000;
    const at = await settledAt(scheduler, budget.ready(500), 10_000);
    assert.notEqual(at, null, 'the budget refilled nothing for 10 s after the clock went back');
    assert.ok(at! <= 1000, `ready after ${at} ms`);
  });
});
