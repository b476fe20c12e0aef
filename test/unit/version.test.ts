import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { counterOf, EMPTY_CLOCK, MAX_CLOCK_ENTRIES, type VClock } from '../../worker/versions/vclock.ts';
import {
  clockOf,
  contextCoversAll,
  contextOf,
  covers,
  createVersion,
  liveSiblings,
  resolve,
  sameSiblings,
  supersedes,
  type Version,
} from '../../worker/versions/version.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function write(
  node: string,
  counter: number,
  context: VClock,
  value = `${node}${counter}`,
  timestamp = counter,
): Version {
  return createVersion(node, counter, timestamp, context, bytes(value));
}

function dots(versions: readonly Version[]): string[] {
  return versions.map((v) => `${v.dot.node}:${v.dot.counter}`).sort();
}

/** One step of a history of one key: a put at a replica over some context, or a replica shipping its set to another. */
type Step =
  | { readonly kind: 'put'; readonly at: number; readonly context: 'empty' | 'read' | 'saved'; readonly from: number }
  | { readonly kind: 'sync'; readonly from: number; readonly to: number };

const stepArb = (replicas: number): fc.Arbitrary<Step> =>
  fc.oneof(
    fc.record(
      {
        kind: fc.constant('put' as const),
        at: fc.nat(replicas - 1),
        context: fc.constantFrom('empty' as const, 'read' as const, 'read' as const, 'saved' as const),
        from: fc.nat(1000),
      },
      { noNullPrototype: true },
    ),
    fc.record(
      { kind: fc.constant('sync' as const), from: fc.nat(replicas - 1), to: fc.nat(replicas - 1) },
      { noNullPrototype: true },
    ),
  );

/**
 * Plays a history the way nodes do: each replica is also a coordinator with a persistent counter, stores its own
 * writes, and ships its whole sibling set; clients write over an empty context, a fresh read of any replica, or a
 * context they read earlier. Returns every version written and each replica's final sibling set.
 */
function play(replicaCount: number, steps: readonly Step[]): { versions: Version[]; replicas: Version[][] } {
  const replicas: Version[][] = Array.from({ length: replicaCount }, () => []);
  const counters = new Array<number>(replicaCount).fill(0);
  const saved: VClock[] = [EMPTY_CLOCK];
  const versions: Version[] = [];
  let time = 0;
  for (const step of steps) {
    if (step.kind === 'sync') {
      replicas[step.to] = resolve(replicas[step.to]!, replicas[step.from]!).siblings;
      continue;
    }
    let context: VClock = EMPTY_CLOCK;
    if (step.context === 'read') context = contextOf(replicas[step.from % replicaCount]!);
    if (step.context === 'saved') context = saved[step.from % saved.length]!;
    saved.push(context);
    const v = write(`n${step.at}`, ++counters[step.at]!, context, `v${versions.length}`, ++time);
    versions.push(v);
    replicas[step.at] = resolve(replicas[step.at]!, [v]).siblings;
  }
  return { versions, replicas };
}

/** Histories over `replicas` nodes: with fewer than ten, no clock is ever pruned. */
const historyArb = (
  replicas: number,
  steps: { minLength?: number; maxLength: number } = { maxLength: 30 },
): fc.Arbitrary<{ versions: Version[]; replicas: Version[][] }> =>
  fc.array(stepArb(replicas), steps).map((list) => play(replicas, list));

