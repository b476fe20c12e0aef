import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type FinalKey, type StoredVersion, type WriteRecord, check } from './checker.ts';

/** A put record; acknowledged with W = 2 unless told otherwise. */
function put(id: string, parents: string[] = [], extra: Partial<WriteRecord> = {}): WriteRecord {
  return { id, kind: 'put', key: 'k', parents, w: 2, outcome: 'ok', ...extra };
}

function del(id: string, parents: string[], extra: Partial<WriteRecord> = {}): WriteRecord {
  return { id, kind: 'delete', key: 'k', parents, w: 2, outcome: 'ok', ...extra };
}

/** Key `k` as three replicas that all hold `versions`, read back as `values`. */
function finalKey(values: string[], versions: StoredVersion[] = []): FinalKey {
  return {
    key: 'k',
    values,
    replicas: ['n1', 'n2', 'n3'].map((node) => ({ node, versions })),
  };
}

describe('checker: lost writes', () => {
  it('reports an acknowledged put that no final value descends from as lost', () => {
    const verdict = check([put('a')], [finalKey([])]);
    assert.deepEqual(
      verdict.lost.map((l) => l.id),
      ['a'],
    );
    assert.equal(verdict.acknowledged, 1);
  });

  it('does not report a put that a surviving read-modify-write superseded', () => {
    const verdict = check([put('a'), put('b', ['a'])], [finalKey(['b'])]);
    assert.deepEqual(verdict.lost, []);
  });

  it('follows supersession transitively through a chain of writes', () => {
    const verdict = check([put('a'), put('b', ['a']), put('c', ['b'])], [finalKey(['c'])]);
    assert.deepEqual(verdict.lost, []);
  });

  it('reports a collapsed concurrent sibling as a lost sibling', () => {
    const verdict = check([put('a'), put('b')], [finalKey(['b'])]);
    assert.deepEqual(
      verdict.siblingsLost.map((l) => l.id),
      ['a'],
    );
    assert.deepEqual(verdict.siblingsLost[0]!.finalValues, ['b']);
  });

  it('does not report a put that an acknowledged delete superseded', () => {
    const verdict = check([put('a'), del('d', ['a'])], [finalKey([])]);
    assert.deepEqual(verdict.lost, []);
  });

  it('excuses a put superseded by a delete that may have been stored although it failed', () => {
    const verdict = check([put('a'), del('d', ['a'], { outcome: 'unknown' })], [finalKey([])]);
    assert.deepEqual(verdict.lost, []);
  });

  it('does not excuse a put by a delete that was refused before anything was stored', () => {
    const verdict = check([put('a'), del('d', ['a'], { outcome: 'failed' })], [finalKey([])]);
    assert.deepEqual(
      verdict.lost.map((l) => l.id),
      ['a'],
    );
  });

  it('does not require writes acknowledged with W = 1 or never acknowledged to survive', () => {
    const verdict = check(
      [put('a', [], { w: 1 }), put('b', [], { outcome: 'unknown' }), put('c', [], { outcome: 'failed' })],
      [finalKey([])],
    );
    assert.equal(verdict.acknowledged, 0);
    assert.deepEqual(verdict.lost, []);
  });

  it('does not let a surviving write of another key explain a lost one', () => {
    const other: WriteRecord = { ...put('b', ['a']), key: 'other' };
    const verdict = check([put('a'), other], [finalKey([]), { key: 'other', values: ['b'], replicas: [] }]);
    assert.deepEqual(
      verdict.lost.map((l) => l.id),
      ['a'],
    );
  });
});

