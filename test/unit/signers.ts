/** Ed25519 keys for tests: a node id derived from a fresh key, and the key to sign its versions with. */
import { derivedNodeId } from '../../signaling/events.ts';
import { type Signing, webCryptoSigning } from '../../worker/versions/proof.ts';

/** A signing node: its derived id and its key. */
export interface Signer {
  readonly id: string;
  readonly signing: Signing;
}

/** A new key pair and the node id derived from it, as a browser mints one (client/node-key.ts). */
export async function newSigner(): Promise<Signer> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', publicKey)));
  return { id, signing: webCryptoSigning(pair.privateKey, publicKey) };
}
