/**
 * Merkle trees of partitions, pure. Partition sync (joins, re-replication, releases, anti-entropy) compares one tree
 * per ring partition: TREE_LEAVES leaves under TREE_DEPTH levels of TREE_FANOUT-way inner nodes. A key falls in the
 * leaf named by the six bits of its ring position right after the partition bits, so a leaf is a contiguous range of
 * the ring and a tree never depends on where partitions are placed.
 *
 * A node's hash is the XOR of the digests of the keys under it, not a hash of its children's hashes: XOR makes the
 * tree order-independent (any insertion order gives the same hashes) and incremental (a write XORs the key's old
 * digest out and its new one in, O(1), with no rehashing up the tree). The price is that XOR is a weak set hash
 * against a peer choosing keys to collide on purpose; peers are cluster members, and a collision only hides a
 * difference from one round of anti-entropy, never corrupts data.
 */
import { InvalidArgumentError } from '../errors.ts';
import { TREE_DEPTH, TREE_FANOUT, TREE_HASH_BYTES, TREE_LEAVES } from '../wire/protocol.ts';
import { MAX_PARTITIONS } from '../ring/ring.ts';
import { bigEndian, md5Words } from '../ring/md5.ts';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../versions/proof.ts';
import type { Version } from '../versions/version.ts';

// Bits of a ring position that name a leaf inside its partition.
const LEAF_BITS = Math.log2(TREE_LEAVES);

/** The key's bytes as a string of char codes 0–255, for map lookups. */
function keyString(key: Uint8Array): string {
  // fromCharCode.apply has an argument-count ceiling; keys are small, but stay safe for large ones.
  if (key.length <= 4096) return String.fromCharCode.apply(null, key as unknown as number[]);
  let out = '';
  for (let i = 0; i < key.length; i += 4096) {
    out += String.fromCharCode.apply(null, key.subarray(i, i + 4096) as unknown as number[]);
  }
  return out;
}

// ---- digests

const utf8 = new TextEncoder();

// The digest input is written into one reused buffer: a digest is computed on every write, and building the input
// from small arrays would cost more than the md5 of it.
let scratch = new Uint8Array(1024);
let scratchView = new DataView(scratch.buffer);
// The last digest computed, returned through module state so that the tree's hot path allocates no pair.
let digestHi = 0;
let digestLo = 0;

function byDot(a: Version, b: Version): number {
  if (a.dot.node !== b.dot.node) return a.dot.node < b.dot.node ? -1 : 1;
  return a.dot.counter - b.dot.counter;
}

function inDotOrder(versions: readonly Version[]): boolean {
  for (let i = 1; i < versions.length; i++) if (byDot(versions[i - 1]!, versions[i]!) > 0) return false;
  return true;
}

/** Sets digestHi and digestLo to the digest of (`key`, `versions`); `versions` is not empty. */
function computeDigest(key: Uint8Array, versions: readonly Version[]): void {
  // Stored sibling sets come sorted by dot already (see `resolve`): a copy to sort only when one does not.
  const sorted = inDotOrder(versions) ? versions : versions.slice().sort(byDot);
  let size = 8 + key.length;
  for (const v of sorted) size += 13 + 3 * v.dot.node.length + (v.proof === undefined ? 0 : SIGNATURE_BYTES);
  if (size > scratch.length) {
    scratch = new Uint8Array(Math.max(size, 2 * scratch.length));
    scratchView = new DataView(scratch.buffer);
  }
  const buf = scratch;
  const view = scratchView;
  // Every variable-length part is length-prefixed, so no two different (key, dots) inputs write the same bytes.
  view.setUint32(0, key.length);
  buf.set(key, 4);
  let at = 4 + key.length;
  view.setUint32(at, sorted.length);
  at += 4;
  for (const v of sorted) {
    const node = v.dot.node;
    const counter = v.dot.counter;
    const lengthAt = at;
    at += 4;
    let ascii = true;
    for (let i = 0; i < node.length; i++) {
      const c = node.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
      buf[at + i] = c;
    }
    const written = ascii ? node.length : utf8.encodeInto(node, buf.subarray(at)).written;
    view.setUint32(lengthAt, written);
    at += written;
    view.setUint32(at, Math.floor(counter / 0x100000000));
    view.setUint32(at + 4, counter >>> 0);
    at += 8;
    // A signed version's signature, which covers its value: two replicas holding different values under one dot
    // (its writer signed both) differ, and anti-entropy brings them to one (see `resolve`).
    const proof = v.proof;
    if (proof === undefined) {
      buf[at++] = 0;
    } else {
      buf[at++] = 1;
      buf.set(proof.subarray(PUBLIC_KEY_BYTES), at);
      at += SIGNATURE_BYTES;
    }
  }
  const d = md5Words(buf, at);
  digestHi = bigEndian(d[0]!) | 0;
  digestLo = bigEndian(d[1]!) | 0;
}

