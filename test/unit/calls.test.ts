import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { afterTaskScheduler } from '../../worker/after-task.ts';
import { type CallHandler, CallPort, serveCalls } from '../../worker/calls.ts';
import type { Outcome } from '../../worker/main.ts';
import type { GetResult, PutResult } from '../../worker/node.ts';

const putResult = (key: string): PutResult =>
  ({ context: `ctx:${key}`, receipt: { acknowledged: 2, required: 2 } }) as unknown as PutResult;

/** A handler that records its calls and answers each put with a result naming its key. */
function recordingHandler(): { handler: CallHandler; seen: string[] } {
  const seen: string[] = [];
  const handler: CallHandler = {
    get: async (key) => {
      seen.push(`get ${String(key)}`);
      return { ok: true, value: { values: [], context: '', receipt: {} } as unknown as GetResult };
    },
    put: async (key, value) => {
      seen.push(`put ${String(key)} ${value.length}`);
      return { ok: true, value: putResult(String(key)) };
    },
    delete: async (key) => {
      seen.push(`delete ${String(key)}`);
      return { ok: false, error: { code: 'ERR_QUORUM', message: 'no replicas' } };
    },
    setMembers: (members, suspects) => {
      seen.push(`members ${members.map((m) => m.id).join(',')}${suspects.length > 0 ? ` suspect ${suspects}` : ''}`);
    },
  };
  return { handler, seen };
}

/** Counts the messages posted on `port`. */
function countPosts(port: MessagePort): { count: () => number } {
  let n = 0;
  const post = port.postMessage.bind(port);
  port.postMessage = ((message: unknown, transfer?: Transferable[]) => {
    n++;
    post(message, transfer ?? []);
  }) as MessagePort['postMessage'];
  return { count: () => n };
}

describe('calls between page and worker', () => {
  it('carries the first call of a task at once and the others of the task in one message, answers likewise', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    const served = countPosts(port2);
    serveCalls(port2, handler);
    const made = countPosts(port1);
    const calls = new CallPort(port1);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        calls.call({ op: 'put', key: `k${i}`, value: new Uint8Array(3), options: {} }),
      ),
    );
    assert.equal(made.count(), 2);
    assert.equal(served.count(), 2);
    assert.equal(seen.length, 100);
    assert.deepEqual(results[42], { ok: true, value: putResult('k42') });
    calls.close();
  });

  it('settles each call with its own outcome, errors included, whatever the op', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    serveCalls(port2, handler);
    const calls = new CallPort(port1);
    const [got, put, deleted] = await Promise.all([
      calls.call({ op: 'get', key: 'a', options: {} }),
      calls.call({ op: 'put', key: new Uint8Array([1]), value: new Uint8Array(5), options: { w: 1 } }),
      calls.call({ op: 'delete', key: 'c', options: {} }),
    ]);
    assert.equal(got.ok, true);
    assert.deepEqual(put, { ok: true, value: putResult('1') });
    assert.deepEqual(deleted, { ok: false, error: { code: 'ERR_QUORUM', message: 'no replicas' } });
    assert.deepEqual(seen, ['get a', 'put 1 5', 'delete c']);
    calls.close();
  });

  it('runs a view change and the calls made after it in the order they were made', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    serveCalls(port2, handler);
    const calls = new CallPort(port1);
    await calls.call({ op: 'get', key: 'before', options: {} });
    const view = calls.call({
      op: 'members',
      members: [
        { id: 'a', domain: 'd' },
        { id: 'b', domain: 'd' },
      ],
      suspects: ['b'],
    });
    const after = calls.call({ op: 'put', key: 'after', value: new Uint8Array(1), options: {} });
    assert.deepEqual(await view, { ok: true, value: undefined });
    await after;
    assert.deepEqual(seen, ['get before', 'members a,b suspect b', 'put after 1']);
    calls.close();
  });

  it('refuses a view change that is not a list of members', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    serveCalls(port2, handler);
    const calls = new CallPort(port1);
    const outcome = await calls.call({ op: 'members', members: [{ id: 7 }] as never, suspects: [] });
    assert.equal(!outcome.ok && outcome.error.code, 'ERR_INVALID_ARGUMENT');
    const placed = await calls.call({
      op: 'members',
      members: [{ id: 'a', domain: 'd', placement: 7 }] as never,
      suspects: [],
    });
    assert.equal(!placed.ok && placed.error.code, 'ERR_INVALID_ARGUMENT');
    const suspects = await calls.call({ op: 'members', members: [{ id: 'a', domain: 'd' }], suspects: [7] as never });
    assert.equal(!suspects.ok && suspects.error.code, 'ERR_INVALID_ARGUMENT');
    assert.deepEqual(seen, []);
    calls.close();
  });

  it('refuses a malformed call with ERR_INVALID_ARGUMENT without running it', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    serveCalls(port2, handler);
    const calls = new CallPort(port1);
    const outcome: Outcome<unknown> = await calls.call({
      op: 'put',
      key: 'k',
      value: 'not bytes' as unknown as Uint8Array,
      options: {},
    });
    assert.equal(outcome.ok, false);
    assert.equal(!outcome.ok && outcome.error.code, 'ERR_INVALID_ARGUMENT');
    assert.deepEqual(seen, []);
    calls.close();
  });

  it('refuses a call that cannot be cloned, and still delivers the others of its task', async () => {
    const { port1, port2 } = new MessageChannel();
    const { handler, seen } = recordingHandler();
    serveCalls(port2, handler);
    const calls = new CallPort(port1);
    const [bad, good] = await Promise.all([
      calls.call({ op: 'get', key: 'a', options: { r: (() => 1) as unknown as number } }),
      calls.call({ op: 'get', key: 'b', options: {} }),
    ]);
    assert.equal(!bad.ok && bad.error.code, 'ERR_INVALID_ARGUMENT');
    assert.equal(good.ok, true);
    assert.deepEqual(seen, ['get b']);
    calls.close();
  });

  it('settles the calls still waiting with ERR_CLOSED when closed, and refuses new ones', async () => {
    const { port1 } = new MessageChannel();
    const calls = new CallPort(port1);
    const waiting = calls.call({ op: 'get', key: 'a', options: {} });
    calls.close();
    const outcome = await waiting;
    assert.equal(!outcome.ok && outcome.error.code, 'ERR_CLOSED');
    await assert.rejects(calls.call({ op: 'get', key: 'b', options: {} }), { code: 'ERR_CLOSED' });
  });
});

describe('after-task scheduling', () => {
  it('runs what one task scheduled together, after its microtasks, in order', async () => {
    const afterTask = afterTaskScheduler();
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      afterTask(() => order.push('first'));
      void Promise.resolve().then(() => {
        order.push('microtask');
        afterTask(() => order.push('second'));
        afterTask(resolve);
      });
    });
    assert.deepEqual(order, ['microtask', 'first', 'second']);
  });
});
