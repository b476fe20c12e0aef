/**
 * Playwright: the end-to-end tests of test/e2e, real tabs of the Debian Chromium forming clusters over real WebRTC
 * with the real signalling server, which each test starts for itself. The global setup builds the demo page once
 * per run into a directory of its own, so a run always tests the current sources and never races `npm start`.
 */
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: 'test/e2e',
  testMatch: '**/*.spec.ts',
  globalSetup: './test/e2e/global-setup.ts',
  // Every test opens several tabs, each a renderer and a worker: on two cores they must not also run side by side.
  workers: 1,
  fullyParallel: false,
  // A flaky end-to-end test is a bug to find, not a run to repeat.
  retries: 0,
  forbidOnly: !!process.env['CI'],
  // Generous: a test of five tabs takes 15 s on an idle 2-core machine, and CI machines are rarely idle.
  timeout: 90_000,
  expect: { timeout: 15_000 },
  reporter: 'list',
  outputDir: 'test-results',
  use: {
    browserName: 'chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    actionTimeout: 15_000,
    navigationTimeout: 20_000,
    // Tracing snapshots every page on every step: on two cores it slows a test of five tabs several times over.
    trace: 'off',
    launchOptions: {
      executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
      // Playwright adds --headless and --no-sandbox itself (NOTES-chromium.md); containers have no GPU and a small /dev/shm.
      args: ['--disable-gpu', '--disable-dev-shm-usage'],
    },
  },
});
