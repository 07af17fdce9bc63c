// The HTTP server's cost over the engine's own: the same detection requests
// run (1) straight through RexOmni at a fixed concurrency and (2) over HTTP
// through createServer with autocannon at the same number of connections
// (default 64). Prints both throughputs and the server's overhead, and
// writes them as JSON. Meant for the GPU machine (issue 11: the server may
// add at most 5% to the engine's throughput cost); it runs anywhere.
//
//   node dist/benchmarks/serve-load.js --model IDEA-Research/Rex-Omni [--connections 64] [--amount 1024]
//     [--image test/fixtures/images/cafe.jpg] [--categories person,cup] [--max-new-tokens 256]
//     [--max-pixels N] [--backend auto|cpu|cuda] [--out FILE] [--max-overhead 5]
// Without --model it uses the tiny test checkpoint (CPU-sized numbers, for a dry run).
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

import { resolveModel } from '../lib/cli/model-source.js';
import { RexOmni } from '../lib/rex-omni.js';
import type { RunOptions } from '../lib/run-options.js';
import { createServer } from '../lib/server/index.js';
import { repoRoot } from '../test/fixtures/repo-root.js';
import { ensureTinyCheckpoint } from '../test/fixtures/tiny-checkpoint.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    connections: { type: 'string', default: '64' },
    amount: { type: 'string', default: '1024' },
    image: { type: 'string', default: join(repoRoot(), 'test', 'fixtures', 'images', 'cafe.jpg') },
    categories: { type: 'string', default: 'person,cup' },
    'max-new-tokens': { type: 'string', default: '256' },
    'max-pixels': { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    out: { type: 'string' },
    'max-overhead': { type: 'string', default: '5' },
  },
});

const connections = Number(values.connections);
const amount = Number(values.amount);
const maxNewTokens = Number(values['max-new-tokens']);
const categories = values.categories!.split(',').map((c) => c.trim()).filter(Boolean);
const image = readFileSync(values.image!);
const run: RunOptions = { maxNewTokens, ...(values['max-pixels'] ? { maxPixels: Number(values['max-pixels']) } : {}) };

interface Throughput {
  requests: number;
  wallSeconds: number;
  requestsPerSecond: number;
  generatedTokensPerSecond?: number;
  latencyMs?: { p50: number; p90: number; p99: number; max: number };
  errors?: number;
  non2xx?: number;
}

/** `amount` requests through the model, `connections` at a time, like autocannon's closed loop. */
async function direct(model: RexOmni, count: number): Promise<Throughput> {
  let next = 0;
  let tokens = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < count) {
        ++next;
        const result = await model.detect(image, categories, run);
        tokens += result.tokens.generated;
      }
    }),
  );
  const wallSeconds = (performance.now() - started) / 1000;
  return { requests: count, wallSeconds, requestsPerSecond: count / wallSeconds, generatedTokensPerSecond: tokens / wallSeconds };
}

async function overHttp(url: string, count: number): Promise<Throughput> {
  const query = new URLSearchParams({ categories: categories.join(','), maxNewTokens: String(maxNewTokens) });
  const started = performance.now();
  const result = await autocannon({
    url: `${url}/v1/detect?${query}`,
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: image,
    connections,
    amount: count,
    timeout: 600,
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const ok = result['2xx'];
  return {
    requests: ok,
    wallSeconds,
    requestsPerSecond: ok / wallSeconds,
    latencyMs: { p50: result.latency.p50, p90: result.latency.p90, p99: result.latency.p99, max: result.latency.max },
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

const dir = values.model ? await resolveModel(values.model) : await ensureTinyCheckpoint();
const model = await RexOmni.load(dir, { backend: values.backend as 'auto' | 'cpu' | 'cuda', maxActiveRequests: connections });
const server = await createServer(model, {
  env: {},
  maxActiveRequests: connections,
  maxQueuedRequests: connections,
  maxNewTokens,
  processMetrics: false,
  ...(run.maxPixels ? { runDefaults: { maxPixels: run.maxPixels } } : {}),
});
const url = await server.listen({ port: 0, host: '127.0.0.1' });
try {
  const warm = Math.min(connections, amount);
  await direct(model, warm);
  await overHttp(url, warm);
  // Engine, server, engine: the engine's figure is the mean of the runs on either side.
  const engineBefore = await direct(model, amount);
  const http = await overHttp(url, amount);
  const engineAfter = await direct(model, amount);
  const engineRps = (engineBefore.requestsPerSecond + engineAfter.requestsPerSecond) / 2;
  // Throughput cost = time per request; the server's overhead is how much it adds.
  const overheadPercent = (engineRps / http.requestsPerSecond - 1) * 100;
  const report = {
    date: new Date().toISOString(),
    model: dir,
    backend: model.info().backend,
    device: model.info().device?.name,
    connections,
    amount,
    image: values.image,
    categories,
    maxNewTokens,
    engine: { before: engineBefore, after: engineAfter, requestsPerSecond: engineRps },
    server: http,
    overheadPercent,
    maxOverheadPercent: Number(values['max-overhead']),
    withinLimit: overheadPercent <= Number(values['max-overhead']) && http.errors === 0 && http.non2xx === 0,
  };
  console.log(`backend ${report.backend}${report.device ? ` (${report.device})` : ''}, concurrency ${connections}, ${amount} requests`);
  console.log(`engine directly : ${engineRps.toFixed(2)} req/s (runs ${engineBefore.requestsPerSecond.toFixed(2)}, ${engineAfter.requestsPerSecond.toFixed(2)})`);
  console.log(
    `over HTTP       : ${http.requestsPerSecond.toFixed(2)} req/s, p50 ${http.latencyMs!.p50} ms, p99 ${http.latencyMs!.p99} ms, ${http.errors} errors, ${http.non2xx} non-2xx`,
  );
  console.log(`server overhead : ${overheadPercent.toFixed(2)}% (limit ${report.maxOverheadPercent}%) -> ${report.withinLimit ? 'ok' : 'OVER'}`);
  const out = values.out ?? join(repoRoot(), 'benchmarks', 'results', `serve-load-${report.backend}-${report.date.slice(0, 10)}.json`);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${out}`);
  process.exitCode = report.withinLimit ? 0 : 1;
} finally {
  await server.close();
  await model.close();
}
