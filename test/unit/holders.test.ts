import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Holders, type ProbeAnswer } from '../../worker/membership/holders.ts';
import { Ring } from '../../worker/ring/ring.ts';

const ROOT = new Uint8Array(8).fill(1);

/** A directory for node `self` of `ids`, whose probes answer from `answers` (null: no answer) and are counted. */
function directory(ids: string[], answers: Record<string, ProbeAnswer | null>, suspected: string[] = []) {
  let ring = new Ring(ids.map((id) => ({ id, domain: id })));
  const asked: string[] = [];
  const holders = new Holders({
    self: 'a',
    ring: () => ring,
    isSuspected: (id) => suspected.includes(id),
    probe: async (peer) => {
      asked.push(peer);
      return answers[peer] ?? null;
    },
  });
  return {
    holders,
    asked,
    ring: () => ring,
    setRing(next: string[]) {
      ring = new Ring(next.map((id) => ({ id, domain: id })));
    },
  };
}

describe('Holders', () => {
  it('finds the members that hold a partition, in ring-walk order, by asking every other member once', async () => {
    const d = directory(['a', 'b', 'c', 'd'], {
      b: { held: true, root: ROOT },
      c: { held: false, root: ROOT },
      d: { held: true, root: ROOT },
    });
    const found = await d.holders.find(5);
    const walk = d.ring().walk(5);
    assert.deepEqual(
      found.holders,
      walk.filter((id) => id === 'b' || id === 'd'),
    );
    assert.equal(found.unanswered, 0);
    assert.deepEqual(found.roots.get('b'), ROOT);
    assert.deepEqual([...d.asked].sort(), ['b', 'c', 'd']);
    assert.deepEqual(d.holders.known(5), found.holders);
  });

  it('lists apart the members that hold no whole copy but store keys of the partition', async () => {
    const d = directory(['a', 'b', 'c', 'd'], {
      b: { held: true, root: ROOT },
      c: { held: false, root: ROOT },
      d: { held: false, root: new Uint8Array(8) },
    });
    const found = await d.holders.find(5);
    assert.deepEqual(found.holders, ['b']);
    assert.deepEqual(found.storing, ['c']);
    assert.deepEqual(found.roots.get('c'), ROOT);
    assert.equal(found.roots.has('d'), false);
  });

  it('answers later finds from what it learnt, without asking again', async () => {
    const d = directory(['a', 'b', 'c'], { b: { held: true, root: ROOT }, c: { held: true, root: ROOT } });
    await d.holders.find(1);
    await d.holders.find(1);
    assert.equal(d.asked.length, 2);
  });

  it('asks again when the last answer was inconclusive: no holder found and a member silent', async () => {
    const d = directory(['a', 'b', 'c'], { b: { held: false, root: ROOT }, c: null });
    assert.deepEqual((await d.holders.find(1)).holders, []);
    assert.equal((await d.holders.find(1)).unanswered, 1);
    assert.equal(d.asked.length, 4);
  });

  it('counts a suspected member as unanswered without asking it', async () => {
    const d = directory(['a', 'b', 'c'], { b: { held: true, root: ROOT }, c: { held: true, root: ROOT } }, ['c']);
    const found = await d.holders.find(2);
    assert.deepEqual(found.holders, ['b']);
    assert.equal(found.unanswered, 1);
    assert.deepEqual(d.asked, ['b']);
  });

  it('joins a probe under way instead of asking twice', async () => {
    const d = directory(['a', 'b'], { b: { held: true, root: ROOT } });
    const [one, two] = await Promise.all([d.holders.probe(3), d.holders.probe(3)]);
    assert.equal(one, two);
    assert.deepEqual(d.asked, ['b']);
  });

  it('forgets what it learnt when the ring changes', async () => {
    const d = directory(['a', 'b'], { b: { held: true, root: ROOT } });
    await d.holders.find(3);
    d.setRing(['a', 'b', 'c']);
    assert.deepEqual(d.holders.known(3), []);
  });
});
