/**
 * The consistent-hashing ring, pure. Keys fall into Q fixed, equal partitions of the 64-bit md5 space (Dynamo's
 * strategy 3), and each node places T virtual-node tokens derived from its id. A partition is served by the nodes
 * met walking clockwise over the tokens from the partition's upper bound, nodes of distinct domains first, so that
 * replicas land in distinct browser profiles whenever there are enough of them. Partitions are the unit of transfer,
 * hinted handoff and Merkle trees: a membership change moves whole partitions and never a boundary.
 *
 * Positions are 64-bit, but the ring never needs BigInt on its hot paths: partition bounds have zero low 32 bits, so
 * finding where a partition's walk starts only compares the high halves of token positions.
 */
import { InvalidArgumentError } from '../errors.ts';
import { bigEndian, md5, md5Words } from './md5.ts';

/** A node as the ring sees it. */
export interface Member {
  /** The node id, unique in the cluster. */
  readonly id: string;
  /** The failure domain the node runs in (its browser profile): replicas prefer distinct domains. */
  readonly domain: string;
  /**
   * Where the node's tokens fall, as the signalling server chose it: a salt the server derives from its secret, the
   * cluster and the id (signaling/placement.ts), mixed into every token, so that no node can choose ids (or mint keys)
   * until its tokens land where it wants them, say as every owner of a partition. Absent or empty, as from a server
   * without a secret, the tokens come from the id alone.
   */
  readonly placement?: string;
  /**
   * The first dot counter the node signed (proof.ts), as it told the server in its join; absent for a node that
   * does not sign. Versions of the node below it were written before it signed, and go unsigned.
   */
  readonly signedFrom?: number;
}

/** The most characters a {@link Member.placement} may have. */
export const MAX_PLACEMENT_LENGTH = 64;

/** Tunables of a {@link Ring}. Every node of a cluster must use the same values, or their rings disagree. */
export interface RingOptions {
  /** Q: fixed equal partitions of the 64-bit ring, a power of two. @default 256 */
  readonly partitions?: number;
  /** T: virtual-node tokens per node. @default 128 */
  readonly tokensPerNode?: number;
}

/**
 * Q of a ring built without one: the simulation's and the unit tests' clusters of a few nodes. A live cluster's Q is
 * a cluster setting that every member takes from the signalling server ({@link DEFAULT_CLUSTER_PARTITIONS}).
 * @default 256
 */
export const DEFAULT_PARTITIONS = 256;

/**
 * Q of a live cluster unless its signalling server says otherwise (`--partitions`): chosen for 1,000 nodes, since Q
 * cannot change under stored data and Dynamo's strategy 3 needs Q much larger than the node count. Measured with
 * `npm run bench:ring -- --partitions 1024,2048,4096` (2 sets of 1,000 random nodes, N = 3, T = 128): the busiest
 * node's replica share over the mean is 3.30 at Q = 1,024, 2.57 at 2,048, 1.99 at 4,096; at 8 nodes every Q from
 * 1,024 up is within 1.09. @default 4096
 */
export const DEFAULT_CLUSTER_PARTITIONS = 4096;

/**
 * T, the tokens each node places when none is given, chosen with `test/bench/ring-balance.ts` (8 nodes, Q = 256, 200
 * random clusters: `--sets 200 --seed 7 --tokens T`). From 64 tokens up the primary-owner balance stops improving
 * (largest over mean 1.23 on average), because each partition's owner is then close to an independent draw and the
 * spread left is the quantization of 256 partitions over 8 nodes. 128 tokens still even out the replica load (largest
 * over mean 1.09 against 1.11 at 64, worst 1.19 against 1.22) and let a larger Q pay off, for about 33 ms to build a
 * 64-member ring from fresh ids, 5 ms when one member joins. @default 128
 */
export const DEFAULT_TOKENS_PER_NODE = 128;

/** The most partitions a ring accepts: partition numbers must fit in the top 16 bits of a position. */
export const MAX_PARTITIONS = 65536;

/** True when `q` is a valid Q: a power of two from 1 to {@link MAX_PARTITIONS}. */
export function isPartitionCount(q: unknown): q is number {
  return typeof q === 'number' && Number.isInteger(q) && q >= 1 && q <= MAX_PARTITIONS && (q & (q - 1)) === 0;
}

