/**
 * The ring history (worker/membership/ring-history.ts): who owned a partition moments ago, kept across a restart.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RingHistory } from '../../worker/membership/ring-history.ts';
import { type Member, Ring } from '../../worker/ring/ring.ts';

const AGE = 10_000;
const members = (...ids: string[]): Member[] => ids.map((id) => ({ id, domain: id }));
const build = (m: readonly Member[]): Ring => new Ring(m, { partitions: 8 });
const holdsAll = (id: string) => (ring: Ring) => ring.has(id);

describe('the ring history', () => {
  it('honours a ring replaced less than its age ago, and forgets it after', () => {
    const history = new RingHistory(build, AGE);
    history.replaced(build(members('a', 'b', 'gone')), 1000);
    assert.equal(history.some(holdsAll('gone'), 1000 + AGE - 1, AGE), true);
    assert.equal(history.some(holdsAll('gone'), 1000 + AGE, AGE), false);
  });

  it('keeps what it held across a restart, the ring current at the save counting as replaced at the last sign of life', () => {
    const before = new RingHistory(build, AGE);
    before.replaced(build(members('a', 'old')), 1000);
    const record = structuredClone(before.record(build(members('a', 'current')), 2000));
    const after = new RingHistory(build, AGE);
    after.restore(record, 5000, 6000);
    assert.equal(after.some(holdsAll('old'), 6000, AGE), true);
    assert.equal(after.some(holdsAll('current'), 5000 + AGE - 1, AGE), true);
    assert.equal(after.some(holdsAll('current'), 5000 + AGE, AGE), false);
  });

  it('keeps each member’s placement across a restart: the restored rings place partitions as they did', () => {
    const placed = ['a', 'b', 'c', 'd'].map((id) => ({ id, domain: id, placement: `salt-${id}` }));
    const before = new RingHistory(build, AGE);
    before.replaced(build(placed), 1000);
    const after = new RingHistory(build, AGE);
    after.restore(structuredClone(before.record(build(members('a')), 2000)), 2000, 3000);
    const owners = (ring: Ring) => Array.from({ length: 8 }, (_, p) => ring.preferenceList(p, 2).join());
    const expected = owners(build(placed)).join('|');
    assert.equal(
      after.some((ring) => ring.members.length === 4 && owners(ring).join('|') === expected, 3000, AGE),
      true,
    );
  });

  it('stores each earlier ring as what changed from it to the ring after it, and takes the rings back whole', () => {
    const ids = Array.from({ length: 50 }, (_, i) => `m${i}`);
    const before = new RingHistory(build, AGE);
    before.replaced(build(members(...ids, 'failed')), 1000);
    before.replaced(build(members(...ids)), 2000);
    const record = structuredClone(before.record(build(members(...ids, 'joined')), 3000));
    assert.deepEqual(
      record.earlier.map((e) => ({ joined: e.joined, left: e.left.map((m) => m.id) })),
      [
        { joined: ['joined'], left: [] },
        { joined: [], left: ['failed'] },
      ],
    );
    const after = new RingHistory(build, AGE);
    after.restore(record, 3000, 3000);
    const sizes: number[] = [];
    after.some(
      (ring) => {
        sizes.push(ring.members.length);
        return false;
      },
      3000,
      AGE,
    );
    assert.deepEqual(sizes, [51, 50, 51]);
    assert.equal(after.some(holdsAll('failed'), 3000, AGE), true);
  });

  it('reads a record stored with each earlier ring whole', () => {
    const history = new RingHistory(build, AGE);
    const record = {
      current: members('a', 'b'),
      savedAt: 900,
      earlier: [{ members: members('a', 'old'), replacedAt: 800 }],
    };
    history.restore(record, 0, 1000);
    assert.equal(history.some(holdsAll('old'), 1000, AGE), true);
  });

  it('leaves out of a restored history the rings replaced longer ago than its age', () => {
    const before = new RingHistory(build, AGE);
    before.replaced(build(members('a', 'old')), 1000);
    const after = new RingHistory(build, AGE);
    after.restore(before.record(build(members('a')), 1000), 1000, 1000 + AGE);
    assert.equal(
      after.some(() => true, 1000 + AGE, AGE),
      false,
    );
  });

  it('ignores stored rings whose members make no ring, and rings stored with a time still to come', () => {
    const history = new RingHistory(build, AGE);
    const record = {
      current: members('a', 'a'),
      savedAt: 900,
      earlier: [
        { members: members('a', 'future'), replacedAt: 5000 },
        { members: members('a', 'old'), replacedAt: 800 },
      ],
    };
    history.restore(record, 0, 1000);
    assert.equal(history.some(holdsAll('future'), 1000, AGE), false);
    assert.equal(history.some(holdsAll('old'), 1000, AGE), true);
  });

  it('ignores a stored record that is not one', () => {
    const history = new RingHistory(build, AGE);
    for (const record of [undefined, 7, 'x', { current: [{ id: 1 }], savedAt: 0, earlier: [] }, { current: [] }]) {
      history.restore(record, 0, 0);
    }
    assert.equal(
      history.some(() => true, 0, AGE),
      false,
    );
  });

  it('names as former owners the members that owned a partition moments ago and own it no longer', () => {
    const history = new RingHistory(build, AGE);
    const earlier = build(members('a', 'b', 'c'));
    history.replaced(earlier, 0);
    const current = build(members('a', 'b', 'c', 'd', 'e', 'f'));
    const partition = [...Array(8).keys()].find((p) => {
      const now = current.preferenceList(p, 3);
      return earlier.preferenceList(p, 3).some((id) => !now.includes(id));
    })!;
    const owners = (ring: Ring) => ring.preferenceList(partition, 3);
    const former = history.former(owners, current, 1, AGE);
    assert.deepEqual(
      former.sort(),
      owners(earlier)
        .filter((id) => !owners(current).includes(id))
        .sort(),
    );
    assert.ok(former.length > 0);
  });
});
