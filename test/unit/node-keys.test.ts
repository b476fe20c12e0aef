/**
 * Node ids and their keys at the server: an id derived from a key is admitted only when signed by that key, on any
 * server, without a binding; an id minted at random is bound to the key of its first signed join.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { DERIVED_ID_PATTERN, derivedNodeId, joinProofText } from '../../signaling/events.ts';
import { type JoinProof, NodeKeys } from '../../signaling/node-keys.ts';
import { mintNodeKey } from '../../client/node-key.ts';

const CLUSTER = 'keys';

/** A node's key pair, and its proof of a join of `nodeId` on `connection`. */
function keyPair(): { id: string; prove(nodeId: string, connection: string): JoinProof } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'jwk' }).x!;
  return {
    id: derivedNodeId(createHash('sha256').update(Buffer.from(raw, 'base64url')).digest()),
    prove(nodeId, connection) {
      const signature = sign(null, Buffer.from(joinProofText(CLUSTER, nodeId, connection)), privateKey);
      return { publicKey: raw, signature: signature.toString('base64url') };
    },
  };
}

describe('node keys at the server', () => {
  it('admits a join under an id derived from the key that signed it, on a server that never saw the id', () => {
    const node = keyPair();
    assert.match(node.id, DERIVED_ID_PATTERN);
    assert.deepEqual(new NodeKeys().admit(CLUSTER, node.id, 'socket-1', node.prove(node.id, 'socket-1')), { ok: true });
    // Another server, or the same one restarted: nothing to remember, the id itself names the key.
    assert.deepEqual(new NodeKeys().admit(CLUSTER, node.id, 'socket-2', node.prove(node.id, 'socket-2')), { ok: true });
  });

  it('refuses a join under a derived id that is unsigned, or signed by another key, even on a fresh server', () => {
    const victim = keyPair();
    const impostor = keyPair();
    const keys = new NodeKeys();
    assert.equal(keys.admit(CLUSTER, victim.id, 'socket-1', undefined).ok, false);
    assert.equal(keys.admit(CLUSTER, victim.id, 'socket-1', impostor.prove(victim.id, 'socket-1')).ok, false);
  });

  it('refuses a proof made for another connection', () => {
    const node = keyPair();
    assert.equal(new NodeKeys().admit(CLUSTER, node.id, 'socket-2', node.prove(node.id, 'socket-1')).ok, false);
  });

  it('binds a random id to the key of its first signed join, and refuses another key or no signature after it', () => {
    const first = keyPair();
    const other = keyPair();
    const keys = new NodeKeys();
    assert.deepEqual(keys.admit(CLUSTER, 'random-id-1', 's1', undefined), { ok: true });
    assert.deepEqual(keys.admit(CLUSTER, 'random-id-1', 's2', first.prove('random-id-1', 's2')), { ok: true });
    assert.equal(keys.admit(CLUSTER, 'random-id-1', 's3', other.prove('random-id-1', 's3')).ok, false);
    assert.equal(keys.admit(CLUSTER, 'random-id-1', 's3', undefined).ok, false);
    assert.deepEqual(keys.admit(CLUSTER, 'random-id-1', 's4', first.prove('random-id-1', 's4')), { ok: true });
  });

  it('derives in the browser the id the server derives: WebCrypto key, raw export, SHA-256', async () => {
    const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    const browser = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)));
    const server = derivedNodeId(createHash('sha256').update(raw).digest());
    assert.equal(browser, server);
    assert.match(browser, DERIVED_ID_PATTERN);
    // Never the form of a random id (12 characters): the two kinds cannot be taken for each other.
    assert.equal(browser.length, 17);
  });

  it('mints no id where there is no IndexedDB to keep the key in, so that a random id is minted instead', async () => {
    assert.equal(await mintNodeKey(CLUSTER), null);
  });
});
