/**
 * What issue 10's identity checks cost, in the browser of the run and at the server, with the project's own code where
 * it runs in Node and WebCrypto's own calls where it runs in a page (the library's are these calls and little else):
 *
 * - sign a join: an Ed25519 signature of the join text, made by the node on every join (client/node-key.ts, `prove`);
 * - check a join at the server: `NodeKeys.admit` of a join under an id derived from a key (signature, SHA-256 of the
 *   key, the id compared), on every join (signaling/node-keys.ts);
 * - check a peer's description: SHA-256 of the peer's key, its import and an Ed25519 verification, on every offer and
 *   answer (client/peer-auth.ts, `refusalOf`), so once or twice per connection;
 * - sign a version: an Ed25519 signature of a version's payload (the key, dot, context and value of a 100-byte
 *   value, about 160 bytes), by a put's coordinator on every put (worker/versions/proof.ts, `signVersion`);
 * - check a version: SHA-256 of its writer's key and an Ed25519 verification with the key imported once (as
 *   `WebCryptoProofs` keeps it), for every version a node receives from someone other than its writer: in a get, each
 *   replica's answer holding versions the replica did not write.
 *
 * A put's and a get's latency, measured in the same run, is with all of this on.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import type { BrowserContext } from 'playwright-core';
import { derivedNodeId, joinProofText } from '../../signaling/events.ts';
import { NodeKeys } from '../../signaling/node-keys.ts';
import { type Summary, summarize } from './cluster-stats.ts';
import { blankPage } from './floor.ts';

/** The costs, in ms per operation. */
export interface IdentityCost {
  readonly signJoin: Summary;
  readonly checkJoin: Summary;
  readonly checkPeer: Summary;
  readonly signVersion: Summary;
  readonly checkVersion: Summary;
}

/** Measures each cost `samples` times after `warmup` untimed ones; the page is closed afterwards. */
export async function measureIdentity(
  context: BrowserContext,
  origin: string,
  samples: number,
  warmup: number,
): Promise<IdentityCost> {
  const page = await blankPage(context, origin);
  try {
    const browser = await page.evaluate(browserCosts, { samples, warmup });
    return {
      signJoin: summarize(browser.sign, 0),
      checkJoin: summarize(serverCosts(samples, warmup), 0),
      checkPeer: summarize(browser.check, 0),
      signVersion: summarize(browser.signVersion, 0),
      checkVersion: summarize(browser.checkVersion, 0),
    };
  } finally {
    await page.close();
  }
}

/** `NodeKeys.admit` of signed joins under a derived id, each on a connection of its own, in ms. */
function serverCosts(samples: number, warmup: number): number[] {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'jwk' }).x!;
  const id = derivedNodeId(createHash('sha256').update(Buffer.from(raw, 'base64url')).digest());
  const keys = new NodeKeys();
  const out: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    const connection = `socket-${i}`;
    const signature = sign(null, Buffer.from(joinProofText('bench', id, connection)), privateKey).toString('base64url');
    const start = performance.now();
    const check = keys.admit('bench', id, connection, { publicKey: raw, signature });
    const ms = performance.now() - start;
    if (!check.ok) throw new Error(`a valid join was refused: ${check.reason}`);
    if (i >= warmup) out.push(ms);
  }
  return out;
}

/** In the page: an Ed25519 signature of a join text, and the check of a peer's signed fingerprint, in ms each. */
async function browserCosts({ samples, warmup }: { samples: number; warmup: number }): Promise<{
  sign: number[];
  check: number[];
  signVersion: number[];
  checkVersion: number[];
}> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const raw = await crypto.subtle.exportKey('raw', pair.publicKey);
  const text = new TextEncoder().encode(`dynamesh-join/1\nbench\nk0123456789abcdef\nsocket`);
  const signed: number[] = [];
  const checked: number[] = [];
  let signature = new ArrayBuffer(0);
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    signature = await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, text);
    if (i >= warmup) signed.push(performance.now() - start);
  }
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    await crypto.subtle.digest('SHA-256', raw);
    const key = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
    const valid = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, text);
    if (!valid) throw new Error('a valid signature did not verify');
    if (i >= warmup) checked.push(performance.now() - start);
  }
  // A version's payload as proof.ts encodes it for a 100-byte value: its size is what matters to Ed25519.
  const payload = new Uint8Array(160).map((_, i) => i);
  const versionKey = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
  const versionSigned: number[] = [];
  const versionChecked: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    signature = await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, payload);
    if (i >= warmup) versionSigned.push(performance.now() - start);
  }
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    await crypto.subtle.digest('SHA-256', raw);
    const valid = await crypto.subtle.verify({ name: 'Ed25519' }, versionKey, signature, payload);
    if (!valid) throw new Error('a valid version signature did not verify');
    if (i >= warmup) versionChecked.push(performance.now() - start);
  }
  return { sign: signed, check: checked, signVersion: versionSigned, checkVersion: versionChecked };
}

/** Prints the costs as a table on stdout. */
export function reportIdentity(cost: IdentityCost): void {
  const rows: [string, Summary, string][] = [
    ['sign a join (Ed25519, in the page)', cost.signJoin, 'every join of a node'],
    ['check a join at the server (NodeKeys.admit)', cost.checkJoin, 'every join'],
    ['check a peer’s description (SHA-256, import, verify)', cost.checkPeer, 'every offer and answer'],
    ['sign a version (Ed25519, in the worker)', cost.signVersion, 'every put, at its coordinator'],
    ['check a version (SHA-256, verify)', cost.checkVersion, 'every version received from another than its writer'],
  ];
  console.log('\nIdentity checks (issue 10), ms per operation');
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'check'.padEnd(width)}    p50     p99  when`);
  for (const [name, s, when] of rows) {
    console.log(`${name.padEnd(width)}  ${s.p50.toFixed(3).padStart(5)}  ${s.p99.toFixed(3).padStart(6)}  ${when}`);
  }
}
