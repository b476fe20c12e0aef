/**
 * Keys pushed by a member that may not write their partition on its own word (sync.ts: one that neither owns it,
 * nor owned it in a view of the last minutes, nor told this node it holds it): a node releasing what it took over
 * from a retired node, or a member pushing what it has no business writing. A member that could push any partition
 * could supersede any key's live versions with a clock of its choosing. So the receiver believes such a sender only
 * where an owner vouches for it: it asks the key's other owners, keeps each sent version one of them holds exactly
 * (same dot, context and value), drops those an owner has superseded already (the owner's newer version reaches this
 * node by repair or anti-entropy), and refuses the rest — except a write of a node that has left the view which
 * supersedes nothing stored here (a key only a retired node held): it takes nothing away, and no member will ever
 * issue its dot again. What is refused stays with the sender, which tries again later.
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
  const asked = owners.filter((id) => id !== deps.self && id !== sender);
  const timeout = carryingTimeout(deps.requestTimeout, versions);
  const local = deps.readLocal(key);
  local.catch(() => {});
  const answers = await Promise.all(
    asked.map(async (owner) => {
      const reply = await deps.peers.request(owner, { type: 'read', key, requireHeld: false }, timeout);
      return reply?.type === 'read-reply' ? reply.versions : null;
    }),
  );
  const held: Version[] = [];
  let seen: VClock = [];
  for (const answer of answers) {
    if (answer === null) continue;
    for (const v of answer) {
      held.push(v);
      seen = merge(seen, clockOf(v));
    }
  }
  const vouched: Version[] = [];
  const unvouched: Version[] = [];
  for (const v of versions) {
    if (held.some((h) => identical(h, v))) vouched.push(v);
    // Superseded at an owner: dropping it loses nothing, and keeping it would let a forged value ride an old dot.
    else if (counterOf(seen, v.dot.node) >= v.dot.counter && !held.some((h) => sameDot(h, v))) continue;
    else unvouched.push(v);
  }
  if (unvouched.length > 0) {
    const stored = await local;
    const departed = unvouched.filter((v) => !deps.isMember(v.dot.node) && !stored.some((s) => supersedes(v, s)));
    vouched.push(...departed);
    unvouched.splice(0, unvouched.length, ...unvouched.filter((v) => !departed.includes(v)));
  }
  return { vouched, unvouched, asked: asked.length, answered: answers.filter((a) => a !== null).length };
}

/** True when `a` and `b` are the same write with the same context and value, byte for byte. */
export function identical(a: Version, b: Version): boolean {
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