/**
 * The digest of one key as it is stored: the first 8 bytes of md5 over the key's bytes and its versions' dots
 * (node id as UTF-8, counter), sorted by node then counter, each part length-prefixed, and each signed version's
 * signature. A dot names one write, and with it the version's value, context and tombstone-ness, so equal dot sets
 * are equal replicas; the signature counts too because it covers the value, so that a node that signed two values
 * under one dot, or a copy still without its proof, shows. Sibling order does not matter.
 * @returns The digest's high and low 32 bits, as the signed 32-bit integers that `^` works on; `[0, 0]` for an
 * empty version list, which means the key is absent and contributes nothing to a tree.
 */
export function keyDigest(key: Uint8Array, versions: readonly Version[]): [hi: number, lo: number] {
  if (versions.length === 0) return [0, 0];
  computeDigest(key, versions);
  return [digestHi, digestLo];
}

// ---- leaves

function partitionBits(partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new InvalidArgumentError(`partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${partitions}`);
  }
  const bits = Math.log2(partitions);
  if (!Number.isInteger(bits)) throw new InvalidArgumentError(`partitions must be a power of two, got ${partitions}`);
  return bits;
}

// The leaf from the top 32 bits of md5(key): partition bits are at most 16, so the leaf bits are among them.
function leafAt(key: Uint8Array, shift: number): number {
  return (bigEndian(md5Words(key)[0]!) >>> shift) & (TREE_LEAVES - 1);
}

/**
 * The leaf of its partition's tree that `key` falls in: the TREE_LEAVES bucket given by the bits of the key's
 * 64-bit ring position (see `keyPosition` in `ring.ts`) right after the partition bits. Keys of one leaf are a
 * contiguous range of the ring.
 * @param partitions Q, the ring's partition count: a power of two up to MAX_PARTITIONS.
 * @throws InvalidArgumentError when `partitions` is not such a power of two.
 */
export function leafOf(key: Uint8Array, partitions: number): number {
  return leafAt(key, 32 - partitionBits(partitions) - LEAF_BITS);
}

// ---- tree shape

function checkLevel(level: number): void {
  if (!Number.isInteger(level) || level < 0 || level > TREE_DEPTH) {
    throw new InvalidArgumentError(`a tree level is an integer from 0 to ${TREE_DEPTH}, got ${level}`);
  }
}

/**
 * Positions at which two hash lists of the same nodes differ, ascending: compare a peer's `sync-tree-reply` with
 * {@link PartitionTree.hashes} of the same indexes, then map each position back to the index asked there.
 * @throws InvalidArgumentError when the lists differ in length or are not whole TREE_HASH_BYTES hashes.
 */
