/**
 * `npm run node -- --url URL --cluster NAME --data DIR [--token TOKEN] [--leave-on-exit]`: runs the always-on node
 * of DIR (always-on/node.ts) until SIGINT or SIGTERM, logging JSON lines to stdout (pino). A second signal ends the
 * process at once. Exit codes: 0 stopped cleanly, 1 could not start or had to stop (the reason is logged), 2 bad
 * arguments.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startAlwaysOnNode } from './node.ts';
import { isClusterName } from '../signaling/validate.ts';

const USAGE =
  'usage: npm run node -- --url URL --cluster NAME --data DIR [--token TOKEN] [--leave-on-exit] ' +
  '[--log-level debug|info|warn|error]';

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      url: { type: 'string' },
      cluster: { type: 'string' },
      data: { type: 'string' },
      token: { type: 'string' },
      'leave-on-exit': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
}
try {
  parsed = parse();
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
const { values } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const { url, cluster, data, token } = values;
const level = values['log-level'];
if (url === undefined || !/^https?:\/\//.test(url)) fail('--url must be the signalling server, http(s)://host:port');
if (!isClusterName(cluster)) fail('--cluster must match [A-Za-z0-9_-]{1,64}');
if (data === undefined || data === '') fail('--data must name the node directory');
if (!['debug', 'info', 'warn', 'error'].includes(level)) fail('--log-level must be debug, info, warn or error');

const logger = pino({ level, base: { cluster } });
// A bug must not leave a half-working node serving on: say so in the log, then exit for a supervisor to restart it.
const crash = (kind: string) => (error: unknown) => {
  logger.fatal({ err: error }, `${kind}: exiting`);
  process.exit(1);
};
process.on('uncaughtException', crash('uncaught exception'));
process.on('unhandledRejection', crash('unhandled rejection'));

let node: Awaited<ReturnType<typeof startAlwaysOnNode>>;
try {
  node = await startAlwaysOnNode({
    url,
    cluster,
    // npm runs scripts in the package's directory: a relative DIR means the one the user typed it in.
    directory: resolve(process.env['INIT_CWD'] ?? process.cwd(), data),
    logger,
    ...(token !== undefined ? { token } : {}),
  });
} catch (error) {
  logger.fatal({ err: error, data }, 'the always-on node could not start');
  process.exit(1);
}

// A node that stops by itself cannot take part any more (see StopReason): exit 1, for a supervisor to restart it.
void node.stopped.then(({ reason }) => process.exit(reason === 'closed' ? 0 : 1));

let stopping = false;
const stop = (signal: NodeJS.Signals): void => {
  if (stopping) {
    logger.warn({ signal }, 'second signal: exiting at once');
    process.exit(1);
  }
  stopping = true;
  logger.info({ signal }, 'stopping');
  node.close({ leave: values['leave-on-exit'] }).catch((error: unknown) => {
    logger.error({ err: error }, 'the always-on node did not stop cleanly');
    process.exit(1);
  });
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
