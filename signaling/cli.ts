/**
 * Starts the signalling server:
 * `node --import tsx signaling/cli.ts [--port P] [--host H] [--secret-file F] [--allow-origin O]… [--static DIR]
 * [--redis URL]`. With `--redis`, any number of such processes run as one service on that Redis.
 * `PORT` is read when `--port` is absent; the secret comes from `DYNAMESH_SECRET` or `--secret-file`, never from
 * the command line, where any user of the machine could read it (`ps`) and the shell's history keeps it.
 * `LOG_LEVEL` sets the log level. The static directory defaults to `dist/` at the repository root (the built demo).
 * SIGINT and SIGTERM close it cleanly.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSignalingServer, SIGNALING_DEFAULTS } from './server.ts';
import { readSecret } from './secret.ts';

const USAGE = `usage: node --import tsx signaling/cli.ts [options]
  --port P                 port to listen on (env PORT; default ${SIGNALING_DEFAULTS.port}; 0 picks one)
  --host H                 interface to bind (default ${SIGNALING_DEFAULTS.host}); beyond loopback only with a secret
  --secret-file F          admit only joins with a token minted with the secret in file F (or env DYNAMESH_SECRET;
                           default: open), and serve /metrics only with Authorization: Bearer <secret>
  --allow-origin O         web pages of origin O (e.g. https://app.example.com) may connect, besides the server's
                           own and loopback pages; repeat for more, or * for any page
  --static DIR             built demo to serve at / (default: dist/ at the repository root)
  --redis URL              run as one process of a service on Redis (redis://host:port): start any number of
                           processes with the same URL; tabs given several of them fail over between them
                           (default: one process, everything in memory)
  --redis-prefix P         prefix of the service's keys in Redis (default dynamesh:)
  --process-id ID          this process's name in the service and its /metrics (default: host-pid-random)
  --heartbeat-interval MS  default ${SIGNALING_DEFAULTS.heartbeatInterval}
  --heartbeat-timeout MS   default ${SIGNALING_DEFAULTS.heartbeatTimeout}
  --suspect-grace MS       how long past the timeout a silent member that announced its tab hidden or frozen
                           stays in the view as suspect; 0 turns it off (default ${SIGNALING_DEFAULTS.suspectGrace})
  --partitions Q           ring partitions of every cluster, a power of two chosen for the largest size a cluster
                           will reach (default ${SIGNALING_DEFAULTS.partitions}, which serves 1,000 nodes)
  --max-members N          members per cluster (default ${SIGNALING_DEFAULTS.maxMembersPerCluster})
  --max-clusters N         clusters in all (default ${SIGNALING_DEFAULTS.maxClusters})
  --max-clusters-per-address N
                           clusters created from one client address (default ${SIGNALING_DEFAULTS.maxClustersPerAddress})
  --max-connections N      open connections in all (default ${SIGNALING_DEFAULTS.maxConnections})
  --max-connections-per-address N
                           open connections from one client address (default ${SIGNALING_DEFAULTS.maxConnectionsPerAddress})
  --max-ids-per-address N  members (node ids) joined from one client address (default ${SIGNALING_DEFAULTS.maxIdsPerAddress})
  --max-connections-per-token N
                           with a secret: open connections joined with one token (default ${SIGNALING_DEFAULTS.maxConnectionsPerToken})
  --max-ids-per-token N    with a secret: members (node ids) joined with one token (default ${SIGNALING_DEFAULTS.maxIdsPerToken})
  --max-frame-bytes N      largest peer frame relayed between members without a peer connection (default ${SIGNALING_DEFAULTS.maxFrameBytes})
  --max-frames-per-second N
                           peer frames relayed per second per connection (default ${SIGNALING_DEFAULTS.maxFramesPerSecond})
  --help`;

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    secret: { type: 'string' },
    'secret-file': { type: 'string' },
    'allow-origin': { type: 'string', multiple: true },
    static: { type: 'string' },
    redis: { type: 'string' },
    'redis-prefix': { type: 'string' },
    'process-id': { type: 'string' },
    'heartbeat-interval': { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    'suspect-grace': { type: 'string' },
    partitions: { type: 'string' },
    'max-members': { type: 'string' },
    'max-clusters': { type: 'string' },
    'max-clusters-per-address': { type: 'string' },
    'max-connections': { type: 'string' },
    'max-connections-per-address': { type: 'string' },
    'max-ids-per-address': { type: 'string' },
    'max-connections-per-token': { type: 'string' },
    'max-ids-per-token': { type: 'string' },
    'max-frame-bytes': { type: 'string' },
    'max-frames-per-second': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

if (values.help === true) {
  console.log(USAGE);
  process.exit(0);
}

if (values.secret !== undefined) {
  console.error(`--secret is not taken: a secret on the command line shows in ps and in the shell's history.
Put it in DYNAMESH_SECRET or in a file named by --secret-file.\n${USAGE}`);
  process.exit(2);
}
let secret: string | undefined;
try {
  secret = readSecret(values['secret-file'], process.env);
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(2);
}
const origins = values['allow-origin'] ?? [];

const server = await createSignalingServer({
  port: integer('--port', values.port ?? process.env.PORT) ?? SIGNALING_DEFAULTS.port,
  host: values.host,
  secret,
  allowedOrigins: origins.includes('*') ? '*' : origins,
  staticDir: values.static ?? fileURLToPath(new URL('../dist/', import.meta.url)),
  redis: values.redis,
  redisPrefix: values['redis-prefix'],
  processId: values['process-id'],
  heartbeatInterval: integer('--heartbeat-interval', values['heartbeat-interval']),
  heartbeatTimeout: integer('--heartbeat-timeout', values['heartbeat-timeout']),
  suspectGrace: integer('--suspect-grace', values['suspect-grace']),
  partitions: integer('--partitions', values.partitions),
  maxMembersPerCluster: integer('--max-members', values['max-members']),
  maxClusters: integer('--max-clusters', values['max-clusters']),
  maxClustersPerAddress: integer('--max-clusters-per-address', values['max-clusters-per-address']),
  maxConnections: integer('--max-connections', values['max-connections']),
  maxConnectionsPerAddress: integer('--max-connections-per-address', values['max-connections-per-address']),
  maxIdsPerAddress: integer('--max-ids-per-address', values['max-ids-per-address']),
  maxConnectionsPerToken: integer('--max-connections-per-token', values['max-connections-per-token']),
  maxIdsPerToken: integer('--max-ids-per-token', values['max-ids-per-token']),
  maxFrameBytes: integer('--max-frame-bytes', values['max-frame-bytes']),
  maxFramesPerSecond: integer('--max-frames-per-second', values['max-frames-per-second']),
}).catch((error: unknown) => {
  console.error(`signalling server failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

server.logger.info(
  { url: server.url, secured: secret !== undefined, allowedOrigins: origins, processId: server.processId },
  `signalling server listening on ${server.url}`,
);
// The log above is JSON for machines; this line is for the person who ran `npm start`.
process.stderr.write(`dynamesh: open ${server.url}/ in several tabs: each becomes a node of the cluster "demo"\n`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        server.logger.error({ err: error }, 'close failed');
        process.exit(1);
      },
    );
  });
}

function integer(flag: string, text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`${flag} must be a non-negative integer, got ${JSON.stringify(text)}\n${USAGE}`);
    process.exit(2);
  }
  return value;
}
