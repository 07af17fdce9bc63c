// The soak test (issue #10): many requests at once for a set time, mixing
// greedy tasks on repeated images (prefix-cache hits), random cancels and
// deadlines, corrupt images and bad options. It passes when:
//  - nothing crashes, and every failure is the typed error its fault calls for;
//  - every request that was neither cancelled nor past its deadline gives,
//    greedy, the same tokens as the same request run alone (batchInvariant,
//    so on the GPU the bits cannot depend on the batch);
//  - the KV cache returns to its baseline: nothing held but the prefix
//    cache's entries once every request is done;
//  - the device's used memory (cudaMemGetInfo, so the run must have the GPU
//    to itself) ends within DEVICE_SLACK_BYTES of where it began: the KV
//    pool, the prefix cache and the step buffers are allocated at load, and
//    what may come later is the CUDA graphs of batch sizes first met during
//    the soak.
// `runSoak` is what test/soak.test.ts runs for seconds on the CPU backend;
// `node dist/benchmarks/soak.js --model 3b --minutes 10` is the device run
// (`3b`: the generated checkpoint of the real shape; or a directory), also
// `bash scripts/device-check.sh build soak`.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
import type { RunOptions } from '../lib/run-options.js';
import type { TaskSpec } from '../lib/tasks/index.js';
import { ensure3bCheckpoint } from '../test/fixtures/gpu-harness.js';
import { seededRandom } from '../test/fixtures/seeded-random.js';
import { syntheticRgb } from '../test/fixtures/synthetic-image.js';

export interface SoakOptions {
  model: string;
  backend?: 'cpu' | 'cuda';
  seconds: number;
  concurrency: number;
  /** Distinct images; requests pick among them, so most hit the prefix cache. */
  images?: number;
  imageSize?: number;
  maxNewTokens?: number;
  seed?: number;
  /** KV budget in GiB (the CPU backend keeps a prefix cache only under one). */
  kvCacheGB?: number;
  log?: (line: string) => void;
}

export interface SoakReport {
  seconds: number;
  requests: number;
  completed: number;
  cancelled: number;
  deadlines: number;
  badInputsRejected: number;
  mismatches: { key: string; alone: number[]; together: number[] }[];
  unexpectedErrors: string[];
  generatedTokens: number;
  cachedPromptTokens: number;
  prefixCache: { hits: number; misses: number; evictions: number; entries: number };
  kvUsedBytes: { before: number; after: number; cacheHeld: number };
  deviceUsedBytes: { before: number; after: number; slack: number };
  passed: boolean;
}

const TASKS: { name: string; spec: TaskSpec }[] = [
  { name: 'detect', spec: { task: 'detection', categories: ['cat', 'person'] } },
  { name: 'point', spec: { task: 'pointing', categories: ['cat'] } },
  { name: 'ocr', spec: { task: 'ocr_box', granularity: 'word' } },
  { name: 'gui', spec: { task: 'gui_grounding', element: 'search bar' } },
];

/** How far the device's used memory may end above its start (graphs captured during the run). */
export const DEVICE_SLACK_BYTES = 256 * 2 ** 20;

