import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { hasErrorCode } from '../../worker/errors.ts';
import { DEFAULT_PARTITIONS, DEFAULT_TOKENS_PER_NODE, keyPosition, Ring, type Member } from '../../worker/ring/ring.ts';
import { measure, summarize, type ClusterFigures } from '../bench/ring-balance.ts';

const TWO_64 = 1n << 64n;

/** md5 by Node's own implementation, so the ring is checked against a hash it does not share. */
function nodeMd5Position(bytes: Uint8Array | string): bigint {
  return BigInt('0x' + createHash('md5').update(bytes).digest('hex').slice(0, 16));
}

/**
 * The ring rule written the slow, obvious way with BigInt: tokens sorted by position, the walk starting at the first
 * token at or after the partition's upper bound, first node of each domain, then the other nodes in the order met.
 */
function modelWalk(members: readonly Member[], partitions: number, tokensPerNode: number, partition: number): string[] {
  const tokens = members
    .flatMap((m) => {
      const seed = m.placement === undefined || m.placement === '' ? m.id : `${m.id}:${m.placement}`;
      return Array.from({ length: tokensPerNode }, (_, i) => ({ at: nodeMd5Position(`${seed}:${i}`), m }));
    })
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.m.id < b.m.id ? -1 : a.m.id > b.m.id ? 1 : 0));
  const bound = ((BigInt(partition) + 1n) * TWO_64) / BigInt(partitions);
  let start = tokens.findIndex((t) => t.at >= bound);
  if (start < 0) start = 0;
  const met: Member[] = [];
  for (let k = 0; k < tokens.length; k++) {
    const m = tokens[(start + k) % tokens.length]!.m;
    if (!met.includes(m)) met.push(m);
  }
  const domains = new Set<string>();
  const first: string[] = [];
  const rest: string[] = [];
  for (const m of met) {
    if (domains.has(m.domain)) rest.push(m.id);
    else {
      domains.add(m.domain);
      first.push(m.id);
    }
  }
  return [...first, ...rest];
}

const memberIdArb = fc.string({ minLength: 1, maxLength: 12 });
const membersArb = (maxLength: number, domains: number): fc.Arbitrary<Member[]> =>
  fc.uniqueArray(
    fc.record({ id: memberIdArb, domain: fc.integer({ min: 0, max: domains - 1 }).map((d) => `profile-${d}`) }),
    { minLength: 1, maxLength, selector: (m) => m.id },
  );
const partitionsArb = fc.integer({ min: 0, max: 16 }).map((bits) => 2 ** bits);

function assertInvalid(fn: () => unknown): void {
  assert.throws(fn, (error: unknown) => hasErrorCode(error, 'ERR_INVALID_ARGUMENT'));
}

function distinctDomainMembers(count: number): Member[] {
  return Array.from({ length: count }, (_, i) => ({ id: `node-${i}`, domain: `profile-${i}` }));
}

describe('keyPosition', () => {
  it('reads the first 8 bytes of the md5 of the key as an unsigned big-endian integer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (key) => {
        assert.equal(keyPosition(key), nodeMd5Position(key));
      }),
    );
  });
});

describe('Ring construction', () => {
  it('uses 256 partitions and the default token count when given no options', () => {
    const ring = new Ring(distinctDomainMembers(3));
    assert.equal(ring.partitions, DEFAULT_PARTITIONS);
    assert.equal(ring.tokensPerNode, DEFAULT_TOKENS_PER_NODE);
  });

  it('rejects a partition count that is not a power of two from 1 to 65536', () => {
    for (const partitions of [0, 3, 100, 1.5, -2, 131072, Number.NaN]) {
      assertInvalid(() => new Ring(distinctDomainMembers(2), { partitions }));
    }
  });

  it('accepts every power of two from 1 to 65536 as the partition count', () => {
    for (let bits = 0; bits <= 16; bits++) {
      assert.equal(
        new Ring(distinctDomainMembers(2), { partitions: 2 ** bits, tokensPerNode: 2 }).partitions,
        2 ** bits,
      );
    }
  });

  it('rejects a token count that is not a positive integer', () => {
    for (const tokensPerNode of [0, -1, 2.5, Number.NaN, 1e9]) {
      assertInvalid(() => new Ring(distinctDomainMembers(2), { tokensPerNode }));
    }
  });

  it('rejects a member id that appears twice', () => {
    assertInvalid(
      () =>
        new Ring([
          { id: 'a', domain: 'p1' },
          { id: 'b', domain: 'p1' },
          { id: 'a', domain: 'p2' },
        ]),
    );
  });

  it('rejects an empty member id', () => {
    assertInvalid(() => new Ring([{ id: '', domain: 'p1' }]));
  });

  it('lists its members sorted by id and knows which ids belong', () => {
    const ring = new Ring([
      { id: 'c', domain: 'p1' },
      { id: 'a', domain: 'p2' },
      { id: 'b', domain: 'p1' },
    ]);
    assert.deepEqual(
      ring.members.map((m) => m.id),
      ['a', 'b', 'c'],
    );
    assert.equal(ring.has('b'), true);
    assert.equal(ring.has('d'), false);
  });

  it('walks no node when it has no members', () => {
    const ring = new Ring([]);
    assert.deepEqual(ring.walk(0), []);
    assert.deepEqual(ring.preferenceList(5, 3), []);
  });
});

