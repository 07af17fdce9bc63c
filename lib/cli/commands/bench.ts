// `rex-omni bench`: runs the repository's benchmark (dist/benchmarks/run.js,
// `npm run bench`) with the same options. The benchmarks are part of the
// repository, not of the installed package.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';

import { packageRoot } from '../../native.js';
import { CliError } from '../exit-codes.js';

export function addBenchCommand(program: Command, setExitCode: (code: number) => void): void {
  program
    .command('bench')
    .summary('run the benchmark (CPU on the tiny checkpoint; GPU when CUDA loads)')
    .description('Runs benchmarks/run.ts (npm run bench): prints a table and writes JSON under benchmarks/results/.')
    .option('--out <file>', 'write the JSON report here')
    .option('--no-gpu', 'skip the GPU benchmark')
    .option('--gpu-only', 'run only the GPU benchmark')
    .action(async (options: { out?: string; gpu: boolean; gpuOnly?: boolean }) => {
      const script = join(packageRoot(), 'dist', 'benchmarks', 'run.js');
      if (!existsSync(script)) {
        throw new CliError(`no benchmark at ${script}: the benchmarks come with the repository (git clone, npm install), not with the package`);
      }
      const args = [...(options.out ? ['--out', options.out] : []), ...(options.gpu ? [] : ['--no-gpu']), ...(options.gpuOnly ? ['--gpu-only'] : [])];
      const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' });
      setExitCode(await new Promise<number>((resolve, reject) => child.on('error', reject).on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)))));
    });
}