describe('checker: resurrections and phantoms', () => {
  it('reports a value that an acknowledged delete superseded and that is returned again', () => {
    const verdict = check([put('a', [], { end: 10 }), del('d', ['a'], { readAt: 20 })], [finalKey(['a'])]);
    assert.deepEqual(verdict.resurrected, [{ id: 'a', key: 'k', supersededBy: 'd', by: 'value' }]);
  });

  it('does not count a put still in flight during the delete read as resurrected', () => {
    const verdict = check([put('a', [], { end: 30 }), del('d', ['a'], { readAt: 20 })], [finalKey(['a'])]);
    assert.deepEqual(verdict.resurrected, []);
  });

  it('does not count a copy of a value that the delete never saw as resurrected', () => {
    const copy: StoredVersion = { node: 'n2', counter: 9, value: 'a' };
    const deletion = del('d', ['a'], { readAt: 20, coordinator: 'n3', supersedes: [{ node: 'n1', counter: 4 }] });
    const verdict = check([put('a', [], { end: 10 }), deletion], [finalKey(['a'], [copy])]);
    assert.deepEqual(verdict.resurrected, []);
  });

  it('counts a value as resurrected when a stored copy is one the delete saw', () => {
    const copy: StoredVersion = { node: 'n1', counter: 4, value: 'a' };
    const deletion = del('d', ['a'], { readAt: 20, coordinator: 'n3', supersedes: [{ node: 'n1', counter: 4 }] });
    const verdict = check([put('a', [], { end: 10 }), deletion], [finalKey(['a'], [copy])]);
    assert.deepEqual(verdict.resurrected, [{ id: 'a', key: 'k', supersededBy: 'd', by: 'value' }]);
  });

  it('reports a stored version whose dot an acknowledged write superseded', () => {
    const stale: StoredVersion = { node: 'n1', counter: 3, value: 'a' };
    const fresh: StoredVersion = { node: 'n2', counter: 1, value: 'b' };
    const verdict = check(
      [put('a'), put('b', [], { supersedes: [{ node: 'n1', counter: 3 }] })],
      [finalKey(['a', 'b'], [stale, fresh])],
    );
    assert.deepEqual(verdict.resurrected, [{ id: 'a', key: 'k', supersededBy: 'b', by: 'version n1:3' }]);
  });

  it('does not count a later dot of the same node as superseded', () => {
    const later: StoredVersion = { node: 'n1', counter: 4, value: 'a' };
    const verdict = check(
      [put('a'), put('b', [], { supersedes: [{ node: 'n1', counter: 3 }] })],
      [finalKey(['a'], [later])],
    );
    assert.deepEqual(verdict.resurrected, []);
  });

  it('reports a returned value that no write of that key produced as a phantom', () => {
    const other: WriteRecord = { ...put('b'), key: 'other' };
    const verdict = check([put('a'), other], [finalKey(['a', 'zz', 'b'])]);
    assert.deepEqual(verdict.phantoms, [
      { key: 'k', value: 'zz' },
      { key: 'k', value: 'b' },
    ]);
  });

  it('rejects a history in which two writes share an id', () => {
    assert.throws(() => check([put('a'), put('a')], []), /appears twice/);
  });
});

describe('checker: convergence', () => {
  it('reports a key whose replicas hold different sibling sets as divergent', () => {
    const v1: StoredVersion = { node: 'n1', counter: 1, value: 'a' };
    const v2: StoredVersion = { node: 'n2', counter: 1, value: 'b' };
    const key: FinalKey = {
      key: 'k',
      values: ['a', 'b'],
      replicas: [
        { node: 'n1', versions: [v1, v2] },
        { node: 'n2', versions: [v1, v2] },
        { node: 'n3', versions: [v1] },
      ],
    };
    const verdict = check([put('a'), put('b')], [key]);
    assert.equal(verdict.converged, false);
    assert.deepEqual(
      verdict.divergent.map((d) => d.key),
      ['k'],
    );
  });

  it('treats replicas holding the same dots in another order as converged', () => {
    const v1: StoredVersion = { node: 'n1', counter: 1, value: 'a' };
    const v2: StoredVersion = { node: 'n2', counter: 1, value: null };
    const key: FinalKey = {
      key: 'k',
      values: ['a'],
      replicas: [
        { node: 'n1', versions: [v1, v2] },
        { node: 'n2', versions: [v2, v1] },
      ],
    };
    const verdict = check([put('a')], [key]);
    assert.equal(verdict.converged, true);
  });
});

