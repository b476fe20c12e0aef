import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadIdentity } from '../../always-on/identity.ts';
import { DERIVED_ID_PATTERN, joinProofText } from '../../signaling/events.ts';
import { Ring } from '../../worker/ring/ring.ts';

const root = await mkdtemp(join(tmpdir(), 'dynamesh-always-on-'));
after(() => rm(root, { recursive: true, force: true }));

let made = 0;
const freshDirectory = (): string => join(root, String(made++));

describe('the always-on node identity', () => {
  it('is made once and loaded again from its directory: same id, domain and key', async () => {
    const directory = freshDirectory();
    await mkdir(directory);
    const first = await loadIdentity(directory, 'c1');
    const again = await loadIdentity(directory, 'c1');
    assert.match(first.nodeId, DERIVED_ID_PATTERN);
    assert.equal(again.nodeId, first.nodeId);
    assert.equal(again.domain, first.domain);
    assert.deepEqual(again.publicKey, first.publicKey);
    // The key loaded again signs what the first one's public key verifies.
    const message = new TextEncoder().encode(joinProofText('c1', again.nodeId, 'connection'));
    const signature = await crypto.subtle.sign('Ed25519', again.privateKey, message);
    const key = await crypto.subtle.importKey('raw', first.publicKey as Uint8Array<ArrayBuffer>, 'Ed25519', false, [
      'verify',
    ]);
    assert.ok(await crypto.subtle.verify('Ed25519', key, signature, message));
  });

  it('keeps its private key in a file only its owner can read', async () => {
    const directory = freshDirectory();
    await mkdir(directory);
    await loadIdentity(directory, 'c1');
    assert.equal((await stat(join(directory, 'identity.json'))).mode & 0o077, 0);
  });

  it('refuses a directory that holds a node of another cluster', async () => {
    const directory = freshDirectory();
    await mkdir(directory);
    await loadIdentity(directory, 'c1');
    await assert.rejects(loadIdentity(directory, 'c2'), /holds a node of cluster c1, not c2/);
  });

  it('refuses a file whose node id does not derive from its public key', async () => {
    const directory = freshDirectory();
    await mkdir(directory);
    const mine = await loadIdentity(directory, 'c1');
    const path = join(directory, 'identity.json');
    const file = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const other = mine.nodeId.endsWith('A') ? `${mine.nodeId.slice(0, -1)}B` : `${mine.nodeId.slice(0, -1)}A`;
    await writeFile(path, JSON.stringify({ ...file, nodeId: other }));
    await assert.rejects(loadIdentity(directory, 'c1'), /does not derive from its public key/);
  });

  it('refuses a file of another shape', async () => {
    const directory = freshDirectory();
    await mkdir(directory);
    await writeFile(join(directory, 'identity.json'), JSON.stringify({ version: 2, cluster: 'c1' }));
    await assert.rejects(loadIdentity(directory, 'c1'), /not an identity file of this release/);
  });
});

describe('the always-on node on the ring', () => {
  it('is a replica of every partition when the tabs all share one domain and it has its own', () => {
    const tabs = ['tab-a', 'tab-b', 'tab-c', 'tab-d', 'tab-e'].map((id) => ({ id, domain: 'profile' }));
    const ring = new Ring([...tabs, { id: 'always-on', domain: 'server' }]);
    for (let partition = 0; partition < ring.partitions; partition++) {
      assert.ok(ring.preferenceList(partition, 3).includes('always-on'), `partition ${partition}`);
    }
  });
});
