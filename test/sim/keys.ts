/**
 * Ed25519 keys for simulated nodes that sign their versions (`--keys`): made from the run's seed, so that a seed names
 * the same node ids every run, and used through Node's synchronous crypto, so that signing and checking settle
 * within the task that asked, as the simulation's determinism needs (WebCrypto settles on a thread pool's time).
 */
import { type KeyObject, createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { derivedNodeId } from '../../signaling/events.ts';
import type { ProofCrypto, Signing } from '../../worker/versions/proof.ts';
import type { Rng } from './random.ts';

/** A simulated node's key: the id derived from it, and what the node signs with. */
export interface SimKey {
  readonly id: string;
  readonly signing: Signing;
}

/** The DER prefix of a PKCS #8 Ed25519 private key, before its 32-byte seed (RFC 8410). */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A key made from 32 bytes of `rng`. */
export function simKey(rng: Rng): SimKey {
  const seed = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) seed[i] = rng.int(256);
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const publicKey = new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
  const id = derivedNodeId(new Uint8Array(createHash('sha256').update(publicKey).digest()));
  return {
    id,
    signing: {
      publicKey,
      sign: (payload) => Promise.resolve(new Uint8Array(sign(null, payload, privateKey))),
    },
  };
}

/** {@link ProofCrypto} on Node's synchronous crypto. */
export class SimProofs implements ProofCrypto {
  readonly #keys = new Map<string, KeyObject>();

  verify(publicKey: Uint8Array, signature: Uint8Array, payload: Uint8Array): Promise<boolean> {
    try {
      return Promise.resolve(verify(null, payload, this.#key(publicKey), signature));
    } catch {
      return Promise.resolve(false);
    }
  }

  sha256(bytes: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(createHash('sha256').update(bytes).digest()));
  }

  #key(raw: Uint8Array): KeyObject {
    const name = Buffer.from(raw).toString('base64url');
    let key = this.#keys.get(name);
    if (key === undefined) {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: name }, format: 'jwk' });
      this.#keys.set(name, key);
    }
    return key;
  }
}
