/**
 * Who this tab is, and which nodes a browser profile runs. A node is an id and the IndexedDB database named after
 * cluster and id; the id outlives the tab so that its data does:
 * - The tab keeps the id it runs in `sessionStorage`, so a reload restarts the same node. A Web Lock named after the
 *   database is held while a tab runs the node: two tabs never run one node, and a duplicated tab (which copies
 *   `sessionStorage`) finds the lock held and becomes another node.
 * - The profile remembers, per cluster, every node id that ran in it and when it last ran (the registry, in
 *   `localStorage`, changed only under a Web Lock of its own so that concurrently starting tabs never lose an entry).
 *   A tab without an id of its own (a new tab, a restarted browser) claims the most recently used remembered id that
 *   no open tab holds, and mints a new one only when every remembered id is held: the profile runs at most as many
 *   nodes, and keeps as many databases, as it ever had tabs open at once.
 * - An id is run again only if its database still exists: a node's dot counter lives there, and a node that started
 *   over from counter 0 would reuse dots that the cluster already holds for older writes.
 * - A remembered node that no tab ran for longer than `retireAfter` is retired by a starting tab
 *   ({@link retireStale}): what it held is handed to the cluster, then its database and its entry are deleted.
 * The failure domain lives in `localStorage` too, shared by every tab of the profile, so that replicas of a key land
 * in different profiles first.
 */
import { NODE_ID_PATTERN } from '../worker/wire/protocol.ts';
import { toBase64url } from '../signaling/base64url.ts';
import { canSignFor, mintNodeKey } from './node-key.ts';

/** This tab's node identity, held until {@link Identity.release}. */
export interface Identity {
  readonly nodeId: string;
  readonly domain: string;
  /** Releases the Web Lock on the id, after recording that it ran until now. Idempotent. */
  release(): void;
}

/** Options of {@link claimIdentity}. */
export interface IdentityOptions {
  readonly cluster: string;
  /**
   * How long to wait for the lock of the tab's own id before taking another: a reload may still hold it, and a busy
   * machine can take seconds to unload the old page. @default 5000
   */
  readonly lockWaitMs?: number;
  /** Ms between updates of the running node's last-used time in the registry. @default 60000 */
  readonly touchIntervalMs?: number;
}

/** What identity uses of the browser: the page's own by default ({@link browserEnv}), fakes in unit tests. */
export interface IdentityEnv {
  readonly locks: Pick<LockManager, 'request'>;
  /** Shared by every tab of the profile: the registry and the failure domain. */
  readonly localStorage: Pick<Storage, 'getItem' | 'setItem'>;
  /** The tab's own: the id it runs, kept across reloads. */
  readonly sessionStorage: Pick<Storage, 'getItem' | 'setItem'>;
  /** The names of the origin's IndexedDB databases, or null when the browser cannot list them. */
  databases(): Promise<string[] | null>;
  /** Wall-clock ms. */
  now(): number;
  /**
   * Makes a new node's key and resolves to the id derived from it (node-key.ts, `mintNodeKey`), or to null when
   * the browser cannot; without it, or on null, a new node gets a random id.
   */
  mintId?(cluster: string): Promise<string | null>;
  /**
   * False for a remembered id this profile can no longer join as (derived from a key that is gone: node-key.ts,
   * `canSignFor`); such a node is not run again, and its data goes to the cluster when it is retired. Absent: every
   * id is usable.
   */
  usable?(cluster: string, id: string): Promise<boolean>;
}

/** The page's locks, storages, databases and clock. */
export function browserEnv(): IdentityEnv {
  return {
    locks: navigator.locks,
    localStorage,
    sessionStorage,
    async databases() {
      if (typeof indexedDB.databases !== 'function') return null;
      return (await indexedDB.databases()).flatMap((d) => (d.name === undefined ? [] : [d.name]));
    },
    now: () => Date.now(),
    mintId: mintNodeKey,
    usable: canSignFor,
  };
}

const ID_BYTES = 9;

/** A random id of `[A-Za-z0-9_-]`. */
export function randomId(): string {
  // Nine bytes are twelve characters, without padding.
  return toBase64url(crypto.getRandomValues(new Uint8Array(ID_BYTES)));
}

/** The IndexedDB database of node `id` of `cluster`; also the name of the Web Lock held by the tab running it. */
export function nodeDatabase(cluster: string, id: string): string {
  return `dynamesh:${cluster}:${id}`;
}

/** The `localStorage` key of the cluster's registry, and the name of the Web Lock under which it changes. */
export function registryKey(cluster: string): string {
  return `dynamesh:${cluster}:nodes`;
}

/** Remembered node ids of one cluster, each with when a tab last ran it (ms since the epoch). */
export type Registry = Map<string, number>;

