/** The watcher's dedupe of notices: at least once from many owners, never back in time, concurrent ones merged. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Deliveries } from '../../worker/watch/deliveries.ts';
import { type Version, createVersion } from '../../worker/versions/version.ts';
import { clockOf } from '../../worker/versions/version.ts';

const text = new TextEncoder();
const key = text.encode('k');
const v1 = createVersion('a', 1, 1, [], text.encode('one'));
const v2 = createVersion('a', 2, 2, clockOf(v1), text.encode('two'));
const concurrent = createVersion('b', 1, 3, clockOf(v1), text.encode('other'));

const values = (siblings: readonly Version[] | null): string[] | null =>
  siblings === null ? null : siblings.map((v) => new TextDecoder().decode(v.value!)).sort();

describe('Deliveries', () => {
  it('delivers the first notice of a key and drops the same notice from the other owners', () => {
    const deliveries = new Deliveries();
    assert.deepEqual(values(deliveries.offer(key, [v1])), ['one']);
    assert.equal(deliveries.offer(key, [v1]), null);
    assert.equal(deliveries.offer(key.slice(), [v1]), null);
  });

  it('drops a notice older than the one last delivered', () => {
    const deliveries = new Deliveries();
    deliveries.offer(key, [v2]);
    assert.equal(deliveries.offer(key, [v1]), null);
  });

  it('delivers a newer notice', () => {
    const deliveries = new Deliveries();
    deliveries.offer(key, [v1]);
    assert.deepEqual(values(deliveries.offer(key, [v2])), ['two']);
  });

  it('merges a concurrent notice with the last delivered, as a get returns both siblings', () => {
    const deliveries = new Deliveries();
    deliveries.offer(key, [v2]);
    assert.deepEqual(values(deliveries.offer(key, [concurrent])), ['other', 'two']);
    assert.equal(deliveries.offer(key, [v2]), null);
  });

  it('delivers a delete as a tombstone after the value it supersedes', () => {
    const deliveries = new Deliveries();
    deliveries.offer(key, [v1]);
    const tombstone = createVersion('a', 2, 2, clockOf(v1), null);
    assert.deepEqual(deliveries.offer(key, [tombstone]), [tombstone]);
  });

  it('forgets the least recently delivered key past its bound', () => {
    const deliveries = new Deliveries({ maxKeys: 2 });
    deliveries.offer(text.encode('x'), [v1]);
    deliveries.offer(text.encode('y'), [v1]);
    deliveries.offer(text.encode('z'), [v1]);
    assert.equal(deliveries.size, 2);
    assert.notEqual(deliveries.offer(text.encode('x'), [v1]), null);
    assert.equal(deliveries.offer(text.encode('z'), [v1]), null);
  });
});
