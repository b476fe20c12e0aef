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
        const opened = await host.open({ ...config(key.id, database), signing: key });
        expect(opened).to.deep.equal({ ok: true, value: { signedFrom: 1, partitions: run === 0 ? null : 64 } });
        expect((await host.start(64)).ok).to.equal(true);
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
      const started = await host.open({ ...config(key.id, database), signing: other });
      expect(started.ok).to.equal(false);
      expect(!started.ok && started.error.code).to.equal('ERR_INVALID_ARGUMENT');
      await host.close();
    } finally {
      await deleteDB(database);
    }
  });
});

describe('a node host and the ring its data is filed in', () => {
  it('refuses to start on a Q other than the one its data was filed in', async () => {
    const database = `dynamesh-host-${Date.now()}-q`;
    try {
      const first = new NodeHost();
      expect((await first.open(config('n1', database))).ok).to.equal(true);
      expect((await first.start(1024)).ok).to.equal(true);
      await first.close();
      const second = new NodeHost();
      const opened = await second.open(config('n1', database));
      expect(opened).to.deep.equal({ ok: true, value: { signedFrom: null, partitions: 1024 } });
      const started = await second.start(4096);
      expect(!started.ok && started.error.code).to.equal('ERR_INVALID_ARGUMENT');
      await second.close();
    } finally {
      await deleteDB(database);
    }
  });

  it('starts its node on the latest view, though one arrived while it was starting', async () => {
    const database = `dynamesh-host-${Date.now()}-v`;
    try {
      const host = new NodeHost();
      expect((await host.open(config('n1', database))).ok).to.equal(true);
      host.setMembers([{ id: 'n1', domain: 'd' }]);
      const starting = host.start(64);
      host.setMembers([
        { id: 'n1', domain: 'd' },
        { id: 'n2', domain: 'e' },
      ]);
      expect((await starting).ok).to.equal(true);
      const partitions = await host.partitions();
      expect(partitions.ok && partitions.value.every((p) => p.owners.includes('n2'))).to.equal(true);
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
      for (const { id, host } of nodes) {
        expect((await host.open(config(id, `dynamesh-${id}`))).ok).to.equal(true);
        expect((await host.start(64)).ok).to.equal(true);
      }
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
