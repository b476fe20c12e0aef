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
import { type Version, clockOf, sameDot, supersedes } from '../versions/version.ts';
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
  const unknown = versions.filter((v) => !stored.some((s) => identical(s, v)));
  const known = versions.filter((v) => !unknown.includes(v));
  if (unknown.length === 0) return { vouched: known, unvouched: [], asked: 0, answered: 0 };
  const asked = owners.filter((id) => id !== deps.self && id !== sender);
  const timeout = carryingTimeout(deps.requestTimeout, unknown);
  // An owner suspected of having failed is not waited for: it counts as not answering.
  const answers = await Promise.all(
    asked.map(async (owner) => {
      if (deps.peers.isSuspected(owner)) return null;
      const reply = await deps.peers.request(owner, { type: 'read', key, requireHeld: false }, timeout);
      return reply?.type === 'read-reply' ? reply.versions : null;
    }),
  );
  const held: Version[] = [...stored];
  let seen: VClock = [];
  for (const v of stored) seen = merge(seen, clockOf(v));
  for (const answer of answers) {
    if (answer === null) continue;
    for (const v of answer) {
      held.push(v);
      seen = merge(seen, clockOf(v));
    }
  }
  const vouched: Version[] = [...known];
  const unvouched: Version[] = [];
  for (const v of unknown) {
    if (held.some((h) => identical(h, v))) vouched.push(v);
    // Superseded at an owner: dropping it loses nothing, and keeping it would let a forged value ride an old dot.
    else if (counterOf(seen, v.dot.node) >= v.dot.counter && !held.some((h) => sameDot(h, v))) continue;
    else if (departedWrite(deps, v, held, seen)) vouched.push(v);
    else unvouched.push(v);
  }
  return { vouched, unvouched, asked: asked.length, answered: answers.filter((a) => a !== null).length };
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

/** True when `a` and `b` are the same write with the same context and value, byte for byte. */
function identical(a: Version, b: Version): boolean {
  if (!sameDot(a, b) || a.dot.timestamp !== b.dot.timestamp) return false;
  if (a.context.length !== b.context.length) return false;
  for (let i = 0; i < a.context.length; i++) {
    const x = a.context[i]!;
    const y = b.context[i]!;
    if (x.node !== y.node || x.counter !== y.counter || x.timestamp !== y.timestamp) return false;
  }
  if (a.value === null || b.value === null) return a.value === b.value;
  if (a.value.length !== b.value.length) return false;
  for (let i = 0; i < a.value.length; i++) if (a.value[i] !== b.value[i]) return false;
  return true;
}
