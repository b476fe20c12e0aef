/**
 * What a signalling server process needs to run as one of a service on Redis: the Socket.IO Redis adapter (rooms,
 * so pushes and relays reach connections on every process) and the membership store in Redis (redis-store.ts).
 * The server loads this module only when given a Redis URL, so a server in memory needs neither ioredis nor Redis.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { MembershipOptions } from './membership.ts';
import type { SharedKeyBindings } from './node-keys.ts';
import { PROCESS_ID_PATTERN, RedisMembershipStore } from './redis-store.ts';

/**
 * How long a cluster's bindings of random node ids to keys last in Redis after the last one made, ms: a process
 * keeps them while it runs (node-keys.ts); a service, which outlives its processes, for 30 days.
 */
const KEY_BINDING_MS = 30 * 24 * 3600 * 1000;

/** Default prefix of the service's keys and channels in Redis. */
export const DEFAULT_REDIS_PREFIX = 'dynamesh:';

/** A process id unique to this process: the host name, the pid and random characters. */
export function defaultProcessId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .slice(0, 40);
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** Options of {@link connectRedisService}. */
export interface RedisServiceOptions {
  /** `redis://host:port` (ioredis's URL forms). */
  readonly url: string;
  readonly prefix: string;
  readonly processId: string;
  readonly membership: MembershipOptions;
  readonly sweepInterval: number;
  readonly logger: Logger;
}

/** A process's connections to the service's Redis. */
export interface RedisService {
  readonly processId: string;
  /** For Socket.IO's `adapter` option. */
  readonly adapter: ReturnType<typeof createAdapter>;
  readonly store: RedisMembershipStore;
  /** The bindings of random node ids to keys, shared by every process (node-keys.ts). */
  readonly keys: SharedKeyBindings;
  /** Closes the connections to Redis; idempotent. */
  close(): Promise<void>;
}

/** Connects to Redis (rejects when it cannot) and makes the adapter and the store. */
export async function connectRedisService(options: RedisServiceOptions): Promise<RedisService> {
  if (!PROCESS_ID_PATTERN.test(options.processId)) {
    throw new RangeError(`processId must match ${String(PROCESS_ID_PATTERN)}, got ${options.processId}`);
  }
  // A command gives up after a few retries rather than wait forever for a Redis that is gone: the event fails, its
  // tab asks again (a heartbeat, a re-join), and meanwhile the tabs keep serving on their last view.
  const commands = new Redis(options.url, { lazyConnect: true, maxRetriesPerRequest: 3 });
  const { logger } = options;
  let lastError = '';
  const report = (role: string) => (error: Error) => {
    // ioredis retries by itself; one line per new error, not one per retry.
    if (error.message === lastError) return;
    lastError = error.message;
    logger.error({ err: error, role }, 'redis connection error');
  };
  commands.on('error', report('commands'));
  await commands.connect();
  const publisher = commands.duplicate();
  const subscriber = commands.duplicate();
  publisher.on('error', report('publisher'));
  subscriber.on('error', report('subscriber'));
  const adapter = createAdapter(publisher, subscriber, { key: `${options.prefix}socket.io` });
  const store = new RedisMembershipStore({
    redis: commands,
    prefix: options.prefix,
    processId: options.processId,
    membership: options.membership,
    sweepInterval: options.sweepInterval,
  });
  const bindings = (cluster: string): string => `${options.prefix}keys:${cluster}`;
  const keys: SharedKeyBindings = {
    async get(cluster, nodeId) {
      return (await commands.hget(bindings(cluster), nodeId)) ?? undefined;
    },
    async bind(cluster, nodeId, publicKey) {
      const replies = await commands
        .multi()
        .hsetnx(bindings(cluster), nodeId, publicKey)
        .pexpire(bindings(cluster), KEY_BINDING_MS)
        .hget(bindings(cluster), nodeId)
        .exec();
      return (replies?.[2]?.[1] as string | null) ?? publicKey;
    },
  };
  logger.info({ processId: options.processId, prefix: options.prefix }, 'membership kept in redis');
  let closing: Promise<void> | undefined;
  return {
    processId: options.processId,
    adapter,
    store,
    keys,
    close() {
      // A connection that is not up (Redis gone) is cut: QUIT would wait for a reconnection that may never come.
      closing ??= Promise.all(
        [commands, publisher, subscriber].map((client) =>
          client.status === 'ready'
            ? client.quit().then(
                () => undefined,
                () => client.disconnect(),
              )
            : client.disconnect(),
        ),
      ).then(() => undefined);
      return closing;
    },
  };
}