describe('resolve', () => {
  // A node id of the form derived from a key (signaling/events.ts): only such nodes sign.
  const SIGNER = 'kAAAAAAAAAAAAAAAA';

  it('takes a signed version in place of an unsigned one under its dot, never the other way', () => {
    const plain = write(SIGNER, 1, EMPTY_CLOCK);
    const signed = { ...write(SIGNER, 1, EMPTY_CLOCK, 'signed'), proof: new Uint8Array(96).fill(1) };
    const taken = resolve([plain], [signed]);
    assert.equal(taken.changed, true);
    assert.equal(taken.siblings[0], signed);
    const kept = resolve([signed], [plain]);
    assert.equal(kept.changed, false);
    assert.equal(kept.siblings[0], signed);
  });

  it('keeps the lower proof of two signed versions under one dot, whichever came first', () => {
    const low = { ...write(SIGNER, 1, EMPTY_CLOCK, 'one'), proof: new Uint8Array(96).fill(1) };
    const high = { ...write(SIGNER, 1, EMPTY_CLOCK, 'two'), proof: new Uint8Array(96).fill(2) };
    assert.equal(resolve([high], [low]).siblings[0], low);
    assert.equal(resolve([low], [high]).siblings[0], low);
    assert.equal(resolve([low], [high]).changed, false);
  });

  it('keeps the stored version of a node that cannot sign, whatever proof another carries', () => {
    const stored = write('x', 1, EMPTY_CLOCK, 'honest');
    const forged = { ...write('x', 1, EMPTY_CLOCK, 'evil'), proof: new Uint8Array(96) };
    assert.deepEqual(resolve([stored], [forged]), { siblings: [stored], changed: false });
  });

  it('keeps the stored one of two unsigned versions under one dot', () => {
    const stored = write('x', 1, EMPTY_CLOCK, 'one');
    const other = write('x', 1, EMPTY_CLOCK, 'two');
    assert.deepEqual(resolve([stored], [other]), { siblings: [stored], changed: false });
  });

  it('drops an incoming version that is already stored', () => {
    const a = write('x', 1, EMPTY_CLOCK);
    const { siblings, changed } = resolve([a], [a]);
    assert.deepEqual(dots(siblings), ['x:1']);
    assert.equal(changed, false);
  });

  it('drops an incoming version that a stored one supersedes', () => {
    const old = write('x', 1, EMPTY_CLOCK);
    const newer = write('y', 1, clockOf(old));
    const { siblings, changed } = resolve([newer], [old]);
    assert.deepEqual(dots(siblings), ['y:1']);
    assert.equal(changed, false);
  });

  it('replaces every stored sibling that the incoming version supersedes', () => {
    const a = write('x', 1, EMPTY_CLOCK);
    const b = write('y', 1, EMPTY_CLOCK);
    const c = write('z', 1, EMPTY_CLOCK);
    const over = write('w', 1, contextOf([a, b]));
    const { siblings, changed } = resolve([a, b, c], [over]);
    assert.deepEqual(dots(siblings), ['w:1', 'z:1']);
    assert.equal(changed, true);
  });

  it('keeps concurrent versions as siblings, sorted by dot', () => {
    const a = write('y', 1, EMPTY_CLOCK);
    const b = write('x', 1, EMPTY_CLOCK);
    const { siblings, changed } = resolve([a], [b]);
    assert.deepEqual(
      siblings.map((v) => v.dot.node),
      ['x', 'y'],
    );
    assert.equal(changed, true);
  });

  it('keeps two writes by the same coordinator over an empty context as siblings', () => {
    const first = write('x', 1, EMPTY_CLOCK);
    const second = write('x', 2, EMPTY_CLOCK);
    assert.deepEqual(dots(resolve([first], [second]).siblings), ['x:1', 'x:2']);
    assert.deepEqual(dots(resolve([second], [first]).siblings), ['x:1', 'x:2']);
  });

  it('lets a write over a read context replace every sibling it read', () => {
    const a = write('x', 1, EMPTY_CLOCK);
    const b = write('x', 2, EMPTY_CLOCK);
    const c = write('y', 1, EMPTY_CLOCK);
    const over = write('x', 3, contextOf([a, b, c]));
    assert.deepEqual(dots(resolve([a, b, c], [over]).siblings), ['x:3']);
  });

  // With more than ten coordinators a pruned context can supersede a version without covering what that version
  // superseded, and then the order of arrival decides whether the older one survives as a (spurious) sibling.
  it('keeps exactly the versions that no other version supersedes, whatever order they arrive in, while no clock is pruned', () => {
    fc.assert(
      fc.property(
        historyArb(4).chain(({ versions }) =>
          fc.tuple(fc.constant(versions), fc.shuffledSubarray(versions, { minLength: versions.length }), fc.nat()),
        ),
        ([versions, shuffled, cut]) => {
          const expected = versions.filter((v) => !versions.some((w) => supersedes(w, v)));
          assert.deepEqual(dots(resolve([], shuffled).siblings), dots(expected));
          const split = cut % (shuffled.length + 1);
          const inTwo = resolve(resolve([], shuffled.slice(0, split)).siblings, shuffled.slice(split)).siblings;
          assert.deepEqual(dots(inTwo), dots(expected));
          const oneByOne = shuffled.reduce<Version[]>((set, v) => resolve(set, [v]).siblings, []);
          assert.deepEqual(dots(oneByOne), dots(expected));
        },
      ),
    );
  });

  it('brings every replica to the same siblings once they have all exchanged sets', () => {
    fc.assert(
      fc.property(historyArb(4), ({ replicas }) => {
        const all = replicas.reduce<Version[]>((set, r) => resolve(set, r).siblings, []);
        for (const r of replicas) assert.ok(sameSiblings(resolve(r, all).siblings, all));
      }),
    );
  });

  it('brings replicas to the same siblings by exchanging sets even when sixteen coordinators prune clocks', () => {
    fc.assert(
      fc.property(historyArb(16, { minLength: 100, maxLength: 200 }), ({ replicas }) => {
        for (let round = 0, changed = true; changed; round++) {
          assert.ok(round < 20, 'replicas still differ after 20 rounds of exchanges');
          changed = false;
          for (let i = 0; i < replicas.length; i++) {
            for (const other of replicas) {
              const out = resolve(replicas[i]!, other);
              if (out.changed) [changed, replicas[i]] = [true, out.siblings];
            }
          }
        }
        for (const r of replicas) assert.deepEqual(dots(r), dots(replicas[0]!));
      }),
      { numRuns: 25 },
    );
  });

  it('is idempotent: resolving the same versions again changes nothing', () => {
    fc.assert(
      fc.property(
        historyArb(4).chain(({ versions }) => fc.tuple(fc.subarray(versions), fc.subarray(versions))),
        ([stored, incoming]) => {
          const once = resolve(resolve([], stored).siblings, incoming);
          const twice = resolve(once.siblings, incoming);
          assert.equal(twice.changed, false);
          assert.deepEqual(dots(twice.siblings), dots(once.siblings));
          assert.equal(resolve(once.siblings, once.siblings).changed, false);
        },
      ),
    );
  });

  it('reports a change exactly when the sibling set changed', () => {
    fc.assert(
      fc.property(
        historyArb(3).chain(({ versions }) => fc.tuple(fc.subarray(versions), fc.subarray(versions))),
        ([stored, incoming]) => {
          const base = resolve([], stored).siblings;
          const out = resolve(base, incoming);
          assert.equal(out.changed, !sameSiblings(out.siblings, base));
        },
      ),
    );
  });
});

