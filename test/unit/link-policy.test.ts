/**
 * The partial mesh's policy: which peers a node keeps linked (partners, peers used lately), under its bound, and
 * which it lets go once idle. The clock is a number the tests move by hand.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Ring } from '../../worker/ring/ring.ts';
import { LinkPolicy, linkPartners, planLinks } from '../../worker/transport/link-policy.ts';

const peers = (count: number): string[] =>
  Array.from({ length: count }, (_, i) => `node-${String(i).padStart(2, '0')}`);

describe('linkPartners', () => {
  it('names exactly the members that share a preference list with the node', () => {
    const members = peers(40).map((id) => ({ id, domain: id }));
    const ring = new Ring(members, { partitions: 64, tokensPerNode: 8 });
    const self = 'node-00';
    const expected = new Set<string>();
    for (let p = 0; p < ring.partitions; p++) {
      const owners = ring.preferenceList(p, 3);
      if (owners.includes(self)) for (const o of owners) if (o !== self) expected.add(o);
    }
    const partners = linkPartners(ring, self, 3);
    assert.deepEqual(new Set(partners), expected);
    assert.ok(partners.length < 39, 'in a cluster this large some members share nothing with the node');
  });

  it('puts the members sharing the most partitions first', () => {
    const members = peers(12).map((id) => ({ id, domain: id }));
    const ring = new Ring(members, { partitions: 64, tokensPerNode: 8 });
    const counts = new Map<string, number>();
    for (let p = 0; p < ring.partitions; p++) {
      const owners = ring.preferenceList(p, 3);
      if (owners.includes('node-03'))
        for (const o of owners) if (o !== 'node-03') counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    const shared = linkPartners(ring, 'node-03', 3).map((p) => counts.get(p)!);
    assert.deepEqual(
      shared,
      [...shared].sort((a, b) => b - a),
    );
  });
});

describe('planLinks', () => {
  const base = { lastUse: new Map<string, number>(), now: 1_000_000, idleMs: 60_000 };

  it('links every peer when they are no more than the bound, as a full mesh', () => {
    const all = peers(5);
    assert.deepEqual(planLinks({ ...base, peers: all, partners: ['node-03'], maxLinks: 5 }), all);
  });

  it('links partners first, most shared first, up to the bound when no other peer was used', () => {
    const plan = planLinks({ ...base, peers: peers(10), partners: ['node-07', 'node-02', 'node-05'], maxLinks: 2 });
    assert.deepEqual(plan, ['node-07', 'node-02']);
  });

  it('keeps a quarter of the bound for a peer used lately that is not linked as a partner', () => {
    const lastUse = new Map([['node-09', base.now - 1000]]);
    const plan = planLinks({
      ...base,
      lastUse,
      peers: peers(10),
      partners: ['node-01', 'node-02', 'node-03', 'node-04'],
      maxLinks: 4,
    });
    assert.deepEqual(plan, ['node-01', 'node-02', 'node-03', 'node-09']);
  });

  it('opens a link on first use to a partner left out by the bound', () => {
    const lastUse = new Map([['node-04', base.now - 10]]);
    const plan = planLinks({
      ...base,
      lastUse,
      peers: peers(6),
      partners: ['node-01', 'node-02', 'node-03', 'node-04'],
      maxLinks: 3,
    });
    assert.deepEqual(plan, ['node-01', 'node-02', 'node-04']);
  });

  it('lets a link used only by a peer go once it has been idle for idleMs', () => {
    const lastUse = new Map([['node-09', base.now - base.idleMs]]);
    const plan = planLinks({ ...base, lastUse, peers: peers(10), partners: ['node-01', 'node-02'], maxLinks: 4 });
    assert.deepEqual(plan, ['node-01', 'node-02']);
  });

  it('prefers the peers used most recently when more were used than the reserve holds', () => {
    const lastUse = new Map([
      ['node-07', base.now - 300],
      ['node-08', base.now - 100],
      ['node-09', base.now - 200],
    ]);
    const plan = planLinks({ ...base, lastUse, peers: peers(10), partners: [], maxLinks: 2 });
    assert.deepEqual(plan, ['node-08', 'node-09']);
  });

  it('never plans more links than the bound, nor a peer outside the view, nor one twice', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.subarray(peers(20)),
        fc.subarray(peers(24)),
        fc.array(fc.tuple(fc.constantFrom(...peers(24)), fc.integer({ min: 0, max: 120_000 }))),
        (maxLinks, view, partners, uses) => {
          const lastUse = new Map(uses.map(([peer, ago]) => [peer, base.now - ago]));
          const plan = planLinks({ ...base, lastUse, peers: view, partners, maxLinks });
          assert.ok(plan.length <= maxLinks);
          assert.equal(new Set(plan).size, plan.length);
          for (const peer of plan) assert.ok(view.includes(peer));
        },
      ),
    );
  });
});

describe('LinkPolicy', () => {
  it('plans a link to a peer once it is used and drops it after idleMs on the clock', () => {
    let now = 0;
    const policy = new LinkPolicy({ maxLinks: 2, idleMs: 1000 }, () => now);
    policy.setView(peers(5), ['node-01']);
    assert.deepEqual(policy.plan(), ['node-01']);
    policy.use('node-04');
    assert.deepEqual(policy.plan(), ['node-01', 'node-04']);
    now = 999;
    assert.deepEqual(policy.plan(), ['node-01', 'node-04']);
    now = 1000;
    assert.deepEqual(policy.plan(), ['node-01']);
  });

  it('forgets the use of a peer that left the view', () => {
    const policy = new LinkPolicy({ maxLinks: 1, idleMs: 1000 }, () => 0);
    policy.setView(peers(4), []);
    policy.use('node-03');
    policy.setView(peers(3), []);
    policy.setView(peers(4), []);
    assert.deepEqual(policy.plan(), []);
  });

  it('refuses a bound below one link', () => {
    assert.throws(() => new LinkPolicy({ maxLinks: 0 }, () => 0), RangeError);
  });
});
