/**
 * Which versions a peer may ship (proof.ts): what a node knows of each signing node (the first counter it signed,
 * from the views, kept across restarts), and the check of incoming frames against it. A version a peer may not ship
 * is taken out of its frame, counted and logged, and the rest goes on as if the sender had not sent it: an honest
 * node never holds one (it takes none), so only a member that made one up, or relays one it took before its
 * writer's `signedFrom` was known, loses anything, and a transfer that carries one is not held up by it.
 */
import type { Member } from '../ring/ring.ts';
import type {
  ReadReplyMessage,
  ReplicateMessage,
  SyncEntry,
  SyncKeysReplyMessage,
  SyncPushMessage,
} from '../wire/protocol.ts';
import { type ProofCrypto, type ProvenanceDeps, mayShip, proofAtStake, signsVersions } from './proof.ts';
import type { Version } from './version.ts';
import { isCounter } from './vclock.ts';

/** Signing nodes whose `signedFrom` a node keeps, those of its current view and the latest to leave it. */
export const MAX_SIGNERS = 4096;

/** The messages that carry versions into a node. */
export type CarryingMessage = ReplicateMessage | SyncPushMessage | SyncKeysReplyMessage | ReadReplyMessage;

/** What was taken out of a frame. */
export interface Checked<M> {
  readonly message: M;
  /** Versions taken out. */
  readonly dropped: number;
  /** The first version taken out, for the log. */
  readonly first?: Version;
}

/** Tracks who signs since when, and filters what peers ship. */
export class Provenance {
  /** The first counter each signing node signed, most recently seen last. */
  readonly #signedFrom = new Map<string, number>();
  readonly #deps: ProvenanceDeps;
  /**
   * Whether `node` owns the partition of `key`, or did moments ago. An owner's own signed versions are taken
   * without checking their signature: that is every coordinator's `replicate`, and one verification per put at
   * every replica would cost a burst of puts a third of its rate. A member that is no owner is held to every check:
   * a version of its own that no one could relay, kept by the one replica it ships it to, would keep that
   * partition's replicas apart for good. (An owner can do that, as it can withhold the partition's writes.)
   */
  readonly #owns: (node: string, key: Uint8Array) => boolean;

  constructor(crypto: ProofCrypto, owns: (node: string, key: Uint8Array) => boolean) {
    this.#deps = { crypto, signedFrom: (node) => this.#signedFrom.get(node) };
    this.#owns = owns;
  }

  /**
   * Takes note of the `signedFrom` of the members of a new view; those that left are kept, the oldest forgotten.
   * Returns true when something new was learnt (a node, or a lower counter), for the caller to store the record.
   */
  learn(members: readonly Member[]): boolean {
    let learnt = false;
    for (const m of members) {
      if (m.signedFrom !== undefined && this.#note(m.id, m.signedFrom)) learnt = true;
    }
    return learnt;
  }

  /** What {@link Provenance.restore} takes back: each known node and its first signed counter, oldest first. */
  record(): [node: string, signedFrom: number][] {
    return [...this.#signedFrom];
  }

  /** Takes back a {@link Provenance.record}; anything malformed in it is skipped (a record tampered with). */
  restore(record: unknown): void {
    if (!Array.isArray(record)) return;
    for (const entry of record.slice(-MAX_SIGNERS)) {
      if (Array.isArray(entry) && typeof entry[0] === 'string' && isCounter(entry[1])) this.#note(entry[0], entry[1]);
    }
  }

  /** Notes that `node` signs from `since`, as the most recently seen; true when that is new. */
  #note(node: string, since: number): boolean {
    if (!signsVersions(node)) return false;
    const known = this.#signedFrom.get(node);
    // A node's signedFrom never changes; the lowest told wins should a server ever say otherwise.
    const lowest = known === undefined ? since : Math.min(known, since);
    this.#signedFrom.delete(node);
    this.#signedFrom.set(node, lowest);
    if (this.#signedFrom.size > MAX_SIGNERS) this.#signedFrom.delete(this.#signedFrom.keys().next().value!);
    return lowest !== known;
  }

  /** The first counter `node` signed, or undefined when not known. */
  signedFrom(node: string): number | undefined {
    return this.#signedFrom.get(node);
  }

  /**
   * True when some version of `key` in `versions`, shipped by `from`, needs a look: a version of a signing node, or
   * one with a proof. Synchronous and allocation-free, so that a frame of nodes that do not sign, and a
   * coordinator's own new write (see {@link Provenance.#owns}), go on at once.
   */
  needsCheck(key: Uint8Array, versions: readonly Version[], from: string): boolean {
    let owner: boolean | undefined;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i]!;
      if (!proofAtStake(v)) continue;
      if (!signsVersions(v.dot.node) || v.proof === undefined || v.dot.node !== from) return true;
      owner ??= this.#owns(from, key);
      if (!owner) return true;
    }
    return false;
  }

  /** {@link Provenance.needsCheck} for each key of a sync page from `from`. */
  entriesNeedCheck(entries: readonly SyncEntry[], from: string): boolean {
    return entries.some((e) => this.needsCheck(e.key, e.versions, from));
  }

  /** The versions of `key` that `from` may ship: `versions` itself when it may ship them all. */
  async proven(key: Uint8Array, versions: readonly Version[], from: string): Promise<readonly Version[]> {
    if (!this.needsCheck(key, versions, from)) return versions;
    const vouched = this.#owns(from, key) ? from : undefined;
    let kept: Version[] | undefined;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i]!;
      const ok = await mayShip(key, v, this.#deps, vouched);
      if (!ok) kept ??= versions.slice(0, i);
      else kept?.push(v);
    }
    return kept ?? versions;
  }

  /** `message` with the versions its sender may not ship taken out. */
  async check<M extends CarryingMessage>(message: M, key?: Uint8Array): Promise<Checked<M>> {
    if (message.type === 'replicate' || message.type === 'read-reply') {
      const k = message.type === 'replicate' ? message.key : key;
      // A read reply to a request that was no read has no key to check against: what needs a check goes.
      if (k === undefined) {
        const versions = message.versions.filter((v) => !proofAtStake(v));
        if (versions.length === message.versions.length) return { message, dropped: 0 };
        return { message: { ...message, versions }, dropped: message.versions.length - versions.length };
      }
      if (!this.needsCheck(k, message.versions, message.from)) return { message, dropped: 0 };
      const versions = await this.proven(k, message.versions, message.from);
      if (versions === message.versions) return { message, dropped: 0 };
      const first = message.versions.find((v) => !versions.includes(v));
      return {
        message: { ...message, versions },
        dropped: message.versions.length - versions.length,
        ...(first !== undefined ? { first } : {}),
      };
    }
    const entries: readonly SyncEntry[] = message.entries;
    if (!this.entriesNeedCheck(entries, message.from)) return { message, dropped: 0 };
    let dropped = 0;
    let first: Version | undefined;
    const kept: SyncEntry[] = [];
    for (const entry of entries) {
      const versions = await this.proven(entry.key, entry.versions, message.from);
      if (versions !== entry.versions) {
        dropped += entry.versions.length - versions.length;
        first ??= entry.versions.find((v) => !versions.includes(v));
      }
      // An entry left with nothing is left out: an empty sibling set would say the key is absent.
      if (versions.length > 0) kept.push(versions === entry.versions ? entry : { key: entry.key, versions });
    }
    if (dropped === 0) return { message, dropped: 0 };
    return { message: { ...message, entries: kept }, dropped, ...(first !== undefined ? { first } : {}) };
  }
}
