/**
 * The partial mesh's connections in a page: real simple-peer connections between meshes of one page, each handing
 * its data channels to a started node host, their signals carried from one mesh to the other as the signalling
 * server carries them (later, as a copy, stamped with the sender).
 */
import type * as Comlink from 'comlink';
import { expect } from 'chai';
import { deleteDB } from 'idb';
import { Mesh } from '../../client/mesh.ts';
import type { SignalData } from '../../signaling/events.ts';
import { NodeHost } from '../../worker/main.ts';

/** Mocha's globals, as web-test-runner provides them. */
const { describe, it } = globalThis as unknown as {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>): void;
};

interface Member {
  readonly id: string;
  readonly mesh: Mesh;
  readonly host: NodeHost;
  readonly database: string;
  /** Peers this member's mesh reported unreachable. */
  readonly unreachable: string[];
}

/** Meshes of `ids`, bound to `maxLinks` connections each, signalling one another, all members of one view. */
async function meshes(ids: readonly string[], maxLinks: number): Promise<Map<string, Member>> {
  const members = new Map<string, Member>();
  const stamp = Date.now();
  for (const id of ids) {
    const host = new NodeHost();
    const database = `dynamesh-mesh-${stamp}-${id}`;
    const opened = await host.open({
      id,
      domain: id,
      database,
      n: 3,
      r: 2,
      w: 2,
      requestTimeout: 500,
      hintInterval: 1000,
      limits: {},
    });
    expect(opened.ok).to.equal(true);
    expect((await host.start(64)).ok).to.equal(true);
    const unreachable: string[] = [];
    const mesh = new Mesh({
      self: id,
      cluster: 'mesh-test',
      // The host in this page, called directly where the store calls it through comlink.
      host: host as unknown as Comlink.Remote<NodeHost>,
      dataPlane: 'transfer',
      maxLinks,
      signal: (to: string, data: SignalData) => {
        const copy = structuredClone(data);
        setTimeout(() => members.get(to)?.mesh.handleSignal(id, copy));
      },
      onUnreachable: (peer) => unreachable.push(peer),
    });
    members.set(id, { id, mesh, host, database, unreachable });
  }
  const view = ids.map((id) => ({ id, joinedAt: 1 }));
  for (const { mesh } of members.values()) mesh.update(view);
  return members;
}

async function closeAll(members: Map<string, Member>): Promise<void> {
  for (const { mesh, host, database } of members.values()) {
    mesh.close();
    await host.close();
    await deleteDB(database);
  }
}

/** Resolves once `test` holds, checked every 20 ms; rejects after `ms`. */
async function until(test: () => boolean, what: string, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the partial mesh', () => {
  it('refuses a connection past its bound, and the refused side backs off without reporting the peer', async () => {
    const members = await meshes(['a', 'b', 'c'], 1);
    const [a, b, c] = ['a', 'b', 'c'].map((id) => members.get(id)!);
    try {
      b!.mesh.plan(['c']);
      c!.mesh.plan(['b']);
      await until(() => b!.mesh.states()['c'] === 'connected', 'b and c are connected');
      a!.mesh.plan(['b']);
      await until(() => a!.mesh.states()['b'] !== undefined, 'a offers b a connection');
      await until(() => a!.mesh.states()['b'] === undefined, 'b refused it');
      expect(a!.mesh.settled(new Set(['b', 'c']))).to.equal(true);
      expect(b!.mesh.states()).to.deep.equal({ c: 'connected' });
      // Past the retry delay: a refusal is no failure.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      expect(a!.unreachable).to.deep.equal([]);
      expect(a!.mesh.states()).to.deep.equal({});
    } finally {
      await closeAll(members);
    }
  });

  it('asks a peer with a smaller id for a connection, which that peer opens', async () => {
    const members = await meshes(['a', 'c'], 1);
    const [a, c] = ['a', 'c'].map((id) => members.get(id)!);
    try {
      a!.mesh.plan([]);
      c!.mesh.plan(['a']);
      await until(
        () => a!.mesh.states()['c'] === 'connected' && c!.mesh.states()['a'] === 'connected',
        'a and c are connected',
      );
      const metrics = await a!.host.metrics();
      expect(metrics.ok && metrics.value.links).to.deep.equal([{ peer: 'c', kind: 'channel', open: true }]);
    } finally {
      await closeAll(members);
    }
  });

  it('closes a connection a peer opened that its plan leaves out once the grace is over, and takes none again', async () => {
    const members = await meshes(['a', 'c'], 1);
    const [a, c] = ['a', 'c'].map((id) => members.get(id)!);
    try {
      c!.mesh.plan([]);
      a!.mesh.plan(['c']);
      await until(() => c!.mesh.states()['a'] === 'connected', 'c took the connection a opened');
      await until(() => c!.mesh.states()['a'] === undefined, 'c closed it, unplanned, after the grace', 8000);
      await until(() => a!.mesh.states()['c'] === undefined, 'a let it go');
      // a still plans c and asks for it at once, which c, not planning a, leaves unanswered.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      expect(c!.mesh.states()).to.deep.equal({});
      expect(a!.mesh.states()).to.deep.equal({});
      expect(a!.unreachable).to.deep.equal([]);
    } finally {
      await closeAll(members);
    }
  });

  it('links two peers that each back off from the other once both plan each other: asking spends no connection', async () => {
    const members = await meshes(['a', 'b'], 1);
    const [a, b] = ['a', 'b'].map((id) => members.get(id)!);
    try {
      a!.mesh.plan([]);
      b!.mesh.plan([]);
      // Each refused or closed a connection of the other a moment ago: each backs off for refusalBackoff (60 s).
      a!.mesh.handleSignal('b', { link: 'close' } as unknown as SignalData);
      b!.mesh.handleSignal('a', { link: 'refuse' } as unknown as SignalData);
      a!.mesh.plan(['b']);
      b!.mesh.plan(['a']);
      await until(
        () => a!.mesh.states()['b'] === 'connected' && b!.mesh.states()['a'] === 'connected',
        'a and b are connected',
        5000,
      );
    } finally {
      await closeAll(members);
    }
  });
});
