/**
 * The watches a node serves for others: each watcher's set of targets (keys and prefixes), held under a lease. A
 * watcher sends its whole set for this node again well within the lease and on every view change, so a set whose
 * watcher left, crashed or moved its keys elsewhere lapses on its own, and nothing here needs telling of views.
 * Pure: the caller passes the time.
 */
import type { WatchTarget } from '../wire/protocol.ts';

/** Most targets a node holds for all watchers together. @default 65536 */
export const DEFAULT_MAX_REGISTERED_TARGETS = 65_536;

/** Options of a {@link WatchRegistry}. */
export interface WatchRegistryOptions {
  /** Most targets held for all watchers together; a set that would pass it is refused whole. @default 65536 */
  readonly maxTargets?: number;
}

interface WatcherSet {
  readonly expires: number;
  readonly keys: readonly string[];
  readonly prefixes: readonly Uint8Array[];
}

/** A key as a map key: one character per byte, cheaper than hex and exact. */
export function keyId(key: Uint8Array): string {
  let out = '';
  for (let i = 0; i < key.length; i += 4096) out += String.fromCharCode(...key.subarray(i, i + 4096));
  return out;
}

/** True when `key` starts with `prefix`. */
export function hasPrefix(key: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > key.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/** The watchers of keys and prefixes at one node, each under a lease. */
export class WatchRegistry {
  readonly #maxTargets: number;
  readonly #sets = new Map<string, WatcherSet>();
  /** Watchers of each exact key. */
  readonly #byKey = new Map<string, Set<string>>();
  /** Watchers holding at least one prefix. */
  readonly #prefixed = new Set<string>();
  #targets = 0;

  constructor(options: WatchRegistryOptions = {}) {
    this.#maxTargets = options.maxTargets ?? DEFAULT_MAX_REGISTERED_TARGETS;
  }

  /** Targets held now, expired ones included until they are looked at or swept. */
  get targets(): number {
    return this.#targets;
  }

  /** Watchers holding a set now, expired ones included until they are looked at or swept. */
  get watchers(): number {
    return this.#sets.size;
  }

  /**
   * Replaces `watcher`'s set with `targets`, held until `now + leaseMs`; an empty list ends its watches. Returns false,
   * and drops the watcher's earlier set, when the new set would take the node past `maxTargets`: a watcher over the
   * bound is told by its own node (which holds every watcher to the same bound), so only a misbehaving one gets here.
   */
  register(watcher: string, targets: readonly WatchTarget[], leaseMs: number, now: number): boolean {
    this.#drop(watcher);
    if (targets.length === 0) return true;
    if (this.#targets + targets.length > this.#maxTargets) return false;
    const keys: string[] = [];
    const prefixes: Uint8Array[] = [];
    for (const target of targets) {
      if (target.prefix) {
        prefixes.push(target.key);
        continue;
      }
      const id = keyId(target.key);
      let set = this.#byKey.get(id);
      if (set === undefined) this.#byKey.set(id, (set = new Set()));
      if (set.has(watcher)) continue;
      set.add(watcher);
      keys.push(id);
    }
    if (prefixes.length > 0) this.#prefixed.add(watcher);
    this.#sets.set(watcher, { expires: now + leaseMs, keys, prefixes });
    this.#targets += keys.length + prefixes.length;
    return true;
  }

  /** The watchers whose lease runs at `now` and who watch `key` or a prefix of it; expired sets are dropped. */
  watchersOf(key: Uint8Array, now: number): string[] {
    const out: string[] = [];
    const exact = this.#byKey.get(keyId(key));
    if (exact !== undefined) for (const w of exact) if (this.#live(w, now)) out.push(w);
    for (const w of this.#prefixed) {
      if (exact?.has(w) === true) continue;
      const set = this.#sets.get(w);
      if (set !== undefined && set.prefixes.some((p) => hasPrefix(key, p)) && this.#live(w, now)) out.push(w);
    }
    return out;
  }

  /** Drops every set whose lease ended by `now`; returns how many. */
  sweep(now: number): number {
    let dropped = 0;
    for (const [watcher, set] of this.#sets) {
      if (set.expires > now) continue;
      this.#drop(watcher);
      dropped++;
    }
    return dropped;
  }

  #live(watcher: string, now: number): boolean {
    const set = this.#sets.get(watcher);
    if (set === undefined) return false;
    if (set.expires > now) return true;
    this.#drop(watcher);
    return false;
  }

  #drop(watcher: string): void {
    const set = this.#sets.get(watcher);
    if (set === undefined) return;
    for (const id of set.keys) {
      const watchers = this.#byKey.get(id)!;
      watchers.delete(watcher);
      if (watchers.size === 0) this.#byKey.delete(id);
    }
    this.#prefixed.delete(watcher);
    this.#sets.delete(watcher);
    this.#targets -= set.keys.length + set.prefixes.length;
  }
}
