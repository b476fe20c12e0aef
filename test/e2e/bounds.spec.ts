/**
 * Bounds at write time, through the public API of real tabs: blind puts past a key's sibling or byte bound fail
 * with their own error while the key stays readable, resolvable and transferable; forged contexts are refused and
 * poison nothing; and a sibling the client cannot decode comes back as its bytes, with a context that resolves it.
 */
import { encode } from '@msgpack/msgpack';
import { decodeMessage, encodeMessage } from '../../worker/wire/codec.ts';
import { expect, freshCluster, openCluster, openTab, ringOf, test, type Tab } from './fixtures.ts';
import { RoguePeer } from './rogue-peer.ts';

/** The partitions `tab` owns but still fetches. */
function fetching(tab: Tab): Promise<number[]> {
  return tab.call(
    async (store) => (await store.partitions()).filter((p) => p.state === 'fetching').map((p) => p.partition),
    null,
  );
}

/** A context string as any client could hand one in: the base64url of a MessagePack clock. */
function forgedContext(clock: { node: string; counter: number }[]): string {
  return Buffer.from(encode(clock.map((e) => ({ ...e, timestamp: Date.now() })))).toString('base64url');
}

test('120 blind puts on one key from three tabs fail with ERR_TOO_MANY_SIBLINGS past the bound; the key stays readable and resolvable, and a tab that joins afterwards fetches it', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('siblings');
  const tabs = await openCluster(context, server, 3, { cluster });
  const outcomes = await Promise.all(
    tabs.map((tab, t) =>
      tab.call(async (store, t) => {
        const out: { ok: boolean; code?: string; message?: string }[] = [];
        for (let i = 0; i < 40; i++) {
          try {
            await store.put('hot', `tab${t}-put${i}`);
            out.push({ ok: true });
          } catch (error) {
            const e = error as { code?: unknown; message?: unknown };
            out.push({ ok: false, code: String(e.code), message: String(e.message) });
          }
        }
        return out;
      }, t),
    ),
  );
  const all = outcomes.flat();
  const accepted = all.filter((o) => o.ok).length;
  const refused = all.filter((o) => !o.ok);
  expect(refused.filter((o) => o.code !== 'ERR_TOO_MANY_SIBLINGS')).toEqual([]);
  // Each coordinator refuses past 32 siblings of what it holds; concurrent coordinators may each let a few more in.
  expect(accepted).toBeGreaterThanOrEqual(32);
  expect(accepted).toBeLessThanOrEqual(3 * 32);
  expect(refused.length).toBe(120 - accepted);
  expect(refused[0]!.message).toMatch(/maxSiblings.*read the key and put with the context/);

  const read = await tabs[1]!.call((store) => store.get('hot'), null);
  expect(read.values).toHaveLength(accepted);
  await tabs[2]!.call((store, context) => store.put('hot', 'resolved', { context }), read.context);
  // Read your write: W=2 and R=2 overlap, and the resolving put supersedes every sibling it read.
  expect((await tabs[0]!.call((store) => store.get('hot'), null)).values).toEqual(['resolved']);

  const late = await openTab(context, server, { cluster });
  await expect
    .poll(() => fetching(late), { timeout: 60_000, message: 'the new tab never finished fetching' })
    .toEqual([]);
  expect((await late.call((store) => store.get('hot'), null)).values).toEqual(['resolved']);
});

test('eight blind puts of 600 KiB on one key fail with ERR_TOO_LARGE at the bound, and the key stays readable', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('large');
  const tabs = await openCluster(context, server, 3, { cluster });
  const outcomes: string[] = [];
  // From one tab, which coordinates them all: a coordinator checks the bound against what it holds, and a put
  // through another that has yet to receive the last write could overshoot it (as concurrent writes may).
  for (let i = 0; i < 8; i++) {
    const outcome = await tabs[0]!.attempt(async (store, i) => {
      await store.put('large', new Uint8Array(600 * 1024).fill(i));
    }, i);
    outcomes.push(outcome.ok ? 'ok' : outcome.code);
    if (!outcome.ok) expect(outcome.message).toMatch(/maxSiblingSetBytes.*read the key and put with the context/);
  }
  // Six values of 600 KiB fit the 4 MiB bound of a key's siblings; a seventh would not.
  expect(outcomes).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ERR_TOO_LARGE', 'ERR_TOO_LARGE']);
  const read = await tabs[1]!.call(async (store) => {
    const { values, context } = await store.get('large');
    return { sizes: values.map((v) => (v as Uint8Array).length), context };
  }, null);
  expect(read.sizes).toEqual(Array<number>(6).fill(600 * 1024));

  // A tab that joins now streams the key in (a page of one key, far larger than a page) and can read it.
  const late = await openTab(context, server, { cluster });
  await expect
    .poll(() => fetching(late), { timeout: 60_000, message: 'the new tab never finished fetching' })
    .toEqual([]);
  const sizes = await late.call(
    async (store) => (await store.get('large')).values.map((v) => (v as Uint8Array).length),
    null,
  );
  expect(sizes).toEqual(Array<number>(6).fill(600 * 1024));
  await tabs[2]!.call((store, context) => store.put('large', 'small now', { context }), read.context);
  await expect
    .poll(async () => (await tabs[0]!.call((store) => store.get('large'), null)).values)
    .toEqual(['small now']);
});

