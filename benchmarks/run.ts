// `npm run bench`: runs the benchmarks, prints a table, and writes JSON
// (benchmarks/results/<host>-<date>.json, or --out FILE).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadAddon } from '../lib/native.js';
import { benchmarkCpuTiny } from './cpu-tiny.js';
import { repoRoot } from '../test/fixtures/repo-root.js';

const { values } = parseArgs({ options: { out: { type: 'string' } } });
const { info } = loadAddon();
const cpuTiny = await benchmarkCpuTiny();

const report = {
  date: new Date().toISOString(),
  host: { name: hostname(), cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version },
  backend: info,
  cpuTiny,
};

console.table(
  cpuTiny.map((r) => ({
    case: r.name,
    'prefill tok/s': Math.round(r.prefillTokensPerSecond),
    'decode tok/s': Math.round(r.decodeTokensPerSecond),
    'vision ms': r.visionMs.toFixed(1),
    'prefill ms': r.prefillMs.toFixed(1),
  })),
);
const out = values.out ?? join(repoRoot(), 'benchmarks', 'results', `${hostname()}-${report.date.slice(0, 10)}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
console.log(`wrote ${out}`);
