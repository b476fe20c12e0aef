/**
 * The always-on node: the same node a tab runs ({@link NodeHost} and its {@link DynamoNode}, the same signalling
 * client, the same mesh of simple-peer connections, the same protocol and limits), run in a Node.js process, in
 * process rather than in a worker, with WebRTC from `@roamhq/wrtc` and its data on disk (storage/level.ts). It
 * holds its data directory for as long as it runs, so that data written by tabs outlives every tab.
 *
 * Peers check who is on the other end of a connection as they do with tabs (client/peer-auth.ts), but wrtc cannot
 * make a lasting certificate (it has no `RTCPeerConnection.generateCertificate`): each connection makes its own, and
 * the node signs the fingerprint of each of its offers and answers with its key. A peer checks that signature
 * against the id and the SDP exactly as it checks a tab's; the certificate's private key never leaves the
 * connection, so an old signed fingerprint is of no use to anyone else.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import wrtc from '@roamhq/wrtc';
import { type HostConfig, type LogEntry, NodeHost, type Outcome } from '../worker/main.ts';
import type { Logger } from '../worker/env.ts';
import { errorFromCode, type ErrorCode } from '../worker/errors.ts';
import { openLevelStorage } from '../worker/storage/level.ts';
import type { ClusterView } from '../signaling/events.ts';
import { toBase64url } from '../signaling/base64url.ts';
import { joinProofText } from '../signaling/events.ts';
import { Mesh } from '../client/mesh.ts';
import { type PeerAuth, fingerprintText } from '../client/peer-auth.ts';
import { SignalingClient } from '../client/signaling.ts';
import { metricsSnapshot } from '../client/metrics-snapshot.ts';
import { ServerRelay, relayFrameBytes } from '../client/server-relay.ts';
import { cachedChannel } from './channel.ts';
import { type NodeIdentity, loadIdentity } from './identity.ts';

/** Options of {@link startAlwaysOnNode}. */
export interface AlwaysOnOptions {
  /** The signalling server, e.g. `http://127.0.0.1:8787`. */
  readonly url: string;
  /** The cluster to join: `[A-Za-z0-9_-]{1,64}`. */
  readonly cluster: string;
  /** The node's directory: its identity (`identity.json`) and its data (`data/`, LevelDB). Made when absent. */
  readonly directory: string;
  /** A token minted for the cluster, when the server runs with a secret. */
  readonly token?: string;
  /** Where the node's log goes (pino in the CLI). */
  readonly logger: Logger;
  /** Replication factor N; every node of a cluster must use the same. @default 3 */
  readonly n?: number;
  /** Read quorum of the requests this node coordinates. @default 2 */
  readonly r?: number;
  /** Write quorum of the requests this node coordinates. @default 2 */
  readonly w?: number;
  /** Ms between pushes of this node's metrics to the server. @default 2000 */
  readonly metricsInterval?: number;
}

/** Why an always-on node stopped: it was closed, another process joined with its node id, or the server was upgraded. */
export type StopReason = 'closed' | 'superseded' | 'outdated';

/** A running always-on node. */
export interface AlwaysOnNode {
  readonly nodeId: string;
  readonly domain: string;
  /** The current view, with its epoch. */
  view(): ClusterView | null;
  /**
   * Stops the node and releases its directory. Idempotent. By default it does not leave the cluster: the server
   * keeps it in the view for its heartbeat timeout (3 s), so a restart by then moves no partition, and one after
   * finds the data it left with. `leave: true` leaves at once, and the tabs take over its partitions.
   */
  close(options?: { readonly leave?: boolean }): Promise<void>;
  /**
   * Resolves once the node has stopped: after {@link AlwaysOnNode.close}, or by itself, with the reason, when it can
   * no longer take part (another process joined with its node id, or the server now runs another release).
   */
  readonly stopped: Promise<{ readonly reason: StopReason }>;
}

/**
 * Starts the always-on node kept in `options.directory` and joins the cluster. Rejects with `ERR_STORAGE` when
 * another process runs the node of that directory, `ERR_UNAUTHORIZED` for refused credentials, `ERR_TIMEOUT` when
 * no server answers.
 */