/** The most tokens per node a ring accepts, so that a bad option cannot stall every rebuild. */
export const MAX_TOKENS_PER_NODE = 4096;

const utf8 = new TextEncoder();

/**
 * Token positions of one node: the high and low 32-bit halves of md5(`${seed}:${i}`) for i from 0, where the seed is
 * the id, or `${id}:${placement}` for a member with a placement.
 */
interface NodeTokens {
  readonly hi: Uint32Array;
  readonly lo: Uint32Array;
}

/**
 * Token positions by seed. Every membership change rebuilds the ring, and hashing the tokens is nearly all of its
 * cost, while a change adds or removes one node: remembering the others' tokens makes a rebuild cheap. A node's
 * first T tokens do not depend on T, so one entry serves every T up to its length. Bounded, oldest dropped first.
 */
const tokenCache = new Map<string, NodeTokens>();
const TOKEN_CACHE_SIZE = 1024;

function tokenSeed(member: Member): string {
  const placement = member.placement ?? '';
  return placement === '' ? member.id : `${member.id}:${placement}`;
}

function tokensOf(seed: string, count: number): NodeTokens {
  const cached = tokenCache.get(seed);
  if (cached !== undefined) {
    tokenCache.delete(seed);
    tokenCache.set(seed, cached);
    if (cached.hi.length >= count) return cached;
  }
  const hi = new Uint32Array(count);
  const lo = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const digest = md5Words(utf8.encode(`${seed}:${i}`));
    hi[i] = bigEndian(digest[0]!);
    lo[i] = bigEndian(digest[1]!);
  }
  const tokens = { hi, lo };
  tokenCache.delete(seed);
  tokenCache.set(seed, tokens);
  if (tokenCache.size > TOKEN_CACHE_SIZE) tokenCache.delete(tokenCache.keys().next().value!);
  return tokens;
}

/**
 * The top 32 bits of md5(key). Every request needs its key's partition, often on several nodes and several times, and
 * a lookup costs a small fraction of an md5: a direct-mapped table by an FNV-1a hash of the key's bytes, each slot
 * holding the bytes it was computed from, so that a hit compares bytes and allocates nothing. Keys longer than
 * HASH_CACHE_KEY_BYTES are hashed every time.
 */
const HASH_CACHE_SIZE = 4096;
const HASH_CACHE_KEY_BYTES = 256;
const hashKeys: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(HASH_CACHE_SIZE).fill(undefined);
const hashValues = new Uint32Array(HASH_CACHE_SIZE);

function keyHash32(key: Uint8Array): number {
  const n = key.length;
  if (n > HASH_CACHE_KEY_BYTES) return md5Hash32(key);
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  const slot = (h >>> 0) & (HASH_CACHE_SIZE - 1);
  const cached = hashKeys[slot];
  if (cached !== undefined && cached.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (cached[i] !== key[i]) {
        same = false;
        break;
      }
    }
    if (same) return hashValues[slot]!;
  }
  const hash = md5Hash32(key);
  // A copy: the caller may change its key afterwards.
  hashKeys[slot] = key.slice();
  hashValues[slot] = hash;
  return hash;
}

function md5Hash32(key: Uint8Array): number {
  return bigEndian(md5Words(key)[0]!);
}

/** md5 of the key, first 8 bytes big-endian as an unsigned 64-bit position. */
export function keyPosition(key: Uint8Array): bigint {
  const digest = md5(key);
  return new DataView(digest.buffer, digest.byteOffset, 8).getBigUint64(0);
}

/** Whether `placement` is one a {@link Member} may have: absent, or a string of at most 64 characters. */
export function isPlacement(placement: unknown): placement is string | undefined {
  return placement === undefined || (typeof placement === 'string' && placement.length <= MAX_PLACEMENT_LENGTH);
}

/** `m` as a ring keeps it: id, domain, and the placement when it has a non-empty one. */
export function memberOf(m: Member): Member {
  return m.placement === undefined || m.placement === ''
    ? { id: m.id, domain: m.domain }
    : { id: m.id, domain: m.domain, placement: m.placement };
}

/** The ids that {@link Ring.walk} visits, and in what order, for one partition. */
type Walk = readonly string[];

