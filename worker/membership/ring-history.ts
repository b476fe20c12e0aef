/**
 * The rings a node had before its current one, newest first, each with when it was replaced: views reach the
 * members at different moments, and an old owner releases what it held for minutes after a change, so a peer's role
 * in a recent ring is still honoured for a while (node.ts, `#recentRole`). Only rings that placed partitions
 * differently are kept, those replaced within the history's age and at most {@link RING_HISTORY} of them (enough
 * for a cluster whose membership changes every ten seconds).
 *
 * The history is stored in the node's storage meta ({@link RingHistory.record}, {@link RingHistory.restore}) so that
 * a browser restart does not forget who owned what moments ago: a node that forgot would refuse an old owner's
 * release, or a fallback's delivery, that it would have taken before the restart. Each earlier ring is stored as
 * the change from it to the ring after it, which is a member or two: stored whole, sixteen rings of a thousand
 * members made every view change rewrite some 16,000 members in every node.
 */
import { type Member, type Ring, isPlacement, memberOf } from '../ring/ring.ts';

/** Most earlier rings kept. */
export const RING_HISTORY = 64;
/** Most earlier rings stored, the newest: a store rewrites them all, and a restart is rarely that churned. */
export const STORED_RING_HISTORY = 16;

/**
 * How an earlier ring differs from the ring after it: the ids of the members that joined since (or came back
 * placed otherwise), and the members it had that the ring after it lacks, as it had them.
 */
export interface RingChange {
  readonly joined: readonly string[];
  readonly left: readonly Member[];
}

/**
 * The history as stored: the current ring's members when saved, and the earlier rings, newest first, each as the
 * change from it to the ring after it (the first one's is the current ring). Records stored before changes were
 * used hold each earlier ring's `members` whole; they are still read.
 */
export interface RingRecord {
  readonly current: readonly Member[];
  readonly savedAt: number;
  readonly earlier: readonly (RingChange & { readonly replacedAt: number })[];
}

/** An earlier ring as records stored it before changes were used. */
interface WholeRing {
  readonly members: readonly Member[];
  readonly replacedAt: number;
}

/** The change from `older` to `newer`, by member; computed once per pair of member lists (rings share theirs). */
function changeOf(older: readonly Member[], newer: readonly Member[]): RingChange {
  let byNewer = changes.get(older);
  if (byNewer === undefined) changes.set(older, (byNewer = new WeakMap()));
  let change = byNewer.get(newer);
  if (change === undefined) {
    const olderKeys = new Set(older.map(memberKey));
    const newerKeys = new Set(newer.map(memberKey));
    change = {
      joined: newer.filter((m) => !olderKeys.has(memberKey(m))).map((m) => m.id),
      left: older.filter((m) => !newerKeys.has(memberKey(m))).map(memberOf),
    };
    byNewer.set(newer, change);
  }
  return change;
}

const changes = new WeakMap<readonly Member[], WeakMap<readonly Member[], RingChange>>();

/** The ring before `change`, from the ring after it. */
function undo(newer: readonly Member[], change: RingChange): Member[] {
  const joined = new Set(change.joined);
  return [...newer.filter((m) => !joined.has(m.id)), ...change.left];
}

function memberKey(m: Member): string {
  return `${m.id}\u0000${m.domain}\u0000${m.placement ?? ''}`;
}

/** Earlier rings of one node. */
export class RingHistory {
  readonly #build: (members: readonly Member[]) => Ring;
  readonly #maxAgeMs: number;
  /** Newest first. A ring taken back from storage is built when first needed (null: its members make none). */
  #earlier: { members: readonly Member[]; ring: Ring | null | undefined; replacedAt: number }[] = [];

  /** `build` makes a ring of members as the node makes its own; rings replaced `maxAgeMs` ago are forgotten. */
  constructor(build: (members: readonly Member[]) => Ring, maxAgeMs: number) {
    this.#build = build;
    this.#maxAgeMs = maxAgeMs;
  }

  /** Takes note that `ring` stopped being current at `now`. */
  replaced(ring: Ring, now: number): void {
    this.#earlier.unshift({ members: ring.members, ring, replacedAt: now });
    this.#earlier = this.#earlier.filter((r, i) => i < RING_HISTORY && now - r.replacedAt < this.#maxAgeMs);
  }

  /** True when `test` passes for a ring replaced less than `graceMs` before `now`. */
  some(test: (ring: Ring) => boolean, now: number, graceMs: number): boolean {
    for (const entry of this.#earlier) {
      if (now - entry.replacedAt >= graceMs) return false;
      const ring = this.#ringOf(entry);
      if (ring !== null && test(ring)) return true;
    }
    return false;
  }

