/**
 * Signed versions. A node whose id is derived from its Ed25519 key (`DERIVED_ID_PATTERN`) signs every version it
 * coordinates, over the key and the whole version, and the version carries the signature with the public key (the
 * id derives from the key, so the proof checks itself, with no directory and after its author left). A version
 * shipped by anyone but its author is taken only with a valid proof: no member can make up a write under another
 * node's dot, whatever path it ships it by (replicate, a sync page, a read reply, a hint).
 *
 * Versions written before signing began (a node's `signedFrom`, told in its join) carry no proof and are taken
 * unsigned, as are versions of nodes with random ids, which cannot sign (README, Security model).
 *
 * Pure: the crypto comes in as a parameter (WebCrypto in a tab, Node's synchronous crypto in the simulation).
 */
import { Encoder } from '@msgpack/msgpack';
import { DERIVED_ID_PATTERN, derivedNodeId } from '../../signaling/events.ts';
import type { Storage } from '../storage/storage.ts';
import type { Version } from './version.ts';

/** Bytes of a raw Ed25519 public key. */
export const PUBLIC_KEY_BYTES = 32;
/** Bytes of an Ed25519 signature. */
export const SIGNATURE_BYTES = 64;
/** Bytes of a version's proof: the author's public key, then its signature. */
export const PROOF_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES;

const encoder = new Encoder();

/** What the author signs: the key and the whole version, in one fixed form. */
export function versionPayload(key: Uint8Array, version: Version): Uint8Array {
  const { dot, context, value } = version;
  const clock: unknown[] = [];
  for (let i = 0; i < context.length; i++) {
    const e = context[i]!;
    clock.push(e.node, e.counter, e.timestamp);
  }
  return encoder.encode(['dynamesh-version/1', key, dot.node, dot.counter, dot.timestamp, clock, value]);
}

/** The crypto a node signs its versions with. */
export interface Signing {
  /** The raw 32-byte public key; the node's id derives from it. */
  readonly publicKey: Uint8Array;
  /** The Ed25519 signature of `payload` (64 bytes). */
  sign(payload: Uint8Array): Promise<Uint8Array>;
}

/** The crypto a node checks others' proofs with. */
export interface ProofCrypto {
  /** Whether `signature` is a valid Ed25519 signature of `payload` by `publicKey` (raw, 32 bytes). */
  verify(publicKey: Uint8Array, signature: Uint8Array, payload: Uint8Array): Promise<boolean>;
  /** SHA-256 of `bytes`. */
  sha256(bytes: Uint8Array): Promise<Uint8Array>;
}

/** `version` with its author's proof over `key`. */
export async function signVersion(
  key: Uint8Array,
  version: Version,
  signing: Signing,
): Promise<Version & { readonly proof: Uint8Array }> {
  const signature = await signing.sign(versionPayload(key, version));
  const proof = new Uint8Array(PROOF_BYTES);
  proof.set(signing.publicKey, 0);
  proof.set(signature, PUBLIC_KEY_BYTES);
  return { dot: version.dot, context: version.context, value: version.value, proof };
}

/** Whether node ids of this form sign their versions. */
export function signsVersions(node: string): boolean {
  // The length and first letter first: this runs for every version of most frames, and most ids fail there.
  return node.length === 17 && node.charCodeAt(0) === 0x6b && DERIVED_ID_PATTERN.test(node);
}

/** Whether `version`'s proof is its dot's node's signature of it under `key`. */
export async function validProof(key: Uint8Array, version: Version, crypto: ProofCrypto): Promise<boolean> {
  const proof = version.proof;
  if (proof === undefined || proof.byteLength !== PROOF_BYTES) return false;
  const publicKey = proof.subarray(0, PUBLIC_KEY_BYTES);
  if (derivedNodeId(await crypto.sha256(publicKey)) !== version.dot.node) return false;
  return crypto.verify(publicKey, proof.subarray(PUBLIC_KEY_BYTES), versionPayload(key, version));
}

