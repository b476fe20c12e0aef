/**
 * What the partition test's pages tell the test process, and what the test asks of them: the shapes that cross the
 * page boundary (through Playwright's binding and `page.evaluate`), shared by the page bundle and the test.
 */
import type { WriteOutcome } from '../sim/checker.ts';
import type { PartitionInfo } from '../../worker/membership/ownership.ts';

/** The name of the binding through which a page pushes each {@link PageRecord} to the test. */
export const RECORD_BINDING = '__partitionRecord';

/** A get as its client saw it. */
export type GetRecord = {
  readonly type: 'get';
  /** The page load that issued it (node id and a random incarnation). */
  readonly client: string;
  readonly node: string;
  readonly key: string;
  readonly r: number;
  /** Wall-clock ms (`Date.now()`) when issued and when answered. */
  readonly start: number;
  readonly end: number;
} & ({ readonly ok: true; readonly values: readonly string[] } | { readonly ok: false; readonly code: string });

/**
 * A put or delete about to be issued. It reaches the test before the write does, so a write whose page dies in
 * flight is still in the history (as `unknown`), and a value that survives always has its writer on record.
 */
export interface BeginRecord {
  readonly type: 'begin';
  readonly client: string;
  readonly node: string;
  /** The write id; for a put, the value written. */
  readonly id: string;
  readonly kind: 'put' | 'delete';
  readonly key: string;
  readonly w: number;
  /** The values the read returned whose context the write carries; empty for a blind put. */
  readonly parents: readonly string[];
  /** That read's opaque context, or null for a blind put. */
  readonly context: string | null;
  /** When the read was issued (the write itself, if blind). */
  readonly readAt: number;
  readonly start: number;
}

/** How a write that began ended. */
export interface EndRecord {
  readonly type: 'end';
  readonly client: string;
  readonly node: string;
  readonly id: string;
  readonly outcome: WriteOutcome;
  /** The error's stable code when it failed (`HUNG` when the page gave up waiting). */
  readonly code?: string;
  readonly end: number;
  /** The node that coordinated an acknowledged write. */
  readonly coordinator?: string;
}

/** A warning or error the node logged, for the report of a failed run. */
export interface LogRecord {
  readonly type: 'log';
  readonly node: string;
  readonly time: number;
  readonly level: string;
  readonly msg: string;
  /** The entry's fields as JSON. */
  readonly fields: string;
}

/** One event of the history. */
export type PageRecord = GetRecord | BeginRecord | EndRecord | LogRecord;

/** One stored version of a key, as the checker needs it. */
export interface DumpedVersion {
  readonly node: string;
  readonly counter: number;
  /** The write id the value holds, or null for a tombstone. */
  readonly value: string | null;
}

/** What one node holds, read from its own IndexedDB database. */
export interface StorageDump {
  readonly node: string;
  /** Key text to its siblings, tombstones included. */
  readonly keys: Record<string, DumpedVersion[]>;
  /** Hint records still held for other nodes. */
  readonly hints: number;
}

/** One node's account of its partitions, for the convergence check. */
export interface PartitionReport {
  readonly node: string;
  /** The members of the node's current view. */
  readonly members: readonly string[];
  readonly epoch: number | null;
  readonly partitions: readonly PartitionInfo[];
}

/** What the page exposes as `window.partition`. */
export interface PartitionPage {
  readonly nodeId: string;
  /** This page load's id: node id and a random suffix. */
  readonly client: string;
  /** True while the workload loop runs. */
  readonly running: boolean;
  /** Stops the workload; resolves once the operation in flight has ended. */
  stop(): Promise<void>;
  /** The node's view and `store.partitions()`. */
  report(): Promise<PartitionReport>;
  /** Every key the node stores, with its versions, read from its database. */
  dump(): Promise<StorageDump>;
  /** Reads `keys` with quorum `r`: each key's values, or the error code. */
  read(keys: readonly string[], r: number): Promise<({ ok: true; values: string[] } | { ok: false; code: string })[]>;
}