export function differing(mine: Uint8Array, theirs: Uint8Array): number[] {
  if (mine.length !== theirs.length || mine.length % TREE_HASH_BYTES !== 0) {
    throw new InvalidArgumentError(
      `hash lists must be whole ${TREE_HASH_BYTES}-byte hashes of equal length, got ${mine.length} and ${theirs.length} bytes`,
    );
  }
  const out: number[] = [];
  for (let at = 0; at < mine.length; at += TREE_HASH_BYTES) {
    for (let i = 0; i < TREE_HASH_BYTES; i++) {
      if (mine[at + i] !== theirs[at + i]) {
        out.push(at / TREE_HASH_BYTES);
        break;
      }
    }
  }
  return out;
}

/**
 * The indexes, one level down, of the children of inner node `index` (of level 0 or any level above the leaves).
 * @throws InvalidArgumentError when `index` is not an inner node's index.
 */
export function children(index: number): number[] {
  const inner = TREE_FANOUT ** (TREE_DEPTH - 1);
  if (!Number.isInteger(index) || index < 0 || index >= inner) {
    throw new InvalidArgumentError(`an inner node index is an integer from 0 to ${inner - 1}, got ${index}`);
  }
  return Array.from({ length: TREE_FANOUT }, (_, i) => index * TREE_FANOUT + i);
}

/** One key's part of a tree: its digest and its leaf. */
interface KeyEntry {
  hi: number;
  lo: number;
  readonly leaf: number;
}

/**
 * The Merkle tree of one partition: each key's digest ({@link keyDigest}) and, per leaf, the XOR of the digests of
 * its keys. Inner node hashes are XORs of their children, computed when asked. Building by {@link set} in any order
 * gives the same hashes.
 */
export class PartitionTree {
  /** Q, the ring's partition count, which places keys in leaves. */
  readonly partitions: number;
  readonly #shift: number;
  readonly #keys = new Map<string, KeyEntry>();
  // Leaf i's hash is leaves[2i] (high 32 bits) and leaves[2i + 1] (low).
  readonly #leaves = new Int32Array(2 * TREE_LEAVES);

  /**
   * @param partitions Q, the ring's partition count: a power of two up to MAX_PARTITIONS.
   * @throws InvalidArgumentError when `partitions` is not such a power of two.
   */
  constructor(partitions: number) {
    this.#shift = 32 - partitionBits(partitions) - LEAF_BITS;
    this.partitions = partitions;
  }

  /** Keys in the tree (those with at least one version, tombstones included). */
  get keyCount(): number {
    return this.#keys.size;
  }