/**
 * What a ring computes from its view: token order, walks and preference lists. Every node builds its own ring from
 * every view it receives, and nodes that restart build theirs again, so rings of one view are built many times over:
 * they share one core, built once, whose walks and preference lists fill in as any of them asks. A core never
 * changes what it answers, so sharing it is invisible.
 */
class RingCore {
  readonly members: readonly Member[];
  readonly ids: ReadonlySet<string>;
  /** log2(Q): a key's partition is the top `bits` bits of its position. */
  readonly bits: number;
  /** The high 32 bits of every token position, in clockwise order. */
  readonly tokenHi: Uint32Array;
  /** The member index (into `members`) owning each token, in the same order. */
  readonly tokenOwner: Uint32Array;
  /** The domain number of each member, so walks compare small integers rather than strings. */
  readonly memberDomain: Uint32Array;
  readonly domainCount: number;
  /** Walks computed so far, by partition: most requests hit a few partitions many times. */
  readonly walks: (Walk | undefined)[];
  /** Preference lists computed so far, by n, then partition. */
  readonly prefs = new Map<number, (Walk | undefined)[]>();
  /** The partitions in each member's preference lists, ascending, by n, then member id; computed once per n. */
  readonly owned = new Map<number, ReadonlyMap<string, readonly number[]>>();
  /** Each member's domain by id, built on first use. */
  domains: ReadonlyMap<string, string> | undefined;

  constructor(sorted: readonly Member[], ids: ReadonlySet<string>, partitions: number, tokensPerNode: number) {
    this.members = sorted;
    this.ids = ids;
    this.bits = Math.log2(partitions);
    const domains = new Map<string, number>();
    this.memberDomain = new Uint32Array(sorted.length);
    sorted.forEach((m, i) => {
      let d = domains.get(m.domain);
      if (d === undefined) domains.set(m.domain, (d = domains.size));
      this.memberDomain[i] = d;
    });
    this.domainCount = domains.size;

    const count = sorted.length * tokensPerNode;
    const hi = new Uint32Array(count);
    const lo = new Uint32Array(count);
    const owner = new Uint32Array(count);
    let t = 0;
    sorted.forEach((m, i) => {
      const tokens = tokensOf(tokenSeed(m), tokensPerNode);
      for (let k = 0; k < tokensPerNode; k++, t++) {
        hi[t] = tokens.hi[k]!;
        lo[t] = tokens.lo[k]!;
        owner[t] = i;
      }
    });
    // Members are sorted by id, so breaking exact position ties by owner index is independent of the input order.
    const order = Array.from({ length: count }, (_, k) => k).sort(
      (a, b) => hi[a]! - hi[b]! || lo[a]! - lo[b]! || owner[a]! - owner[b]!,
    );
    this.tokenHi = Uint32Array.from(order, (k) => hi[k]!);
    this.tokenOwner = Uint32Array.from(order, (k) => owner[k]!);
    this.walks = new Array<Walk | undefined>(partitions).fill(undefined);
  }
}

const NO_PARTITIONS: readonly number[] = Object.freeze([]);

/** Cores by view and options, most recently used last; bounded, oldest dropped first. */
const coreCache = new Map<string, RingCore>();
const CORE_CACHE_SIZE = 64;

function coreOf(sorted: readonly Member[], ids: ReadonlySet<string>, partitions: number, tokens: number): RingCore {
  let name = `${partitions}/${tokens}`;
  for (const m of sorted) name += `/${JSON.stringify(m.id)}:${JSON.stringify(m.domain)}:${JSON.stringify(m.placement)}`;
  let core = coreCache.get(name);
  if (core !== undefined) {
    coreCache.delete(name);
  } else {
    core = new RingCore(sorted, ids, partitions, tokens);
    if (coreCache.size >= CORE_CACHE_SIZE) coreCache.delete(coreCache.keys().next().value!);
  }
  coreCache.set(name, core);
  return core;
}

/**
 * The core last built from each members array, with the members as they were then: every node of a simulation
 * gets the same array for a view, and sorting and naming a thousand members for each of them cost more than all the
 * rest of a view change. An entry is used only while the array still holds the same members.
 */
const viewCores = new WeakMap<
  readonly Member[],
  { readonly variant: string; readonly members: readonly Member[]; readonly core: RingCore }
>();

