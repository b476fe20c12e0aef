/**
 * The replica side of the protocol: store what a coordinator ships (in the main store, or as a hint for an owner this
 * node stands in for) and answer reads with everything this node holds for the key.
 */
import type { Metrics } from '../metrics.ts';
import type { ReplicateMessage } from '../wire/protocol.ts';
import type { Storage } from '../storage/storage.ts';
import { type Version, resolve } from '../versions/version.ts';

/** What a replica needs from its node. */
export interface ReplicaDeps {
  readonly self: string;
  readonly storage: Storage;
  readonly metrics: Metrics;
  /** The partition of a key under the current ring. */
  partitionOf(key: Uint8Array): number;
}

/** Serves replicate and read requests from this node's storage. */
export class Replica {
  readonly #deps: ReplicaDeps;

  constructor(deps: ReplicaDeps) {
    this.#deps = deps;
  }

  /** The key's siblings here: the main store merged with every hint held for the key, tombstones included. */
  async readLocal(key: Uint8Array): Promise<Version[]> {
    const { storage } = this.#deps;
    // Both reads start at once, as under Promise.all, which costs more than the two reads of a memory engine.
    const reading = storage.get(key);
    const hinted = storage.hintsFor(key);
    let stored: Version[];
    try {
      stored = await reading;
    } catch (error) {
      hinted.catch(() => {});
      throw error;
    }
    const hints = await hinted;
    if (hints.length === 0) return stored;
    return resolve(
      stored,
      hints.flatMap((h) => h.siblings),
    ).siblings;
  }

  /** Stores a shipped sibling set: as a hint when it is meant for another node, else in the main store. */
  async replicate(message: ReplicateMessage): Promise<void> {
    const { self, storage, metrics } = this.#deps;
    const partition = this.#deps.partitionOf(message.key);
    const durability = message.durable ? 'strict' : 'relaxed';
    if (message.hintFor !== null && message.hintFor !== self) {
      await storage.putHint(
        { target: message.hintFor, key: message.key, partition, siblings: [...message.versions] },
        { durability },
      );
      metrics.count('hintsStored');
    } else {
      await storage.apply(message.key, partition, message.versions, { durability });
      metrics.count('replicasWritten');
    }
  }

  /** Serves a read. */
  read(key: Uint8Array): Promise<Version[]> {
    this.#deps.metrics.count('readsServed');
    return this.readLocal(key);
  }
}
