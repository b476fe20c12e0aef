/**
 * Tombstone ages as a first owner keeps them: first-seen times by fingerprint, kept across passes, forgotten when a
 * pass no longer finds them, bounded by a cap that only ever delays a collection, and restored from a stored record.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TombstoneAges, tombstoneFingerprint } from '../../worker/membership/tombstone-ages.ts';
import { createVersion } from '../../worker/versions/version.ts';

const text = new TextEncoder();

/** The fingerprint of `key` holding one tombstone with dot `node:counter`. */
function fingerprint(key: string, node = 'a', counter = 1): string {
  return tombstoneFingerprint(text.encode(key), [createVersion(node, counter, 0, [], null)]);
}

describe('tombstoneFingerprint', () => {
  it('differs when the dots differ, and not when only their order or timestamps do', () => {
    const key = text.encode('k');
    const a = createVersion('a', 1, 0, [], null);
    const b = createVersion('b', 2, 0, [], null);
    assert.equal(tombstoneFingerprint(key, [a, b]), tombstoneFingerprint(key, [b, a]));
    assert.equal(tombstoneFingerprint(key, [a]), tombstoneFingerprint(key, [createVersion('a', 1, 999, [], null)]));
    assert.notEqual(tombstoneFingerprint(key, [a]), tombstoneFingerprint(key, [createVersion('a', 2, 0, [], null)]));
  });

  it('tells keys apart whose bytes would run into the dots', () => {
    assert.notEqual(
      tombstoneFingerprint(new Uint8Array([49]), [createVersion('a', 1, 0, [], null)]),
      tombstoneFingerprint(new Uint8Array([49, 58]), [createVersion('a', 1, 0, [], null)]),
    );
  });
});

describe('TombstoneAges', () => {
  it('keeps the first-seen time of a set a later pass finds again', () => {
    const ages = new TombstoneAges();
    ages.observe(3, [fingerprint('k')], 100);
    assert.equal(ages.observe(3, [fingerprint('k')], 900), false);
    assert.equal(ages.firstSeen(3, fingerprint('k')), 100);
  });

  it('forgets a set a pass no longer finds', () => {
    const ages = new TombstoneAges();
    ages.observe(3, [fingerprint('k'), fingerprint('j')], 100);
    assert.equal(ages.observe(3, [fingerprint('j')], 200), true);
    assert.equal(ages.firstSeen(3, fingerprint('k')), undefined);
    assert.equal(ages.size, 1);
  });

  it('past the cap, keeps the sets it tracks and leaves new ones out', () => {
    const ages = new TombstoneAges(2);
    ages.observe(1, [fingerprint('a')], 100);
    ages.observe(2, [fingerprint('b')], 200);
    ages.observe(2, [fingerprint('c'), fingerprint('b')], 300);
    assert.equal(ages.firstSeen(2, fingerprint('b')), 200);
    assert.equal(ages.firstSeen(2, fingerprint('c')), undefined);
    assert.equal(ages.size, 2);
  });

  it('takes a new set once a pass forgets one and makes room', () => {
    const ages = new TombstoneAges(1);
    ages.observe(1, [fingerprint('a')], 100);
    ages.observe(1, [fingerprint('b')], 200);
    assert.equal(ages.firstSeen(1, fingerprint('b')), 200);
  });

  it('restores a stored record with its times, skipping malformed entries', () => {
    const ages = new TombstoneAges();
    ages.observe(5, [fingerprint('k'), fingerprint('j')], 100);
    const restored = new TombstoneAges();
    restored.load(5, [...ages.record(5), ['x'], [fingerprint('z'), 'late'], 7]);
    assert.ok(restored.loaded(5));
    assert.deepEqual(restored.record(5).sort(), ages.record(5).sort());
    assert.equal(restored.firstSeen(5, fingerprint('k')), 100);
  });

  it('restores the earliest-seen entries of a record when it exceeds the cap', () => {
    const ages = new TombstoneAges(1);
    ages.load(5, [
      [fingerprint('late'), 300],
      [fingerprint('early'), 100],
    ]);
    assert.deepEqual(ages.record(5), [[fingerprint('early'), 100]]);
  });

  it('forgets a partition whole, and lists only partitions holding entries', () => {
    const ages = new TombstoneAges();
    ages.observe(1, [fingerprint('a')], 100);
    ages.observe(2, [], 100);
    assert.deepEqual(ages.partitions(), [1]);
    assert.equal(ages.forget(1), true);
    assert.equal(ages.forget(1), false);
    assert.equal(ages.size, 0);
  });
});