describe('Ring.partitionOf', () => {
  it('is the key position times Q divided by 2^64', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), partitionsArb, (key, partitions) => {
        const ring = new Ring([], { partitions });
        assert.equal(ring.partitionOf(key), Number((keyPosition(key) * BigInt(partitions)) / TWO_64));
      }),
    );
  });

  it('answers the same partition for a key every time it is asked, long keys and many keys included', () => {
    const ring = new Ring([], { partitions: 1024 });
    const expected = (key: Uint8Array): number => Number((keyPosition(key) * 1024n) / TWO_64);
    const keys = Array.from({ length: 10_000 }, (_, i) => new TextEncoder().encode(`key-${i}`));
    keys.push(new Uint8Array(300).fill(1), new Uint8Array(300).fill(2));
    for (let round = 0; round < 2; round++) {
      for (const key of keys) assert.equal(ring.partitionOf(key), expected(key));
    }
  });
});

describe('Ring.walk', () => {
  it('follows the tokens clockwise from the partition upper bound, distinct domains first', () => {
    fc.assert(
      fc.property(
        membersArb(6, 4),
        fc.integer({ min: 0, max: 10 }).map((bits) => 2 ** bits),
        fc.integer({ min: 1, max: 8 }),
        fc.nat(),
        (members, partitions, tokensPerNode, seed) => {
          const ring = new Ring(members, { partitions, tokensPerNode });
          const partition = seed % partitions;
          assert.deepEqual(ring.walk(partition), modelWalk(members, partitions, tokensPerNode, partition));
          assert.deepEqual(ring.walk(partitions - 1), modelWalk(members, partitions, tokensPerNode, partitions - 1));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('visits every member exactly once', () => {
    fc.assert(
      fc.property(membersArb(10, 3), partitionsArb, fc.nat(), (members, partitions, seed) => {
        const ring = new Ring(members, { partitions, tokensPerNode: 4 });
        const walk = ring.walk(seed % partitions);
        assert.deepEqual([...walk].sort(), members.map((m) => m.id).sort());
      }),
    );
  });

  it('repeats a domain in a preference list only once every domain is in it', () => {
    fc.assert(
      fc.property(membersArb(10, 4), fc.nat(), fc.integer({ min: 1, max: 10 }), (members, seed, n) => {
        const ring = new Ring(members, { partitions: 64, tokensPerNode: 8 });
        const domainOf = new Map(members.map((m) => [m.id, m.domain]));
        const domains = ring.preferenceList(seed % 64, n).map((id) => domainOf.get(id)!);
        const distinct = new Set(members.map((m) => m.domain)).size;
        const lead = domains.slice(0, distinct);
        assert.equal(new Set(lead).size, lead.length);
      }),
    );
  });

  it('is the same whatever order the members are listed in', () => {
    fc.assert(
      fc.property(
        membersArb(8, 3).chain((members) =>
          fc.tuple(fc.constant(members), fc.shuffledSubarray(members, { minLength: members.length })),
        ),
        ([members, shuffled]) => {
          const a = new Ring(members, { partitions: 16, tokensPerNode: 8 });
          const b = new Ring(shuffled, { partitions: 16, tokensPerNode: 8 });
          for (let p = 0; p < 16; p++) assert.deepEqual(b.walk(p), a.walk(p));
        },
      ),
    );
  });

  it('only inserts a joining node of a new domain into every walk', () => {
    fc.assert(
      fc.property(membersArb(8, 8), memberIdArb, (members, id) => {
        fc.pre(!members.some((m) => m.id === id));
        const before = new Ring(members, { partitions: 32, tokensPerNode: 8 });
        const after = new Ring([...members, { id, domain: 'a domain of its own' }], {
          partitions: 32,
          tokensPerNode: 8,
        });
        for (let p = 0; p < 32; p++) {
          assert.deepEqual(
            after.walk(p).filter((x) => x !== id),
            before.walk(p),
          );
        }
      }),
    );
  });

  it('gives a node the same tokens whatever token count an earlier ring used for it', () => {
    const members = Array.from({ length: 5 }, (_, i) => ({ id: `tokens-${i}`, domain: `profile-${i}` }));
    for (const tokensPerNode of [40, 16, 64]) {
      const ring = new Ring(members, { partitions: 64, tokensPerNode });
      for (let p = 0; p < 64; p++) assert.deepEqual(ring.walk(p), modelWalk(members, 64, tokensPerNode, p));
    }
  });

  it('places each member’s tokens by its id and the placement the server gave it', () => {
    const placed = membersArb(6, 6).chain((members) =>
      fc.tuple(
        fc.constant(members),
        fc.array(fc.option(fc.string({ maxLength: 22 }), { nil: undefined }), {
          minLength: members.length,
          maxLength: members.length,
        }),
      ),
    );
    fc.assert(
      fc.property(placed, ([members, placements]) => {
        const withPlacements: Member[] = members.map((m, i) => {
          const placement = placements[i];
          return placement === undefined ? m : { ...m, placement };
        });
        const ring = new Ring(withPlacements, { partitions: 16, tokensPerNode: 8 });
        for (let p = 0; p < 16; p++) assert.deepEqual(ring.walk(p), modelWalk(withPlacements, 16, 8, p));
      }),
    );
  });

  it('places a member with an empty placement where its id alone puts it, and one with a placement elsewhere', () => {
    const members = distinctDomainMembers(6);
    const plain = new Ring(members);
    const empty = new Ring(members.map((m) => ({ ...m, placement: '' })));
    const placed = new Ring(members.map((m) => ({ ...m, placement: `salt-of-${m.id}` })));
    const lists = (ring: Ring) => Array.from({ length: ring.partitions }, (_, p) => ring.preferenceList(p, 3));
    assert.deepEqual(lists(empty), lists(plain));
    assert.notDeepEqual(lists(placed), lists(plain));
  });

  it('rejects a placement that is not a string of at most 64 characters', () => {
    assertInvalid(() => new Ring([{ id: 'a', domain: 'x', placement: 'p'.repeat(65) }]));
    assertInvalid(() => new Ring([{ id: 'a', domain: 'x', placement: 7 as unknown as string }]));
  });

  it('rejects a partition outside 0..Q-1', () => {
    const ring = new Ring(distinctDomainMembers(3), { partitions: 8 });
    for (const partition of [-1, 8, 1.5, Number.NaN]) assertInvalid(() => ring.walk(partition));
  });
});

describe('Ring.preferenceList', () => {
  it('is the first n ids of the walk', () => {
    const ring = new Ring(distinctDomainMembers(6), { partitions: 16 });
    for (let p = 0; p < 16; p++) {
      for (let n = 0; n <= 6; n++) assert.deepEqual(ring.preferenceList(p, n), ring.walk(p).slice(0, n));
    }
  });

  it('is the first n ids of the walk when asked before any walk, however few domains the members span', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 1e9 }),
        fc.integer({ min: 1, max: 6 }),
        (count, domains, salt, n) => {
          const members = Array.from({ length: count }, (_, i) => ({ id: `p${salt}-${i}`, domain: `d${i % domains}` }));
          // A fresh view, so that no walk of it was computed by an earlier ring.
          const ring = new Ring(members, { partitions: 16, tokensPerNode: 4 });
          const lists = Array.from({ length: 16 }, (_, p) => ring.preferenceList(p, n));
          lists.forEach((list, p) => assert.deepEqual(list, modelWalk(members, 16, 4, p).slice(0, n)));
        },
      ),
      { seed: 11, numRuns: 200 },
    );
  });

  it('holds every member when n exceeds the member count', () => {
    const ring = new Ring(distinctDomainMembers(2), { partitions: 4 });
    assert.deepEqual([...ring.preferenceList(1, 3)].sort(), ['node-0', 'node-1']);
  });

  it('rejects a negative or fractional n', () => {
    const ring = new Ring(distinctDomainMembers(3));
    assertInvalid(() => ring.preferenceList(0, -1));
    assertInvalid(() => ring.preferenceList(0, 1.5));
  });
});

