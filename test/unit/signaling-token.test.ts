/** Join tokens: minted with a secret for one cluster (and maybe one node), refused when anything is off. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { mintToken, verifyToken } from '../../signaling/token.ts';

const run = promisify(execFile);
const SECRET = 'correct horse battery staple';
const NOW = Date.UTC(2030, 0, 1);

describe('join tokens', () => {
  it('verifies a token for its cluster and returns its claims', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', ttlSeconds: 60, now: NOW });
    assert.deepEqual(verifyToken(token, SECRET, 'alpha', NOW), {
      ok: true,
      claims: { cluster: 'alpha', exp: NOW / 1000 + 60 },
    });
  });

  it('refuses a token signed with another secret', () => {
    const token = mintToken({ secret: 'another secret', cluster: 'alpha', now: NOW });
    assert.deepEqual(verifyToken(token, SECRET, 'alpha', NOW), { ok: false, reason: 'bad-signature' });
  });

  it('refuses a token whose payload was altered to name another cluster', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', now: NOW });
    const [, signature] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ cluster: 'beta', exp: NOW / 1000 + 3600 })).toString('base64url');
    assert.deepEqual(verifyToken(`${forged}.${signature}`, SECRET, 'beta', NOW), {
      ok: false,
      reason: 'bad-signature',
    });
  });

  it('refuses a signature with characters appended that base64url decoding would skip', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', now: NOW });
    assert.deepEqual(verifyToken(`${token}=`, SECRET, 'alpha', NOW), { ok: false, reason: 'bad-signature' });
  });

  it('refuses a token for another cluster', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', now: NOW });
    assert.deepEqual(verifyToken(token, SECRET, 'beta', NOW), { ok: false, reason: 'wrong-cluster' });
  });

  it('accepts a token until its expiry second and refuses it from then on', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', ttlSeconds: 10, now: NOW });
    assert.equal(verifyToken(token, SECRET, 'alpha', NOW + 9_999).ok, true);
    assert.deepEqual(verifyToken(token, SECRET, 'alpha', NOW + 10_000), { ok: false, reason: 'expired' });
  });

  it('binds a token minted for a node to that node only', () => {
    const token = mintToken({ secret: SECRET, cluster: 'alpha', nodeId: 'node-1', now: NOW });
    assert.equal(verifyToken(token, SECRET, 'alpha', NOW, 'node-1').ok, true);
    assert.deepEqual(verifyToken(token, SECRET, 'alpha', NOW, 'node-2'), { ok: false, reason: 'wrong-node' });
    assert.deepEqual(verifyToken(token, SECRET, 'alpha', NOW), { ok: false, reason: 'wrong-node' });
  });

  it('refuses malformed tokens', () => {
    for (const token of ['', 'abc', '.abc', 'a.b.c', 'no-dot-at-all']) {
      assert.equal(verifyToken(token, SECRET, 'alpha', NOW).ok, false, token);
    }
    const junk = 'not-json';
    const signature = mintToken({ secret: SECRET, cluster: 'alpha', now: NOW }).split('.')[1];
    assert.equal(verifyToken(`${junk}.${signature}`, SECRET, 'alpha', NOW).ok, false);
  });

  it('refuses to mint with an empty secret, a bad cluster, a bad node id or a non-positive ttl', () => {
    assert.throws(() => mintToken({ secret: '', cluster: 'alpha' }), TypeError);
    assert.throws(() => mintToken({ secret: SECRET, cluster: 'no spaces' }), TypeError);
    assert.throws(() => mintToken({ secret: SECRET, cluster: 'alpha', nodeId: 'a/b' }), TypeError);
    assert.throws(() => mintToken({ secret: SECRET, cluster: 'alpha', ttlSeconds: 0 }), TypeError);
    assert.throws(() => mintToken({ secret: SECRET, cluster: 'alpha', ttlSeconds: 1.5 }), TypeError);
  });

  it('mints from the command line a token the server accepts, with the secret from the environment', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'signaling/mint-token.ts', '--cluster', 'alpha', '--ttl', '120'],
      { timeout: 60_000, env: { ...process.env, DYNAMESH_SECRET: SECRET } },
    );
    const token = stdout.trim();
    const check = verifyToken(token, SECRET, 'alpha');
    assert.ok(check.ok);
    const lifetime = check.claims.exp - Date.now() / 1000;
    assert.ok(lifetime > 100 && lifetime <= 120, `lifetime ${lifetime}`);
  });

  it('mints with the secret read from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dynamesh-secret-'));
    try {
      const file = join(dir, 'secret');
      writeFileSync(file, `${SECRET}\n`);
      const { stdout } = await run(
        process.execPath,
        ['--import', 'tsx', 'signaling/mint-token.ts', '--secret-file', file, '--cluster', 'alpha'],
        { timeout: 60_000 },
      );
      assert.ok(verifyToken(stdout.trim(), SECRET, 'alpha').ok);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a secret on the command line, where ps and the shell history would show it', async () => {
    await assert.rejects(
      run(process.execPath, ['--import', 'tsx', 'signaling/mint-token.ts', '--secret', SECRET, '--cluster', 'alpha'], {
        timeout: 60_000,
      }),
      (error: { code?: number; stderr?: string }) =>
        error.code === 2 && /--secret is not taken/.test(error.stderr ?? ''),
    );
  });

  it('exits with an error when the command line lacks the cluster', async () => {
    await assert.rejects(
      run(process.execPath, ['--import', 'tsx', 'signaling/mint-token.ts'], {
        timeout: 60_000,
        env: { ...process.env, DYNAMESH_SECRET: SECRET },
      }),
      (error: { code?: number; stderr?: string }) => error.code === 2 && /--cluster/.test(error.stderr ?? ''),
    );
  });
});
