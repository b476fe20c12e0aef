import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  PROOF_BYTES,
  WebCryptoProofs,
  signVersion,
  mayShip,
  validProof,
  type ProvenanceDeps,
} from '../../worker/versions/proof.ts';
import { Provenance } from '../../worker/versions/provenance.ts';
import { MemoryStorage } from '../../worker/storage/memory.ts';
import { firstSignedCounter } from '../../worker/versions/proof.ts';
import { createVersion, type Version } from '../../worker/versions/version.ts';
import { newSigner } from './signers.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const KEY = bytes('cart:42');
const crypto = new WebCryptoProofs();

function version(node: string, counter: number, value = `${node}:${counter}`): Version {
  return createVersion(node, counter, 1000 + counter, [], bytes(value));
}

describe('version proofs', () => {
  it("hold for the author's own version of the key, with its public key and signature", async () => {
    const author = await newSigner();
    const signed = await signVersion(KEY, version(author.id, 1), author.signing);
    assert.equal(signed.proof.byteLength, PROOF_BYTES);
    assert.equal(await validProof(KEY, signed, crypto), true);
  });

  it('fail for another value, another context, another timestamp or another key under the same proof', async () => {
    const author = await newSigner();
    const signed = await signVersion(KEY, version(author.id, 1), author.signing);
    const changed: Version[] = [
      { ...signed, value: bytes('evil') },
      { ...signed, value: null },
      { ...signed, context: [{ node: 'n1', counter: 3, timestamp: 5 }] },
      { ...signed, dot: { ...signed.dot, timestamp: signed.dot.timestamp + 1 } },
      { ...signed, dot: { ...signed.dot, counter: 2 } },
    ];
    for (const v of changed) assert.equal(await validProof(KEY, v, crypto), false);
    assert.equal(await validProof(bytes('cart:43'), signed, crypto), false);
  });

  it("fail when signed by a key the dot's node id does not derive from", async () => {
    const author = await newSigner();
    const forger = await newSigner();
    // The forger signs a version under the author's dot with its own key.
    const forged = await signVersion(KEY, version(author.id, 1, 'evil'), forger.signing);
    assert.equal(await validProof(KEY, forged, crypto), false);
  });

  it('fail when cut short or absent', async () => {
    const author = await newSigner();
    const signed = await signVersion(KEY, version(author.id, 1), author.signing);
    assert.equal(await validProof(KEY, { ...signed, proof: signed.proof.subarray(0, 95) }, crypto), false);
    assert.equal(await validProof(KEY, version(author.id, 1), crypto), false);
  });
});

describe('which versions a peer may ship', () => {
  const deps = (signedFrom: Record<string, number>): ProvenanceDeps => ({
    crypto,
    signedFrom: (node) => signedFrom[node],
  });

  it('a signed version of a signing node, whoever ships it', async () => {
    const author = await newSigner();
    const signed = await signVersion(KEY, version(author.id, 5), author.signing);
    assert.equal(await mayShip(KEY, signed, deps({ [author.id]: 1 })), true);
  });

  it('an unsigned version of a signing node only below its signedFrom, or when that is not known', async () => {
    const author = await newSigner();
    const plain = version(author.id, 5);
    assert.equal(await mayShip(KEY, plain, deps({ [author.id]: 1 })), false);
    assert.equal(await mayShip(KEY, plain, deps({ [author.id]: 5 })), false);
    // Written before its author signed (an older release): taken unsigned.
    assert.equal(await mayShip(KEY, plain, deps({ [author.id]: 6 })), true);
    assert.equal(await mayShip(KEY, plain, deps({})), true);
  });

  it('any unsigned version of a node with a random id, which cannot sign, and none with a proof', async () => {
    const plain = version('n2abcdefghij', 5);
    assert.equal(await mayShip(KEY, plain, deps({})), true);
    const proven = { ...plain, proof: new Uint8Array(PROOF_BYTES) };
    assert.equal(await mayShip(KEY, proven, deps({})), false);
  });

  it('no version with a proof that does not hold, even its writer’s own', async () => {
    const author = await newSigner();
    const signed = await signVersion(KEY, version(author.id, 5), author.signing);
    const tampered = { ...signed, value: bytes('evil') };
    assert.equal(await mayShip(KEY, tampered, deps({})), false);
  });

  it('filters a sync page down to what the sender may ship, leaving out keys left with nothing', async () => {
    const author = await newSigner();
    const provenance = new Provenance(crypto, () => false);
    provenance.learn([{ id: author.id, domain: 'd', signedFrom: 1 }]);
    const good = await signVersion(KEY, version(author.id, 1), author.signing);
    const plant = version(author.id, 2, 'evil');
    const other = bytes('other');
    const checked = await provenance.check({
      type: 'sync-push',
      from: 'n1',
      requestId: 1,
      partition: 0,
      entries: [
        { key: KEY, versions: [good, plant] },
        { key: other, versions: [version(author.id, 3)] },
      ],
    });
    assert.equal(checked.dropped, 2);
    assert.deepEqual(
      checked.message.entries.map((e) => e.versions.map((v) => v.dot.counter)),
      [[1]],
    );
  });

  it('takes back what it recorded, skipping what is malformed or of nodes that do not sign', async () => {
    const a = await newSigner();
    const b = await newSigner();
    const provenance = new Provenance(crypto, () => false);
    assert.equal(provenance.learn([{ id: a.id, domain: 'd', signedFrom: 3 }]), true);
    assert.equal(provenance.learn([{ id: a.id, domain: 'd', signedFrom: 3 }]), false);
    provenance.learn([{ id: b.id, domain: 'd', signedFrom: 9 }]);
    const again = new Provenance(crypto, () => false);
    again.restore([...provenance.record(), ['n1', 4], [a.id, 'x'], 'junk', [b.id, 0]]);
    assert.deepEqual(again.record(), provenance.record());
    again.restore(null);
    assert.equal(again.signedFrom(a.id), 3);
  });

  it('keeps the signedFrom of members that left, and the lowest a node was ever seen with', async () => {
    const author = await newSigner();
    const provenance = new Provenance(crypto, () => false);
    provenance.learn([{ id: author.id, domain: 'd', signedFrom: 7 }]);
    provenance.learn([{ id: author.id, domain: 'd', signedFrom: 9 }]);
    provenance.learn([]);
    assert.equal(provenance.signedFrom(author.id), 7);
  });
});

describe('the first counter a node signs', () => {
  it("is a new node's first counter, and stays the same across restarts", async () => {
    const storage = new MemoryStorage();
    assert.equal(await firstSignedCounter(storage), 1);
    const again = storage.reopen();
    assert.equal(await firstSignedCounter(again), 1);
  });

  it('is above every counter the node issued before it signed, and below every one it issues after', async () => {
    const storage = new MemoryStorage();
    const write = { node: 'k', timestamp: 1, context: [], value: bytes('v'), ifMatch: false } as const;
    const before = (await storage.write(KEY, 0, write)).version.dot.counter;
    const first = await firstSignedCounter(storage);
    const after = await storage.drawCounter();
    assert.ok(before < first && first < after, `${before} < ${first} < ${after}`);
  });
});
