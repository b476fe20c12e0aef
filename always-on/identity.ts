/**
 * Who the always-on node is, kept in its data directory (`identity.json`, readable by its owner only) so that a
 * restart is the same node: its Ed25519 key pair, the node id derived from the public key (as a tab's new node's is,
 * signaling/events.ts `derivedNodeId`), the cluster it belongs to, and its failure domain, which no tab shares, so
 * that every key has a replica on it (the ring places nodes of distinct domains first).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromBase64url, toBase64url } from '../signaling/base64url.ts';
import { DERIVED_ID_PATTERN, derivedNodeId } from '../signaling/events.ts';
import { isClusterName } from '../signaling/validate.ts';

/** The always-on node's identity, as loaded from its directory. */
export interface NodeIdentity {
  readonly cluster: string;
  readonly nodeId: string;
  readonly domain: string;
  /** Not extractable once loaded. */
  readonly privateKey: CryptoKey;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
}

/** The file's shape, version 1. */
interface IdentityFile {
  readonly version: 1;
  readonly cluster: string;
  readonly nodeId: string;
  readonly domain: string;
  /** PKCS #8, base64url. */
  readonly privateKey: string;
  /** Raw, base64url. */
  readonly publicKey: string;
}

const FILE = 'identity.json';

/**
 * The identity kept in `directory`, made and stored there first when there is none. Rejects when the directory
 * belongs to another cluster (its data is that cluster's) or its file is not one this code wrote. The caller holds
 * the directory (its storage's lock), so no other process makes or reads one meanwhile.
 */
export async function loadIdentity(directory: string, cluster: string): Promise<NodeIdentity> {
  const path = join(directory, FILE);
  let text: string | null;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
    text = null;
  }
  const file = text === null ? await mint(path, cluster) : parse(text, path);
  if (file.cluster !== cluster) {
    throw new Error(`${directory} holds a node of cluster ${file.cluster}, not ${cluster}: use another directory`);
  }
  const raw = fromBase64url(file.publicKey);
  const privateKey = await crypto.subtle.importKey('pkcs8', fromBase64url(file.privateKey), 'Ed25519', false, ['sign']);
  const id = derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw)));
  if (id !== file.nodeId) throw new Error(`${path}: node id ${file.nodeId} does not derive from its public key`);
  return { cluster, nodeId: file.nodeId, domain: file.domain, privateKey, publicKey: raw };
}

async function mint(path: string, cluster: string): Promise<IdentityFile> {
  const pair = (await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify'])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', pair.privateKey));
  const file: IdentityFile = {
    version: 1,
    cluster,
    nodeId: derivedNodeId(new Uint8Array(await crypto.subtle.digest('SHA-256', raw))),
    // Random, as a browser profile's: no tab, and no other always-on node, shares it.
    domain: toBase64url(randomBytes(9)),
    privateKey: toBase64url(pkcs8),
    publicKey: toBase64url(raw),
  };
  // Written whole or not at all: a crash mid-write must not leave a node without its key.
  const partial = `${path}.${process.pid}.tmp`;
  await writeFile(partial, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(partial, path);
  return file;
}

/** The file's fields, each checked. */
function parse(text: string, path: string): IdentityFile {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not JSON`);
  }
  const fields = (typeof input === 'object' && input !== null ? input : {}) as Record<string, unknown>;
  const { version, cluster, nodeId, domain, privateKey, publicKey } = fields;
  const base64url = (value: unknown): value is string => typeof value === 'string' && /^[A-Za-z0-9_-]+$/.test(value);
  if (
    version !== 1 ||
    !isClusterName(cluster) ||
    typeof nodeId !== 'string' ||
    !DERIVED_ID_PATTERN.test(nodeId) ||
    !isClusterName(domain) ||
    !base64url(privateKey) ||
    !base64url(publicKey)
  ) {
    throw new Error(`${path} is not an identity file of this release`);
  }
  return { version, cluster, nodeId, domain, privateKey, publicKey };
}
