import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  compare,
  counterOf,
  descends,
  EMPTY_CLOCK,
  increment,
  isWellFormed,
  MAX_CLOCK_ENTRIES,
  merge,
  mergeAll,
  prune,
  setEntry,
  type ClockEntry,
  type VClock,
} from '../../worker/versions/vclock.ts';

/** Twelve node ids, more than a clock keeps, so that clocks overlap often and pruning has work to do. */
const NODES = 'abcdefghijkl'.split('');

/** A clock in the shape vclock.ts keeps: sorted by node, one entry per node, positive counters. */
const clockArb: fc.Arbitrary<VClock> = fc
  .uniqueArray(
    fc.record(
      {
        node: fc.constantFrom(...NODES),
        counter: fc.integer({ min: 1, max: 4 }),
        timestamp: fc.integer({ min: 0, max: 20 }),
      },
      { noNullPrototype: true },
    ),
    { selector: (e) => e.node, maxLength: NODES.length },
  )
  .map((entries) => entries.sort((x, y) => (x.node < y.node ? -1 : 1)));

/** A clock of at most `max` entries, as every stored and shipped clock is once pruned. */
const boundedClockArb = (max: number): fc.Arbitrary<VClock> => clockArb.map((c) => prune(c, max));

/** `a` with at least one counter raised or node added: a clock that strictly descends `a`. */
const descendantArb = (a: VClock): fc.Arbitrary<VClock> =>
  clockArb
    .filter((extra) => extra.length > 0)
    .map((extra) =>
      merge(
        a,
        extra.map((e) => ({ ...e, counter: e.counter + counterOf(a, e.node) })),
      ),
    );

function entry(node: string, counter: number, timestamp = 0): ClockEntry {
  return { node, counter, timestamp };
}

describe('merge', () => {
  it('is commutative', () => {
    fc.assert(fc.property(clockArb, clockArb, (a, b) => assert.deepEqual(merge(a, b), merge(b, a))));
  });

  it('is associative', () => {
    fc.assert(
      fc.property(clockArb, clockArb, clockArb, (a, b, c) =>
        assert.deepEqual(merge(merge(a, b), c), merge(a, merge(b, c))),
      ),
    );
  });

  it('is idempotent', () => {
    fc.assert(fc.property(clockArb, (a) => assert.deepEqual(merge(a, a), a)));
  });

  it('descends both inputs and is descended by every clock that descends both', () => {
    fc.assert(
      fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
        const m = merge(a, b);
        assert.ok(descends(m, a) && descends(m, b));
        const above = mergeAll([a, b, c]);
        assert.ok(descends(above, m));
      }),
    );
  });

  it('produces a well-formed clock from well-formed clocks', () => {
    fc.assert(fc.property(clockArb, clockArb, (a, b) => assert.ok(isWellFormed(merge(a, b)))));
  });

  it('takes the larger counter of each node with its timestamp', () => {
    const merged = merge([entry('a', 3, 30), entry('b', 1, 5)], [entry('a', 2, 90), entry('c', 4, 7)]);
    assert.deepEqual(merged, [entry('a', 3, 30), entry('b', 1, 5), entry('c', 4, 7)]);
  });
});

describe('descends and compare', () => {
  it('says every clock descends itself and equals itself', () => {
    fc.assert(
      fc.property(clockArb, (a) => {
        assert.ok(descends(a, a));
        assert.equal(compare(a, a), 'equal');
      }),
    );
  });

  it('is antisymmetric: a is before b exactly when b is after a', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        assert.equal(compare(a, b) === 'before', compare(b, a) === 'after');
        assert.equal(compare(a, b) === 'after', compare(b, a) === 'before');
        assert.equal(compare(a, b) === 'concurrent', compare(b, a) === 'concurrent');
      }),
    );
  });

  it('puts a clock before each strict descendant of it', () => {
    fc.assert(
      fc.property(
        clockArb.chain((a) => fc.tuple(fc.constant(a), descendantArb(a))),
        ([a, b]) => {
          assert.equal(compare(a, b), 'before');
          assert.equal(compare(b, a), 'after');
        },
      ),
    );
  });

  it('treats a missing entry as a zero counter', () => {
    assert.ok(descends([entry('a', 1), entry('b', 2)], [entry('b', 2)]));
    assert.ok(!descends([entry('b', 2)], [entry('a', 1), entry('b', 2)]));
    assert.ok(descends([entry('a', 1)], EMPTY_CLOCK));
    assert.ok(!descends(EMPTY_CLOCK, [entry('a', 1)]));
  });

  it('calls clocks concurrent when each has a counter the other lacks', () => {
    assert.equal(compare([entry('a', 2), entry('b', 1)], [entry('a', 1), entry('c', 1)]), 'concurrent');
  });

  it('ignores timestamps when ordering clocks', () => {
    assert.equal(compare([entry('a', 1, 500)], [entry('a', 1, 3)]), 'equal');
    assert.equal(compare([entry('a', 1, 500)], [entry('a', 2, 3)]), 'before');
  });
});

