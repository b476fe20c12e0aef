// @ts-check
/**
 * web-test-runner: browser tests (test/browser) in the Debian Chromium, driven by Playwright. TypeScript is
 * transformed by esbuild per file, so `.ts` imports with explicit extensions load as they are written, in pages
 * and in module workers alike.
 */
import { esbuildPlugin } from '@web/dev-server-esbuild';
import { playwrightLauncher } from '@web/test-runner-playwright';

export default {
  files: 'test/browser/**/*.test.ts',
  nodeResolve: true,
  plugins: [esbuildPlugin({ ts: true, target: 'es2022' })],
  browsers: [
    playwrightLauncher({
      product: 'chromium',
      launchOptions: {
        executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
        // Playwright adds --headless and --no-sandbox itself (NOTES-chromium.md); no GPU in CI containers.
        args: ['--disable-gpu', '--disable-dev-shm-usage'],
      },
    }),
  ],
  testFramework: { config: { timeout: 10000 } },
  testsFinishTimeout: 60000,
};
