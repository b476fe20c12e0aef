/**
 * Unpadded base64url of bytes, and back: node ids, public keys and signatures as the client and the server both
 * write them (`btoa` and `atob` are globals in browsers and in Node). The client's context has its own, faster codec
 * (worker/wire/context.ts), which also refuses every text but the one it writes.
 */

/** `bytes` as unpadded base64url. */
export function toBase64url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of base64url `text`; throws on a character outside the alphabet. */
export function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