/** What {@link mayShip} needs to know. */
export interface ProvenanceDeps {
  readonly crypto: ProofCrypto;
  /**
   * The first counter `node` signed (told in its join, kept after it left), or undefined when this node never learnt
   * it: a node of which nothing is known is taken at its word, like a node with a random id.
   */
  signedFrom(node: string): number | undefined;
}

/** Whether a version's writer's proof is at stake: a version of a node that signs, or one carrying a proof. */
export function proofAtStake(version: Version): boolean {
  return version.proof !== undefined || signsVersions(version.dot.node);
}

/**
 * Whether a peer may ship `version` of `key`. Not a version of a node that signs with a proof that does not hold, or
 * without one though its node signed it; nor a version with a proof under the dot of a node that cannot sign (which
 * would take an honest version's place, see `resolve`). A node's own versions are held to the same rules: one it
 * could ship unchecked but no one could relay would keep its replicas apart for good (their Merkle trees never
 * agreeing, no tombstone of the partition ever collected). Only `vouched`, a sender that owns the key's partition,
 * has the signature of its own signed versions taken unchecked (see provenance.ts).
 */
export async function mayShip(
  key: Uint8Array,
  version: Version,
  deps: ProvenanceDeps,
  vouched?: string,
): Promise<boolean> {
  const node = version.dot.node;
  if (!signsVersions(node)) return version.proof === undefined;
  if (version.proof === undefined) {
    const since = deps.signedFrom(node);
    return since === undefined || version.dot.counter < since;
  }
  return node === vouched || validProof(key, version, deps.crypto);
}

/** {@link ProofCrypto} on WebCrypto (a tab's worker; Node ≥ 20 too). */
export class WebCryptoProofs implements ProofCrypto {
  /** Imported public keys by their bytes (as a string), most recent last; at most {@link KEY_CACHE}. */
  readonly #keys = new Map<string, Promise<CryptoKey>>();

  async verify(publicKey: Uint8Array, signature: Uint8Array, payload: Uint8Array): Promise<boolean> {
    try {
      return await crypto.subtle.verify(
        'Ed25519',
        await this.#key(publicKey),
        signature as BufferSource,
        payload as BufferSource,
      );
    } catch {
      return false;
    }
  }

  async sha256(bytes: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as BufferSource));
  }

  #key(raw: Uint8Array): Promise<CryptoKey> {
    const name = String.fromCharCode(...raw);
    let key = this.#keys.get(name);
    if (key === undefined) {
      key = crypto.subtle.importKey('raw', raw.slice(), 'Ed25519', false, ['verify']);
      if (this.#keys.size >= KEY_CACHE) this.#keys.delete(this.#keys.keys().next().value!);
      key.catch(() => this.#keys.delete(name));
    } else {
      this.#keys.delete(name);
    }
    this.#keys.set(name, key);
    return key;
  }
}

/** Public keys a {@link WebCryptoProofs} keeps imported: the authors of a cluster's recent writes. */
const KEY_CACHE = 256;

/** {@link Signing} with a WebCrypto Ed25519 private key (non-extractable, structured-cloned into the worker). */
export function webCryptoSigning(privateKey: CryptoKey, publicKey: Uint8Array): Signing {
  return {
    publicKey,
    async sign(payload) {
      return new Uint8Array(await crypto.subtle.sign('Ed25519', privateKey, payload as BufferSource));
    },
  };
}

/** The meta record of the first counter this node signed. */
const SIGNED_FROM = 'signedFrom';

/**
 * The first dot counter this node signs (see `Member.signedFrom`): drawn and kept the first time the node starts
 * signing, so that every counter it issued before (unsigned, under an older release) is below it, and every one it
 * issues from then on is at or above it. A new node's is its first counter.
 */
export async function firstSignedCounter(
  storage: Pick<Storage, 'getMeta' | 'putMeta' | 'drawCounter'>,
): Promise<number> {
  const kept = await storage.getMeta(SIGNED_FROM);
  if (typeof kept === 'number' && Number.isSafeInteger(kept) && kept > 0) return kept;
  const first = await storage.drawCounter();
  await storage.putMeta(SIGNED_FROM, first);
  return first;
}
