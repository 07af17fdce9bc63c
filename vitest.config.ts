// vitest: every suite under test/, the tiny checkpoint generated once up front
// (test/setup/global.ts), suites in forked processes (native addons).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // GPU suites run only through `npm run test:gpu` (REX_OMNI_GPU_TESTS=1) on a CUDA machine.
    exclude: process.env.REX_OMNI_GPU_TESTS ? [] : ['test/gpu/**'],
    globalSetup: ['test/setup/global.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
