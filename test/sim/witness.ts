/**
 * The storage witness. Every node of a simulated cluster that has one stores through a watched wrapper of its
 * {@link MemoryStorage} handle that sees each dot a coordinator draws (`Storage.write`) and each version entering a
 * store (`write`, `apply`, `applyMany`, `putHint`). That is ground truth no client sees, and from it the run finds:
 *
 * - repeated dots: one dot drawn twice, or stored anywhere with two different keys or values (a dot names one write);
 * - values ever stored, so that a refused write can be shown to have stored nothing, not even for a moment;
 * - counters raised by something other than the node's own writes: a node whose dots run past the number of local
 *   writes it attempted took its counter from a context or a peer.
 *
 * {@link audit} then reads every node's stored data, hints included, for versions that name what the cluster never
 * issued (a dot no coordinator drew, a context entry past its node's last dot) and, for keys written only blind, for
 * sibling sets past what merges of bounded writes allow.
 */
import { ForwardingStorage } from '../../worker/storage/forwarding.ts';
import type { MemoryStorage } from '../../worker/storage/memory.ts';
import { storedSize } from '../../worker/storage/records.ts';
import type {
  ApplyEntry,
  ApplyResult,
  Hint,
  LocalWrite,
  LocalWriteOptions,
  LocalWriteResult,
  Storage,
  WriteOptions,
} from '../../worker/storage/storage.ts';
import { type Version, resolve } from '../../worker/versions/version.ts';
import type { RepeatedDot } from './checker.ts';
import type { Cluster } from './cluster.ts';
import { withData } from './convergence.ts';
import { idEnd, valueId } from './values.ts';

const text = new TextDecoder();

/** Findings kept in full; past this many only counted. */
const KEPT = 20;

/** What a dot was first seen as. */
interface DotRecord {
  readonly key: string;
  readonly value: string;
  /** The key's bytes and the value's id bytes (null for a tombstone), which a later sighting is compared by first. */
  readonly keyBytes: Uint8Array;
  readonly idBytes: Uint8Array | null;
  /** True once a coordinator drew it. */
  drawn: boolean;
}

/** Per node, what its storage was asked to write as coordinator. */
interface Drawn {
  /** Local writes attempted (`Storage.write` calls), whether they stored or were refused. */
  attempts: number;
  /** The highest counter of its dots drawn so far. */
  top: number;
}

/** Watches every simulated node's storage; see the module comment. */
export class Witness {
  /** Dots seen with two different writes, the first {@link KEPT}. */
  readonly repeated: RepeatedDot[] = [];
  repeatedCount = 0;
  /** The value ids of every version ever stored by any node, by key. */
  readonly #stored = new Map<string, Set<string>>();
  /** Each key's bytes, kept once for every dot of the key (see {@link DotRecord.keyBytes}). */
  readonly #keyBytes = new Map<string, Uint8Array>();
  /** Every dot seen, by node and then counter. */
  readonly #dots = new Map<string, Map<number, DotRecord>>();
  readonly #drawn = new Map<string, Drawn>();

  /** The highest counter node `id` has drawn for a dot (0 before its first local write). */
  issued(id: string): number {
    return this.#drawn.get(id)?.top ?? 0;
  }

  /** Local writes node `id` has attempted. */
  attempts(id: string): number {
    return this.#drawn.get(id)?.attempts ?? 0;
  }

  /** True when some node stored, at any time, a version of `key` holding the value of write `id`. */
  everStored(key: string, id: string): boolean {
    return this.#stored.get(key)?.has(id) ?? false;
  }

  /** Node `node`'s storage handle as the node should see it: `storage`, watched (see {@link WatchedStorage}). */
  wrap(node: string, storage: MemoryStorage): Storage {
    return new WatchedStorage(storage, {
      write: (key, write, result) => this.#write(node, key, write, result),
      see: (key, versions, where) => this.#see(key, versions, where),
      node,
    });
  }

