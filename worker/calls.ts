/**
 * The page's reads and writes cross into the node's worker in batches: the first call a page makes in a task goes
 * at once, and the calls after it in the same task travel together in one message on a `MessagePort` of their own;
 * answers travel back the same way.
 * A burst of thousands of puts then costs the page and the worker a few messages instead of a structured-clone
 * round trip each (comlink, which carries every other call, makes one message and one listener per call).
 *
 * The worker checks every call's shape before it runs it; the page matches answers to calls by id. View changes
 * travel on the same port, so that a call the page makes after a view arrived runs under that view.
 */
import { ClosedError, type DynameshError } from './errors.ts';
import type { DeleteOptions, GetOptions, GetResult, PutOptions, PutResult } from './node.ts';
import { type AfterTask, afterTaskScheduler, batchPerTask } from './after-task.ts';
import type { Outcome } from './main.ts';
import { type Member, isPlacement } from './ring/ring.ts';

/** One call, as the page makes it. */
export type Call =
  | { readonly id: number; readonly op: 'get'; readonly key: string | Uint8Array; readonly options: GetOptions }
  | {
      readonly id: number;
      readonly op: 'put';
      readonly key: string | Uint8Array;
      readonly value: Uint8Array;
      readonly options: PutOptions;
    }
  | { readonly id: number; readonly op: 'delete'; readonly key: string | Uint8Array; readonly options: DeleteOptions }
  | {
      readonly id: number;
      readonly op: 'members';
      readonly members: readonly Member[];
      /** The members the view has as suspect: the server stopped hearing their heartbeats. */
      readonly suspects: readonly string[];
    };

/** A call without its id, as a caller makes it. */
export type CallRequest = Call extends infer C ? (C extends Call ? Omit<C, 'id'> : never) : never;

/** What each kind of call answers. */
export interface CallResults {
  readonly get: GetResult;
  readonly put: PutResult;
  readonly delete: PutResult;
  readonly members: void;
}

/** One answer: the id of its call and its outcome. */
export interface Answer {
  readonly id: number;
  readonly outcome: Outcome<unknown>;
}

/** A call on its way, with the buffers it gives away. */
interface PendingCall {
  readonly call: Call;
  readonly transfer: Transferable[];
}

/** What runs the calls in the worker. */
export interface CallHandler {
  get(key: string | Uint8Array, options: GetOptions): Promise<Outcome<GetResult>>;
  put(key: string | Uint8Array, value: Uint8Array, options: PutOptions): Promise<Outcome<PutResult>>;
  delete(key: string | Uint8Array, options: DeleteOptions): Promise<Outcome<PutResult>>;
  /** Takes a new view; it travels with the calls so that a call made after it is run under it. */
  setMembers(members: readonly Member[], suspects: readonly string[]): void;
}

function isKey(key: unknown): key is string | Uint8Array {
  return typeof key === 'string' || key instanceof Uint8Array;
}

function isOptions(options: unknown): options is object {
  return typeof options === 'object' && options !== null && !Array.isArray(options);
}

/** The call `raw` is, or a reason it is not one (with its id when it has one). */
function decodeCall(raw: unknown): Call | { readonly id: number | undefined; readonly invalid: string } {
  if (typeof raw !== 'object' || raw === null) return { id: undefined, invalid: 'a call must be an object' };
  const call = raw as Record<string, unknown>;
  const id = call['id'];
  if (typeof id !== 'number' || !Number.isSafeInteger(id)) return { id: undefined, invalid: 'a call needs an id' };
  if (call['op'] === 'members') {
    const members = call['members'];
    const valid =
      Array.isArray(members) &&
      members.every(
        (m: unknown) =>
          typeof m === 'object' &&
          m !== null &&
          typeof (m as Member).id === 'string' &&
          typeof (m as Member).domain === 'string' &&
          isPlacement((m as Member).placement),
      );
    if (!valid) return { id, invalid: 'members must be a list of { id, domain, placement? }' };
    const suspects = call['suspects'];
    if (!Array.isArray(suspects) || !suspects.every((s: unknown) => typeof s === 'string')) {
      return { id, invalid: 'suspects must be a list of node ids' };
    }
    return raw as Call;
  }
  if (!isKey(call['key'])) return { id, invalid: 'key must be a string or a Uint8Array' };
  if (!isOptions(call['options'])) return { id, invalid: 'options must be an object' };
  switch (call['op']) {
    case 'get':
    case 'delete':
      return raw as Call;
    case 'put':
      return call['value'] instanceof Uint8Array ? (raw as Call) : { id, invalid: 'value must be a Uint8Array' };
    default:
      return { id, invalid: `unknown call ${JSON.stringify(call['op'])}` };
  }
}

