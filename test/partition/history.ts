/**
 * The history of a partition run, as the pages pushed it: every get, and every put and delete as it began and as
 * it ended. It turns into the simulation checker's {@link WriteRecord}s; a write whose end never arrived (its tab
 * closed or reloaded under it) stays `unknown`, which is what it is.
 */
import { decodeContext } from '../../worker/wire/context.ts';
import { MAX_CLOCK_ENTRIES, prune } from '../../worker/versions/vclock.ts';
import type { WriteRecord } from '../sim/checker.ts';
import type { BeginRecord, EndRecord, GetRecord, LogRecord, PageRecord } from './records.ts';

/** Error codes a client may meet in a cluster under faults; anything else is a bug to report. */
export const EXPECTED_CODES: ReadonlySet<string> = new Set([
  'ERR_QUORUM',
  'ERR_TIMEOUT',
  'ERR_STALE_CONTEXT',
  'ERR_CLOSED',
  'ERR_NOT_RESPONSIBLE',
]);

/** A write as the test knows it. */
interface WriteEntry {
  readonly begin: BeginRecord;
  end?: EndRecord;
}

/** One completed call, for the timeline of what succeeded where. */
export interface Completion {
  readonly node: string;
  readonly kind: 'get' | 'put' | 'delete';
  readonly end: number;
  readonly ok: boolean;
}

/** Every record pushed by every page. */
export class History {
  readonly gets: GetRecord[] = [];
  readonly #writes = new Map<string, WriteEntry>();
  readonly #order: string[] = [];
  /** Records that made no sense (an end without its begin, a repeated id): each is a bug of the test or the page. */
  readonly anomalies: string[] = [];
  readonly completions: Completion[] = [];
  /** Warnings and errors the nodes logged. */
  readonly logs: LogRecord[] = [];

  /** Takes one record from a page. */
  add(record: PageRecord): void {
    switch (record.type) {
      case 'log':
        this.logs.push(record);
        return;
      case 'get':
        this.gets.push(record);
        this.completions.push({ node: record.node, kind: 'get', end: record.end, ok: record.ok });
        return;
      case 'begin':
        if (this.#writes.has(record.id)) {
          this.anomalies.push(`write ${record.id} began twice`);
          return;
        }
        this.#writes.set(record.id, { begin: record });
        this.#order.push(record.id);
        return;
      case 'end': {
        const entry = this.#writes.get(record.id);
        if (entry === undefined || entry.end !== undefined) {
          this.anomalies.push(`write ${record.id} ended ${entry === undefined ? 'without beginning' : 'twice'}`);
          return;
        }
        entry.end = record;
        this.completions.push({
          node: record.node,
          kind: entry.begin.kind,
          end: record.end,
          ok: record.outcome === 'ok',
        });
      }
    }
  }

  /** Calls issued: gets, puts and deletes. */
  get operations(): number {
    return this.gets.length + this.#writes.size;
  }

  /** Writes that began and never reported an end. */
  get unended(): number {
    let n = 0;
    for (const entry of this.#writes.values()) if (entry.end === undefined) n++;
    return n;
  }

  /** Failed calls by error code, gets and writes together. */
  failures(): Record<string, number> {
    const out: Record<string, number> = {};
    const count = (code: string): void => {
      out[code] = (out[code] ?? 0) + 1;
    };
    for (const get of this.gets) if (!get.ok) count(get.code);
    for (const { end } of this.#writes.values()) if (end?.code !== undefined) count(end.code);
    return out;
  }

  /** Calls that succeeded. */
  succeeded(): number {
    return this.completions.filter((c) => c.ok).length;
  }

  /** The writes in the order they began, for the checker. */
  writes(): WriteRecord[] {
    return this.#order.map((id) => {
      const { begin, end } = this.#writes.get(id)!;
      return {
        id,
        kind: begin.kind,
        key: begin.key,
        parents: begin.parents,
        w: begin.w,
        outcome: end?.outcome ?? 'unknown',
        readAt: begin.readAt,
        ...(end !== undefined ? { end: end.end } : {}),
        supersedes: begin.context === null ? [] : superseded(begin.context),
        ...(end?.coordinator !== undefined ? { coordinator: end.coordinator } : {}),
      };
    });
  }

  /**
   * The records of `key` in time order, from a few before write `around` began (or the last ones, without it): the
   * excerpt to show when the checker finds a problem.
   */
  excerpt(key: string, around?: string, limit = 40): string[] {
    const lines: { at: number; line: string }[] = [];
    for (const get of this.gets) {
      if (get.key !== key) continue;
      const what = get.ok ? `[${get.values.join(', ')}]` : get.code;
      lines.push({ at: get.start, line: `${get.start}..${get.end} get    by ${get.client} → ${what}` });
    }
    for (const id of this.#order) {
      const { begin, end } = this.#writes.get(id)!;
      if (begin.key !== key) continue;
      const how = end === undefined ? 'no end' : `${end.outcome}${end.code !== undefined ? ` ${end.code}` : ''}`;
      const by = end?.coordinator !== undefined ? ` via ${end.coordinator}` : '';
      lines.push({
        at: begin.start,
        line: `${begin.start}..${end?.end ?? '?'} ${begin.kind.padEnd(6)} ${id} over [${begin.parents.join(', ')}] → ${how}${by}`,
      });
    }
    lines.sort((a, b) => a.at - b.at);
    const start = around === undefined ? -1 : this.#writes.get(around)?.begin.start;
    const from =
      start === undefined || start < 0
        ? Math.max(0, lines.length - limit)
        : Math.max(0, lines.findIndex((l) => l.at >= start) - 5);
    return lines.slice(from, from + limit).map((l) => l.line);
  }
}

/**
 * What a write over `context` supersedes: the versions whose dots the context covers. The coordinator prunes the
 * context to make room for its own entry, so it is pruned here the same way, which can only make it cover less.
 */
function superseded(context: string): { node: string; counter: number }[] {
  return prune(decodeContext(context), MAX_CLOCK_ENTRIES - 1).map((e) => ({ node: e.node, counter: e.counter }));
}
