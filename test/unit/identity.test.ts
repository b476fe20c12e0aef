/**
 * Which node a starting tab runs: its own after a reload, else a node the profile ran before that no tab runs, else a
 * new one; and which long-unused nodes it retires. On fakes of the browser's Web Locks, storages and database list,
 * shared by the tabs of one profile as the browser shares them.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  type Identity,
  type IdentityEnv,
  claimIdentity,
  nodeDatabase,
  readRegistry,
  registryKey,
  retireStale,
} from '../../client/identity.ts';

const CLUSTER = 'c';
const DAY = 24 * 3600 * 1000;

/** Exclusive Web Locks as the browser grants them: in request order; `ifAvailable` only when none is held or queued. */
class FakeLocks {
  readonly #held = new Set<string>();
  readonly #queues = new Map<string, (() => void)[]>();

  request<T>(
    name: string,
    optionsOrCallback: LockOptions | ((lock: Lock | null) => T),
    maybeCallback?: (lock: Lock | null) => T,
  ): Promise<Awaited<T>> {
    const options = typeof optionsOrCallback === 'function' ? {} : optionsOrCallback;
    const callback = (typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback)!;
    const queue = this.#queues.get(name) ?? [];
    this.#queues.set(name, queue);
    const run = async (): Promise<Awaited<T>> => {
      try {
        return await callback({ name, mode: 'exclusive' } as Lock);
      } finally {
        this.#held.delete(name);
        queue.shift()?.();
      }
    };
    if (!this.#held.has(name) && queue.length === 0) {
      this.#held.add(name);
      return run();
    }
    if (options.ifAvailable === true) return Promise.resolve(callback(null)) as Promise<Awaited<T>>;
    return new Promise<Awaited<T>>((resolve, reject) => {
      const grant = (): void => {
        options.signal?.removeEventListener('abort', abort);
        this.#held.add(name);
        run().then(resolve, reject);
      };
      const abort = (): void => {
        queue.splice(queue.indexOf(grant), 1);
        reject(options.signal!.reason);
      };
      options.signal?.addEventListener('abort', abort, { once: true });
      queue.push(grant);
    });
  }

  held(name: string): boolean {
    return this.#held.has(name);
  }
}

class FakeStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

/** One browser profile: its locks, `localStorage`, databases and clock, shared by its tabs. */
class Profile {
  readonly locks = new FakeLocks();
  readonly local = new FakeStorage();
  readonly databases = new Set<string>();
  /** Ids the profile can no longer join as (their key is gone). */
  readonly unusable = new Set<string>();
  now = 100 * DAY;

  /** A tab's view of the profile; `session` is the tab's own `sessionStorage` (copied by a duplicated tab). */
  tab(session = new FakeStorage()): IdentityEnv & { session: FakeStorage } {
    return {
      locks: this.locks,
      localStorage: this.local,
      sessionStorage: session,
      session,
      databases: async () => [...this.databases],
      now: () => this.now,
      usable: async (_cluster, id) => !this.unusable.has(id),
    };
  }

  /** Claims an id as a tab starting with `session`, and creates its database as the tab's worker does. */
  async start(session?: FakeStorage, lockWaitMs = 50): Promise<Identity> {
    const identity = await claimIdentity({ cluster: CLUSTER, lockWaitMs }, this.tab(session));
    opened.push(identity);
    this.databases.add(nodeDatabase(CLUSTER, identity.nodeId));
    return identity;
  }

  registry(): Map<string, number> {
    return readRegistry(this.tab(), CLUSTER);
  }

  remember(entries: Record<string, number>, withDatabases = true): void {
    this.local.setItem(registryKey(CLUSTER), JSON.stringify(entries));
    if (withDatabases) for (const id of Object.keys(entries)) this.databases.add(nodeDatabase(CLUSTER, id));
  }
}

/** Every identity a test claimed, released after it (each keeps a timer). */
const opened: Identity[] = [];
afterEach(() => {
  for (const identity of opened.splice(0)) identity.release();
});