describe('Ring.partitionsOf', () => {
  it('lists, ascending, the partitions whose preference list names the member', () => {
    const members = Array.from({ length: 9 }, (_, i) => ({ id: `of-${i}`, domain: `d${i % 4}` }));
    const ring = new Ring(members, { partitions: 64 });
    for (const { id } of members) {
      const expected = [...Array(64).keys()].filter((p) => ring.preferenceList(p, 3).includes(id));
      assert.deepEqual(ring.partitionsOf(id, 3), expected);
    }
    assert.deepEqual(ring.partitionsOf('stranger', 3), []);
  });
});

describe('Ring built again from one members array', () => {
  it('follows a change of the array made after an earlier ring was built from it', () => {
    const members: Member[] = distinctDomainMembers(4);
    const before = new Ring(members, { partitions: 16 });
    members[3] = { id: 'node-new', domain: 'node-new' };
    const after = new Ring(members, { partitions: 16 });
    assert.equal(before.has('node-3'), true);
    assert.equal(after.has('node-3'), false);
    assert.equal(after.has('node-new'), true);
    assert.deepEqual(
      Array.from({ length: 16 }, (_, p) => after.walk(p)),
      Array.from({ length: 16 }, (_, p) => new Ring([...members], { partitions: 16 }).walk(p)),
    );
  });

  it('follows a member placed otherwise in the same array', () => {
    const members: Member[] = distinctDomainMembers(4);
    const plain = new Ring(members, { partitions: 16 });
    members[0] = { ...members[0]!, placement: 'elsewhere' };
    const placed = new Ring(members, { partitions: 16 });
    assert.notDeepEqual(
      Array.from({ length: 16 }, (_, p) => placed.walk(p)),
      Array.from({ length: 16 }, (_, p) => plain.walk(p)),
    );
  });
});

