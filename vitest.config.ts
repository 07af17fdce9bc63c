// vitest: every suite under test/, the tiny checkpoint generated once up front
// (test/setup/global.ts), suites in forked processes (native addons).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
