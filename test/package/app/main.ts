// An app as a user of the published package writes it: it knows `dynamesh` only by its name, its exports map and
// its declarations. test/package/package.test.ts builds it with Vite and drives two tabs through `window.fixture`.
import { isUndecodable, openStore, type LogEntry, type Store, type StoreGetResult, type Value } from 'dynamesh';

/** What the test reaches from Playwright: the store, and calls that return plain, cloneable data. */
export interface Fixture {
  readonly store: Store;
  put(key: string, value: Value): Promise<string>;
  get(key: string): Promise<Value[]>;
  /** The node's log since the store opened, for a test that failed to show. */
  readonly logs: LogEntry[];
}

const params = new URLSearchParams(location.search);
const app = document.getElementById('app');

openStore({
  url: params.get('server') ?? location.origin,
  cluster: params.get('cluster') ?? 'fixture',
  // Two tabs: both hold every key, and a write needs both.
  n: 2,
  r: 2,
  w: 2,
}).then(
  (store) => {
    const render = (): void => {
      if (app !== null) app.textContent = `${store.nodeId}: ${store.members().length} members`;
    };
    store.on('membership', render);
    render();
    const logs: LogEntry[] = [];
    store.on('log', (entry) => logs.push(entry));
    const fixture: Fixture = {
      store,
      logs,
      put: async (key, value) => (await store.put(key, value)).context,
      get: async (key) => {
        const result: StoreGetResult = await store.get(key);
        // A sibling this client cannot decode comes back as its bytes; this app shows the reason instead.
        return result.values.map((v) => (isUndecodable(v) ? `undecodable: ${v.reason}` : v));
      },
    };
    (window as unknown as { fixture: Fixture }).fixture = fixture;
  },
  (error: unknown) => {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    if (app !== null) app.textContent = `failed: ${message}`;
    (window as unknown as { fixtureError: string }).fixtureError = message;
  },
);
