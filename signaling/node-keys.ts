/**
 * Node ids bound to keys. A node signs its join with its Ed25519 key (client/node-key.ts): the signature covers the
 * cluster, the node id and the id of the connection it joins on (`socket.id`, which the server chose), so it proves
 * the key's holder is on this connection and cannot be replayed on another. The first signed join of an id binds it
 * to that key; from then on a join of the id must be signed with the same key, and a live id can be taken over only
 * by its key's holder. Bindings last while the server runs (trust on first use), the oldest forgotten past a bound.
 * An id never joined with a signature stays open to unsigned joins, as before.
 *
 * An id derived from a key (events.ts, `DERIVED_ID_PATTERN`: what a browser with Ed25519 mints for a new node) needs
 * no binding: a join under it is admitted only when signed by the key it is derived from, after a restart of the
 * server as before it, and never unsigned.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { DERIVED_ID_PATTERN, derivedNodeId, joinProofText } from './events.ts';

/** What a signed join carries. */
export interface JoinProof {
  /** The raw 32-byte Ed25519 public key, base64url. */
  readonly publicKey: string;
  /** The signature of `joinProofText` (events.ts), base64url. */
  readonly signature: string;
}

/** Whether `proof` is a valid signature of a join of `nodeId` to `cluster` on `connection`. */
export function verifyJoin(cluster: string, nodeId: string, connection: string, proof: JoinProof): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: proof.publicKey }, format: 'jwk' });
    const signed = Buffer.from(joinProofText(cluster, nodeId, connection), 'utf8');
    return verify(null, signed, key, Buffer.from(proof.signature, 'base64url'));
  } catch {
    return false;
  }
}

/** The outcome of {@link NodeKeys.admit}: admitted, or why not. */
export type KeyCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** The bindings of node ids to keys, by cluster. */
export class NodeKeys {
  readonly #bound = new Map<string, string>();
  readonly #max: number;

  /** `max`: most bindings kept; past it, the one bound or used longest ago is forgotten. */
  constructor(max = 100_000) {
    this.#max = max;
  }

  /**
   * Checks a join of `nodeId` to `cluster` on `connection`, and binds the id to the key of a valid proof. A join of
   * a bound id needs a valid proof by the bound key; an invalid proof is refused whatever the id.
   */
  admit(cluster: string, nodeId: string, connection: string, proof: JoinProof | undefined): KeyCheck {
    if (DERIVED_ID_PATTERN.test(nodeId)) return admitDerived(cluster, nodeId, connection, proof);
    const name = `${cluster}\u0000${nodeId}`;
    const check = checkBound(this.#bound.get(name), cluster, nodeId, connection, proof);
    if (!check.ok || proof === undefined) return check;
    this.#bound.delete(name);
    this.#bound.set(name, proof.publicKey);
    if (this.#bound.size > this.#max) this.#bound.delete(this.#bound.keys().next().value!);
    return { ok: true };
  }
}

/** Bindings of node ids to keys kept outside the process: by every process of a service on Redis alike. */
export interface SharedKeyBindings {
  /** The key `nodeId` of `cluster` is bound to, if any. */
  get(cluster: string, nodeId: string): Promise<string | undefined>;
  /** Binds `nodeId` to `publicKey` unless it is bound already; resolves to the key it is bound to now. */
  bind(cluster: string, nodeId: string, publicKey: string): Promise<string>;
}

/** {@link NodeKeys.admit} with the bindings in `shared`, so that a binding made through one process holds at all. */
export async function admitShared(
  shared: SharedKeyBindings,
  cluster: string,
  nodeId: string,
  connection: string,
  proof: JoinProof | undefined,
): Promise<KeyCheck> {
  if (DERIVED_ID_PATTERN.test(nodeId)) return admitDerived(cluster, nodeId, connection, proof);
  const bound = await shared.get(cluster, nodeId);
  const check = checkBound(bound, cluster, nodeId, connection, proof);
  if (!check.ok || proof === undefined || bound !== undefined) return check;
  // Two processes may bind one id at once: the first binding stands, and the other join is refused.
  const winner = await shared.bind(cluster, nodeId, proof.publicKey);
  return winner === proof.publicKey ? check : { ok: false, reason: `node id ${nodeId} is bound to another key` };
}

/** Checks a join of a random id against the key it is `bound` to, if any. */
function checkBound(
  bound: string | undefined,
  cluster: string,
  nodeId: string,
  connection: string,
  proof: JoinProof | undefined,
): KeyCheck {
  if (proof === undefined) {
    return bound === undefined ? { ok: true } : { ok: false, reason: `node id ${nodeId} is bound to a key` };
  }
  if (!verifyJoin(cluster, nodeId, connection, proof)) {
    return { ok: false, reason: 'the join signature is not valid for this cluster, node id and connection' };
  }
  if (bound !== undefined && bound !== proof.publicKey) {
    return { ok: false, reason: `node id ${nodeId} is bound to another key` };
  }
  return { ok: true };
}

/** Checks a join under an id derived from a key: signed, validly, by that very key. */
function admitDerived(cluster: string, nodeId: string, connection: string, proof: JoinProof | undefined): KeyCheck {
  if (proof === undefined)
    return { ok: false, reason: `node id ${nodeId} is derived from a key: its joins must be signed` };
  if (!verifyJoin(cluster, nodeId, connection, proof)) {
    return { ok: false, reason: 'the join signature is not valid for this cluster, node id and connection' };
  }
  const digest = createHash('sha256').update(Buffer.from(proof.publicKey, 'base64url')).digest();
  if (derivedNodeId(digest) !== nodeId) {
    return { ok: false, reason: `node id ${nodeId} is not derived from the key that signed the join` };
  }
  return { ok: true };
}