/** Runs the calls arriving on `port` with `handler`, and answers them in batches. */
export function serveCalls(port: MessagePort, handler: CallHandler, afterTask: AfterTask = afterTaskScheduler()): void {
  const post = (batch: Answer[]): void => {
    try {
      port.postMessage(batch);
    } catch {
      // An answer that cannot be cloned: each goes alone, and the one that fails answers with the error.
      for (const a of batch) {
        try {
          port.postMessage([a]);
        } catch (error) {
          const message = `the answer cannot cross to the page: ${error instanceof Error ? error.message : String(error)}`;
          port.postMessage([{ id: a.id, outcome: { ok: false, error: { code: 'ERR_STORAGE', message } } }]);
        }
      }
    }
  };
  const send = batchPerTask(post, afterTask);
  const answer = (id: number, outcome: Outcome<unknown>): void => send({ id, outcome });
  port.onmessage = (event: MessageEvent) => {
    const batch: unknown = event.data;
    if (!Array.isArray(batch)) return;
    for (const raw of batch) {
      const call = decodeCall(raw);
      if ('invalid' in call) {
        if (call.id !== undefined) {
          answer(call.id, { ok: false, error: { code: 'ERR_INVALID_ARGUMENT', message: call.invalid } });
        }
        continue;
      }
      if (call.op === 'members') {
        handler.setMembers(call.members, call.suspects);
        answer(call.id, { ok: true, value: undefined });
        continue;
      }
      const run =
        call.op === 'get'
          ? handler.get(call.key, call.options)
          : call.op === 'put'
            ? handler.put(call.key, call.value, call.options)
            : handler.delete(call.key, call.options);
      void run.then((outcome) => answer(call.id, outcome));
    }
  };
  port.start();
}

/** The page's end: makes calls and settles them as their answers come back. */
export class CallPort {
  readonly #port: MessagePort;
  /** Takes a call: it goes at once when first in its task, else with the rest of the task after it. */
  readonly #send: (call: PendingCall) => void;
  readonly #waiting = new Map<number, (outcome: Outcome<unknown>) => void>();
  #nextId = 1;
  #closed: DynameshError | undefined;

  constructor(port: MessagePort, afterTask: AfterTask = afterTaskScheduler()) {
    this.#port = port;
    this.#send = batchPerTask((calls) => this.#post(calls), afterTask);
    port.onmessage = (event: MessageEvent) => {
      const answers = event.data as Answer[];
      for (const { id, outcome } of answers) {
        const settle = this.#waiting.get(id);
        this.#waiting.delete(id);
        settle?.(outcome);
      }
    };
    port.start();
  }

  /** Calls the worker; `transfer` lists buffers of the call given to the worker (the caller must not reuse them). */
  call<C extends CallRequest>(request: C, transfer: Transferable[] = []): Promise<Outcome<CallResults[C['op']]>> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    const promise = new Promise<Outcome<CallResults[C['op']]>>((resolve) => {
      this.#waiting.set(id, resolve as (outcome: Outcome<unknown>) => void);
    });
    this.#send({ call: { ...request, id } as Call, transfer });
    return promise;
  }

  /** Settles every call still waiting with `ERR_CLOSED`, and refuses new ones: the worker is gone. */
  close(): void {
    if (this.#closed !== undefined) return;
    this.#closed = new ClosedError('the store is closed');
    const error = { code: this.#closed.code, message: this.#closed.message } as const;
    for (const settle of this.#waiting.values()) settle({ ok: false, error });
    this.#waiting.clear();
    this.#port.close();
  }

  #post(calls: PendingCall[]): void {
    if (this.#closed !== undefined || calls.length === 0) return;
    try {
      this.#port.postMessage(
        calls.map((c) => c.call),
        calls.flatMap((c) => c.transfer),
      );
    } catch {
      // A call that cannot be cloned (a function among its options): each goes alone, and the one that fails is
      // refused. Its buffers were not transferred, so the others can still take theirs.
      for (const { call, transfer } of calls) {
        try {
          this.#port.postMessage([call], transfer);
        } catch (error) {
          const message = `the call cannot cross to the node: ${error instanceof Error ? error.message : String(error)}`;
          this.#waiting.get(call.id)?.({ ok: false, error: { code: 'ERR_INVALID_ARGUMENT', message } });
          this.#waiting.delete(call.id);
        }
      }
    }
  }
}