  /**
   * The members of `current` that `owners` names in a ring replaced less than `graceMs` before `now`, and not in
   * `current`: who owned a partition moments ago and has since lost it.
   */
  former(owners: (ring: Ring) => readonly string[], current: Ring, now: number, graceMs: number): string[] {
    const owning = new Set(owners(current));
    const out = new Set<string>();
    for (const entry of this.#earlier) {
      if (now - entry.replacedAt >= graceMs) break;
      const ring = this.#ringOf(entry);
      for (const id of ring === null ? [] : owners(ring)) if (!owning.has(id) && current.has(id)) out.add(id);
    }
    return [...out];
  }

  /** The history with `current` as the ring in force at `now`, to store. */
  record(current: Ring, now: number): RingRecord {
    let newer = current.members;
    const earlier: (RingChange & { replacedAt: number })[] = [];
    for (const { members, replacedAt } of this.#earlier.slice(0, STORED_RING_HISTORY)) {
      earlier.push({ ...changeOf(members, newer), replacedAt });
      newer = members;
    }
    // The ring's members are frozen, as each of them is: a storage engine may keep them without a copy.
    return { current: current.members, savedAt: now, earlier };
  }

  /**
   * Takes back a stored history, as rings older than every one noted since: the ring that was current when it was
   * stored counts as replaced at `lastAlive` (the node's last sign of life, when later than the save), and rings
   * replaced longer than the history's age before `now`, or after it (a clock set back), are left out. Anything
   * malformed is ignored, a ring of members no ring can be made of included.
   */
  restore(record: unknown, lastAlive: number, now: number): void {
    if (!isRecord(record)) return;
    let newer = record.current;
    const earlier = record.earlier.map((e): WholeRing => {
      const members = 'members' in e ? e.members : undo(newer, e);
      newer = members;
      return { members, replacedAt: e.replacedAt };
    });
    const restored = [{ members: record.current, replacedAt: Math.max(record.savedAt, lastAlive) }, ...earlier].filter(
      (r) => r.replacedAt <= now && now - r.replacedAt < this.#maxAgeMs && r.members.length > 0,
    );
    const oldest = this.#earlier.at(-1)?.replacedAt ?? Infinity;
    for (const { members, replacedAt } of restored) {
      if (this.#earlier.length >= RING_HISTORY) break;
      this.#earlier.push({ members, ring: undefined, replacedAt: Math.min(replacedAt, oldest) });
    }
  }

  /**
   * The ring that was current when `record` was stored (what the node last had before it stopped), or null when the
   * record is missing or malformed, or its members make no ring.
   */
  storedRing(record: unknown): Ring | null {
    if (!isRecord(record) || record.current.length === 0) return null;
    return this.#ringOf({ members: record.current, ring: undefined });
  }

  /** The entry's ring, built on first need; null when its members make none (a record tampered with). */
  #ringOf(entry: { members: readonly Member[]; ring: Ring | null | undefined }): Ring | null {
    if (entry.ring === undefined) {
      try {
        entry.ring = this.#build(entry.members);
      } catch {
        entry.ring = null;
      }
    }
    return entry.ring;
  }
}

function isMember(value: unknown): value is Member {
  if (typeof value !== 'object' || value === null) return false;
  const m = value as Record<string, unknown>;
  return typeof m.id === 'string' && typeof m.domain === 'string' && isPlacement(m.placement);
}

function isMembers(value: unknown): value is Member[] {
  return Array.isArray(value) && value.length <= 4096 && value.every(isMember);
}

/** A record as stored now, or as stored before changes were used (each earlier ring whole). */
type StoredRecord = Omit<RingRecord, 'earlier'> & {
  readonly earlier: readonly ((RingChange & { readonly replacedAt: number }) | WholeRing)[];
};

function isRecord(value: unknown): value is StoredRecord {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    isMembers(r.current) &&
    typeof r.savedAt === 'number' &&
    Array.isArray(r.earlier) &&
    r.earlier.length <= RING_HISTORY &&
    r.earlier.every((e: unknown) => {
      if (typeof e !== 'object' || e === null) return false;
      const entry = e as Record<string, unknown>;
      if (typeof entry.replacedAt !== 'number') return false;
      if ('members' in entry) return isMembers(entry.members);
      return (
        Array.isArray(entry.joined) &&
        entry.joined.length <= 4096 &&
        entry.joined.every((id: unknown) => typeof id === 'string') &&
        isMembers(entry.left)
      );
    })
  );
}
