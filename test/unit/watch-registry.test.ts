/** The watches a node serves for others: sets replaced whole, matched by key and prefix, under a lease, bounded. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WatchRegistry } from '../../worker/watch/registry.ts';

const text = new TextEncoder();
const key = (k: string): Uint8Array => text.encode(k);

describe('WatchRegistry', () => {
  it('names the watchers of a key and of its prefixes, once each', () => {
    const registry = new WatchRegistry();
    registry.register('w1', [{ key: key('user/1'), prefix: false }], 30_000, 0);
    registry.register(
      'w2',
      [
        { key: key('user/'), prefix: true },
        { key: key('u'), prefix: true },
      ],
      30_000,
      0,
    );
    registry.register('w3', [{ key: key('user/2'), prefix: false }], 30_000, 0);
    assert.deepEqual(registry.watchersOf(key('user/1'), 1).sort(), ['w1', 'w2']);
    assert.deepEqual(registry.watchersOf(key('other'), 1), []);
  });

  it('replaces a watcher set whole, and an empty set ends its watches', () => {
    const registry = new WatchRegistry();
    registry.register('w1', [{ key: key('a'), prefix: false }], 30_000, 0);
    registry.register('w1', [{ key: key('b'), prefix: false }], 30_000, 0);
    assert.deepEqual(registry.watchersOf(key('a'), 1), []);
    assert.deepEqual(registry.watchersOf(key('b'), 1), ['w1']);
    registry.register('w1', [], 30_000, 0);
    assert.deepEqual(registry.watchersOf(key('b'), 1), []);
    assert.equal(registry.targets, 0);
  });

  it('lets a set lapse at the end of its lease unless it is sent again', () => {
    const registry = new WatchRegistry();
    registry.register('w1', [{ key: key('a'), prefix: false }], 1000, 0);
    registry.register('w2', [{ key: key('a'), prefix: false }], 1000, 0);
    registry.register('w2', [{ key: key('a'), prefix: false }], 1000, 900);
    assert.deepEqual(registry.watchersOf(key('a'), 999).sort(), ['w1', 'w2']);
    assert.deepEqual(registry.watchersOf(key('a'), 1000), ['w2']);
    assert.equal(registry.sweep(1900), 1);
    assert.equal(registry.watchers, 0);
  });

  it('refuses a set that would pass the bound of targets, dropping the watcher set it replaced', () => {
    const registry = new WatchRegistry({ maxTargets: 3 });
    assert.ok(registry.register('w1', [{ key: key('a'), prefix: false }], 30_000, 0));
    assert.ok(registry.register('w2', [{ key: key('b'), prefix: false }], 30_000, 0));
    const three = ['c', 'd', 'e'].map((k) => ({ key: key(k), prefix: false }));
    assert.equal(registry.register('w2', three.concat(three), 30_000, 0), false);
    assert.deepEqual(registry.watchersOf(key('b'), 1), []);
    assert.equal(registry.targets, 1);
    assert.ok(registry.register('w2', three.slice(0, 2), 30_000, 0));
  });
});
