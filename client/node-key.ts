/**
 * A node's Ed25519 key pair, its private key not extractable, kept in the profile's IndexedDB (database
 * `dynamesh-keys`) so that the node signs with the same key after every reload and restart. A new node's key comes
 * first and its id is derived from it ({@link mintNodeKey}; signaling/events.ts, `derivedNodeId`): the server admits
 * a join under such an id only when signed by that key. A node minted before (a random id) gets its key on first use
 * and the server binds the id to the key of its first signed join (signaling/node-keys.ts). Either way nobody
 * without the key can join under the id and take the node's place.
 */
import { type IDBPDatabase, openDB } from 'idb';
import { DERIVED_ID_PATTERN, type JoinRequest, derivedNodeId, joinProofText } from '../signaling/events.ts';
import { toBase64url } from '../signaling/base64url.ts';
import { type PeerAuth, fingerprintText } from './peer-auth.ts';

const DATABASE = 'dynamesh-keys';
const STORE = 'keys';

/** Signs for one node. */
export interface NodeKey {
  /** The proof of a join of `nodeId` to `cluster` on the connection `connection` (the server's `socket.id`). */
  prove(cluster: string, nodeId: string, connection: string): Promise<NonNullable<JoinRequest['proof']>>;
  /** What the node's offers and answers carry to vouch for `certificate` (peer-auth.ts). */
  vouch(cluster: string, nodeId: string, certificate: RTCCertificate): Promise<PeerAuth>;
  /** The key itself, for the worker to sign versions with (the private key cannot be exported, only cloned). */
  readonly signing: { readonly privateKey: CryptoKey; readonly publicKey: Uint8Array };
}

/** A certificate is made anew once it has less than this left before it expires, ms. */
const CERTIFICATE_MARGIN_MS = 24 * 60 * 60 * 1000;

/**
 * The node's DTLS certificate (ECDSA P-256), kept with its key and made anew when close to expiry (Chromium's last
 * 30 days), so that its fingerprint stays the same across reloads; null where WebRTC or IndexedDB is missing.
 */
export async function nodeCertificate(cluster: string, nodeId: string): Promise<RTCCertificate | null> {
  if (typeof RTCPeerConnection === 'undefined') return null;
  try {
    const db = await openKeys();
    try {
      const name = `${cluster}:${nodeId}:certificate`;
      const stored = (await db.get(STORE, name)) as RTCCertificate | undefined;
      if (stored !== undefined && stored.expires - Date.now() > CERTIFICATE_MARGIN_MS) return stored;
      const made = await RTCPeerConnection.generateCertificate({
        name: 'ECDSA',
        namedCurve: 'P-256',
      } as EcKeyGenParams);
      // Kept or not, this run uses it: its fingerprint is signed at start, and only its stability needs storage.
      await db.put(STORE, made, name).catch(() => {});
      return made;
    } finally {
      db.close();
    }
  } catch {
    return null;
  }
}

function openKeys(): Promise<IDBPDatabase> {
  return openDB(DATABASE, 1, {
    upgrade(database) {
      database.createObjectStore(STORE);
    },
  });
}

/**
 * Makes a new node's key pair, stores it, and resolves to the node id derived from its public key; null when the
 * browser has no Ed25519 in WebCrypto or no IndexedDB to keep the key in (the caller then mints a random id).
 */
export async function mintNodeKey(cluster: string): Promise<string | null> {
  try {
    const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    const raw = await crypto.subtle.exportKey('raw', pair.publicKey);
    const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)));
    const db = await openKeys();
    try {
      await db.put(STORE, pair, `${cluster}:${id}`);
    } finally {
      db.close();
    }
    return id;
  } catch {
    return null;
  }
}

/**
 * False when `nodeId` is derived from a key and that key is not in this profile (or IndexedDB cannot say): the
 * profile can no longer join as it. True for any other id, whose key is made on first use.
 */
export async function canSignFor(cluster: string, nodeId: string): Promise<boolean> {
  if (!DERIVED_ID_PATTERN.test(nodeId)) return true;
  try {
    const db = await openKeys();
    try {
      return (await db.get(STORE, `${cluster}:${nodeId}`)) !== undefined;
    } finally {
      db.close();
    }
  } catch {
    return false;
  }
}

/**
 * The key of node `nodeId` of `cluster`; for an id minted before ids were derived from keys, made and stored on
 * first use. Rejects for a derived id whose key is gone: no other key can sign for it.
 */
export async function nodeKey(cluster: string, nodeId: string): Promise<NodeKey> {
  const db = await openKeys();
  try {
    const name = `${cluster}:${nodeId}`;
    let pair = (await db.get(STORE, name)) as CryptoKeyPair | undefined;
    if (pair === undefined && DERIVED_ID_PATTERN.test(nodeId)) {
      throw new Error(`the key node ${nodeId} was derived from is gone from this profile`);
    }
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
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', keys.publicKey));
    const publicKey = toBase64url(raw);
    return {
      signing: { privateKey: keys.privateKey, publicKey: raw },
      async prove(cluster, nodeId, connection) {
        const message = new TextEncoder().encode(joinProofText(cluster, nodeId, connection));
        const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, keys.privateKey, message));
        return { publicKey, signature: toBase64url(signature) };
      },
      async vouch(cluster, nodeId, certificate) {
        const sha256 = certificate.getFingerprints().find((f) => f.algorithm === 'sha-256');
        if (sha256?.value === undefined) throw new Error('the certificate has no SHA-256 fingerprint');
        const fingerprint = sha256.value.toUpperCase();
        const message = new TextEncoder().encode(fingerprintText(cluster, nodeId, fingerprint));
        const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, keys.privateKey, message));
        return { publicKey, fingerprint, signature: toBase64url(signature) };
      },
    };
  } finally {
    db.close();
  }
}