export async function startAlwaysOnNode(options: AlwaysOnOptions): Promise<AlwaysOnNode> {
  await mkdir(options.directory, { recursive: true, mode: 0o700 });
  // First, since LevelDB's lock is what keeps a second process off the directory, identity included.
  const storage = await openLevelStorage(join(options.directory, 'data'));
  let identity: NodeIdentity;
  try {
    identity = await loadIdentity(options.directory, options.cluster);
  } catch (error) {
    await storage.close();
    throw error;
  }
  const { logger } = options;
  const host = new NodeHost({ openStorage: async () => storage });
  const config: HostConfig = {
    id: identity.nodeId,
    domain: identity.domain,
    database: join(options.directory, 'data'),
    n: options.n ?? 3,
    r: options.r ?? 2,
    w: options.w ?? 2,
    requestTimeout: 500,
    hintInterval: 1000,
    limits: {},
    signing: { privateKey: identity.privateKey, publicKey: identity.publicKey },
  };
  const opened = await host.open(config, (entry) => log(logger, entry));
  if (!opened.ok) {
    await host.close();
    await storage.close();
    throw wireError(opened);
  }
  const { signedFrom } = opened.value;
  let signaling: SignalingClient | undefined;
  let stopped!: (reason: StopReason) => void;
  const whenStopped = new Promise<{ reason: StopReason }>((resolve) => {
    stopped = (reason) => resolve({ reason });
  });
  let closing: Promise<void> | undefined;
  const metrics = setInterval(() => {
    if (signaling !== undefined) void pushMetrics(host, signaling);
  }, options.metricsInterval ?? 2000);
  /** Stops everything, once; the node never leaves but when asked to. */
  const stop = (reason: StopReason, leave = false): Promise<void> => {
    closing ??= (async () => {
      clearInterval(metrics);
      await signaling?.close({ leave });
      mesh.close();
      await host.close();
      relay.close();
      await storage.close();
      logger.info({ left: leave, reason }, 'always-on node stopped');
      stopped(reason);
    })();
    return closing;
  };
  const mesh = new Mesh({
    self: identity.nodeId,
    cluster: options.cluster,
    host: {
      attachChannel: (peer, channel) => host.attachChannel(peer, cachedChannel(channel) as RTCDataChannel),
      attachPort: (peer, port) => host.attachPort(peer, port),
      detach: (peer) => host.detach(peer),
    },
    dataPlane: 'transfer',
    wrtc,
    signal: (to, data) => signaling?.signal(to, data),
    onPeerState: (peer, state) => logger.debug({ peer, state }, 'peer connection'),
    onUnreachable: (peer) => signaling?.reportUnreachable(peer),
    onRefused: (peer, reason) =>
      logger.warn({ peer, reason }, 'refused a peer connection whose certificate its node did not vouch for'),
  });
  mesh.authenticate({ certificate: null, auth: null, vouch: (fingerprint) => vouch(identity, fingerprint) });
  // Frames for members without a link go through the server, and the node's link plan drives the mesh, as in a tab.
  const relay = new ServerRelay({
    frame: (to, frame) => signaling?.frame(to, frame),
    plan: (peers) => mesh.plan(peers),
  });
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const stopping = (): void => {
    clearInterval(heartbeat);
    heartbeat = undefined;
  };
  try {
    signaling = await SignalingClient.connect({
      url: options.url,
      cluster: options.cluster,
      nodeId: identity.nodeId,
      domain: identity.domain,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(signedFrom !== null ? { signedFrom } : {}),
      ...(opened.value.partitions !== null ? { partitions: opened.value.partitions } : {}),
      onView: (view) => {
        host.setMembers(
          view.members.map(({ id, domain, placement, signedFrom }) =>
            signedFrom === undefined ? { id, domain, placement } : { id, domain, placement, signedFrom },
          ),
          view.members.filter((m) => m.state === 'suspect').map((m) => m.id),
        );
        mesh.update(view.members);
        logger.info({ epoch: view.epoch, members: view.members.length }, 'view');
      },
      onSignal: (signal) => mesh.handleSignal(signal.from, signal.data),
      onFrame: (from, frame) => relay.deliver(from, frame),
      onConnection: (connected) => logger.info({ connected }, 'signalling server connection'),
      onSuperseded: () => {
        logger.error({}, 'another process joined with this node id: stopping');
        void stop('superseded');
      },
      onOutdated: (error) => {
        logger.error({ error: error.message }, 'the signalling server runs another release: stopping');
        void stop('outdated');
      },
      onInvalidView: (reason) => logger.warn({ reason }, 'the signalling server pushed an invalid view: ignored'),
      // No page to throttle timers here: the process times its heartbeats itself.
      startHeartbeats: (interval, tick) => {
        stopping();
        heartbeat = setInterval(tick, interval);
        return stopping;
      },
      prove: async (connection) => {
        const message = new TextEncoder().encode(joinProofText(options.cluster, identity.nodeId, connection));
        const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', identity.privateKey, message));
        return { publicKey: toBase64url(identity.publicKey), signature: toBase64url(signature) };
      },
    });
    // The join told the cluster's Q; the views it pushed meanwhile wait in the host for the node.
    const started = await host.start(signaling.partitions);
    if (!started.ok) throw wireError(started);
    host.attachServer(relay.take()!, relayFrameBytes(signaling.limits?.maxFrameBytes));
  } catch (error) {
    await stop('closed');
    throw error;
  }
  const joined = signaling;
  const { keys, hints } = await storage.stats();
  logger.info({ nodeId: identity.nodeId, domain: identity.domain, signedFrom, keys, hints }, 'always-on node joined');
  return {
    nodeId: identity.nodeId,
    domain: identity.domain,
    view: () => joined.view,
    close: (closeOptions = {}) => stop('closed', closeOptions.leave === true),
    stopped: whenStopped,
  };
}

/** What a description's `auth` carries for the certificate whose SHA-256 fingerprint is `fingerprint`. */
async function vouch(identity: NodeIdentity, fingerprint: string): Promise<PeerAuth> {
  const text = new TextEncoder().encode(fingerprintText(identity.cluster, identity.nodeId, fingerprint));
  const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', identity.privateKey, text));
  return {
    publicKey: toBase64url(identity.publicKey),
    fingerprint: fingerprint.toUpperCase(),
    signature: toBase64url(signature),
  };
}

/** The node's counters as a tab pushes them (client/store.ts). */
async function pushMetrics(host: NodeHost, signaling: SignalingClient): Promise<void> {
  const outcome = await host.metrics();
  if (outcome.ok) signaling.pushMetrics(metricsSnapshot(outcome.value));
}

function log(logger: Logger, entry: LogEntry): void {
  logger[entry.level](entry.fields, entry.msg);
}

function wireError(outcome: Extract<Outcome<unknown>, { ok: false }>): Error {
  return errorFromCode(outcome.error.code as ErrorCode, outcome.error.message);
}
