import { defineConfig } from '@playwright/test';

// The tests run against a real control plane (--dev: embedded store, node and
// a local pool) that e2e/global-setup.ts starts on free loopback ports, in
// Debian's Chromium (these machines cannot download Playwright's browsers).
export default defineConfig({
  testDir: './e2e',
  workers: 1,
  reporter: 'list',
  timeout: 90_000,
  expect: { timeout: 15_000 },
  globalSetup: './e2e/global-setup.ts',
  globalTeardown: './e2e/global-teardown.ts',
  outputDir: './test-results',
  use: {
    launchOptions: { executablePath: process.env.CHROMIUM || '/usr/bin/chromium' },
    viewport: { width: 1280, height: 800 },
    // The --dev control plane's certificate is signed by its own cluster CA.
    ignoreHTTPSErrors: true,
  },
});
