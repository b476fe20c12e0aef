/**
 * Who this tab is. The node id lives in `sessionStorage`, so a reload restarts the same node on its data; a Web Lock
 * on the id keeps a duplicated tab (which copies `sessionStorage`) from running that node twice: the duplicate
 * finds the lock held and becomes a new node. The failure domain lives in `localStorage`, shared by every tab of a
 * browser profile, so that replicas of a key land in different profiles first.
 */

/** This tab's node identity, held until {@link Identity.release}. */
export interface Identity {
  readonly nodeId: string;
  readonly domain: string;
  /** Releases the Web Lock on the id. Idempotent. */
  release(): void;
}

/** Options of {@link claimIdentity}. */
export interface IdentityOptions {
  readonly cluster: string;
  /**
   * How long to wait for the lock of the stored id before taking a new id: a reload may still hold it, and a busy
   * machine can take seconds to unload the old page. @default 5000
   */
  readonly lockWaitMs?: number;
}

const ID_BYTES = 9;

/** A random id of `[A-Za-z0-9_-]`. */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(ID_BYTES));
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_');
}

/** Claims this tab's node id and domain for `cluster`. */
export async function claimIdentity(options: IdentityOptions): Promise<Identity> {
  const idKey = `dynamesh:${options.cluster}:node-id`;
  const domainKey = 'dynamesh:domain';
  let domain = localStorage.getItem(domainKey);
  if (domain === null || !/^[A-Za-z0-9_-]{1,64}$/.test(domain)) {
    domain = randomId();
    localStorage.setItem(domainKey, domain);
  }
  const stored = sessionStorage.getItem(idKey);
  if (stored !== null && /^[A-Za-z0-9_-]{1,64}$/.test(stored)) {
    const release = await lock(`dynamesh:${options.cluster}:${stored}`, options.lockWaitMs ?? 5000);
    if (release !== null) return { nodeId: stored, domain, release };
  }
  for (;;) {
    const nodeId = randomId();
    const release = await lock(`dynamesh:${options.cluster}:${nodeId}`, 0);
    if (release === null) continue;
    sessionStorage.setItem(idKey, nodeId);
    return { nodeId, domain, release };
  }
}

/** Takes the Web Lock `name`, waiting up to `waitMs`; resolves to its release function, or null if it is held. */
function lock(name: string, waitMs: number): Promise<(() => void) | null> {
  return new Promise((resolve, reject) => {
    let release!: () => void;
    const held = new Promise<void>((done) => {
      release = done;
    });
    const options: LockOptions = waitMs > 0 ? { signal: AbortSignal.timeout(waitMs) } : { ifAvailable: true };
    navigator.locks
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
