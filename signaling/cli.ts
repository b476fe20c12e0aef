/**
 * Starts the signalling server:
 * `node --import tsx signaling/cli.ts [--port P] [--host H] [--secret S] [--static DIR]`.
 * `PORT` and `DYNAMESH_SECRET` are read when the flags are absent; `LOG_LEVEL` sets the log level. The static
 * directory defaults to `dist/` at the repository root (the built demo). SIGINT and SIGTERM close it cleanly.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createSignalingServer, SIGNALING_DEFAULTS } from './server.ts';

const USAGE = `usage: node --import tsx signaling/cli.ts [options]
  --port P                 port to listen on (env PORT; default ${SIGNALING_DEFAULTS.port}; 0 picks one)
  --host H                 interface to bind (default ${SIGNALING_DEFAULTS.host})
  --secret S               admit only joins with a token minted with S (env DYNAMESH_SECRET; default: open)
  --static DIR             built demo to serve at / (default: dist/ at the repository root)
  --heartbeat-interval MS  default ${SIGNALING_DEFAULTS.heartbeatInterval}
  --heartbeat-timeout MS   default ${SIGNALING_DEFAULTS.heartbeatTimeout}
  --suspect-grace MS       how long past the timeout a silent member that announced its tab hidden or frozen
                           stays in the view as suspect; 0 turns it off (default ${SIGNALING_DEFAULTS.suspectGrace})
  --max-members N          members per cluster (default ${SIGNALING_DEFAULTS.maxMembersPerCluster})
  --help`;

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    secret: { type: 'string' },
    static: { type: 'string' },
    'heartbeat-interval': { type: 'string' },
    'heartbeat-timeout': { type: 'string' },
    'suspect-grace': { type: 'string' },
    'max-members': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});

if (values.help === true) {
  console.log(USAGE);
  process.exit(0);
}

const server = await createSignalingServer({
  port: integer('--port', values.port ?? process.env.PORT) ?? SIGNALING_DEFAULTS.port,
  host: values.host,
  secret: values.secret ?? process.env.DYNAMESH_SECRET,
  staticDir: values.static ?? fileURLToPath(new URL('../dist/', import.meta.url)),
  heartbeatInterval: integer('--heartbeat-interval', values['heartbeat-interval']),
  heartbeatTimeout: integer('--heartbeat-timeout', values['heartbeat-timeout']),
  suspectGrace: integer('--suspect-grace', values['suspect-grace']),
  maxMembersPerCluster: integer('--max-members', values['max-members']),
}).catch((error: unknown) => {
  console.error(`signalling server failed to start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});

server.logger.info(
  { url: server.url, secured: values.secret !== undefined || process.env.DYNAMESH_SECRET !== undefined },
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
