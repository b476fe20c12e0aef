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
  plugins: [
    esbuildPlugin({ ts: true, target: 'es2022' }),
    // simple-peer ships a UMD bundle, which sets window.SimplePeer when loaded as a module; the library imports its
    // default export, as Vite's CommonJS interop gives it. The same here, for tests of the mesh (client/mesh.ts).
    {
      name: 'simple-peer-default-export',
      transform(context) {
        if (context.path.endsWith('/simple-peer/simplepeer.min.js')) {
          return { body: `${context.body}\nexport default window.SimplePeer;\n` };
        }
        return undefined;
      },
    },
  ],
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
