/**
 * Runs work once the current task is over, before the next timers: what a burst of promise continuations produces
 * in one task (many microtasks) is gathered and sent as one message. A microtask would run too soon (before the
 * continuations queued after it), and a timer too late (Chromium clamps nested timers to 4 ms); a message posted to
 * a private port is the next task, about as soon as a task can come.
 */

/** Schedules `run` after the current task; the runs scheduled in one task go together, in order. */
export type AfterTask = (run: () => void) => void;

/**
 * A scheduler of its own: a private `MessageChannel`, and the runs waiting for its message. The port listens only
 * while a run waits, so that an idle scheduler keeps no event loop alive (in Node) and a waiting one is never lost.
 */
export function afterTaskScheduler(): AfterTask {
  let waiting: (() => void)[] = [];
  let channel: MessageChannel | undefined;
  const fire = (): void => {
    channel!.port1.onmessage = null;
    const runs = waiting;
    waiting = [];
    for (const run of runs) {
      try {
        run();
      } catch (error) {
        // One failing run must not keep the others from theirs; the error still surfaces as uncaught.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  };
  return (run) => {
    waiting.push(run);
    if (waiting.length > 1) return;
    channel ??= new MessageChannel();
    channel.port1.onmessage = fire;
    channel.port2.postMessage(null);
  };
}

/**
 * Sends items in batches per task: the first item of a task goes at once, alone (one alone waits for nothing), and
 * the ones after it in the same task go together once the task is over. Returns the function that takes an item.
 */
export function batchPerTask<T>(send: (items: T[]) => void, afterTask: AfterTask): (item: T) => void {
  let held: T[] = [];
  let sentInTask = false;
  const flush = (): void => {
    sentInTask = false;
    const items = held;
    held = [];
    if (items.length > 0) send(items);
  };
  return (item) => {
    if (sentInTask) {
      held.push(item);
      return;
    }
    sentInTask = true;
    afterTask(flush);
    send([item]);
  };
}
