// Runs the C++ core's own test executables (native/tests/*_test.cpp) as part
// of `npm test`, one vitest case per executable, so CI sees every native check.
// The core builds standalone (no napi.h) into build/native-tests.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const buildDir = join(root, 'build', 'native-tests');
const testNames = readdirSync(join(root, 'native', 'tests'))
  .filter((file) => file.endsWith('_test.cpp'))
  .map((file) => file.replace(/\.cpp$/, ''))
  .sort();

beforeAll(() => {
  const jobs = process.env.REX_OMNI_BUILD_JOBS ?? String(availableParallelism());
  execFileSync('cmake', ['-S', root, '-B', buildDir, '-DREX_BUILD_ADDON=OFF', '-DREX_WITH_CUDA=OFF', '-DCMAKE_BUILD_TYPE=Release'], {
    stdio: 'pipe',
  });
  execFileSync('cmake', ['--build', buildDir, '--parallel', jobs], { stdio: 'pipe', maxBuffer: 64 << 20 });
}, 20 * 60_000);

describe('native C++ tests', () => {
  it('has native test executables to run', () => {
    expect(testNames.length).toBeGreaterThan(0);
  });

  for (const name of testNames) {
    it(name, () => {
      const run = spawnSync(join(buildDir, name), [], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
      const output = `${run.stdout}\n${run.stderr}`;
      const summary = /(\d+) passed, (\d+) failed/.exec(run.stdout);
      expect(summary, `no summary line from ${name}:\n${output}`).not.toBeNull();
      expect(Number(summary![2]), output).toBe(0);
      expect(Number(summary![1])).toBeGreaterThan(0);
      expect(run.status, output).toBe(0);
    }, 10 * 60_000);
  }
});