describe('Ring balance at the defaults (8 nodes, 100,000 keys, 20 seeded clusters; see test/bench/ring-balance.ts)', () => {
  // With Q = 256 each partition's primary is close to an independent draw among 8 nodes, so the largest node owns
  // about Binomial(256, 1/8) partitions at its worst of 8: mean 1.26 × the average in theory, and a worst case near
  // 1.4 over 20 clusters whatever T is. The bounds below are what Q = 256 can give, not the 1.25 aim.
  let figures: ClusterFigures[] = [];
  before(() => {
    figures = measure({
      seed: 1,
      sets: 20,
      keys: 100_000,
      nodes: 8,
      partitions: DEFAULT_PARTITIONS,
      tokensPerNode: DEFAULT_TOKENS_PER_NODE,
    });
  });

  it('keeps the largest primary owner within 1.3 of the mean on average and 1.5 at worst', () => {
    const { mean, worst } = summarize(figures.map((f) => f.primary));
    assert.ok(mean <= 1.3, `mean ${mean}`);
    assert.ok(worst <= 1.5, `worst ${worst}`);
  });

  it('keeps the largest replica holder within 1.12 of the mean on average and 1.2 at worst', () => {
    const { mean, worst } = summarize(figures.map((f) => f.replica));
    assert.ok(mean <= 1.12, `mean ${mean}`);
    assert.ok(worst <= 1.2, `worst ${worst}`);
  });

  it('moves about the ideal ninth of primary owners when a ninth node joins', () => {
    const { mean, worst } = summarize(figures.map((f) => f.movedPrimary));
    assert.ok(mean >= 0.85 && mean <= 1.15, `mean ${mean}`);
    assert.ok(worst <= 1.5, `worst ${worst}`);
  });

  it('changes about the ideal third of replica sets when a ninth node joins', () => {
    const { mean, worst } = summarize(figures.map((f) => f.movedSet));
    assert.ok(mean >= 0.3 && mean <= 0.37, `mean ${mean}`);
    assert.ok(worst <= 0.42, `worst ${worst}`);
  });
});
