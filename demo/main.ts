/**
 * The demo page: opens this tab's node with `openStore()` and shows the cluster it joined. Query parameters:
 * `cluster` (default `demo`), `server` (default this page's origin; repeat it to name every process of a service on Redis), `token` (when the server has a secret),
 * `dataPlane` (`auto`, `transfer` or `relay`), `n` (replication factor; every tab of a cluster must agree) and
 * `faults=1` (gives the store `store.faults` and the fault panel its controls); and the background tunables
 * `antiEntropyInterval` (ms, 0 turns anti-entropy off), `antiEntropyBytesPerSecond` and `transferBytesPerSecond`,
 * which the benchmark sets, `retireAfter` (ms an unused node of this profile is kept before it is retired), and
 * `maxLinks` (most peer connections of the tab; the other members are reached through the server's relay) and
 * `linkIdleMs` (ms after which a connection kept only for use is closed).
 * The open store is `window.store`, for the console and for tests.
 *
 * The token is best given in the fragment (`#token=…`), which the browser never sends to a server; `?token=` works
 * too. Either way the page takes it out of the address bar at once (out of the history, of bookmarks and of what a
 * shared link carries) and keeps it in `sessionStorage` for the tab's reloads.
 */
import { type ClusterView, type OpenStoreOptions, type Store, type ViewMember, openStore } from '../client/index.ts';
import { ConflictView } from './conflict-view.ts';
import { FaultView } from './fault-view.ts';
import { byId, h, replace } from './dom.ts';
import { memberColors } from './format.ts';
import { LogView } from './log-view.ts';
import { MembersView } from './members-view.ts';
import { MetricsView } from './metrics-view.ts';
import { OpsView } from './ops-view.ts';
import { TransferView } from './transfer-view.ts';
import { WatchView } from './watch-view.ts';
import type { PageContext } from './page.ts';
import { type Ownership, RingView, computeOwnership } from './ring-view.ts';
import './style.css';

declare global {
  interface Window {
    /** The page's open store, once it has joined. */
    store?: Store;
  }
}

/** How often the page polls the node's and the cluster's metrics, ms. @default 1000 */
const METRICS_POLL_MS = 1000;

/** What the query string asks for. */
interface PageParams {
  readonly options: OpenStoreOptions;
  readonly n: number;
}

