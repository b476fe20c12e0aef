/**
 * Keys pushed by a member that may not write their partition on its own word (sync.ts: one that neither owns it
 * nor owned it in a view of the last minutes): a node releasing what it took over from a retired node, an old owner
 * releasing to a node that joined since (and never saw it own the partition), or a member pushing what it has no
 * business writing. A member that could push any partition could supersede any key's live versions with a clock of
 * its choosing. So the receiver believes such a sender only where an owner vouches for it: it asks the key's other
 * owners, keeps each sent version one of them holds exactly (same dot, context and value), drops those an owner has
 * superseded already (the owner's newer version reaches this node by repair or anti-entropy), and refuses the rest —
 * except a write of a node that has left the view which supersedes nothing this node or an owner holds and has seen
 * nothing they have not (a key only a retired node held): it takes nothing away, and no member will ever issue its
 * dot again. A member can still add a sibling, or a key, under a made-up departed writer this way; it cannot replace
 * or hide anything. What is refused stays with the sender, which tries again later. Versions this node already holds
 * byte for byte are taken without asking anyone.
 */
import { type VClock, counterOf, merge } from '../versions/vclock.ts';
import { type Version, clockOf, sameDot, sameVersion, supersedes } from '../versions/version.ts';
import type { Peers } from '../transport/peers.ts';
import { carryingTimeout } from '../wire/fit.ts';

/** What corroborating needs from the node. */
export interface CorroborateDeps {
  readonly self: string;
  readonly peers: Peers;
  /** How long an owner may take to answer, ms (extended for large replies as every request is). */
  readonly requestTimeout: number;
  /** True when `node` is a member of this node's view. */
  isMember(node: string): boolean;
  /** The key's siblings on this node. */
  readLocal(key: Uint8Array): Promise<readonly Version[]>;
}

/** What the owners vouched for of one key's sent versions. */
export interface Corroboration {
  /** Sent versions an owner holds exactly: safe to store. */
  readonly vouched: Version[];
  /** Sent versions no owner that answered holds or has superseded. */
  readonly unvouched: Version[];
  /** Owners asked, and how many answered: when all did, an unvouched version is one no owner knows. */
  readonly asked: number;
  readonly answered: number;
}

/**
 * Asks `owners` (this node and `sender` left out) for `key` at once and sorts `versions` by what they answer.
 * With no owner left to ask, nothing is vouched for.
 */
export async function corroborate(
  deps: CorroborateDeps,
  key: Uint8Array,
  versions: readonly Version[],
  owners: readonly string[],
  sender: string,
): Promise<Corroboration> {
  const stored = await deps.readLocal(key);
  // What this node holds already, byte for byte, changes nothing when merged: no owner need be asked about it.
  const unknown = versions.filter((v) => !stored.some((s) => sameVersion(s, v)));
  const known = versions.filter((v) => !unknown.includes(v));
  if (unknown.length === 0) return { vouched: known, unvouched: [], asked: 0, answered: 0 };
  const asked = owners.filter((id) => id !== deps.self && id !== sender);
  const timeout = carryingTimeout(deps.requestTimeout, unknown);
  const answers = await ownersAnswers(deps, key, asked, timeout, (answer) =>
    unknown.every((v) => answer.some((h) => sameVersion(h, v))),
  );
  const held: Version[] = [...stored];
  for (const answer of answers) if (answer !== null) held.push(...answer);
  let seen: VClock = [];
  for (const v of held) seen = merge(seen, clockOf(v));
  const vouched: Version[] = [...known];
  const unvouched: Version[] = [];
  for (const v of unknown) {
    if (held.some((h) => sameVersion(h, v))) vouched.push(v);
    // Superseded at an owner: dropping it loses nothing, and keeping it would let a forged value ride an old dot.
    else if (counterOf(seen, v.dot.node) >= v.dot.counter && !held.some((h) => sameDot(h, v))) continue;
    else if (departedWrite(deps, v, held, seen)) vouched.push(v);
    else unvouched.push(v);
  }
  return { vouched, unvouched, asked: asked.length, answered: answers.filter((a) => a !== null).length };
}

/**
 * What each of `asked` answers to a read of `key` (null: it did not, or is suspected of having failed and is not
 * waited for), all asked at once. Once one answer `settles` the question (it holds every version asked about), the
 * owners yet to answer count as not answering and are not waited for.
 */
function ownersAnswers(
  deps: CorroborateDeps,
  key: Uint8Array,
  asked: readonly string[],
  timeout: number,
  settles: (answer: readonly Version[]) => boolean,
): Promise<(readonly Version[] | null)[]> {
  const answers: (readonly Version[] | null)[] = asked.map(() => null);
  return new Promise((resolve) => {
    let open = asked.length;
    // A copy: answers arriving after the question is settled change nothing the caller sees.
    const settle = (): void => resolve([...answers]);
    const done = (): void => {
      if (--open === 0) settle();
    };
    if (open === 0) settle();
    asked.forEach((owner, i) => {
      if (deps.peers.isSuspected(owner)) return done();
      const asking = deps.peers.request(owner, { type: 'read', key, requireHeld: false }, timeout);
      void asking
        .catch(() => null)
        .then((reply) => {
          if (reply?.type === 'read-reply') {
            answers[i] = reply.versions;
            if (settles(reply.versions)) settle();
          }
          done();
        });
    });
  });
}

/**
 * True when `v` may be taken as a departed node's write that no owner holds: its writer is not a member, it
 * supersedes none of the versions this node or an owner holds, and its context names nothing beyond what their clocks
 * have seen (so it cannot claim to have seen a live node's later writes, which would drop them as superseded).
 */
function departedWrite(deps: CorroborateDeps, v: Version, held: readonly Version[], seen: VClock): boolean {
  if (deps.isMember(v.dot.node)) return false;
  if (held.some((h) => supersedes(v, h))) return false;
  return v.context.every((e) => e.counter <= counterOf(seen, e.node));
}