function sameView(members: readonly Member[], seen: readonly Member[]): boolean {
  if (members.length !== seen.length) return false;
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    const s = seen[i]!;
    if (m.id !== s.id || m.domain !== s.domain || (m.placement || undefined) !== s.placement) return false;
  }
  return true;
}

/** A ring computed from one membership view. Immutable: build a new one on every membership change. */
export class Ring {
  /** Q, the number of partitions. */
  readonly partitions: number;
  /** T, the tokens each member placed. */
  readonly tokensPerNode: number;
  /** The members, sorted by id whatever order they were given in. */
  readonly members: readonly Member[];

  readonly #core: RingCore;

  /**
   * @param members - The view's members, in any order: every node computes the same ring from the same set.
   * @throws InvalidArgumentError when Q is not a power of two in 1..65536, T is not an integer in 1..4096, or a
   *   member id is empty or repeated.
   */
  constructor(members: readonly Member[], options: RingOptions = {}) {
    const partitions = options.partitions ?? DEFAULT_PARTITIONS;
    const tokensPerNode = options.tokensPerNode ?? DEFAULT_TOKENS_PER_NODE;
    if (!isPartitionCount(partitions)) {
      throw new InvalidArgumentError(
        `partitions must be a power of two from 1 to ${MAX_PARTITIONS}, not ${partitions}`,
      );
    }
    if (!Number.isInteger(tokensPerNode) || tokensPerNode < 1 || tokensPerNode > MAX_TOKENS_PER_NODE) {
      throw new InvalidArgumentError(
        `tokensPerNode must be an integer from 1 to ${MAX_TOKENS_PER_NODE}, not ${tokensPerNode}`,
      );
    }
    this.partitions = partitions;
    this.tokensPerNode = tokensPerNode;
    const variant = `${partitions}/${tokensPerNode}`;
    const known = viewCores.get(members);
    if (known !== undefined && known.variant === variant && sameView(members, known.members)) {
      this.#core = known.core;
      this.members = known.core.members;
      return;
    }
    const ids = new Set<string>();
    for (const m of members) {
      if (typeof m.id !== 'string' || m.id === '') {
        throw new InvalidArgumentError('a member id must be a non-empty string');
      }
      if (typeof m.domain !== 'string') throw new InvalidArgumentError(`member ${m.id} has no domain string`);
      if (!isPlacement(m.placement)) {
        throw new InvalidArgumentError(
          `member ${m.id} has a placement that is not a string of at most ${MAX_PLACEMENT_LENGTH} characters`,
        );
      }
      if (ids.has(m.id)) throw new InvalidArgumentError(`member id ${m.id} appears twice`);
      ids.add(m.id);
    }

    const copies = members.map((m) => Object.freeze(memberOf(m)));
    const sorted = [...copies].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.#core = coreOf(Object.freeze(sorted), ids, partitions, tokensPerNode);
    this.members = this.#core.members;
    viewCores.set(members, { variant, members: copies, core: this.#core });
  }

  /** True when `id` is a member of this ring. */
  has(id: string): boolean {
    return this.#core.ids.has(id);
  }

  /** The failure domain of member `id`; undefined for a stranger. */
  domainOf(id: string): string | undefined {
    const core = this.#core;
    core.domains ??= new Map(core.members.map((m) => [m.id, m.domain]));
    return core.domains.get(id);
  }

  /** The partition a key falls in: position * Q / 2^64 (top log2(Q) bits of the md5). */
  partitionOf(key: Uint8Array): number {
    const bits = this.#core.bits;
    if (bits === 0) return 0;
    return keyHash32(key) >>> (32 - bits);
  }

  /**
   * Every member id, in the order a request for this partition tries them: the preference list, then fallbacks.
   * The walk goes clockwise from the partition's upper bound ((p+1)·2^64/Q, mod 2^64; a token exactly there counts)
   * and takes the first node met of each domain, then the other nodes in the order met.
   * @throws InvalidArgumentError when `partition` is not an integer in 0..Q-1.
   */
  walk(partition: number): readonly string[] {
    this.#checkPartition(partition);
    const walks = this.#core.walks;
    let walk = walks[partition];
    if (walk === undefined) {
      walk = this.#computeWalk(partition);
      walks[partition] = walk;
    }
    return walk;
  }

  /**
   * The first n ids of walk(partition), frozen.
   * @throws InvalidArgumentError when `partition` is out of range or `n` is not a non-negative integer.
   */
  preferenceList(partition: number, n: number): readonly string[] {
    const prefs = this.#core.prefs.get(n);
    if (prefs !== undefined) {
      // Any partition with a list here has passed the checks below.
      const list = prefs[partition];
      if (list !== undefined) return list;
    }
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`n must be a non-negative integer, not ${n}`);
    this.#checkPartition(partition);
    // Only as much of the walk as the list needs: a whole walk names every member, and a node asks for the list of
    // every partition after each view change (rebalance.ts), Q walks of a thousand members each.
    const walk = this.#core.walks[partition];
    const list =
      walk !== undefined
        ? n >= walk.length
          ? walk
          : Object.freeze(walk.slice(0, n))
        : n >= this.#core.members.length
          ? this.walk(partition)
          : this.#computeWalk(partition, n);
    if (prefs !== undefined) prefs[partition] = list;
    else {
      const lists = new Array<Walk | undefined>(this.partitions).fill(undefined);
      lists[partition] = list;
      this.#core.prefs.set(n, lists);
    }
    return list;
  }

  /**
   * The partitions whose preference list of length `n` names `id`, ascending; empty for a stranger. Computed once
   * per view and n for every member at once, so that a node finds its own partitions without looking at all Q.
   * @throws InvalidArgumentError when `n` is not a non-negative integer.
   */
  partitionsOf(id: string, n: number): readonly number[] {
    let owned = this.#core.owned.get(n);
    if (owned === undefined) {
      const lists = new Map<string, number[]>();
      for (let p = 0; p < this.partitions; p++) {
        for (const owner of this.preferenceList(p, n)) {
          let list = lists.get(owner);
          if (list === undefined) lists.set(owner, (list = []));
          list.push(p);
        }
      }
      for (const list of lists.values()) Object.freeze(list);
      owned = lists;
      this.#core.owned.set(n, owned);
    }
    return owned.get(id) ?? NO_PARTITIONS;
  }

  #checkPartition(partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.partitions) {
      throw new InvalidArgumentError(`partition must be an integer from 0 to ${this.partitions - 1}, not ${partition}`);
    }
  }

  /**
   * The walk of `partition`, or its first `length` ids: the walk stops once they are known, that is once `length`
   * members of distinct domains were met, or every domain and enough others.
   */
  #computeWalk(partition: number, length = Infinity): Walk {
    const core = this.#core;
    const tokens = core.tokenHi.length;
    const memberCount = core.members.length;
    if (tokens === 0) return Object.freeze([]);
    const start = this.#firstTokenAtOrAfter(partition);
    const seenMember = new Uint8Array(memberCount);
    const seenDomain = new Uint8Array(core.domainCount);
    const first: string[] = [];
    const rest: string[] = [];
    let met = 0;
    for (let k = 0; k < tokens && met < memberCount; k++) {
      if (first.length >= length || (first.length === core.domainCount && met >= length)) break;
      const m = core.tokenOwner[(start + k) % tokens]!;
      if (seenMember[m] === 1) continue;
      seenMember[m] = 1;
      met++;
      const d = core.memberDomain[m]!;
      const id = core.members[m]!.id;
      if (seenDomain[d] === 1) {
        rest.push(id);
      } else {
        seenDomain[d] = 1;
        first.push(id);
      }
    }
    const walk = first.concat(rest);
    return Object.freeze(length < walk.length ? walk.slice(0, length) : walk);
  }

  /** Index of the first token at or clockwise after partition p's upper bound. */
  #firstTokenAtOrAfter(partition: number): number {
    // The last partition's upper bound is 2^64, which is position 0: its walk starts at the first token.
    if (partition === this.partitions - 1) return 0;
    // The bound's low 32 bits are zero, so a token is at or after it exactly when its high half is.
    const boundHi = (partition + 1) * 2 ** (32 - this.#core.bits);
    const hi = this.#core.tokenHi;
    let lo = 0;
    let up = hi.length;
    while (lo < up) {
      const mid = (lo + up) >>> 1;
      if (hi[mid]! < boundHi) lo = mid + 1;
      else up = mid;
    }
    return lo === hi.length ? 0 : lo;
  }
}