describe('checker: repeated dots', () => {
  const dot = (node: string, counter: number) => ({ dot: { node, counter } });

  it('reports two acknowledged writes that returned the same dot', () => {
    const v: StoredVersion = { node: 'n1', counter: 7, value: 'b' };
    const verdict = check([put('a', [], dot('n1', 7)), put('b', [], dot('n1', 7))], [finalKey(['b'], [v])]);
    assert.deepEqual(
      verdict.repeatedDots.map((r) => [r.dot, r.writes]),
      [['n1:7', ['a', 'b']]],
    );
  });

  it('reports one dot stored with two different values, or under two keys', () => {
    const a: StoredVersion = { node: 'n1', counter: 3, value: 'a' };
    const b: StoredVersion = { node: 'n1', counter: 3, value: 'b' };
    const split: FinalKey = {
      key: 'k',
      values: ['a', 'b'],
      replicas: [
        { node: 'n1', versions: [a] },
        { node: 'n2', versions: [b] },
      ],
    };
    assert.deepEqual(
      check([put('a'), put('b')], [split]).repeatedDots.map((r) => r.dot),
      ['n1:3'],
    );
    const other: FinalKey = { key: 'j', values: ['c'], replicas: [{ node: 'n1', versions: [{ ...a, value: 'c' }] }] };
    const twoKeys = check([put('a'), put('c', [], { key: 'j' })], [finalKey(['a'], [a]), other]);
    assert.deepEqual(
      twoKeys.repeatedDots.map((r) => r.writes),
      [['k=a', 'j=c']],
    );
  });

  it('reports a stored dot holding another value than the acknowledged write that returned it', () => {
    const stored: StoredVersion = { node: 'n2', counter: 5, value: 'x' };
    const verdict = check([put('a', [], dot('n2', 5)), put('x')], [finalKey(['a', 'x'], [stored])]);
    assert.deepEqual(
      verdict.repeatedDots.map((r) => [r.dot, r.writes]),
      [['n2:5', ['a', 'k=x']]],
    );
  });

  it('accepts one write stored under two dots, as a put retried inside the cluster may be', () => {
    const first: StoredVersion = { node: 'n1', counter: 1, value: 'a' };
    const second: StoredVersion = { node: 'n2', counter: 1, value: 'a' };
    const verdict = check([put('a', [], dot('n2', 1))], [finalKey(['a'], [first, second])]);
    assert.deepEqual(verdict.repeatedDots, []);
  });
});

describe('checker: refused writes', () => {
  it('reports a write that had to store nothing but is among the final values or replicas', () => {
    const stored: StoredVersion = { node: 'n1', counter: 1, value: 'f' };
    const forged = put('f', [], { outcome: 'failed', code: 'ERR_INVALID_ARGUMENT', storesNothing: true });
    assert.deepEqual(
      check([forged], [finalKey([], [stored])]).refusedStored.map((r) => [r.id, r.code]),
      [['f', 'ERR_INVALID_ARGUMENT']],
    );
  });

  it('holds every refused write to it only when told that no call could time out', () => {
    const stored: StoredVersion = { node: 'n1', counter: 1, value: 's' };
    const stale = put('s', [], { outcome: 'failed', code: 'ERR_STALE_CONTEXT' });
    assert.deepEqual(check([stale], [finalKey(['s'], [stored])]).refusedStored, []);
    assert.deepEqual(
      check([stale], [finalKey(['s'], [stored])], { strictRefusals: true }).refusedStored.map((r) => r.where),
      ['the final values'],
    );
  });

  it('does not let a delete that had to store nothing excuse the writes it read', () => {
    const forgedDelete = del('d', ['a'], { outcome: 'unknown', storesNothing: true });
    assert.deepEqual(
      check([put('a'), forgedDelete], [finalKey([])]).lost.map((l) => l.id),
      ['a'],
    );
  });
});