/** Claims this tab's node id and domain for `cluster` (see the module comment for the order of choices). */
export async function claimIdentity(options: IdentityOptions, env: IdentityEnv = browserEnv()): Promise<Identity> {
  const { cluster } = options;
  const domainKey = 'dynamesh:domain';
  let domain = env.localStorage.getItem(domainKey);
  if (domain === null || !NODE_ID_PATTERN.test(domain)) {
    domain = randomId();
    env.localStorage.setItem(domainKey, domain);
  }
  const sessionKey = `dynamesh:${cluster}:node-id`;
  const own = env.sessionStorage.getItem(sessionKey);
  let claim: Claim | null = null;
  if (own !== null && NODE_ID_PATTERN.test(own)) {
    const release = await lock(env, nodeDatabase(cluster, own), options.lockWaitMs ?? 5000);
    if (release !== null)
      claim = await withRegistry(env, cluster, (registry) => keep(env, cluster, registry, own, release));
  }
  claim ??= await withRegistry(env, cluster, (registry) => claimRemembered(env, cluster, registry));
  env.sessionStorage.setItem(sessionKey, claim.id);
  return hold(env, cluster, claim, domain, options.touchIntervalMs ?? 60_000);
}

/** Options of {@link retireStale}. */
export interface RetireOptions {
  readonly cluster: string;
  /** The id this tab runs: never retired. */
  readonly self: string;
  /** Ms a remembered node must have gone unused to be retired. */
  readonly retireAfter: number;
  /**
   * Hands over what the node stored in `database` and deletes the database (the worker's `NodeHost.retire`). Called
   * with the node's lock held, so no tab runs it meanwhile.
   */
  readonly retire: (database: string) => Promise<void>;
  /** Stops before the next node (the store is closing). */
  readonly signal?: AbortSignal;
}

/**
 * Retires every remembered node of the cluster that no tab has run for longer than `retireAfter` and no tab holds:
 * hands over its data through `retire`, then forgets it. Resolves to the retired ids, oldest first.
 */
export async function retireStale(options: RetireOptions, env: IdentityEnv = browserEnv()): Promise<string[]> {
  const { cluster, self, retireAfter } = options;
  const stale = (registry: Registry, id: string): boolean => {
    const used = registry.get(id);
    return used !== undefined && env.now() - used > retireAfter;
  };
  const snapshot = readRegistry(env, cluster);
  const candidates = [...snapshot.keys()]
    .filter((id) => id !== self && stale(snapshot, id))
    .sort((a, b) => snapshot.get(a)! - snapshot.get(b)!);
  const retired: string[] = [];
  for (const id of candidates) {
    if (options.signal?.aborted === true) break;
    const release = await lock(env, nodeDatabase(cluster, id), 0);
    if (release === null) continue; // a tab runs it
    try {
      // Read again under its lock: a tab may have run it since the snapshot. Nobody can claim it while it is held.
      if (!stale(readRegistry(env, cluster), id)) continue;
      const databases = await clusterDatabases(env, cluster);
      if (databases === null || databases.has(id)) await options.retire(nodeDatabase(cluster, id));
      // Forgotten only once the database is gone: a tab that stops half way leaves an entry without a database,
      // which the next claim drops, or a database with an entry, which a later tab retires or runs (safe either way:
      // its dot counter is still in it).
      await withRegistry(env, cluster, (registry) => void registry.delete(id));
      retired.push(id);
    } finally {
      release();
    }
  }
  return retired;
}

/** Reads the cluster's registry; entries that are not an id with a time are left out. */
export function readRegistry(env: IdentityEnv, cluster: string): Registry {
  const registry: Registry = new Map();
  let parsed: unknown;
  try {
    parsed = JSON.parse(env.localStorage.getItem(registryKey(cluster)) ?? '{}');
  } catch {
    return registry;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return registry;
  for (const [id, used] of Object.entries(parsed)) {
    if (NODE_ID_PATTERN.test(id) && typeof used === 'number' && Number.isFinite(used)) registry.set(id, used);
  }
  return registry;
}

/** Runs `change` on the registry under its Web Lock and saves the registry it leaves. */
async function withRegistry<T>(
  env: IdentityEnv,
  cluster: string,
  change: (registry: Registry) => T | Promise<T>,
): Promise<T> {
  return env.locks.request(registryKey(cluster), async () => {
    const registry = readRegistry(env, cluster);
    const result = await change(registry);
    try {
      env.localStorage.setItem(registryKey(cluster), JSON.stringify(Object.fromEntries(registry)));
    } catch (error) {
      // A full localStorage must not keep the tab from running: an unrecorded node's database is adopted later.
      console.warn('dynamesh: could not save the node registry', error);
    }
    return result;
  });
}

/** Runs `step` while holding a lock just taken; should it fail, the lock is released before the error goes on. */
async function releasingOnError<T>(release: () => void, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    release();
    throw error;
  }
}

