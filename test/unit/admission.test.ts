import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Admission } from '../../worker/admission.ts';

/** A run that stays open until `release` is called. */
function gated(log: string[], name: string): { run: () => Promise<string>; release: () => void } {
  let release!: () => void;
  const open = new Promise<void>((resolve) => (release = resolve));
  return {
    run: async () => {
      log.push(`start ${name}`);
      await open;
      return name;
    },
    release: () => release(),
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('admission of requests', () => {
  it('runs at most maxActive at once and starts the waiting ones in order as others end', async () => {
    const admission = new Admission({ maxActive: 2, maxWaiting: 10 });
    const log: string[] = [];
    const runs = ['a', 'b', 'c', 'd'].map((name) => gated(log, name));
    const results = runs.map((r) => admission.run(r.run));
    await tick();
    assert.deepEqual(log, ['start a', 'start b']);
    assert.equal(admission.waiting, 2);
    runs[1]!.release();
    await tick();
    assert.deepEqual(log, ['start a', 'start b', 'start c']);
    runs[0]!.release();
    runs[2]!.release();
    runs[3]!.release();
    assert.deepEqual(await Promise.all(results), ['a', 'b', 'c', 'd']);
    assert.equal(admission.active, 0);
  });

  it('refuses with ERR_OVERLOADED, running nothing, once maxWaiting requests wait', async () => {
    const admission = new Admission({ maxActive: 1, maxWaiting: 1 });
    const log: string[] = [];
    const first = gated(log, 'first');
    const second = gated(log, 'second');
    const running = admission.run(first.run);
    const waiting = admission.run(second.run);
    let ran = false;
    await assert.rejects(
      admission.run(async () => {
        ran = true;
      }),
      { code: 'ERR_OVERLOADED' },
    );
    assert.equal(ran, false);
    first.release();
    second.release();
    assert.deepEqual(await Promise.all([running, waiting]), ['first', 'second']);
  });

  it('frees the place of a request that fails', async () => {
    const admission = new Admission({ maxActive: 1, maxWaiting: 5 });
    const failing = admission.run(async () => {
      throw new Error('boom');
    });
    const next = admission.run(async () => 'next');
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'next');
    assert.equal(admission.active, 0);
  });
});
