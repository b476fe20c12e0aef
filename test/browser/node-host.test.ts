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
