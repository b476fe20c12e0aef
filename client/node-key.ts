/**
 * A node's Ed25519 key pair: generated once per node id of a cluster, its private key not extractable, kept in the
 * profile's IndexedDB (database `dynamesh-keys`) so that the node signs with the same key after every reload and
 * restart. The signalling server binds a node id to the key of its first signed join (signaling/node-keys.ts), so
 * nobody without the key can join under the id and take the node's place.
 */
import { openDB } from 'idb';
import { type JoinRequest, joinProofText } from '../signaling/events.ts';

const DATABASE = 'dynamesh-keys';
const STORE = 'keys';

/** Signs joins for one node. */
export interface NodeKey {
  /** The proof of a join of `nodeId` to `cluster` on the connection `connection` (the server's `socket.id`). */
  prove(cluster: string, nodeId: string, connection: string): Promise<NonNullable<JoinRequest['proof']>>;
}

/** The key of node `nodeId` of `cluster`, made and stored on first use. */
export async function nodeKey(cluster: string, nodeId: string): Promise<NodeKey> {
  const db = await openDB(DATABASE, 1, {
    upgrade(database) {
      database.createObjectStore(STORE);
    },
  });
  try {
    const name = `${cluster}:${nodeId}`;
    let pair = (await db.get(STORE, name)) as CryptoKeyPair | undefined;
    if (pair === undefined) {
      pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
      // Another tab may have stored one meanwhile: the first stored wins, so both sign with the same key.
      const tx = db.transaction(STORE, 'readwrite');
      const stored = (await tx.store.get(name)) as CryptoKeyPair | undefined;
      if (stored === undefined) await tx.store.put(pair, name);
      else pair = stored;
      await tx.done;
    }
    const keys = pair;
    const publicKey = base64url(new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey)));
    return {
      async prove(cluster, nodeId, connection) {
        const message = new TextEncoder().encode(joinProofText(cluster, nodeId, connection));
        const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, keys.privateKey, message));
        return { publicKey, signature: base64url(signature) };
      },
    };
  } finally {
    db.close();
  }
}

function base64url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