/** The ids of the cluster's node databases, or null when the browser cannot list databases. */
async function clusterDatabases(env: IdentityEnv, cluster: string): Promise<Set<string> | null> {
  const names = await env.databases();
  if (names === null) return null;
  const prefix = nodeDatabase(cluster, '');
  const ids = new Set<string>();
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const id = name.slice(prefix.length);
    if (NODE_ID_PATTERN.test(id)) ids.add(id);
  }
  return ids;
}

/** A node id and the release of its lock. */
interface Claim {
  readonly id: string;
  readonly release: () => void;
}

/**
 * Keeps the tab's own id, whose lock it holds, if its database exists (or the browser cannot tell); otherwise lets
 * it go: it was retired, or its data was cleared, and running it again would reuse dots.
 */
async function keep(
  env: IdentityEnv,
  cluster: string,
  registry: Registry,
  id: string,
  release: () => void,
): Promise<Claim | null> {
  const databases = await releasingOnError(release, () => clusterDatabases(env, cluster));
  if (databases !== null && !databases.has(id)) {
    registry.delete(id);
    release();
    return null;
  }
  if (!(await releasingOnError(release, () => usable(env, cluster, id)))) {
    release();
    return null;
  }
  registry.set(id, env.now());
  return { id, release };
}

/**
 * Under the registry's lock: adopts databases the registry lacks (made by versions that had none, or forgotten
 * after a failed save), claims the most recently used remembered id that no tab holds and whose database exists,
 * drops free ids whose database is gone, and mints a new id only when every remembered one is held: derived from a
 * key made for it when the browser can (node-key.ts), else random.
 */
async function claimRemembered(env: IdentityEnv, cluster: string, registry: Registry): Promise<Claim> {
  const databases = await clusterDatabases(env, cluster);
  for (const id of databases ?? []) if (!registry.has(id)) registry.set(id, env.now());
  const byRecentUse = [...registry.keys()].sort((a, b) => registry.get(b)! - registry.get(a)!);
  for (const id of byRecentUse) {
    const release = await lock(env, nodeDatabase(cluster, id), 0);
    if (release === null) continue; // a tab runs it, or has just minted it
    // Checked again now that the lock is held: a database is deleted only by a tab that holds its lock.
    const now = await releasingOnError(release, () => clusterDatabases(env, cluster));
    if (now !== null && !now.has(id)) {
      registry.delete(id);
      release();
      continue;
    }
    if (!(await releasingOnError(release, () => usable(env, cluster, id)))) {
      // Its data stays, for a later tab to hand to the cluster when it retires the node (no key is needed for that).
      release();
      continue;
    }
    registry.set(id, env.now());
    return { id, release };
  }
  for (;;) {
    const id = (await env.mintId?.(cluster)) ?? randomId();
    if (registry.has(id) || databases?.has(id) === true) continue;
    const release = await lock(env, nodeDatabase(cluster, id), 0);
    if (release === null) continue;
    registry.set(id, env.now());
    return { id, release };
  }
}

/** Whether this profile can still join as `id` (see {@link IdentityEnv.usable}). */
function usable(env: IdentityEnv, cluster: string, id: string): Promise<boolean> {
  return env.usable?.(cluster, id) ?? Promise.resolve(true);
}

/** The identity of a claimed id: records its use now, every `touchMs` while it runs, and on release. */
function hold(env: IdentityEnv, cluster: string, claim: Claim, domain: string, touchMs: number): Identity {
  // While the lock is held the entry is this tab's to write; once released, a retirement may have removed it.
  const touch = (holding: boolean): void => {
    withRegistry(env, cluster, (registry) => {
      if (holding || registry.has(claim.id)) registry.set(claim.id, env.now());
    }).catch((error: unknown) => {
      console.warn('dynamesh: could not record the node as used', error);
    });
  };
  const timer = setInterval(() => touch(true), touchMs);
  // A closing tab does not close its store: the last chance to say it ran until now (best effort, it may not finish).
  const onPageHide = (): void => touch(true);
  globalThis.addEventListener?.('pagehide', onPageHide);
  let released = false;
  return {
    nodeId: claim.id,
    domain,
    release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      globalThis.removeEventListener?.('pagehide', onPageHide);
      touch(false);
      claim.release();
    },
  };
}

/** Takes the Web Lock `name`, waiting up to `waitMs`; resolves to its release function, or null if it is held. */
function lock(env: IdentityEnv, name: string, waitMs: number): Promise<(() => void) | null> {
  return new Promise((resolve, reject) => {
    let release!: () => void;
    const held = new Promise<void>((done) => {
      release = done;
    });
    const options: LockOptions = waitMs > 0 ? { signal: AbortSignal.timeout(waitMs) } : { ifAvailable: true };
    env.locks
      .request(name, options, (granted) => {
        if (granted === null) {
          resolve(null);
          return undefined;
        }
        let released = false;
        resolve(() => {
          if (!released) {
            released = true;
            release();
          }
        });
        return held;
      })
      .catch((error: unknown) => {
        if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError'))
          resolve(null);
        else reject(error);
      });
  });
}