describe('increment, setEntry and counterOf', () => {
  it('starts an absent node at counter 1 with the given timestamp', () => {
    assert.deepEqual(increment([entry('a', 4, 1), entry('c', 1, 1)], 'b', 77), [
      entry('a', 4, 1),
      entry('b', 1, 77),
      entry('c', 1, 1),
    ]);
  });

  it('raises a present node by one and restamps it', () => {
    assert.deepEqual(increment([entry('a', 4, 1)], 'a', 9), [entry('a', 5, 9)]);
  });

  it('makes the incremented clock strictly after the original', () => {
    fc.assert(
      fc.property(clockArb, fc.constantFrom(...NODES), fc.nat(), (a, node, ts) => {
        const b = increment(a, node, ts);
        assert.equal(compare(b, a), 'after');
        assert.equal(counterOf(b, node), counterOf(a, node) + 1);
        assert.ok(isWellFormed(b));
      }),
    );
  });

  it('reports 0 for a node the clock does not hold', () => {
    assert.equal(counterOf([entry('a', 3)], 'b'), 0);
    assert.equal(counterOf(EMPTY_CLOCK, 'a'), 0);
    assert.equal(counterOf([entry('a', 3)], 'a'), 3);
  });

  it('keeps entries sorted and unique when setting one', () => {
    fc.assert(
      fc.property(clockArb, fc.constantFrom(...NODES), fc.integer({ min: 1, max: 9 }), (a, node, counter) => {
        const b = setEntry(a, entry(node, counter));
        assert.ok(isWellFormed(b));
        assert.equal(counterOf(b, node), counter);
        for (const e of a) if (e.node !== node) assert.equal(counterOf(b, e.node), e.counter);
      }),
    );
  });
});

describe('prune', () => {
  it(`keeps at most ${MAX_CLOCK_ENTRIES} entries by default, and every entry of a smaller clock`, () => {
    fc.assert(
      fc.property(clockArb, (a) => {
        const p = prune(a);
        assert.equal(p.length, Math.min(a.length, MAX_CLOCK_ENTRIES));
        if (a.length <= MAX_CLOCK_ENTRIES) assert.deepEqual(p, a);
      }),
    );
  });

  it('keeps the entries with the newest timestamps, unchanged and sorted by node', () => {
    fc.assert(
      fc.property(clockArb, fc.integer({ min: 0, max: 12 }), (a, max) => {
        const p = prune(a, max);
        assert.ok(isWellFormed(p));
        for (const e of p)
          assert.ok(a.some((x) => x.node === e.node && x.counter === e.counter && x.timestamp === e.timestamp));
        const dropped = a.filter((x) => !p.some((e) => e.node === x.node));
        for (const d of dropped) for (const e of p) assert.ok(d.timestamp <= e.timestamp);
      }),
    );
  });

  it('breaks timestamp ties by node id, so every replica drops the same entries', () => {
    const clock = [entry('a', 1, 5), entry('b', 1, 5), entry('c', 1, 5)];
    assert.deepEqual(prune(clock, 2), [entry('a', 1, 5), entry('b', 1, 5)]);
    assert.deepEqual(
      prune(
        [...clock].reverse().sort((x, y) => (x.node < y.node ? -1 : 1)),
        2,
      ),
      prune(clock, 2),
    );
  });

  it('never turns before into after between clocks of at most the pruned size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }).chain((max) =>
          fc.tuple(
            fc.constant(max),
            boundedClockArb(max).chain((a) => fc.tuple(fc.constant(a), descendantArb(a))),
          ),
        ),
        ([max, [a, b]]) => {
          const pa = prune(a, max);
          const pb = prune(b, max);
          assert.notEqual(compare(pa, pb), 'after');
          assert.notEqual(compare(a, pb), 'after');
          assert.notEqual(compare(pa, b), 'after');
        },
      ),
    );
  });

  it('makes a clock descend less, never more', () => {
    fc.assert(
      fc.property(clockArb, clockArb, fc.integer({ min: 0, max: 12 }), (a, b, max) => {
        if (descends(prune(a, max), b)) assert.ok(descends(a, b));
        assert.ok(descends(a, prune(a, max)));
      }),
    );
  });
});

describe('isWellFormed', () => {
  it('rejects unsorted, repeated, zero or fractional entries', () => {
    assert.ok(isWellFormed([entry('a', 1), entry('b', 2)]));
    assert.ok(!isWellFormed([entry('b', 1), entry('a', 2)]));
    assert.ok(!isWellFormed([entry('a', 1), entry('a', 2)]));
    assert.ok(!isWellFormed([entry('a', 0)]));
    assert.ok(!isWellFormed([entry('a', 1.5)]));
    assert.ok(!isWellFormed([entry('a', 1, Number.NaN)]));
  });
});
