/**
 * Signed versions on small simulated clusters of nodes whose ids derive from their keys, as tabs' do (virtual time,
 * a quiet network): every version carries its author's proof, and no member can make one up under another node's
 * dot, whatever frame it ships it in (versions/proof.ts, versions/provenance.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage } from '../../worker/wire/codec.ts';
import type { PeerMessage } from '../../worker/wire/protocol.ts';
import { validProof } from '../../worker/versions/proof.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';
import { SimProofs } from '../sim/keys.ts';
import { placement, text, utf8, world } from './cluster-world.ts';

const KEY = text.encode('k');

/**
 * A world of `size` settled nodes, seed 1, whose ids derive from their keys (requests time out after 100 virtual
 * ms), with the owners of the key `k` and a member outside them that tests make misbehave.
 */
async function signedWorld(size: number) {
  const w = await world(size, { keys: true, node: { requestTimeout: 100 } });
  const { cluster, node } = w;
  const { owners, outsider: rogue } = placement(w, 'k');
  const stored = (id: string): Promise<Version[]> => cluster.slot(id).data.reopen().get(KEY);
  /** Delivers `message` to `to` as if `rogue` had sent it over its authenticated link. */
  const inject = (to: string, message: PeerMessage): void => node(to).receive(rogue, encodeMessage(message));
  /** Delivers to `to` a `replicate` of `versions` of the key from `rogue`. */
  const replicate = (to: string, requestId: number, versions: Version[], fresh: number | null = null): void =>
    inject(to, {
      type: 'replicate',
      from: rogue,
      requestId,
      key: KEY,
      versions,
      hintFor: null,
      durable: false,
      fresh,
    });
  return { ...w, owners, rogue, stored, inject, replicate };
}

const show = (versions: readonly Version[]): string[] =>
  versions.map((v) => `${v.dot.node}:${v.dot.counter}=${v.value === null ? '-' : utf8.decode(v.value)}`).sort();

describe('signed versions', () => {
  it('carry the proof of the coordinator that wrote them, at every replica', async () => {
    const w = await signedWorld(5);
    await w.settle(w.node(w.owners[0]!).put('k', text.encode('v'), { w: 3 }));
    for (const owner of w.owners) {
      const [version] = await w.stored(owner);
      assert.equal(version!.dot.node, w.owners[0]);
      assert.equal(await validProof(KEY, version!, new SimProofs()), true, `at ${owner}`);
    }
  });

  it("a replica drops a version a member made up under a signing node's next dot, and keeps the node's own write of it", async () => {
    const w = await signedWorld(5);
    const [coordinator, ...others] = w.owners as [string, ...string[]];
    await w.settle(w.node(coordinator).put('k', text.encode('first'), { w: 3 }));
    const issued = (await w.stored(coordinator))[0]!.dot.counter;
    const planted = createVersion(coordinator, issued + 1, 1, [], text.encode('evil'));
    for (const [i, owner] of others.entries()) {
      w.replicate(owner, i + 1, [planted]);
    }
    await w.scheduler.advance(10);
    for (const owner of others) {
      assert.deepEqual(show(await w.stored(owner)), [`${coordinator}:${issued}=first`], `at ${owner}`);
      assert.equal(w.node(owner).metrics().unprovenVersions, 1);
    }
    await w.settle(w.node(coordinator).put('k', text.encode('real'), { w: 3 }));
    for (const owner of w.owners) {
      assert.deepEqual(show(await w.stored(owner)), [
        `${coordinator}:${issued}=first`,
        `${coordinator}:${issued + 1}=real`,
      ]);
    }
  });

  it('a replica drops a version a member ships of its own without a proof that holds, so that no replica keeps one the others refuse', async () => {
    const w = await signedWorld(5);
    const [owner] = w.owners as [string];
    const junk = { ...createVersion(w.rogue, 7, 1, [], text.encode('junk proof')), proof: new Uint8Array(96) };
    const unsigned = createVersion(w.rogue, 8, 1, [], text.encode('no proof'));
    for (const [i, versions] of [[junk], [unsigned]].entries()) {
      w.replicate(owner, i + 1, versions, versions[0]!.dot.counter);
    }
    await w.scheduler.advance(10);
    assert.deepEqual(await w.stored(owner), []);
    assert.equal(w.node(owner).metrics().unprovenVersions, 2);
  });

  it('a replica drops a copy of a signed version whose value a member changed, from a sync push too', async () => {
    const w = await signedWorld(5);
    const [coordinator, replica] = w.owners as [string, string];
    await w.settle(w.node(coordinator).put('k', text.encode('v'), { w: 1 }));
    const [written] = await w.stored(coordinator);
    // The proof of the real version, over another value.
    const altered = { ...written!, value: text.encode('evil') };
    w.inject(replica, {
      type: 'sync-push',
      from: w.rogue,
      requestId: 1,
      partition: w.cluster.ring.partitionOf(KEY),
      entries: [{ key: KEY, versions: [altered] }],
    });
    await w.scheduler.advance(10);
    assert.ok(!(await w.stored(replica)).some((v) => v.value !== null && utf8.decode(v.value) === 'evil'));
    assert.equal(w.node(replica).metrics().unprovenVersions, 1);
  });

  it('a replica restarted after a signing node left still drops unsigned versions others ship under its dots', async () => {
    const w = await signedWorld(6);
    const [author, replica] = w.owners as [string, string];
    await w.settle(w.node(author).put('k', text.encode('v'), { w: 3 }));
    const issued = (await w.stored(author))[0]!.dot.counter;
    await w.cluster.leave(author);
    await w.scheduler.advance(5_000);
    await w.cluster.crash(replica);
    w.cluster.restart(replica);
    await w.scheduler.advance(2_000);
    // The author is in no view the restarted replica has seen: what it knows of it, it kept across the restart.
    assert.ok(!w.cluster.memberIds().includes(author));
    const planted = createVersion(author, issued + 1, 1, [], text.encode('evil'));
    w.replicate(replica, 1, [planted]);
    await w.scheduler.advance(10);
    assert.ok(!(await w.stored(replica)).some((v) => v.dot.counter === issued + 1));
    assert.equal(w.node(replica).metrics().unprovenVersions, 1);
  });

  it('a coordinator leaves out of a read the version an owner answers with that its author never wrote', async () => {
    const w = await signedWorld(5);
    const [author, liar, reader] = w.owners as [string, string, string];
    await w.settle(w.node(author).put('k', text.encode('v'), { w: 3 }));
    const issued = (await w.stored(author))[0]!.dot.counter;
    // The owner's store holds a version under the author's dot that the author never wrote (a member that lies).
    const forged = createVersion(
      author,
      issued + 1,
      1,
      [{ node: author, counter: issued, timestamp: 1 }],
      text.encode('evil'),
    );
    await w.cluster.slot(liar).data.reopen().apply(KEY, w.cluster.ring.partitionOf(KEY), [forged]);
    const result = await w.settle(w.node(reader).get('k', { r: 3 }));
    assert.deepEqual(
      result.values.map((v) => utf8.decode(v)),
      ['v'],
    );
    assert.equal(w.node(reader).metrics().unprovenVersions, 1);
  });
});
