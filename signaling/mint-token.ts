/**
 * Prints a join token: `DYNAMESH_SECRET=… node --import tsx signaling/mint-token.ts --cluster C [--ttl 3600]
 * [--node N]`, or with `--secret-file F`. The secret is never taken from the command line (see cli.ts).
 */
import { parseArgs } from 'node:util';
import { readSecret } from './secret.ts';
import { DEFAULT_TOKEN_TTL_SECONDS, mintToken } from './token.ts';

const USAGE = `usage: DYNAMESH_SECRET=S node --import tsx signaling/mint-token.ts --cluster C [--ttl SECONDS] [--node ID]
  --secret-file F  read the server's secret from file F instead of DYNAMESH_SECRET
  --cluster C    the cluster the token admits
  --ttl SECONDS  lifetime (default ${DEFAULT_TOKEN_TTL_SECONDS})
  --node ID      admit only this node id`;

try {
  const { values } = parseArgs({
    options: {
      secret: { type: 'string' },
      'secret-file': { type: 'string' },
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
  if (values.secret !== undefined) {
    throw new Error('--secret is not taken (it would show in ps and in the shell history): use DYNAMESH_SECRET');
  }
  const secret = readSecret(values['secret-file'], process.env);
  if (secret === undefined) throw new Error('the secret is required: DYNAMESH_SECRET or --secret-file');
  if (values.cluster === undefined) throw new Error('--cluster is required');
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
