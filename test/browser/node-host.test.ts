import { expect } from 'chai';
import { deleteDB } from 'idb';
import { derivedNodeId } from '../../signaling/events.ts';
import { type HostConfig, NodeHost } from '../../worker/main.ts';

/** Mocha's globals, as web-test-runner provides them. */
const { describe, it } = globalThis as unknown as {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>): void;
};

/** A new Ed25519 key pair, as a browser mints one for a new node (client/node-key.ts), and the id derived from it. */
async function newKey(): Promise<{ id: string; privateKey: CryptoKey; publicKey: Uint8Array }> {
  const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
  const publicKey = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', publicKey)));
  return { id, privateKey: pair.privateKey, publicKey };
}

function config(id: string, database: string): HostConfig {
  return {
    id,
    domain: 'd',
    database,
    n: 3,
    r: 2,
    w: 2,
    requestTimeout: 500,
    hintInterval: 1000,
    limits: {},
  };
}

describe('a node host that signs', () => {
  it('starts with the key its id derives from, and tells the first counter it signs, the same after a restart', async () => {
    const key = await newKey();
    const database = `dynamesh-host-${Date.now()}-a`;
    try {
      for (let run = 0; run < 2; run++) {
        const host = new NodeHost();
        const started = await host.start({ ...config(key.id, database), signing: key });
        expect(started).to.deep.equal({ ok: true, value: { signedFrom: 1 } });
        await host.close();
      }
    } finally {
      await deleteDB(database);
    }
  });

  it('refuses to start with a key its id does not derive from', async () => {
    const key = await newKey();
    const other = await newKey();
    const database = `dynamesh-host-${Date.now()}-b`;
    try {
      const host = new NodeHost();
      const started = await host.start({ ...config(key.id, database), signing: other });
      expect(started.ok).to.equal(false);
      expect(!started.ok && started.error.code).to.equal('ERR_INVALID_ARGUMENT');
      await host.close();
    } finally {
      await deleteDB(database);
    }
  });
});

/**
 * The page's side of the signalling relay for two hosts, as the server is for two members: each frame one posts for
 * the other arrives at the other stamped with the sender's id; plans each posts are recorded.
 */
function relayBetween(a: { id: string; host: NodeHost }, b: { id: string; host: NodeHost }) {
  const plans = new Map<string, string[][]>([
    [a.id, []],
    [b.id, []],
  ]);
  const ends = new Map<string, MessagePort>();
  for (const { id, host } of [a, b]) {
    const { port1, port2 } = new MessageChannel();
    ends.set(id, port1);
    port1.onmessage = (event: MessageEvent) => {
      const message = event.data as { type: string; to?: string; frame?: ArrayBuffer; peers?: string[] };
      if (message.type === 'plan') plans.get(id)!.push(message.peers!);
      else ends.get(message.to!)?.postMessage({ from: id, frame: message.frame }, [message.frame!]);
    };
    host.attachServer(port2, 16 * 1024);
  }
  return { plans, close: () => ends.forEach((port) => port.close()) };
}

describe('node hosts without a peer connection', () => {
  it('serve a put and a get through the signalling relay and plan a link to each other', async () => {
    const stamp = Date.now();
    const nodes = [`relay-a-${stamp}`, `relay-b-${stamp}`].map((id) => ({ id, host: new NodeHost() }));
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    let relay: ReturnType<typeof relayBetween> | undefined;
    try {
      for (const { id, host } of nodes) expect((await host.start(config(id, `dynamesh-${id}`))).ok).to.equal(true);
      relay = relayBetween(a, b);
      const members = nodes.map(({ id }) => ({ id, domain: id }));
      for (const { host } of nodes) host.setMembers(members);
      const put = await a.host.put('over-the-server', new Uint8Array([1, 2, 3]), { w: 2 });
      expect(put.ok ? put.value.receipt.acknowledged.length : put.error).to.equal(2);
      const got = await b.host.get('over-the-server', { r: 2 });
      expect(got.ok && got.value.values.map((v) => [...v])).to.deep.equal([[1, 2, 3]]);
      const metrics = await a.host.metrics();
      expect(metrics.ok && metrics.value.relayedFrames.sent).to.be.greaterThan(0);
      expect(metrics.ok && metrics.value.links).to.deep.equal([]);
      expect(relay.plans.get(a.id)!.at(-1)).to.deep.equal([b.id]);
      expect(relay.plans.get(b.id)!.at(-1)).to.deep.equal([a.id]);
    } finally {
      relay?.close();
      for (const { id, host } of nodes) {
        await host.close();
        await deleteDB(`dynamesh-${id}`);
      }
    }
  });
});
