/**
 * Running virtual time until a call settles: what a test does with every call it makes of a simulated node.
 */
import type { Scheduler } from './scheduler.ts';

/**
 * Runs `scheduler` until `promise` settles, and returns its outcome. Fails when virtual time runs out first (no event
 * left to run) rather than leave the caller awaiting a promise nothing will ever settle.
 */
export async function settle<T>(scheduler: Scheduler, promise: Promise<T>): Promise<T> {
  let done = false;
  const tracked = promise.finally(() => {
    done = true;
  });
  tracked.catch(() => {});
  await scheduler.run(() => done);
  if (!done) throw new Error('virtual time ran out before the call settled');
  return tracked;
}
