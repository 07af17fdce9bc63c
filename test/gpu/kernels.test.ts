// GPU machine only (`npm run test:gpu`): builds the C++ core standalone with
// CUDA and its tests (the addon build passes REX_BUILD_TESTS=OFF, so build/
// has none) into build/native-gpu, then runs the CUDA kernel tests
// (native/tests/*_test.cu, ctest label `gpu`) and prints their whole output:
// the timing lines in it are read from the device log.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { acquireGpuLock, log } from '../fixtures/gpu-harness.js';
import { repoRoot } from '../fixtures/repo-root.js';

// Same test as vitest.config.ts's: whenever this folder is included, these run (never a silent skip).
const GPU = Boolean(process.env.REX_OMNI_GPU_TESTS);
const root = repoRoot();
const buildDir = join(root, 'build', 'native-gpu');
const cudaTests = readdirSync(join(root, 'native', 'tests'))
  .filter((f) => f.endsWith('_test.cu'))
  .map((f) => f.replace(/\.cu$/, ''))
  .sort();

function run(command: string, args: string[], timeoutMs: number): { status: number | null; output: string; seconds: number } {
  log(`$ ${command} ${args.join(' ')}`);
  const started = performance.now();
  const r = spawnSync(command, args, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20, timeout: timeoutMs });
  const seconds = (performance.now() - started) / 1000;
  if (r.error) throw new Error(`${command} could not run: ${r.error.message}`);
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ? `\n[stderr]\n${r.stderr}` : ''}`, seconds };
}

describe.skipIf(!GPU)('CUDA kernel tests (ctest -L gpu)', () => {
  beforeAll(() => {
    const jobs = process.env.REX_OMNI_BUILD_JOBS ?? String(availableParallelism());
    const configure = run(
      'cmake',
      ['-S', root, '-B', buildDir, '-DREX_BUILD_ADDON=OFF', '-DREX_BUILD_TESTS=ON', '-DREX_WITH_CUDA=ON', '-DCMAKE_BUILD_TYPE=Release'],
      10 * 60_000,
    );
    const status = configure.output.split('\n').filter((l) => l.includes('rex-omni:'));
    log(`cmake configure: exit ${configure.status} in ${configure.seconds.toFixed(0)} s; ${status.join(' | ')}`);
    if (configure.status !== 0) throw new Error(`cmake configure failed (exit ${configure.status}):\n${configure.output}`);
    if (!/rex-omni: CUDA kernels ON, cuBLASLt ON/.test(configure.output)) {
      throw new Error(`cmake must find nvcc and cuBLASLt to build the GPU tests, but said: ${status.join(' | ') || '(no rex-omni status line)'}`);
    }
    // Only the GPU tests (and what they link): the CPU suites run in CI.
    const build = run('cmake', ['--build', buildDir, '--parallel', jobs, '--target', ...cudaTests], 40 * 60_000);
    log(`cmake --build: exit ${build.status} in ${build.seconds.toFixed(0)} s`);
    if (build.status !== 0) throw new Error(`cmake --build ${buildDir} failed (exit ${build.status}):\n${build.output.slice(-60_000)}`);
  }, 55 * 60_000);

  it('has CUDA kernel tests', () => {
    log(`CUDA kernel test sources: ${cudaTests.join(', ') || '(none)'}`);
    expect(cudaTests.length, 'native/tests/*_test.cu').toBeGreaterThan(0);
  });

  it('passes every gpu-labelled ctest', async () => {
    const release = await acquireGpuLock('kernels');
    let r: ReturnType<typeof run>;
    try {
      r = run(
        'ctest',
        ['--test-dir', buildDir, '-L', 'gpu', '--output-on-failure', '--verbose', '--no-tests=error', '--timeout', '1500'],
        55 * 60_000,
      );
    } finally {
      release();
    }
    // The whole output, timing lines included.
    console.log(`\n==== ctest -L gpu (exit ${r.status}, ${r.seconds.toFixed(1)} s)\n${r.output}`);
    process.stderr.write(`\n==== ctest -L gpu (exit ${r.status}, ${r.seconds.toFixed(1)} s)\n${r.output}\n`);

    // ctest prints "100% tests passed, 0 tests failed out of 9", or without the middle part when all pass.
    const ran = /(\d+)% tests passed,?(?: (\d+) tests? failed)? out of (\d+)/.exec(r.output);
    expect(ran, 'ctest summary line').not.toBeNull();
    expect(Number(ran![3]), 'every *_test.cu ran').toBe(cudaTests.length);
    expect(Number(ran![2] ?? 0), 'failed ctests').toBe(0);
    // Each executable prints "N passed, M failed" (native/tests/test_harness.h): no empty binary counts as a pass.
    const summaries = [...r.output.matchAll(/(\d+) passed, (\d+) failed/g)];
    expect(summaries.length, 'one "N passed, M failed" line per test executable').toBe(cudaTests.length);
    for (const s of summaries) {
      expect(Number(s[2])).toBe(0);
      expect(Number(s[1])).toBeGreaterThan(0);
    }
    expect(r.status).toBe(0);
  }, 60 * 60_000);
});