test('forged contexts are refused with ERR_INVALID_ARGUMENT, and 100 later put/get rounds over the tabs read back exactly what was put', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('forged');
  const tabs = await openCluster(context, server, 3, { cluster });
  const ids = tabs.map((t) => t.nodeId);
  const forged = [
    forgedContext([{ node: ids[1]!, counter: 2 ** 53 - 1 }]),
    forgedContext([{ node: ids[2]!, counter: 2 ** 53 }]),
    forgedContext([{ node: ids[0]!, counter: 1e15 }]),
    // Within the counter bound, but far ahead of what the named node issued: each tab's own id, and another's.
    ...ids.map((id) => forgedContext([{ node: id, counter: 2 ** 40 }])),
  ];
  const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
  for (const tab of tabs) {
    for (const context of forged) {
      const outcome = await tab.attempt((store, context) => store.put('k0', 'forged', { context }), context);
      expect(outcome.ok ? 'ok' : outcome.code, `${tab.nodeId} with ${context}`).toBe('ERR_INVALID_ARGUMENT');
    }
  }
  expect((await tabs[0]!.call((store) => store.get('k0'), null)).values).toEqual([]);

  const contexts = new Map<string, string>();
  for (let i = 0; i < 100; i++) {
    const key = keys[i % keys.length]!;
    const value = `${key}@${i}`;
    const put = { key, value, context: contexts.get(key) ?? null };
    await tabs[i % 3]!.call(
      (store, { key, value, context }) => store.put(key, value, context === null ? {} : { context }),
      put,
    );
    const read = await tabs[(i + 1) % 3]!.call((store, key) => store.get(key), key);
    expect(read.values, `round ${i}`).toEqual([value]);
    contexts.set(key, read.context);
  }
});

test('a key with a sibling the client cannot decode returns it as an UndecodableValue with a usable context', async ({
  context,
  server,
}) => {
  const cluster = freshCluster('undecodable');
  const tabs = await openCluster(context, server, 3, { cluster, dataPlane: 'transfer' });
  const [victim, writer, reader] = tabs as [Tab, Tab, Tab];
  const domain = await victim.call((store) => store.domain, null);
  // A member running other software than this client (the node API takes raw bytes): it has the victim
  // coordinate a put of bytes that are not one MessagePack value, as any member may forward a put.
  const rogue = await RoguePeer.connect(context, server, {
    cluster,
    id: '--------rogue',
    victimId: victim.nodeId,
    plane: 'transfer',
    domain,
  });
  for (const tab of tabs) {
    await expect.poll(async () => (await tab.mesh()).members).toContain(rogue.id);
  }
  // A key the three tabs own, so that the rogue (which answers nothing) holds no replica of it.
  const members = server.view(cluster)!.members.map(({ id, domain, placement }) => ({ id, domain, placement }));
  const ring = await ringOf(tabs[0]!, members);
  const encoder = new TextEncoder();
  let key = '';
  for (let i = 0; key === ''; i++) {
    const owners = ring.preferenceList(ring.partitionOf(encoder.encode(`raw-${i}`)), 3);
    if (!owners.includes(rogue.id)) key = `raw-${i}`;
  }
  const raw = Uint8Array.of(0x92, 0x01); // an array of two items with only one: truncated MessagePack
  const coordinate = encodeMessage({
    type: 'coordinate',
    from: rogue.id,
    requestId: 1,
    key: encoder.encode(key),
    value: raw,
    context: [],
    w: 2,
    ifMatch: false,
    durable: false,
  });
  await rogue.send(Uint8Array.of(0x00, ...coordinate));
  await expect.poll(async () => (await rogue.received()).length).toBeGreaterThanOrEqual(1);
  const reply = decodeMessage((await rogue.received())[0]!.subarray(1));
  expect(reply.type).toBe('coordinate-reply');

  // A sibling that decodes beside it, from a tab.
  await writer.call((store, key) => store.put(key, 'readable'), key);
  const read = await reader.call(async (store, key) => {
    const brand = Symbol.for('dynamesh.UndecodableValue');
    const conflicts: unknown[] = [];
    const stop = store.on('conflict', (event) => conflicts.push(event.values.length));
    const result = await store.get(key);
    stop();
    const values = result.values.map((v) => {
      if (typeof v === 'object' && v !== null && (v as { [brand]?: unknown })[brand] === true) {
        const u = v as unknown as { bytes: Uint8Array; reason: string };
        return { undecodable: true, bytes: [...u.bytes], reason: u.reason };
      }
      return { undecodable: false, value: v };
    });
    return { values, context: result.context, conflicts };
  }, key);
  expect(read.values).toHaveLength(2);
  expect(read.values).toContainEqual({ undecodable: false, value: 'readable' });
  const undecodable = read.values.find((v) => v.undecodable) as { bytes: number[]; reason: string } | undefined;
  expect(undecodable?.bytes).toEqual([0x92, 0x01]);
  expect(undecodable?.reason).not.toBe('');
  expect(read.conflicts).toEqual([2]);

  await writer.call((store, { key, context }) => store.put(key, 'fixed', { context }), { key, context: read.context });
  expect((await reader.call((store, key) => store.get(key), key)).values).toEqual(['fixed']);
});