describe('createVersion', () => {
  const entryArb = fc.record(
    {
      node: fc.constantFrom(...'abcdefghijkl'.split('')),
      counter: fc.integer({ min: 1, max: 5 }),
      timestamp: fc.integer({ min: 0, max: 50 }),
    },
    { noNullPrototype: true },
  );
  const contextArb = (maxLength: number): fc.Arbitrary<VClock> =>
    fc
      .uniqueArray(entryArb, { selector: (e) => e.node, maxLength })
      .map((entries) => entries.sort((x, y) => (x.node < y.node ? -1 : 1)));

  it(`keeps the version clock at most ${MAX_CLOCK_ENTRIES} entries for any context a client can send`, () => {
    fc.assert(
      fc.property(contextArb(MAX_CLOCK_ENTRIES), fc.constantFrom(...'abcdefghijklm'.split('')), (context, node) => {
        const v = createVersion(node, counterOf(context, node) + 1, 99, context, null);
        assert.ok(clockOf(v).length <= MAX_CLOCK_ENTRIES, `${clockOf(v).length} entries`);
      }),
    );
  });

  it(`keeps the version clock at most ${MAX_CLOCK_ENTRIES} entries even over a longer context`, () => {
    // A context of 11 entries (one more than a decoded context may hold, as a merge of contexts can give) in which
    // the coordinator's own entry is the oldest.
    const context: VClock = 'abcdefghijk'.split('').map((node, i) => ({ node, counter: 1, timestamp: i }));
    const v = createVersion('a', 2, 99, context, null);
    assert.ok(clockOf(v).length <= MAX_CLOCK_ENTRIES, `${clockOf(v).length} entries`);
  });

  it('never supersedes a version that its unpruned context had not seen', () => {
    fc.assert(
      fc.property(contextArb(12), entryArb, entryArb, (context, dot, other) => {
        const v = createVersion(dot.node, counterOf(context, dot.node) + 1, dot.timestamp, context, null);
        const seen: Version = { dot: other, context: EMPTY_CLOCK, value: null };
        if (supersedes(v, seen)) assert.ok(covers(context, seen));
      }),
    );
  });

  it('stores the dot, the value and the context as given when the context is small', () => {
    const context: VClock = [{ node: 'a', counter: 2, timestamp: 5 }];
    const v = createVersion('b', 7, 40, context, bytes('hi'));
    assert.deepEqual(v.dot, { node: 'b', counter: 7, timestamp: 40 });
    assert.deepEqual(v.context, context);
    assert.deepEqual(v.value, bytes('hi'));
  });
});