/** Lets the fire-and-forget registry update of a release run. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

describe('claiming a node id', () => {
  it('runs the node of a closed tab again in the next new tab, on its database', async () => {
    const profile = new Profile();
    const first = await profile.start();
    first.release();
    await settle();
    const next = await profile.start();
    assert.equal(next.nodeId, first.nodeId);
    assert.deepEqual([...profile.registry().keys()], [first.nodeId]);
  });

  it('mints a new id only when every remembered node runs, and loses no entry when tabs start at once', async () => {
    const profile = new Profile();
    const tabs = await Promise.all([profile.start(), profile.start(), profile.start()]);
    const ids = tabs.map((t) => t.nodeId);
    assert.equal(new Set(ids).size, 3);
    assert.deepEqual([...profile.registry().keys()].sort(), [...ids].sort());
    // A browser restart: every tab is gone, and as many start again, onto the same three nodes.
    for (const tab of tabs) tab.release();
    await settle();
    const again = await Promise.all([profile.start(), profile.start(), profile.start()]);
    assert.deepEqual(again.map((t) => t.nodeId).sort(), [...ids].sort());
    assert.equal(profile.databases.size, 3);
  });

  it('prefers the most recently used free node', async () => {
    const profile = new Profile();
    profile.remember({ older: profile.now - 3000, newest: profile.now - 1000, middle: profile.now - 2000 });
    assert.equal((await profile.start()).nodeId, 'newest');
    assert.equal((await profile.start()).nodeId, 'middle');
    assert.equal((await profile.start()).nodeId, 'older');
    assert.equal(profile.registry().get('older'), profile.now);
  });

  it('never runs a remembered node whose database is gone, and forgets it', async () => {
    const profile = new Profile();
    profile.remember({ cleared: profile.now - 1000 }, false);
    const tab = await profile.start();
    assert.notEqual(tab.nodeId, 'cleared');
    assert.deepEqual([...profile.registry().keys()], [tab.nodeId]);
  });

  it('keeps a remembered node whose database does not exist yet while a starting tab holds it', async () => {
    const profile = new Profile();
    const env = profile.tab();
    // Claimed, but its worker has not opened the database yet.
    const starting = await claimIdentity({ cluster: CLUSTER }, env);
    opened.push(starting);
    const other = await profile.start();
    assert.notEqual(other.nodeId, starting.nodeId);
    assert.deepEqual([...profile.registry().keys()].sort(), [starting.nodeId, other.nodeId].sort());
  });

  it('adopts the databases of nodes the registry lacks (made by earlier versions) and runs them', async () => {
    const profile = new Profile();
    profile.databases.add(nodeDatabase(CLUSTER, 'legacy'));
    profile.databases.add(nodeDatabase('other-cluster', 'foreign'));
    profile.databases.add('unrelated');
    assert.equal((await profile.start()).nodeId, 'legacy');
    assert.deepEqual([...profile.registry().keys()], ['legacy']);
  });

  it('does not run a remembered node it can no longer join as (its key is gone), and keeps it for retirement', async () => {
    const profile = new Profile();
    profile.remember({ lostkey: profile.now - 1000, other: profile.now - 2000 });
    profile.unusable.add('lostkey');
    const identity = await profile.start();
    assert.equal(identity.nodeId, 'other');
    assert.ok(profile.registry().has('lostkey'), 'forgotten: its data would never be handed over');
  });

  it('keeps its own id across a reload, waiting for the old page to let it go', async () => {
    const profile = new Profile();
    const session = new FakeStorage();
    const old = await profile.start(session);
    const reloading = profile.start(session, 5000);
    await settle();
    old.release();
    assert.equal((await reloading).nodeId, old.nodeId);
  });

  it('makes a duplicated tab another node, even when the original runs a remembered one', async () => {
    const profile = new Profile();
    profile.remember({ remembered: profile.now - 1000 });
    const session = new FakeStorage();
    const original = await profile.start(session);
    assert.equal(original.nodeId, 'remembered');
    const copy = new FakeStorage();
    for (const [k, v] of session.items) copy.setItem(k, v);
    const duplicate = await profile.start(copy);
    assert.notEqual(duplicate.nodeId, original.nodeId);
    assert.equal(copy.getItem(`dynamesh:${CLUSTER}:node-id`), duplicate.nodeId);
  });

  it('does not run its own id again once its database is gone (retired meanwhile)', async () => {
    const profile = new Profile();
    const session = new FakeStorage();
    const old = await profile.start(session);
    old.release();
    await settle();
    profile.databases.delete(nodeDatabase(CLUSTER, old.nodeId));
    const reloaded = await profile.start(session);
    assert.notEqual(reloaded.nodeId, old.nodeId);
    assert.equal(profile.registry().has(old.nodeId), false);
  });

  it('records the running node as used until it is released', async () => {
    const profile = new Profile();
    const identity = await claimIdentity({ cluster: CLUSTER, touchIntervalMs: 5 }, profile.tab());
    opened.push(identity);
    profile.now += DAY;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(profile.registry().get(identity.nodeId), profile.now);
    profile.now += 1;
    identity.release();
    await settle();
    assert.equal(profile.registry().get(identity.nodeId), profile.now);
    assert.equal(profile.locks.held(nodeDatabase(CLUSTER, identity.nodeId)), false);
  });
});

describe('retiring unused nodes', () => {
  it('retires nodes unused for longer than retireAfter that no tab runs, oldest first, and forgets them', async () => {
    const profile = new Profile();
    profile.remember({ ancient: profile.now - 30 * DAY, stale: profile.now - 8 * DAY, recent: profile.now - DAY });
    const self = await profile.start();
    assert.equal(self.nodeId, 'recent');
    const other = await profile.start();
    assert.equal(other.nodeId, 'stale');
    profile.remember({ ...Object.fromEntries(profile.registry()), idle: profile.now - 9 * DAY, stale: 0 });
    const retiredDatabases: string[] = [];
    const retired = await retireStale(
      {
        cluster: CLUSTER,
        self: self.nodeId,
        retireAfter: 7 * DAY,
        retire: async (database) => {
          retiredDatabases.push(database);
          profile.databases.delete(database);
        },
      },
      profile.tab(),
    );
    // `stale` is old on paper but another tab runs it; `recent` is this tab's.
    assert.deepEqual(retired, ['ancient', 'idle']);
    assert.deepEqual(retiredDatabases, [nodeDatabase(CLUSTER, 'ancient'), nodeDatabase(CLUSTER, 'idle')]);
    assert.deepEqual([...profile.registry().keys()].sort(), ['recent', 'stale']);
  });

  it('forgets a stale node whose database is already gone without handing anything over', async () => {
    const profile = new Profile();
    profile.remember({ gone: profile.now - 8 * DAY }, false);
    let called = false;
    const retired = await retireStale(
      {
        cluster: CLUSTER,
        self: 'me',
        retireAfter: 7 * DAY,
        retire: async () => {
          called = true;
        },
      },
      profile.tab(),
    );
    assert.deepEqual(retired, ['gone']);
    assert.equal(called, false);
    assert.equal(profile.registry().size, 0);
  });

  it('keeps a node whose hand-over failed, for a later tab to retire', async () => {
    const profile = new Profile();
    profile.remember({ old: profile.now - 8 * DAY });
    await assert.rejects(
      retireStale(
        {
          cluster: CLUSTER,
          self: 'me',
          retireAfter: 7 * DAY,
          retire: async () => {
            throw new Error('the worker closed');
          },
        },
        profile.tab(),
      ),
    );
    assert.equal(profile.registry().has('old'), true);
    assert.equal(profile.locks.held(nodeDatabase(CLUSTER, 'old')), false);
  });
});
