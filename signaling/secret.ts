/**
 * Where the server's secret comes from: the file named by `--secret-file`, else the environment's
 * `DYNAMESH_SECRET`, never the command line (see cli.ts). Shared by the server's command and `mint-token`.
 */
import { readFileSync } from 'node:fs';

/**
 * The secret in `file` (its text without the trailing line break an editor adds), else `env.DYNAMESH_SECRET`, else
 * undefined (an open server). Throws an Error naming the file when it cannot be read or holds nothing.
 */
export function readSecret(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read the secret file ${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const secret = text.replace(/\r?\n$/, '');
    if (secret === '') throw new Error(`the secret file ${file} is empty`);
    return secret;
  }
  const secret = env.DYNAMESH_SECRET;
  return secret === undefined || secret === '' ? undefined : secret;
}
