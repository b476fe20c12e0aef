/**
 * Who is at the other end of a peer connection. The signalling server carries the offers and answers, so without more
 * it could hand each side a description of its own and stand in the middle of the DTLS connection. So each node
 * keeps one `RTCCertificate` (node-key.ts, `nodeCertificate`) and signs its fingerprint with its Ed25519 key; its
 * offers and answers carry `{ publicKey, fingerprint, signature }` ({@link PeerAuth}). A node accepts the description
 * of a peer whose id is derived from a key (signaling/events.ts, `DERIVED_ID_PATTERN`) only when the id is derived
 * from that public key, the signature is valid, and every `a=fingerprint` line of the SDP names the signed
 * fingerprint; DTLS then proves the other end holds the certificate's private key. A peer with a random id (a node
 * made before ids were derived from keys, or in a browser without Ed25519) has nothing to check against, and is
 * accepted as before.
 */
import { fromBase64url } from '../signaling/base64url.ts';
import { DERIVED_ID_PATTERN, derivedNodeId } from '../signaling/events.ts';

/** What an offer or answer carries to say whose certificate it names. */
export interface PeerAuth {
  /** The node's raw Ed25519 public key, base64url. */
  readonly publicKey: string;
  /** The certificate's SHA-256 fingerprint as the SDP writes it after `a=fingerprint:sha-256 ` (hex pairs, colons). */
  readonly fingerprint: string;
  /** The signature of {@link fingerprintText}, base64url. */
  readonly signature: string;
}

/** What a node signs to vouch for its certificate in `cluster`. */
export function fingerprintText(cluster: string, nodeId: string, fingerprint: string): string {
  return `dynamesh-dtls/1\n${cluster}\n${nodeId}\n${fingerprint.toUpperCase()}`;
}

/**
 * The fingerprints the SDP's `a=fingerprint` lines name, as `hash-function FINGERPRINT` (lower-case function,
 * upper-case hex); a line that starts so but is not exactly a function, one space and a fingerprint comes out as it
 * is, so that it matches nothing signed: a lenient parser elsewhere must not find a fingerprint this one missed.
 */
export function sdpFingerprints(sdp: string): string[] {
  const out: string[] = [];
  for (const line of sdp.split(/\r\n|\r|\n/)) {
    if (!line.toLowerCase().startsWith('a=fingerprint:')) continue;
    const match = /^a=fingerprint:([!-~]+) ([!-~]+)$/i.exec(line);
    out.push(match === null ? line : `${match[1]!.toLowerCase()} ${match[2]!.toUpperCase()}`);
  }
  return out;
}

/**
 * Why the description `sdp` that `from` sent with `auth` is not to be accepted, or null when it is (see the module
 * comment).
 */
export async function refusalOf(cluster: string, from: string, sdp: string, auth: unknown): Promise<string | null> {
  if (!DERIVED_ID_PATTERN.test(from)) return null;
  if (!isPeerAuth(auth)) return `${from} sent a description without its signed certificate fingerprint`;
  const fingerprints = sdpFingerprints(sdp);
  const signed = `sha-256 ${auth.fingerprint.toUpperCase()}`;
  if (fingerprints.length === 0 || fingerprints.some((f) => f !== signed)) {
    return `the certificate in ${from}'s description is not the one its key vouches for`;
  }
  try {
    const raw = fromBase64url(auth.publicKey);
    const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)));
    if (id !== from) return `${from}'s description is vouched for by a key its id is not derived from`;
    const key = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
    const text = new TextEncoder().encode(fingerprintText(cluster, from, auth.fingerprint));
    const valid = await crypto.subtle.verify({ name: 'Ed25519' }, key, fromBase64url(auth.signature), text);
    return valid ? null : `the signature of ${from}'s certificate fingerprint is not valid`;
  } catch (error) {
    return `${from}'s certificate fingerprint could not be checked: ${String(error)}`;
  }
}

function isPeerAuth(value: unknown): value is PeerAuth {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v['publicKey'] === 'string' && typeof v['fingerprint'] === 'string' && typeof v['signature'] === 'string'
  );
}
