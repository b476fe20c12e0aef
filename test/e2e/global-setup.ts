/**
 * Builds the demo page for the run. It goes to a fresh temporary directory rather than to `dist/`: building takes
 * about a second, a fresh build can never be stale, and the tests then do not depend on (or race with) whatever
 * `npm start` or a developer last built there. Set `DYNAMESH_E2E_STATIC_DIR` to test an existing build instead.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The environment variable through which the tests learn where the built demo is. */
export const STATIC_DIR_ENV = 'DYNAMESH_E2E_STATIC_DIR';

/** Builds the demo unless a build was named; returns the teardown that removes what it built. */
export default async function globalSetup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env[STATIC_DIR_ENV] !== undefined) return undefined;
  const root = resolve(import.meta.dirname, '../..');
  const outDir = await mkdtemp(join(tmpdir(), 'dynamesh-e2e-'));
  // Imported here, not at the top: the tests import this module for STATIC_DIR_ENV and need no Vite.
  const { build } = await import('vite');
  try {
    await build({
      configFile: join(root, 'vite.config.ts'),
      root: join(root, 'demo'),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
  } catch (error) {
    await rm(outDir, { recursive: true, force: true });
    throw error;
  }
  // Playwright starts its workers after the global setup, and they inherit this environment.
  process.env[STATIC_DIR_ENV] = outDir;
  return async () => {
    await rm(outDir, { recursive: true, force: true });
  };
}
