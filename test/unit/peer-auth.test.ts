/**
 * The check of a peer's offer or answer against its signed certificate fingerprint (client/peer-auth.ts), with
 * WebCrypto's Ed25519 as a browser has it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { derivedNodeId } from '../../signaling/events.ts';
import { type PeerAuth, fingerprintText, refusalOf, sdpFingerprints } from '../../client/peer-auth.ts';

const CLUSTER = 'mesh';
const FINGERPRINT = 'AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89';
const OTHER = FINGERPRINT.replace(/89$/, '88');

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** A node with a key pair and the id derived from it, vouching for `fingerprint`. */
async function node(
  fingerprint = FINGERPRINT,
): Promise<{ id: string; auth: PeerAuth; sign(text: string): Promise<string> }> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)));
  const sign = async (text: string): Promise<string> =>
    base64url(
      new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, pair.privateKey, new TextEncoder().encode(text))),
    );
  const signature = await sign(fingerprintText(CLUSTER, id, fingerprint));
  return { id, auth: { publicKey: base64url(raw), fingerprint, signature }, sign };
}

/** An SDP naming `fingerprint`, as Chromium writes one per media section. */
function sdp(...fingerprints: string[]): string {
  return ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', ...fingerprints.map((f) => `a=fingerprint:sha-256 ${f}`), ''].join('\r\n');
}

describe('peer descriptions and their signed certificates', () => {
  it('accepts a description whose every fingerprint line is the one its sender signed with the key its id comes from', async () => {
    const peer = await node();
    assert.equal(await refusalOf(CLUSTER, peer.id, sdp(FINGERPRINT, FINGERPRINT.toLowerCase()), peer.auth), null);
  });

  it('refuses a description from a derived id that carries no signed fingerprint', async () => {
    const peer = await node();
    assert.match((await refusalOf(CLUSTER, peer.id, sdp(FINGERPRINT), undefined))!, /without its signed certificate/);
  });

  it('refuses a description naming another certificate than the signed one, in any of its lines', async () => {
    const peer = await node();
    assert.notEqual(await refusalOf(CLUSTER, peer.id, sdp(OTHER), peer.auth), null);
    assert.notEqual(await refusalOf(CLUSTER, peer.id, sdp(FINGERPRINT, OTHER), peer.auth), null);
    assert.notEqual(await refusalOf(CLUSTER, peer.id, sdp(), peer.auth), null);
  });

  it("refuses another node's signed fingerprint presented under the sender's id", async () => {
    const peer = await node();
    const stranger = await node();
    assert.match((await refusalOf(CLUSTER, peer.id, sdp(FINGERPRINT), stranger.auth))!, /not derived from/);
  });

  it('refuses a fingerprint changed after it was signed, or signed for another cluster', async () => {
    const peer = await node();
    const changed = { ...peer.auth, fingerprint: OTHER };
    assert.match((await refusalOf(CLUSTER, peer.id, sdp(OTHER), changed))!, /signature/);
    const elsewhere = { ...peer.auth, signature: await peer.sign(fingerprintText('elsewhere', peer.id, FINGERPRINT)) };
    assert.match((await refusalOf(CLUSTER, peer.id, sdp(FINGERPRINT), elsewhere))!, /signature/);
  });

  it('accepts a random-id peer without a signed fingerprint: it has no key its id names', async () => {
    assert.equal(await refusalOf(CLUSTER, 'abcdefghijkl', sdp(FINGERPRINT), undefined), null);
  });

  it('refuses a description with a fingerprint line it cannot read exactly, whatever a lenient parser would make of it', async () => {
    const peer = await node();
    const odd = `v=0\r\na=fingerprint:sha-256 ${FINGERPRINT}\r\na=fingerprint:sha-256  ${OTHER}\r\n`;
    assert.notEqual(await refusalOf(CLUSTER, peer.id, odd, peer.auth), null);
    const bareReturns = `v=0\ra=fingerprint:sha-256 ${FINGERPRINT}\ra=fingerprint:sha-256 ${OTHER}\r`;
    assert.notEqual(await refusalOf(CLUSTER, peer.id, bareReturns, peer.auth), null);
  });

  it('reads the fingerprint lines of an SDP, upper-cased, with their hash function', () => {
    assert.deepEqual(sdpFingerprints(sdp(FINGERPRINT.toLowerCase())), [`sha-256 ${FINGERPRINT}`]);
  });
});
