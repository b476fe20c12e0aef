/**
 * Prints a join token: `node --import tsx signaling/mint-token.ts --secret S --cluster C [--ttl 3600] [--node N]`.
 * The secret may come from `DYNAMESH_SECRET` instead of the flag (it then stays out of the shell history).
 */
import { parseArgs } from 'node:util';
import { DEFAULT_TOKEN_TTL_SECONDS, mintToken } from './token.ts';

const USAGE = `usage: node --import tsx signaling/mint-token.ts --secret S --cluster C [--ttl SECONDS] [--node ID]
  --secret S     the server's secret (env DYNAMESH_SECRET)
  --cluster C    the cluster the token admits
  --ttl SECONDS  lifetime (default ${DEFAULT_TOKEN_TTL_SECONDS})
  --node ID      admit only this node id`;

try {
  const { values } = parseArgs({
    options: {
      secret: { type: 'string' },
      cluster: { type: 'string' },
      ttl: { type: 'string' },
      node: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(USAGE);
    process.exit(0);
  }
  const secret = values.secret ?? process.env.DYNAMESH_SECRET;
  if (secret === undefined || secret === '' || values.cluster === undefined)
    throw new Error('--secret and --cluster are required');
  const ttlSeconds = values.ttl === undefined ? DEFAULT_TOKEN_TTL_SECONDS : Number(values.ttl);
  console.log(
    mintToken({
      secret,
      cluster: values.cluster,
      ttlSeconds,
      ...(values.node === undefined ? {} : { nodeId: values.node }),
    }),
  );
} catch (error) {
  console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  process.exit(2);
}
