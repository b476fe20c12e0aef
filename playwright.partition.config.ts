/**
 * Playwright for the partition test (test/partition): five tabs under a nemesis for `PARTITION_MS`, then a heal and
 * a check of the recorded history. Kept apart from playwright.config.ts so that `npm run test:e2e` stays as it is.
 * The global setup builds the test's own page (no UI, one client loop) once per run.
 */
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: 'test/partition',
  testMatch: '**/*.spec.ts',
  globalSetup: './test/partition/global-setup.ts',
  workers: 1,
  fullyParallel: false,
  // A partition run that fails found something: its seed and logs say what, and a repeat would hide it.
  retries: 0,
  forbidOnly: !!process.env['CI'],
  // The test sets its own timeout from PARTITION_MS.
  reporter: 'list',
  outputDir: 'test-results/partition',
  use: {
    browserName: 'chromium',
    headless: true,
    actionTimeout: 30_000,
    navigationTimeout: 30_000,
    trace: 'off',
    launchOptions: {
      executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
      // Playwright adds --headless and --no-sandbox itself (NOTES-chromium.md); containers have no GPU and a small /dev/shm.
      args: ['--disable-gpu', '--disable-dev-shm-usage'],
    },
  },
});
