import { openStore } from '../client/index.ts';

const params = new URLSearchParams(location.search);
const app = document.getElementById('app')!;
const store = await openStore({
  url: params.get('server') ?? location.origin,
  cluster: params.get('cluster') ?? 'demo',
  ...(params.get('token') !== null ? { token: params.get('token')! } : {}),
  ...(params.get('dataPlane') !== null ? { dataPlane: params.get('dataPlane') as 'transfer' | 'relay' } : {}),
});
(window as unknown as { store: typeof store }).store = store;
const render = (): void => {
  app.textContent = `${store.nodeId} (${store.dataPlane}) members: ${store
    .members()
    .map((m) => m.id)
    .join(', ')}`;
};
store.on('membership', render);
render();
