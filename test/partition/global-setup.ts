/**
 * Builds the partition test's page (test/partition/page) for the run into a fresh temporary directory, so the run
 * always tests the current sources. Set `DYNAMESH_PARTITION_STATIC_DIR` to use an existing build instead.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The environment variable through which the test learns where the built page is. */
export const PAGE_DIR_ENV = 'DYNAMESH_PARTITION_STATIC_DIR';

/** Builds the page unless a build was named; returns the teardown that removes what it built. */
export default async function globalSetup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env[PAGE_DIR_ENV] !== undefined) return undefined;
  const root = resolve(import.meta.dirname, '../..');
  const outDir = await mkdtemp(join(tmpdir(), 'dynamesh-partition-'));
  // Imported here, not at the top: the test imports this module for PAGE_DIR_ENV and needs no Vite.
  const { build } = await import('vite');
  try {
    await build({
      configFile: join(root, 'vite.config.ts'),
      root: join(root, 'test/partition/page'),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
  } catch (error) {
    await rm(outDir, { recursive: true, force: true });
    throw error;
  }
  // Playwright starts its workers after the global setup, and they inherit this environment.
  process.env[PAGE_DIR_ENV] = outDir;
  return async () => {
    await rm(outDir, { recursive: true, force: true });
  };
}