  async #write(
    node: string,
    key: Uint8Array,
    write: LocalWrite,
    result: Promise<LocalWriteResult>,
  ): Promise<LocalWriteResult> {
    let drawn = this.#drawn.get(node);
    if (drawn === undefined) this.#drawn.set(node, (drawn = { attempts: 0, top: 0 }));
    drawn.attempts++;
    const outcome = await result;
    const { dot } = outcome.version;
    const seen = this.#dot(dot.node, dot.counter);
    if (dot.node !== node)
      this.#repeat(`${dot.node}:${dot.counter}`, [`${decodeKey(key)} drawn by ${node}`], `${node} (write)`);
    else if (seen?.drawn === true)
      this.#repeat(
        `${dot.node}:${dot.counter}`,
        [`${seen.key}=${seen.value}`, `${decodeKey(key)}=${describe(write.value)}`],
        `${node} drew it again`,
      );
    drawn.top = Math.max(drawn.top, dot.counter);
    this.#see(key, [outcome.version], `${node} (write)`);
    this.#dot(dot.node, dot.counter)!.drawn = true;
    return outcome;
  }

  #dot(node: string, counter: number): DotRecord | undefined {
    return this.#dots.get(node)?.get(counter);
  }

  #see(key: Uint8Array, versions: readonly Version[], where: string): void {
    let name: string | undefined;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i]!;
      let byCounter = this.#dots.get(v.dot.node);
      if (byCounter === undefined) this.#dots.set(v.dot.node, (byCounter = new Map()));
      const seen = byCounter.get(v.dot.counter);
      // Most sightings repeat the first byte for byte, which spells the same key and id: no need to decode them.
      if (seen !== undefined && sameBytes(seen.keyBytes, key, key.length) && sameId(seen.idBytes, v.value)) continue;
      name ??= decodeKey(key);
      const value = describe(v.value);
      if (seen === undefined) {
        const idBytes = v.value === null ? null : v.value.slice(0, idEnd(v.value));
        byCounter.set(v.dot.counter, { key: name, value, keyBytes: this.#bytesOf(name, key), idBytes, drawn: false });
        let values = this.#stored.get(name);
        if (values === undefined) this.#stored.set(name, (values = new Set()));
        values.add(value);
      } else if (seen.key !== name || seen.value !== value) {
        this.#repeat(`${v.dot.node}:${v.dot.counter}`, [`${seen.key}=${seen.value}`, `${name}=${value}`], where);
      }
    }
  }

  /** A copy of `key`, whose text is `name`, shared by every dot of the key: thousands of dots, a few dozen keys. */
  #bytesOf(name: string, key: Uint8Array): Uint8Array {
    let bytes = this.#keyBytes.get(name);
    if (bytes === undefined || !sameBytes(bytes, key, key.length)) this.#keyBytes.set(name, (bytes = key.slice()));
    return bytes;
  }

  #repeat(dot: string, writes: string[], where: string): void {
    this.repeatedCount++;
    if (this.repeated.length < KEPT) this.repeated.push({ dot, writes, where });
  }

  /** True when dot `node:counter` was drawn by a coordinator. */
  wasDrawn(node: string, counter: number): boolean {
    return this.#dot(node, counter)?.drawn === true;
  }
}

/** What a {@link WatchedStorage} reports to its witness. */
interface Watcher {
  readonly node: string;
  /** A local write was asked for; `result` is the storage's answer, which the witness passes on. */
  write(key: Uint8Array, write: LocalWrite, result: Promise<LocalWriteResult>): Promise<LocalWriteResult>;
  /** Versions are entering the store, as `where` says. */
  see(key: Uint8Array, versions: readonly Version[], where: string): void;
}

/**
 * A storage handle that tells its witness of every dot drawn and every version stored, and otherwise hands each call
 * to the storage as it is, answering with the storage's own promise. A class rather than a Proxy: a node makes a
 * storage call or more per message, and a Proxy's trap on each (a lookup, then a spread call) cost the whole run
 * several per cent.
 */
class WatchedStorage extends ForwardingStorage {
  readonly #watcher: Watcher;
  readonly #applyWhere: string;
  readonly #applyManyWhere: string;

  constructor(storage: MemoryStorage, watcher: Watcher) {
    super(storage);
    this.#watcher = watcher;
    this.#applyWhere = `${watcher.node} (apply)`;
    this.#applyManyWhere = `${watcher.node} (applyMany)`;
  }

  override apply(
    key: Uint8Array,
    partition: number,
    versions: readonly Version[],
    options?: WriteOptions,
  ): Promise<ApplyResult> {
    this.#watcher.see(key, versions, this.#applyWhere);
    return this.inner.apply(key, partition, versions, options);
  }

  override applyMany(
    partition: number,
    entries: readonly ApplyEntry[],
    options?: WriteOptions,
  ): Promise<ApplyResult[]> {
    for (const e of entries) this.#watcher.see(e.key, e.versions, this.#applyManyWhere);
    return this.inner.applyMany(partition, entries, options);
  }

  override write(
    key: Uint8Array,
    partition: number,
    write: LocalWrite,
    options?: LocalWriteOptions,
  ): Promise<LocalWriteResult> {
    return this.#watcher.write(key, write, this.inner.write(key, partition, write, options));
  }

  override putHint(hint: Hint, options?: WriteOptions): Promise<void> {
    this.#watcher.see(hint.key, hint.siblings, `${this.#watcher.node} (hint for ${hint.target})`);
    return this.inner.putHint(hint, options);
  }
}

function describe(value: Uint8Array | null): string {
  return value === null ? '∅' : valueId(value);
}

