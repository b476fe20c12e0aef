/**
 * Join tokens: `<payload>.<signature>`, both base64url, where the payload is the JSON `{ cluster, exp, nodeId? }`
 * (`exp` in seconds since the Unix epoch, as in JWTs) and the signature is HMAC-SHA256 of the payload text under the
 * server's secret. A token admits one cluster until it expires, and one node only when it names one. Node-only
 * (`node:crypto`): tokens are minted and checked by servers, carried opaquely by clients.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { NODE_ID_PATTERN } from '../worker/wire/protocol.ts';
import { CLUSTER_NAME_PATTERN } from './events.ts';

/** What a token grants. */
export interface TokenClaims {
  readonly cluster: string;
  /** Expiry, in seconds since the Unix epoch. */
  readonly exp: number;
  /** When present, only this node may join with the token. */
  readonly nodeId?: string;
}

/** Options of {@link mintToken}. */
export interface MintTokenOptions {
  /** The server's secret (non-empty). */
  readonly secret: string;
  readonly cluster: string;
  /** Lifetime in seconds, a positive integer. @default 3600 */
  readonly ttlSeconds?: number;
  /** Restrict the token to one node id. */
  readonly nodeId?: string;
  /** The minting time in ms since the Unix epoch. @default Date.now() */
  readonly now?: number;
}

/** Why {@link verifyToken} refused a token. */
export type TokenRefusal = 'malformed' | 'bad-signature' | 'expired' | 'wrong-cluster' | 'wrong-node';

/** The outcome of {@link verifyToken}. */
export type TokenCheck =
  { readonly ok: true; readonly claims: TokenClaims } | { readonly ok: false; readonly reason: TokenRefusal };

/** Default token lifetime, in seconds. */
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;

/** Mints a token admitting `cluster` (and only `nodeId`, when given) for `ttlSeconds`. Throws on a bad argument. */
export function mintToken(options: MintTokenOptions): string {
  const { secret, cluster, nodeId } = options;
  const ttlSeconds = options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  const now = options.now ?? Date.now();
  if (typeof secret !== 'string' || secret.length === 0) throw new TypeError('mintToken: secret must be non-empty');
  if (!CLUSTER_NAME_PATTERN.test(cluster)) throw new TypeError('mintToken: cluster must match [A-Za-z0-9_-]{1,64}');
  if (nodeId !== undefined && !NODE_ID_PATTERN.test(nodeId)) {
    throw new TypeError('mintToken: nodeId must match [A-Za-z0-9_-]{1,64}');
  }
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new TypeError('mintToken: ttlSeconds must be a positive integer');
  }
  if (!Number.isFinite(now)) throw new TypeError('mintToken: now must be a finite number of ms');
  const claims: TokenClaims = {
    cluster,
    exp: Math.floor(now / 1000) + ttlSeconds,
    ...(nodeId === undefined ? {} : { nodeId }),
  };
  const payload = Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url');
  return `${payload}.${sign(payload, secret)}`;
}

/**
 * Checks that `token` was minted with `secret` for `cluster` and has not expired at `now` (ms). When the token names
 * a node, `nodeId` must be that node. The signature is checked, in constant time, before the payload is parsed.
 */
export function verifyToken(
  token: string,
  secret: string,
  cluster: string,
  now: number = Date.now(),
  nodeId?: string,
): TokenCheck {
  if (typeof token !== 'string' || secret.length === 0) return { ok: false, reason: 'malformed' };
  const dot = token.indexOf('.');
  if (dot <= 0 || dot !== token.lastIndexOf('.')) return { ok: false, reason: 'malformed' };
  const payload = token.slice(0, dot);
  // Compare the canonical base64url text rather than decoded bytes: Node's decoder skips stray characters, which
  // would let many strings pass as one signature.
  const given = Buffer.from(token.slice(dot + 1), 'utf8');
  const expected = Buffer.from(sign(payload, secret), 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'bad-signature' };
  }
  const claims = parseClaims(payload);
  if (claims === null) return { ok: false, reason: 'malformed' };
  if (claims.cluster !== cluster) return { ok: false, reason: 'wrong-cluster' };
  if (claims.exp * 1000 <= now) return { ok: false, reason: 'expired' };
  if (claims.nodeId !== undefined && claims.nodeId !== nodeId) return { ok: false, reason: 'wrong-node' };
  return { ok: true, claims };
}

/**
 * A name for a token that does not give it away, for counting what one token holds (the server's quotas per token):
 * the first 128 bits of the SHA-256 of its signature, base64url. The signature and a payload anyone can guess would
 * make the token again, so neither is kept; two tokens share a name only when they share a signature, that is when
 * they are the same token.
 */
export function tokenId(token: string): string {
  const signature = token.slice(token.lastIndexOf('.') + 1);
  return createHash('sha256').update(signature, 'utf8').digest().subarray(0, 16).toString('base64url');
}

function sign(payload: string, secret: string): string {
  return createHmac('sha256', secret).update(payload).digest('base64url');
}

function parseClaims(payload: string): TokenClaims | null {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { cluster, exp, nodeId } = value as Record<string, unknown>;
  if (typeof cluster !== 'string' || !Number.isSafeInteger(exp)) return null;
  if (nodeId === undefined) return { cluster, exp: exp as number };
  if (typeof nodeId !== 'string') return null;
  return { cluster, exp: exp as number, nodeId };
}
