/**
 * A node's counters and latency samples. Plain numbers, so that a snapshot crosses the worker boundary as is and the
 * signalling server can collect it.
 */

/** The counters a node keeps. */
export const COUNTER_NAMES = [
  'gets',
  'puts',
  'deletes',
  'localWrites',
  'forwards',
  'coordinated',
  'replicasWritten',
  'readsServed',
  'readsCompleted',
  'putsRedirected',
  'readRepairs',
  'fallbacksUsed',
  'hintsSent',
  'hintsStored',
  'hintsDelivered',
  'quorumFailures',
  'staleContexts',
  // Puts refused at a key's bounds (ERR_TOO_MANY_SIBLINGS, ERR_TOO_LARGE), storing nothing.
  'putsOverBounds',
  // Puts refused because their context names a version never issued (ERR_INVALID_ARGUMENT), storing nothing.
  'contextsRefused',
  'timeouts',
  'invalidRequests',
  'malformedFrames',
  'rejectedFrames',
  // Well-formed messages from members refused because their sender may not send them (e.g. a sync-drop from a node
  // that is not the partition's first owner), with ERR_UNAUTHORIZED.
  'unauthorizedMessages',
  'unprovenVersions',
  // Requests of a peer answered ERR_OVERLOADED because that many of its requests were being served already.
  'peerRequestsRefused',
  'framesReceived',
  'framesSent',
  'partitionsFetched',
  'partitionsReleased',
  'keysReleased',
  'keysRepaired',
  'syncKeysServed',
  // Keys partition sync sent in several parts (more siblings or bytes than one entry or message may carry).
  'syncKeysSplit',
  // Keys partition sync could not send whole (a version no peer's decoder accepts); what is withheld stays here.
  'syncKeysWithheld',
  'syncBytes',
  'antiEntropyRounds',
  'antiEntropyRepairs',
  'tombstonesCollected',
  'hintsRerouted',
  'noticesSent',
  'noticesRefused',
  'watchesRefused',
  // Listings (`keys`) this node ran, and partitions it answered for listings, its own included.
  'keysQueries',
  'keysServed',
] as const;

/** One counter's name. */
export type CounterName = (typeof COUNTER_NAMES)[number];

/** Latency percentiles of one operation, in ms, over the most recent samples. */
export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
}

/** A snapshot of a node's metrics. */
export type MetricsSnapshot = Record<CounterName, number> & {
  readonly latency: { readonly get: LatencySummary; readonly put: LatencySummary };
};

/** How many recent samples each latency window keeps. @default 1024 */
export const LATENCY_WINDOW = 1024;

class LatencyWindow {
  readonly #samples: number[] = [];
  #next = 0;
  #count = 0;

  record(ms: number): void {
    if (this.#samples.length < LATENCY_WINDOW) this.#samples.push(ms);
    else this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % LATENCY_WINDOW;
    this.#count++;
  }

  summary(): LatencySummary {
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const at = (q: number): number =>
      sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    return { count: this.#count, p50: at(0.5), p99: at(0.99) };
  }
}

/**
 * Each counter's slot in a node's counter array. Counting happens on every frame, and a lookup here and a typed
 * array costs a third of a keyed update of an object with forty properties.
 */
const SLOT: ReadonlyMap<string, number> = new Map(COUNTER_NAMES.map((name, i) => [name, i]));

/** Counters and latency windows of one node. */
export class Metrics {
  readonly #counters = new Float64Array(COUNTER_NAMES.length);
  readonly #latency = { get: new LatencyWindow(), put: new LatencyWindow() };

  /** Adds `by` to counter `name`. */
  count(name: CounterName, by = 1): void {
    const slot = SLOT.get(name)!;
    this.#counters[slot] = this.#counters[slot]! + by;
  }

  /** Records one operation's latency. */
  observe(operation: 'get' | 'put', ms: number): void {
    this.#latency[operation].record(ms);
  }

  /** A copy of every counter and the latency summaries. */
  snapshot(): MetricsSnapshot {
    const counters = {} as Record<CounterName, number>;
    for (let i = 0; i < COUNTER_NAMES.length; i++) counters[COUNTER_NAMES[i]!] = this.#counters[i]!;
    return { ...counters, latency: { get: this.#latency.get.summary(), put: this.#latency.put.summary() } };
  }
}