/** True when the first `length` bytes of `b` are exactly `a`. */
function sameBytes(a: Uint8Array, b: Uint8Array, length: number): boolean {
  if (a.length !== length || b.length < length) return false;
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `value` has the id bytes `id` (both null for a tombstone). */
function sameId(id: Uint8Array | null, value: Uint8Array | null): boolean {
  if (id === null || value === null) return id === value;
  return sameBytes(id, value, idEnd(value));
}

/** A key as text: ASCII byte for byte (the simulation's keys), anything else decoded as UTF-8. */
function decodeKey(key: Uint8Array): string {
  for (let i = 0; i < key.length; i++) if (key[i]! >= 0x80) return text.decode(key);
  return key.length <= 4096 ? String.fromCharCode.apply(null, key as unknown as number[]) : text.decode(key);
}

/** What {@link audit} found. */
export interface AuditFindings {
  /** Versions naming what no coordinator issued, and counters raised by something other than own writes. */
  readonly poisoned: string[];
  poisonedCount: number;
  /** Sibling sets of blind-only keys past what merges of bounded writes allow. */
  readonly overBound: string[];
  overBoundCount: number;
}

/** Options of {@link audit}. */
export interface AuditOptions {
  /** Keys that only ever received puts without a context: their sibling sets only grow, up to the bounds. */
  readonly blindKeys: ReadonlySet<string>;
  /** Most siblings one coordinator may leave under a key. */
  readonly maxSiblings: number;
  /** Most bytes of one key's sibling set, counted here by value bytes alone. */
  readonly maxKeyBytes: number;
}

/**
 * Reads every node's stored data that has not left, hints included, and checks it against what the witness saw:
 *
 * - every stored dot was drawn by its node, and every context entry is at most its node's last drawn counter;
 * - no node drew a counter past the number of local writes it attempted (its counter rose only by its own writes);
 * - for each blind-only key, each store holds at most `maxSiblings` siblings and `maxKeyBytes` of values whose dot
 *   names one node: a coordinator accepts a blind put only while its own set is within the bounds, and every set it
 *   ships is whole, so its own dots never outnumber the bound anywhere, however sets from several coordinators merge.
 */
export async function audit(cluster: Cluster, witness: Witness, options: AuditOptions): Promise<AuditFindings> {
  const found: AuditFindings = { poisoned: [], poisonedCount: 0, overBound: [], overBoundCount: 0 };
  const poison = (line: string): void => {
    found.poisonedCount++;
    if (found.poisoned.length < KEPT) found.poisoned.push(line);
  };
  const over = (line: string): void => {
    found.overBoundCount++;
    if (found.overBound.length < KEPT) found.overBound.push(line);
  };
  for (const id of cluster.ids) {
    const attempts = witness.attempts(id);
    const top = witness.issued(id);
    if (top > attempts) poison(`${id} drew dot ${id}:${top} after only ${attempts} local writes`);
  }
  const reported = new Set<string>();
  const inspect = (holder: string, key: string, siblings: readonly Version[]): void => {
    for (const v of siblings) {
      const dot = `${v.dot.node}:${v.dot.counter}`;
      if (!witness.wasDrawn(v.dot.node, v.dot.counter) && !reported.has(dot)) {
        reported.add(dot);
        poison(`${holder} stores ${key} version ${dot}, a dot that ${v.dot.node} never drew`);
      }
      for (const e of v.context) {
        const entry = `${dot} names ${e.node}:${e.counter}`;
        if (e.counter > witness.issued(e.node) && !reported.has(entry)) {
          reported.add(entry);
          poison(
            `${holder} stores ${key} version ${dot} written over ${e.node}:${e.counter}, a version never issued ` +
              `(${e.node} drew up to ${witness.issued(e.node)})`,
          );
        }
      }
    }
    if (!options.blindKeys.has(key)) return;
    const byNode = new Map<string, { count: number; bytes: number }>();
    for (const v of siblings) {
      const tally = byNode.get(v.dot.node) ?? { count: 0, bytes: 0 };
      tally.count++;
      tally.bytes += v.value?.byteLength ?? 0;
      byNode.set(v.dot.node, tally);
    }
    for (const [node, { count, bytes }] of byNode) {
      if (count > options.maxSiblings)
        over(`${holder} stores ${count} siblings of ${key} with dots of ${node}, over ${options.maxSiblings}`);
      if (bytes > options.maxKeyBytes)
        over(`${holder} stores ${bytes} value bytes of ${key} with dots of ${node}, over ${options.maxKeyBytes}`);
    }
  };
  for (const id of cluster.ids) {
    const slot = cluster.slot(id);
    if (slot.left) continue;
    await withData(slot, async (storage) => {
      for (const partition of await storage.partitionsWithData()) {
        for (const k of await storage.scanPartition(partition)) inspect(id, text.decode(k.key), k.siblings);
      }
      for (const hint of await storage.listHints())
        inspect(`${id} (hint for ${hint.target})`, text.decode(hint.key), hint.siblings);
    });
  }
  return found;
}

/** The most siblings, and the most bytes as the nodes count them, that any node not gone holds for `key`. */
export async function storedPeak(cluster: Cluster, key: Uint8Array): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const id of cluster.ids) {
    const slot = cluster.slot(id);
    if (slot.left) continue;
    await withData(slot, async (storage) => {
      const main = await storage.get(key);
      const hinted = (await storage.hintsFor(key)).flatMap((h) => h.siblings);
      for (const set of [main, resolve(main, hinted).siblings]) {
        count = Math.max(count, set.length);
        bytes = Math.max(bytes, storedSize(key, set));
      }
    });
  }
  return { count, bytes };
}