type Fault = 'none' | 'cancel' | 'deadline' | 'corrupt' | 'bad-option';

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => {});
  const rand = seededRandom(o.seed ?? 1);
  const size = o.imageSize ?? 112;
  const images = Array.from({ length: o.images ?? 6 }, (_, i) => ({ data: syntheticRgb(size, size, 100 + i), width: size, height: size }));
  const maxNew = o.maxNewTokens ?? 32;
  const model = await RexOmni.load(o.model, {
    backend: o.backend ?? 'cpu',
    maxActiveRequests: Math.min(o.concurrency, 64),
    batchInvariant: true,
    ...(o.kvCacheGB ? { kvCacheGB: o.kvCacheGB } : {}),
    defaults: { maxPixels: 64 * 28 * 28 },
  });
  const report: SoakReport = {
    seconds: 0, requests: 0, completed: 0, cancelled: 0, deadlines: 0, badInputsRejected: 0, mismatches: [], unexpectedErrors: [],
    generatedTokens: 0, cachedPromptTokens: 0, prefixCache: { hits: 0, misses: 0, evictions: 0, entries: 0 },
    kvUsedBytes: { before: 0, after: 0, cacheHeld: 0 }, deviceUsedBytes: { before: 0, after: 0, slack: DEVICE_SLACK_BYTES }, passed: false,
  };
  try {
    const before = model.info();
    report.kvUsedBytes.before = before.memory.kvCacheUsedBytes;
    report.deviceUsedBytes.before = before.memory.deviceUsedBytes;
    const options = (n: number): RunOptions => ({ maxNewTokens: n, sampling: { temperature: 0 } });
    const alone = new Map<string, Promise<number[]>>();
    // The reference: the same request alone (once per key, on an idle engine
    // after the soak, so the soak's own batches are what is compared).
    const finished: { key: string; image: number; task: number; n: number; tokens: number[] }[] = [];

    const one = async (): Promise<void> => {
      const image = Math.floor(rand() * images.length);
      const task = Math.floor(rand() * TASKS.length);
      const pixels = images[image]!;
      const { name, spec } = TASKS[task]!;
      // Three answer lengths, so the alone references stay few (images x tasks x 3).
      const n = [Math.max(4, maxNew >> 2), Math.max(6, maxNew >> 1), maxNew][Math.floor(rand() * 3)]!;
      const roll = rand();
      const fault: Fault = roll < 0.1 ? 'cancel' : roll < 0.15 ? 'deadline' : roll < 0.2 ? 'corrupt' : roll < 0.25 ? 'bad-option' : 'none';
      report.requests++;
      try {
        if (fault === 'corrupt') {
          await model.run(Buffer.from([0xff, 0xd8, 0xff, 0x00, 1, 2, 3]), spec, options(n));
          report.unexpectedErrors.push('a corrupt image was accepted');
        } else if (fault === 'bad-option') {
          await model.run(pixels, spec, { ...options(n), maxNewTokens: -3 });
          report.unexpectedErrors.push('maxNewTokens -3 was accepted');
        } else if (fault === 'cancel') {
          const controller = new AbortController();
          setTimeout(() => controller.abort(new Error('soak cancel')), Math.floor(rand() * 40));
          const r = await model.run(pixels, spec, { ...options(n), signal: controller.signal });
          count(r);  // finished before the cancel landed: still a completed run, not compared
        } else if (fault === 'deadline') {
          const r = await model.run(pixels, spec, { ...options(n), deadlineMs: 1 + Math.floor(rand() * 30) });
          count(r);
        } else {
          const r = await model.run(pixels, spec, options(n));
          count(r);
          finished.push({ key: `${image}/${name}/${n}`, image, task, n, tokens: r.outputTokenIds });
        }
      } catch (error) {
        const code = (error as { code?: string }).code;
        const message = (error as Error).message;
        if (fault === 'cancel' && (message.includes('soak cancel') || (error as Error).name === 'AbortError')) report.cancelled++;
        else if (fault === 'deadline' && code === 'ERR_REX_DEADLINE') report.deadlines++;
        else if ((fault === 'corrupt' || fault === 'bad-option') && typeof code === 'string') report.badInputsRejected++;
        else report.unexpectedErrors.push(`${fault}: ${code ?? ''} ${message}`);
      }
    };
    const count = (r: RexOmniResult): void => {
      report.completed++;
      report.generatedTokens += r.tokens.generated;
      report.cachedPromptTokens += r.tokens.cached;
    };

    const started = performance.now();
    const deadline = started + o.seconds * 1000;
    let lastLog = started;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (performance.now() < deadline) {
          await one();
          if (performance.now() - lastLog > 10_000) {
            lastLog = performance.now();
            log(`soak: ${report.requests} requests, ${report.completed} completed, ${report.generatedTokens} tokens`);
          }
        }
      }),
    );
    report.seconds = (performance.now() - started) / 1000;

    for (const f of finished) {
      if (!alone.has(f.key))
        alone.set(f.key, model.run(images[f.image]!, TASKS[f.task]!.spec, options(f.n)).then((r) => r.outputTokenIds));
      const reference = await alone.get(f.key)!;
      if (reference.join() !== f.tokens.join() && report.mismatches.length < 20)
        report.mismatches.push({ key: f.key, alone: reference, together: f.tokens });
    }
    const after = model.info();
    report.kvUsedBytes.after = after.memory.kvCacheUsedBytes;
    report.deviceUsedBytes.after = after.memory.deviceUsedBytes;
    report.prefixCache = {
      hits: after.prefixCache.hits,
      misses: after.prefixCache.misses,
      evictions: after.prefixCache.evictions,
      entries: after.prefixCache.entries,
    };
    report.kvUsedBytes.cacheHeld = after.prefixCache.heldBytes;
    report.passed =
      report.unexpectedErrors.length === 0 &&
      report.mismatches.length === 0 &&
      report.kvUsedBytes.after - report.kvUsedBytes.cacheHeld <= report.kvUsedBytes.before &&
      report.deviceUsedBytes.after - report.deviceUsedBytes.before <= DEVICE_SLACK_BYTES &&
      report.completed > 0;
    return report;
  } finally {
    await model.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      backend: { type: 'string', default: 'cuda' },
      minutes: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '64' },
      out: { type: 'string' },
    },
  });
  if (!values.model) throw new Error('soak: expected --model DIR (or 3b)');
  const model = values.model === '3b' ? await ensure3bCheckpoint() : values.model;
  const report = await runSoak({
    model,
    backend: values.backend === 'cpu' ? 'cpu' : 'cuda',
    seconds: Number(values.minutes) * 60,
    concurrency: Number(values.concurrency),
    images: 16,
    log: (line) => console.log(line),
  });
  const text = JSON.stringify(report, null, 2);
  if (values.out) writeFileSync(values.out, text);
  console.log(text);
  console.log(report.passed ? 'soak: PASSED' : 'soak: FAILED');
  process.exitCode = report.passed ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
