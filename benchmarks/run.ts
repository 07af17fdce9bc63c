// `npm run bench`: runs the benchmarks, prints a table, and writes JSON
// (benchmarks/results/<host>-<date>.json, or --out FILE).
// Where the CUDA backend loads, the GPU benchmark (benchmarks/gpu.ts) runs
// too; --no-gpu skips it, --gpu-only skips the CPU one, --no-peers skips
// transformers and the graphed PyTorch step (for A/B runs of ours alone).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadAddon } from '../lib/native.js';
import { benchmarkCpuTiny, type CpuTinyResult } from './cpu-tiny.js';
import { benchmarkGpu, type GpuBenchResult } from './gpu.js';
import { repoRoot } from '../test/fixtures/repo-root.js';

const { values } = parseArgs({
  options: { out: { type: 'string' }, 'no-gpu': { type: 'boolean' }, 'gpu-only': { type: 'boolean' }, 'no-peers': { type: 'boolean' } },
});
const { info } = loadAddon();
const cudaAvailable = info.backend === 'cuda' && info.available;

let cpuTiny: CpuTinyResult[] | undefined;
if (!values['gpu-only']) {
  cpuTiny = await benchmarkCpuTiny();
  console.table(
    cpuTiny.map((r) => ({
      case: r.name,
      'prefill tok/s': Math.round(r.prefillTokensPerSecond),
      'decode tok/s': Math.round(r.decodeTokensPerSecond),
      'vision ms': r.visionMs.toFixed(1),
      'prefill ms': r.prefillMs.toFixed(1),
    })),
  );
}

let gpu: GpuBenchResult | { error: string } | undefined;
if (cudaAvailable && !values['no-gpu']) {
  try {
    gpu = await benchmarkGpu({ peers: !values['no-peers'] });
  } catch (error) {
    console.error(`the GPU benchmark failed: ${(error as Error).stack ?? String(error)}`);
    gpu = { error: (error as Error).message };
    process.exitCode = 1;
  }
} else if (values['gpu-only']) {
  console.error(`--gpu-only, but the CUDA backend is not available (${info.backend}: ${info.error ?? 'no CUDA build loaded'})`);
  process.exitCode = 1;
}

const report = {
  date: new Date().toISOString(),
  host: { name: hostname(), cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
  backend: info,
  ...(cpuTiny ? { cpuTiny } : {}),
  ...(gpu ? { gpu } : {}),
};

const out = values.out ?? join(repoRoot(), 'benchmarks', 'results', `${hostname()}-${report.date.slice(0, 10)}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
console.log(`wrote ${out}`);