  /**
   * Makes the tree hold `versions` as `key`'s whole sibling set, replacing what it held for the key; an empty list
   * removes the key. The key must be of this tree's partition; nothing checks it.
   */
  set(key: Uint8Array, versions: readonly Version[]): void {
    const id = keyString(key);
    const entry = this.#keys.get(id);
    const leaves = this.#leaves;
    if (versions.length === 0) {
      if (entry === undefined) return;
      leaves[2 * entry.leaf] = leaves[2 * entry.leaf]! ^ entry.hi;
      leaves[2 * entry.leaf + 1] = leaves[2 * entry.leaf + 1]! ^ entry.lo;
      this.#keys.delete(id);
      return;
    }
    computeDigest(key, versions);
    if (entry === undefined) {
      const leaf = leafAt(key, this.#shift);
      this.#keys.set(id, { hi: digestHi, lo: digestLo, leaf });
      leaves[2 * leaf] = leaves[2 * leaf]! ^ digestHi;
      leaves[2 * leaf + 1] = leaves[2 * leaf + 1]! ^ digestLo;
    } else {
      leaves[2 * entry.leaf] = leaves[2 * entry.leaf]! ^ entry.hi ^ digestHi;
      leaves[2 * entry.leaf + 1] = leaves[2 * entry.leaf + 1]! ^ entry.lo ^ digestLo;
      entry.hi = digestHi;
      entry.lo = digestLo;
    }
  }

  /**
   * The hashes of the nodes at `level` (0 is the root, TREE_DEPTH the leaves) with the given indexes, in that
   * order, TREE_HASH_BYTES each, big-endian; all zero for a node with no key under it.
   * @throws InvalidArgumentError for a level or an index that the tree does not have.
   */
  hashes(level: number, indexes: readonly number[]): Uint8Array {
    checkLevel(level);
    const width = TREE_FANOUT ** level;
    const span = TREE_LEAVES / width;
    const out = new Uint8Array(indexes.length * TREE_HASH_BYTES);
    const view = new DataView(out.buffer);
    const leaves = this.#leaves;
    for (let k = 0; k < indexes.length; k++) {
      const index = indexes[k]!;
      if (!Number.isInteger(index) || index < 0 || index >= width) {
        throw new InvalidArgumentError(`a node index at level ${level} is from 0 to ${width - 1}, got ${index}`);
      }
      let hi = 0;
      let lo = 0;
      for (let leaf = index * span; leaf < (index + 1) * span; leaf++) {
        hi ^= leaves[2 * leaf]!;
        lo ^= leaves[2 * leaf + 1]!;
      }
      view.setInt32(k * TREE_HASH_BYTES, hi);
      view.setInt32(k * TREE_HASH_BYTES + 4, lo);
    }
    return out;
  }

  /** The root hash as 16 hex digits, for logs and status. */
  rootHex(): string {
    let hex = '';
    for (const b of this.hashes(0, [0])) hex += b.toString(16).padStart(2, '0');
    return hex;
  }
}

// ---- the cache of a node's trees

/** A key and its siblings, as a partition scan yields it (a `StoredKey` of `storage.ts` is one). */
export interface ScannedKey {
  readonly key: Uint8Array;
  readonly siblings: readonly Version[];
}

/**
 * One page of a partition's keys in key order, after `after` when given, at most `limit`: what
 * `Storage.scanPartition` answers, which can be passed as is.
 */
export type ScanPage = (
  partition: number,
  options: { after?: Uint8Array; limit: number },
) => Promise<readonly ScannedKey[]>;

/** Options of {@link PartitionTrees}. */
export interface PartitionTreesOptions {
  /** Q, the ring's partition count: a power of two up to MAX_PARTITIONS. */
  readonly partitions: number;
  /** Reads the node's stored keys of a partition, one page at a time, to build its tree. */
  readonly scan: ScanPage;
  /** Keys asked for per page while building a tree. @default 256 */
  readonly pageSize?: number;
}

/** Keys per scan page while building a tree, when no page size is given. @default 256 */
export const DEFAULT_TREE_PAGE_SIZE = 256;

/** A build in progress, and the writes made while it reads pages. */
interface Build {
  promise: Promise<PartitionTree>;
  // The latest sibling set of every key written during the build, by key string: a write to a key whose page was
  // already read would otherwise be missing from the tree.
  readonly pending: Map<string, ScannedKey>;
}

/**
 * A node's partition trees: each built on first use from a scan of the partition and kept up to date by
 * {@link update} after every write. Concurrent {@link get}s of one partition share one build; writes made during a
 * build are replayed on the built tree, so none is lost to the race between the scan and the write. Only trees
 * holding keys are kept: memory follows the partitions a node stores, not Q. A caller holding an empty tree across
 * an await may therefore miss later writes to it, as it would miss them on a tree it copied.
 */
export class PartitionTrees {
  readonly #partitions: number;
  readonly #scan: ScanPage;
  readonly #pageSize: number;
  readonly #trees = new Map<number, PartitionTree>();
  readonly #builds = new Map<number, Build>();
  /**
   * What a build of a partition with no key answers, every time: never kept, so no update reaches it, and peers
   * probe every partition of the ring, most of them empty here.
   */
  readonly #empty: PartitionTree;

  /** @throws InvalidArgumentError for a partition count that is not a power of two, or a page size below 1. */
  constructor(options: PartitionTreesOptions) {
    partitionBits(options.partitions);
    const pageSize = options.pageSize ?? DEFAULT_TREE_PAGE_SIZE;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
      throw new InvalidArgumentError(`pageSize must be a positive integer, got ${pageSize}`);
    }
    this.#partitions = options.partitions;
    this.#scan = options.scan;
    this.#pageSize = pageSize;
    this.#empty = new PartitionTree(options.partitions);
  }