function readParams(): PageParams {
  const params = new URLSearchParams(location.search);
  const dataPlane = params.get('dataPlane');
  if (dataPlane !== null && dataPlane !== 'auto' && dataPlane !== 'transfer' && dataPlane !== 'relay') {
    throw Object.assign(new Error(`dataPlane must be auto, transfer or relay, not “${dataPlane}”`), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  }
  const nText = params.get('n');
  const n = nText === null ? 3 : Number(nText);
  if (!Number.isInteger(n) || n < 1 || n > 16) {
    throw Object.assign(new Error(`n must be an integer from 1 to 16, not “${nText}”`), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  }
  const tunable = (
    name:
      | 'antiEntropyInterval'
      | 'antiEntropyBytesPerSecond'
      | 'transferBytesPerSecond'
      | 'retireAfter'
      | 'maxLinks'
      | 'linkIdleMs',
    min: number,
  ) => {
    const text = params.get(name);
    if (text === null) return {};
    const value = Number(text);
    if (text === '' || !Number.isSafeInteger(value) || value < min) {
      throw Object.assign(new Error(`${name} must be an integer ≥ ${min}, not “${text}”`), {
        code: 'ERR_INVALID_ARGUMENT',
      });
    }
    return { [name]: value };
  };
  const cluster = params.get('cluster') || 'demo';
  const token = takeToken(cluster);
  const faults = params.get('faults');
  if (faults !== null && faults !== '0' && faults !== '1') {
    throw Object.assign(new Error(`faults must be 0 or 1, not “${faults}”`), { code: 'ERR_INVALID_ARGUMENT' });
  }
  return {
    n,
    options: {
      // `?server=…` once, or once per process of a signalling service on Redis (the tab fails over between them).
      url: servers(params),
      cluster,
      n,
      r: Math.min(2, n),
      w: Math.min(2, n),
      ...(token !== null && token !== '' ? { token } : {}),
      ...(dataPlane !== null ? { dataPlane } : {}),
      ...(faults === '1' ? { faults: true } : {}),
      ...tunable('antiEntropyInterval', 0),
      ...tunable('antiEntropyBytesPerSecond', 1),
      ...tunable('transferBytesPerSecond', 1),
      ...tunable('retireAfter', 0),
      ...tunable('maxLinks', 1),
      ...tunable('linkIdleMs', 1),
    },
  };
}

/** The signalling servers the page names (`?server=` repeated), else the one that served it. */
function servers(params: URLSearchParams): string | string[] {
  const named = params.getAll('server').filter((url) => url !== '');
  return named.length === 0 ? location.origin : named;
}

/**
 * The cluster's token from the address (fragment or query), which it is then removed from, else the one this tab
 * kept from an earlier load; null without one.
 */
function takeToken(cluster: string): string | null {
  const kept = `dynamesh-token:${cluster}`;
  const url = new URL(location.href);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const given = fragment.get('token') || url.searchParams.get('token');
  if (!given) return sessionStorage.getItem(kept);
  sessionStorage.setItem(kept, given);
  fragment.delete('token');
  url.searchParams.delete('token');
  url.hash = fragment.toString();
  history.replaceState(history.state, '', url);
  return given;
}

const app = byId('app');
const status = byId('status');

async function main(): Promise<void> {
  let params: PageParams | null = null;
  try {
    params = readParams();
    const { options } = params;
    document.title = `dynamesh · joining ${options.cluster}…`;
    replace(
      app,
      h(
        'div',
        { class: 'loading', role: 'status', testid: 'loading' },
        h('span', { class: 'spinner', 'aria-hidden': 'true' }),
        'Joining cluster ',
        h('strong', {}, options.cluster),
        ' through ',
        h('code', {}, [options.url].flat().join(', ')),
        '…',
      ),
    );
    const store = await openStore(options);
    window.store = store;
    new Page(store, params.n);
  } catch (error) {
    showError(error, params);
  }
}

function errorCode(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : 'ERROR';
}

function showError(error: unknown, params: PageParams | null): void {
  const code = errorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  const cluster = params?.options.cluster ?? new URLSearchParams(location.search).get('cluster') ?? 'demo';
  const server = [params?.options.url ?? location.origin].flat().join(', ');
  const hasToken = params?.options.token !== undefined;
  const advice: Record<string, string> = {
    ERR_UNAUTHORIZED: hasToken
      ? `The server refused the token: it is forged, expired, or minted for another cluster than “${cluster}”. Mint a new one.`
      : `The server runs with a secret. Open this page with #token=… minted for cluster “${cluster}”:`,
    ERR_TIMEOUT: `No signalling server answered at ${server}. Start one (npm start) or point ?server= at it.`,
    ERR_INVALID_ARGUMENT: 'A parameter was refused; check the query string.',
    ERR_CLOSED: 'The store closed while opening; reload to try again.',
  };
  document.title = `dynamesh · error ${code}`;
  status.replaceChildren();
  replace(
    app,
    h(
      'section',
      { class: 'card error-panel', role: 'alert', testid: 'error-panel', 'aria-labelledby': 'error-title' },
      h('h2', { id: 'error-title' }, `Could not join cluster “${cluster}”`),
      h(
        'p',
        { class: 'error-line' },
        h('code', { testid: 'error-code' }, code),
        ' ',
        h('span', { testid: 'error-message' }, message),
      ),
      h('p', {}, advice[code] ?? 'Something failed while starting the node; the console may say more.'),
      code === 'ERR_UNAUTHORIZED'
        ? h('pre', { class: 'command' }, `DYNAMESH_SECRET=S npm run mint-token -- --cluster ${cluster}`)
        : null,
      h(
        'dl',
        { class: 'params' },
        h('dt', {}, 'server'),
        h('dd', {}, h('code', {}, server)),
        h('dt', {}, 'cluster'),
        h('dd', {}, h('code', {}, cluster)),
        h('dt', {}, 'token'),
        h('dd', {}, hasToken ? 'given' : 'none'),
        h('dt', {}, 'data plane'),
        h('dd', {}, params?.options.dataPlane ?? 'auto'),
      ),
      h('button', { type: 'button', class: 'primary', onClick: () => location.reload() }, 'Try again'),
    ),
  );
  console.error('dynamesh demo: openStore failed', error);
}

/** The page once the store is open: every view, and the events and polls that feed them. */
class Page implements PageContext {
  readonly store: Store;
  readonly #n: number;
  readonly #ring: RingView;
  readonly #members: MembersView;
  readonly #metrics: MetricsView;
  readonly #logView = new LogView();
  readonly #ops: OpsView;
  readonly #faults: FaultView;
  readonly #transfer: TransferView;
  readonly #memberCount = h('span', { class: 'count', testid: 'member-count' }, '0');
  readonly #stateBadge = h('span', { class: 'badge', testid: 'node-state' });
  readonly #epoch = h('code', { testid: 'epoch' });
  readonly #server = h('span', { class: 'badge', testid: 'server-state' });
  readonly #selfSwatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
  #colors: ReadonlyMap<string, string> = new Map();
  #ownership: Ownership;
  #previous: readonly ViewMember[] = [];
  #epochShown = -1;
  #serverConnected = true;
  #closed = false;
  #polling = false;

  constructor(store: Store, n: number) {
    this.store = store;
    this.#n = n;
    this.#ring = new RingView(store.nodeId);
    this.#members = new MembersView(store.nodeId, store.domain);
    this.#metrics = new MetricsView(this);
    this.#ops = new OpsView(this, n);
    this.#faults = new FaultView(this);
    this.#transfer = new TransferView(this);
    this.#ownership = computeOwnership([], n, store.config.partitions);
    const conflict = new ConflictView(this);
    const watch = new WatchView(this);

    const card = (id: string, title: Node | string, body: Node, extra = ''): HTMLElement =>
      h(
        'section',
        { class: `card ${extra}`.trim(), id, 'aria-labelledby': `${id}-title` },
        h('h2', { id: `${id}-title` }, title),
        body,
      );
    replace(
      app,
      h(
        'div',
        { class: 'layout' },
        h(
          'div',
          { class: 'col col-1' },
          card('ring-card', 'Ring', this.#ring.element),
          card('transfer-card', 'Partitions in transfer', this.#transfer.element),
          card(
            'members-card',
            h('span', {}, 'Members ', h('span', { class: 'pill' }, this.#memberCount)),
            h(
              'div',
              {},
              this.#members.element,
              h(
                'p',
                { class: 'hint-line' },
                'Each tab is a node. ',
                h('a', { href: location.href, target: '_blank', rel: 'noopener' }, 'Open another tab'),
                ' to grow the cluster; close one to watch it leave.',
              ),
            ),
          ),
        ),
        h(
          'div',
          { class: 'col col-2' },
          card('ops-card', 'Get · Put · Delete', this.#ops.element),
          card('watch-card', 'Watch', watch.element),
          card('conflict-card', 'Guided conflict', conflict.element),
          card('faults-card', 'Faults', this.#faults.element),
        ),
        h(
          'div',
          { class: 'col col-3' },
          card('metrics-card', 'Metrics', this.#metrics.element),
          card('log-card', 'Live log', this.#logView.element, 'log-card'),
        ),
      ),
    );
    replace(
      status,
      h(
        'div',
        { class: 'stat node' },
        h('span', { class: 'stat-name' }, 'node'),
        this.#selfSwatch,
        h('code', { testid: 'node-id', title: 'This tab’s node id (kept across reloads)' }, store.nodeId),
        this.#stateBadge,
      ),
      h(
        'div',
        { class: 'stat' },
        h('span', { class: 'stat-name' }, 'cluster'),
        h('code', { testid: 'cluster' }, store.cluster),
      ),
      h('div', { class: 'stat' }, h('span', { class: 'stat-name' }, 'epoch'), this.#epoch),
      h(
        'div',
        { class: 'stat' },
        h('span', { class: 'stat-name' }, 'data plane'),
        h('code', { testid: 'data-plane' }, store.dataPlane),
      ),
      h('div', { class: 'stat' }, h('span', { class: 'stat-name' }, 'server'), this.#server),
    );

    store.on('membership', (view) => this.#onView(view));
    store.on('peer', ({ peer, state }) => {
      this.log('peer', state === 'closed' ? 'warn' : 'info', `peer ${peer} ${state}`);
      this.#render();
    });
    store.on('server', ({ connected }) => {
      this.#serverConnected = connected;
      this.log(
        'server',
        connected ? 'info' : 'warn',
        connected ? 'signalling server connected' : 'signalling server lost: serving on the last view',
      );
      this.#render();
    });
    store.on('conflict', ({ key, values }) => {
      this.log(
        'conflict',
        'warn',
        `a read of “${typeof key === 'string' ? key : '(bytes)'}” found ${values.length} siblings`,
      );
    });
    store.on('log', (entry) => this.log('node', entry.level, entry.msg, entry.fields, entry.time));
    store.on('outdated', ({ message }) => this.log('server', 'error', `reload this page: ${message}`));
    store.on('closed', () => {
      this.#closed = true;
      this.log('server', 'warn', 'the store closed');
      this.#render();
    });

    this.log('view', 'info', `joined cluster ${store.cluster} as ${store.nodeId}`, {
      dataPlane: store.dataPlane,
      domain: store.domain,
    });
    const view = store.view();
    if (view !== null) this.#onView(view);
    else this.#render();
    void this.#poll();
    setInterval(() => void this.#poll(), METRICS_POLL_MS);
  }

  color(id: string): string {
    return this.#colors.get(id) ?? '#6b7280';
  }

  log(
    kind: Parameters<PageContext['log']>[0],
    level: Parameters<PageContext['log']>[1],
    msg: string,
    fields?: Record<string, unknown>,
    time?: number,
  ): void {
    this.#logView.add(kind, level, msg, fields, time);
  }

  showKey(key: string): void {
    this.#ring.showKey(key === '' ? null : key);
  }

  #onView(view: ClusterView): void {
    if (view.epoch === this.#epochShown) return;
    this.#epochShown = view.epoch;
    const before = new Map(this.#previous.map((m) => [m.id, m]));
    const after = new Map(view.members.map((m) => [m.id, m]));
    const joined = view.members.filter((m) => !before.has(m.id)).map((m) => m.id);
    const left = this.#previous.filter((m) => !after.has(m.id)).map((m) => m.id);
    const changed = view.members
      .filter((m) => before.has(m.id) && before.get(m.id)!.state !== m.state)
      .map((m) => `${m.id}:${m.state}`);
    this.log(
      'view',
      left.length > 0 || changed.length > 0 ? 'warn' : 'info',
      `view epoch ${view.epoch}: ${view.members.length} member${view.members.length === 1 ? '' : 's'}`,
      {
        joined: joined.join(','),
        left: left.join(','),
        changed: changed.join(','),
      },
    );
    this.#previous = view.members;
    this.#colors = memberColors(view.members);
    this.#ownership = computeOwnership(view.members, this.#n, this.store.config.partitions);
    this.#ring.update(this.#ownership, this.#colors);
    this.#faults.updateMembers(view.members);
    this.#render();
  }

  #render(): void {
    const view = this.store.view();
    const members = view?.members ?? [];
    const me = members.find((m) => m.id === this.store.nodeId);
    const state = this.#closed ? 'closed' : me === undefined ? 'not in view' : me.state;
    this.#stateBadge.textContent = state;
    this.#stateBadge.className = `badge state-${state.replace(/ /g, '-')}`;
    this.#selfSwatch.style.background = this.color(this.store.nodeId);
    this.#memberCount.textContent = String(members.length);
    this.#epoch.textContent = view === null ? '–' : String(view.epoch);
    this.#server.textContent = this.#closed ? 'closed' : this.#serverConnected ? 'connected' : 'disconnected';
    this.#server.className = `badge ${this.#serverConnected && !this.#closed ? 'state-alive' : 'state-suspect'}`;
    this.#members.update(members, this.store.peers(), this.#ownership, this.#colors);
    document.title = `dynamesh · ${this.store.cluster} · ${this.store.nodeId.slice(0, 8)} (${state}) · ${members.length} member${members.length === 1 ? '' : 's'}`;
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#closed) return;
    this.#polling = true;
    try {
      const [node, cluster, partitions] = await Promise.allSettled([
        this.store.metrics(),
        this.store.clusterMetrics(),
        this.store.partitions(),
      ]);
      if (node.status === 'fulfilled') {
        this.#metrics.showNode(node.value);
        this.#faults.showState(node.value.faults);
        this.#transfer.showCounters(node.value.node);
      }
      if (cluster.status === 'fulfilled') this.#metrics.showCluster(this.store.members(), cluster.value);
      if (partitions.status === 'fulfilled')
        this.#transfer.showPartitions(partitions.value, this.store.config.partitions);
    } finally {
      this.#polling = false;
    }
  }
}

void main();