describe('contextOf and contextCoversAll', () => {
  it('returns the empty clock for no siblings', () => {
    assert.deepEqual(contextOf([]), EMPTY_CLOCK);
  });

  it('covers every sibling of a replica', () => {
    fc.assert(
      fc.property(historyArb(5), ({ replicas }) => {
        for (const siblings of replicas) {
          const context = contextOf(siblings);
          for (const s of siblings) assert.ok(covers(context, s));
          assert.ok(contextCoversAll(context, siblings));
        }
      }),
    );
  });

  it('covers every sibling even when their merged clock has more than ten entries', () => {
    const old = write('a', 1, EMPTY_CLOCK, 'old', 1);
    const others = 'bcdefghijk'.split('').map((node, i) => write(node, 1, EMPTY_CLOCK, node, 10 + i));
    const recent = write('l', 1, contextOf(others), 'recent', 100);
    const siblings = resolve([old], [recent]).siblings;
    assert.deepEqual(dots(siblings), ['a:1', 'l:1']);
    assert.ok(contextCoversAll(contextOf(siblings), siblings));
  });

  it('lets a put over a fresh read replace every sibling even after more than ten coordinators wrote the key', () => {
    const old = write('a', 1, EMPTY_CLOCK, 'old', 1);
    const others = 'bcdefghijk'.split('').map((node, i) => write(node, 1, EMPTY_CLOCK, node, 10 + i));
    const recent = write('l', 1, contextOf(others), 'recent', 100);
    const siblings = resolve([old], [recent]).siblings;
    const put = write('m', 1, contextOf(siblings), 'put', 200);
    assert.deepEqual(dots(resolve(siblings, [put]).siblings), ['m:1']);
  });

  it('merges the siblings clocks into the context', () => {
    const a = write('x', 2, [{ node: 'y', counter: 1, timestamp: 1 }]);
    const b = write('z', 1, [{ node: 'y', counter: 3, timestamp: 3 }]);
    assert.deepEqual(
      contextOf([a, b]).map((e) => [e.node, e.counter]),
      [
        ['x', 2],
        ['y', 3],
        ['z', 1],
      ],
    );
  });

  it('says a context covers all siblings only when it has seen every dot', () => {
    const a = write('x', 1, EMPTY_CLOCK);
    const b = write('y', 2, EMPTY_CLOCK);
    assert.ok(contextCoversAll(contextOf([a, b]), [a, b]));
    assert.ok(!contextCoversAll(contextOf([a]), [a, b]));
    assert.ok(!contextCoversAll([{ node: 'y', counter: 1, timestamp: 0 }], [b]));
    assert.ok(contextCoversAll(EMPTY_CLOCK, []));
  });
});

describe('liveSiblings', () => {
  it('leaves out tombstones', () => {
    const live = write('x', 1, EMPTY_CLOCK);
    const tomb = createVersion('y', 1, 1, EMPTY_CLOCK, null);
    assert.deepEqual(dots(liveSiblings([live, tomb])), ['x:1']);
  });
});
