/**
 * Which peers a node keeps a direct link (a peer connection) to, pure: the partial mesh. Past a few dozen tabs a full
 * mesh costs every tab a connection per member, and Chromium allows a tab 500 peer connections over its lifetime, so a
 * node links to
 * - its **partners**, the members it shares partitions with (the other owners of the partitions it owns: those are
 *   also the nodes whose preference lists include it), which replication and anti-entropy talk to all the time,
 *   most shared partitions first;
 * - peers it **used** lately (sent a frame to or heard from: a coordinator it forwards to, a node that forwards to
 *   it), opened on first use and closed once idle for `idleMs`;
 *
 * never more than `maxLinks` in all. Until a link is up, or for the peers left out, frames go through the signalling
 * server's relay (links.ts), so every member stays reachable whatever the bound. A cluster no larger than the bound
 * is a full mesh, as before the partial mesh: each member is linked to every other.
 */
import type { Ring } from '../ring/ring.ts';

/**
 * The default bound on a node's open links: 64. It keeps a cluster of up to 65 members a full mesh and stays far
 * below Chromium's 500 peer connections per tab, which idle links closed and opened again also spend. A node's
 * partners are the members it shares preference lists with: it is in about 3Q/M lists, with 2 other owners each,
 * and has M − 1 peers. With the default N = 3 and a live cluster's Q = 4,096 that is every other member up to about
 * 100 members, then fewer (measured with {@link linkPartners}, most of 10 nodes: 94 at 100 members, 102 at 200, 34 at
 * 1,000); between about 65 and a few hundred members the bound links the 64 most-shared partners, and the rest go
 * through links opened on first use or the server's relay.
 */
export const DEFAULT_MAX_LINKS = 64;

/** The default time after which a link opened on first use and no longer used is closed, ms: 60 s. */
export const DEFAULT_LINK_IDLE_MS = 60_000;

/** The tunables of the policy. */
export interface LinkPolicyOptions {
  /** Most links open at once, ≥ 1. @default 64 ({@link DEFAULT_MAX_LINKS}) */
  readonly maxLinks?: number;
  /** Ms after its last use that a link kept for use only is closed. @default 60000 */
  readonly idleMs?: number;
}

/** What {@link planLinks} decides from. */
export interface LinkPlanInput {
  /** Every other member of the view. */
  readonly peers: readonly string[];
  /** The members this node shares partitions with, most shared first (see {@link linkPartners}). */
  readonly partners: readonly string[];
  /** When each peer was last used (a frame sent to it or heard from it), on the clock. */
  readonly lastUse: ReadonlyMap<string, number>;
  readonly now: number;
  readonly maxLinks: number;
  readonly idleMs: number;
}

/**
 * The peers to keep linked, by priority: every peer when they are no more than `maxLinks`; otherwise partners first,
 * but a quarter of the bound (at least one link) is kept for peers used lately that are not linked as partners, when
 * there are some, most recent first. A peer unused for `idleMs` that is no partner linked is left out (closed).
 */
export function planLinks(input: LinkPlanInput): string[] {
  const { peers, partners, lastUse, now, maxLinks, idleMs } = input;
  if (peers.length <= maxLinks) return [...peers].sort();
  const members = new Set(peers);
  const recent = peers
    .filter((peer) => {
      const used = lastUse.get(peer);
      return used !== undefined && now - used < idleMs;
    })
    .sort((a, b) => lastUse.get(b)! - lastUse.get(a)! || (a < b ? -1 : 1));
  const known = partners.filter((p) => members.has(p));
  const reserve = Math.ceil(maxLinks / 4);
  // The partners' share: the bound less what peers used lately, and not linked as partners, need of the reserve.
  const linkedPartners = new Set(known.slice(0, maxLinks - reserve));
  const usedOutside = recent.filter((peer) => !linkedPartners.has(peer)).length;
  const partnerSlots = maxLinks - Math.min(reserve, usedOutside);
  const chosen = known.slice(0, partnerSlots);
  const taken = new Set(chosen);
  for (const peer of recent) {
    if (chosen.length >= maxLinks) break;
    if (!taken.has(peer)) {
      chosen.push(peer);
      taken.add(peer);
    }
  }
  return chosen;
}

/**
 * The other members that share a partition with `self` on `ring` with replication factor `n` (both are in its
 * preference list), most shared partitions first, ties by id: the peers replication and anti-entropy talk to.
 */
export function linkPartners(ring: Ring, self: string, n: number): string[] {
  const shared = new Map<string, number>();
  for (let partition = 0; partition < ring.partitions; partition++) {
    const owners = ring.preferenceList(partition, n);
    if (!owners.includes(self)) continue;
    for (const owner of owners) if (owner !== self) shared.set(owner, (shared.get(owner) ?? 0) + 1);
  }
  return [...shared].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([peer]) => peer);
}

/**
 * The policy's state: the view's peers, the partners, and when each peer was last used. Pure: time comes in through
 * `clock`, and nothing here opens or closes anything; its owner applies {@link LinkPolicy.plan}.
 */
export class LinkPolicy {
  readonly #maxLinks: number;
  readonly #idleMs: number;
  readonly #clock: () => number;
  #peers: readonly string[] = [];
  #partners: readonly string[] = [];
  readonly #lastUse = new Map<string, number>();

  constructor(options: LinkPolicyOptions, clock: () => number) {
    const maxLinks = options.maxLinks ?? DEFAULT_MAX_LINKS;
    const idleMs = options.idleMs ?? DEFAULT_LINK_IDLE_MS;
    if (!Number.isSafeInteger(maxLinks) || maxLinks < 1) throw new RangeError('maxLinks must be an integer ≥ 1');
    if (!(idleMs > 0)) throw new RangeError('idleMs must be a number of ms > 0');
    this.#maxLinks = maxLinks;
    this.#idleMs = idleMs;
    this.#clock = clock;
  }

  /** The bound on open links. */
  get maxLinks(): number {
    return this.#maxLinks;
  }

  /** Takes a new view: the other members, and the partners among them, most shared first. */
  setView(peers: readonly string[], partners: readonly string[]): void {
    this.#peers = peers;
    this.#partners = partners;
    const members = new Set(peers);
    for (const peer of this.#lastUse.keys()) if (!members.has(peer)) this.#lastUse.delete(peer);
  }

  /** Records that a frame went to `peer` or came from it. */
  use(peer: string): void {
    this.#lastUse.set(peer, this.#clock());
  }

  /** The peers to keep linked now, by priority (see {@link planLinks}). */
  plan(): string[] {
    return planLinks({
      peers: this.#peers,
      partners: this.#partners,
      lastUse: this.#lastUse,
      now: this.#clock(),
      maxLinks: this.#maxLinks,
      idleMs: this.#idleMs,
    });
  }
}