  /**
   * The partition's tree, built from a scan on first use. A build that fails (the scan rejects) is forgotten, so the
   * next call tries again. A tree {@link drop}ped while it was being built is still returned to those waiting, but
   * not kept.
   * @throws InvalidArgumentError (as a rejection) when `partition` is not in 0..Q-1.
   */
  get(partition: number): Promise<PartitionTree> {
    const tree = this.#trees.get(partition);
    if (tree !== undefined) return Promise.resolve(tree);
    const running = this.#builds.get(partition);
    if (running !== undefined) return running.promise;
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.#partitions) {
      return Promise.reject(
        new InvalidArgumentError(`partition must be an integer from 0 to ${this.#partitions - 1}, got ${partition}`),
      );
    }
    const pending = new Map<string, ScannedKey>();
    // Registered before the build starts, so that a scan failing at once still finds it to forget.
    const build: Build = { promise: Promise.resolve(new PartitionTree(this.#partitions)), pending };
    this.#builds.set(partition, build);
    build.promise = this.#build(partition, pending);
    // A caller that drops its promise must not turn a failed scan into an unhandled rejection.
    build.promise.catch(() => {});
    return build.promise;
  }

  /** The partition's tree when it is built, else undefined; never starts a build. */
  peek(partition: number): PartitionTree | undefined {
    return this.#trees.get(partition);
  }

  /**
   * Records that the node now stores `versions` as `key`'s whole sibling set in `partition` (empty when the key is
   * gone). Call it after every change of the main store (apply, write, delete), with what the store holds after the
   * change. Free for a partition whose tree is neither built nor being built.
   */
  update(partition: number, key: Uint8Array, versions: readonly Version[]): void {
    const tree = this.#trees.get(partition);
    if (tree !== undefined) {
      tree.set(key, versions);
      // Emptied (released, or its last key collected): rebuilt for nothing when next asked for.
      if (tree.keyCount === 0) this.#trees.delete(partition);
      return;
    }
    this.#builds.get(partition)?.pending.set(keyString(key), { key, siblings: versions });
  }

  /** Forgets the partition's tree, built or being built (the node released the partition). */
  drop(partition: number): void {
    this.#trees.delete(partition);
    this.#builds.delete(partition);
  }

  /** The partitions whose trees are built, ascending. */
  built(): number[] {
    return [...this.#trees.keys()].sort((a, b) => a - b);
  }

  async #build(partition: number, pending: Map<string, ScannedKey>): Promise<PartitionTree> {
    let tree: PartitionTree | undefined;
    const limit = this.#pageSize;
    try {
      let after: Uint8Array | undefined;
      for (;;) {
        const page = await this.#scan(partition, after === undefined ? { limit } : { after, limit });
        if (page.length > 0) tree ??= new PartitionTree(this.#partitions);
        for (const { key, siblings } of page) tree!.set(key, siblings);
        if (page.length < limit) break;
        after = page[page.length - 1]!.key;
      }
    } catch (error) {
      if (this.#builds.get(partition)?.pending === pending) this.#builds.delete(partition);
      throw error;
    }
    // No await from here on: an update arriving now finds the tree installed rather than the build.
    if (tree === undefined && pending.size === 0) {
      if (this.#builds.get(partition)?.pending === pending) this.#builds.delete(partition);
      return this.#empty;
    }
    tree ??= new PartitionTree(this.#partitions);
    for (const { key, siblings } of pending.values()) tree.set(key, siblings);
    if (this.#builds.get(partition)?.pending === pending) {
      this.#builds.delete(partition);
      // An empty tree is not kept: peers probe every partition of the ring (holders.ts), and a node would otherwise
      // keep a tree for each of Q partitions, most of them of partitions it stores nothing of.
      if (tree.keyCount > 0) this.#trees.set(partition, tree);
    }
    return tree;
  }
}
