/**
 * The watcher's side of notices: what was last delivered for each key, so that a notice is delivered only when it
 * brings a version the listener has not seen. Notices of one write come from every owner that stores it (and again
 * from reads made on suspicion of a missed one), and arrive in any order; each is merged into the last delivered
 * sibling set as a get merges replies, and the merge is delivered only when it holds a version that set neither held
 * nor superseded. So every delivered set has seen every earlier one for its key: delivery never goes back in time,
 * and a repeat or an older notice is dropped. Concurrent notices (two owners each holding one sibling) are merged,
 * not dropped: the listener then sees both siblings, as a get would return them. Pure.
 */
import { type Version, resolve, sameDot } from '../versions/version.ts';
import { keyId } from './registry.ts';

/** Most keys whose last delivery is remembered. @default 65536 */
export const DEFAULT_MAX_TRACKED_KEYS = 65_536;

/** Options of {@link Deliveries}. */
export interface DeliveriesOptions {
  /**
   * Most keys whose last delivered siblings are remembered; past it the key least recently delivered is forgotten,
   * and an old notice of it arriving later would be delivered again. Only prefix watches over more keys than this
   * reach it. @default 65536
   */
  readonly maxKeys?: number;
}

/** The last delivered sibling set of each watched key. */
export class Deliveries {
  readonly #maxKeys: number;
  /** In order of last delivery, oldest first. */
  readonly #last = new Map<string, Version[]>();

  constructor(options: DeliveriesOptions = {}) {
    this.#maxKeys = options.maxKeys ?? DEFAULT_MAX_TRACKED_KEYS;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#last.size;
  }

  /**
   * Takes a notice of `key`'s siblings `versions` (tombstones included). Returns the sibling set to deliver — the
   * last delivered one merged with the notice — or null when the notice brings nothing new.
   */
  offer(key: Uint8Array, versions: readonly Version[]): Version[] | null {
    const id = keyId(key);
    const last = this.#last.get(id);
    if (last === undefined) {
      if (versions.length === 0) return null;
      const first = resolve([], versions).siblings;
      this.#remember(id, first);
      return first;
    }
    const merged = resolve(last, versions).siblings;
    // A version under a dot already delivered (a signed copy of it, say) is no news.
    if (!merged.some((v) => !last.some((s) => sameDot(s, v)))) return null;
    this.#last.delete(id);
    this.#remember(id, merged);
    return merged;
  }

  /** Forgets the keys that `keep` refuses (their watches ended). */
  retain(keep: (key: string) => boolean): void {
    for (const id of this.#last.keys()) if (!keep(id)) this.#last.delete(id);
  }

  #remember(id: string, siblings: Version[]): void {
    this.#last.set(id, siblings);
    if (this.#last.size > this.#maxKeys) this.#last.delete(this.#last.keys().next().value!);
  }
}
