// The soak test (issue #10): many requests at once for a set time, mixing
// greedy tasks on repeated images (prefix-cache hits), random cancels and
// deadlines, corrupt images and bad options. A quarter of the requests
// without a fault are forced-length ones (benchmarks/fixed-length.ts,
// through the model's token-level engine): random weights end most task
// answers after a token or two, so these answers of exactly maxNewTokens/2,
// maxNewTokens or 2*maxNewTokens tokens are what compares long answers with
// alone. It passes when:
//  - nothing crashes, every failure is the typed error its fault calls for,
//    and every forced-length answer has its length;
//  - every request that was neither cancelled nor past its deadline gives,
//    greedy, the same tokens as the same request run alone (the reference:
//    once per request key, on the idle engine after the soak). That holds
//    under batchInvariant (the default: on the GPU the bits cannot depend on
//    the batch). Default mode (batchInvariant: false, `--default-mode`) soaks
//    the engine's serving path instead (on CUDA batched prefill and cuBLASLt
//    steps), which does not promise the alone bits, so there a difference is
//    a divergence: counted and reported, not a failure (the CPU backend gives
//    the alone bits in both modes);
//  - the KV cache returns to its baseline: nothing held but the prefix
//    cache's entries once every request is done;
//  - the device's used memory (cudaMemGetInfo, so the run must have the GPU
//    to itself) ends within DEVICE_SLACK_BYTES of where it began: the KV
//    pool, the prefix cache and the step buffers are allocated at load, and
//    what may come later is the CUDA graphs of batch sizes first met during
//    the soak.
// `runSoak` is what test/soak.test.ts runs for seconds on the CPU backend;
// `node dist/benchmarks/soak.js --model 3b --minutes 10 [--default-mode]` is
// the device run (`3b`: the generated checkpoint of the real shape; or a
// directory), also `bash scripts/device-check.sh build soak` (SOAK_MODE=default
// for --default-mode).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { loadAddon } from '../lib/native.js';
import { RexOmni } from '../lib/rex-omni.js';
import { DEFAULT_RUN_OPTIONS, type RunOptions } from '../lib/run-options.js';
import type { TaskSpec } from '../lib/tasks/index.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { buildCase, ensure3bCheckpoint, MIN_PIXELS_DEFAULT } from '../test/fixtures/gpu-harness.js';
import { seededRandom } from '../test/fixtures/seeded-random.js';
import { syntheticRgb } from '../test/fixtures/synthetic-image.js';
import { fixedLengthGrammar, fixedLengthRequest } from './fixed-length.js';

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
  /**
   * true (default): load with batchInvariant, and a request whose tokens
   * differ from alone fails the run (a mismatch). false: the engine's default
   * serving path, where such a request is a divergence, reported only.
   */
  batchInvariant?: boolean;
  /** The engine's prefillDecodeRows (running requests decoding inside prefill passes); default 0. */
  prefillDecodeRows?: number;
  log?: (line: string) => void;
}

/** A request whose tokens among the others differ from its tokens alone. */
export interface AloneDifference {
  key: string;
  alone: number[];
  together: number[];
}

export interface SoakReport {
  batchInvariant: boolean;
  seconds: number;
  /** The alone references after the load (once per key): how long they took. */
  referenceSeconds: number;
  requests: number;
  completed: number;
  cancelled: number;
  deadlines: number;
  badInputsRejected: number;
  /** Completed requests without a fault, each compared with the same request alone. */
  compared: number;
  /** The forced-length requests (all of them compared with alone) and the tokens they generated. */
  forcedLength: { completed: number; tokens: number; compared: number };
  /** Under batchInvariant: differences from alone (the first 20); any fails the run. */
  mismatches: AloneDifference[];
  /** Default mode: the same differences, all counted and the first 20 kept; they do not fail the run. */
  divergences: { count: number; examples: AloneDifference[] };
  unexpectedErrors: string[];
  generatedTokens: number;
  cachedPromptTokens: number;
  /** Decode rows of completed requests that rode other requests' prefill passes (prefillDecodeRows). */
  prefillRides: number;
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

/** The share of the requests without a fault that are forced-length ones. */
const FORCED_LENGTH_SHARE = 0.25;

/** Differences kept as examples (mismatches or divergences). */
const DIFFERENCE_EXAMPLES = 20;

/** Small images: every request of the soak resizes to at most this many pixels. */
const MAX_PIXELS = 64 * 28 * 28;

type Fault = 'none' | 'cancel' | 'deadline' | 'corrupt' | 'bad-option';

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => {});
  const rand = seededRandom(o.seed ?? 1);
  const size = o.imageSize ?? 112;
  const images = Array.from({ length: o.images ?? 6 }, (_, i) => ({ data: syntheticRgb(size, size, 100 + i), width: size, height: size }));
  const maxNew = o.maxNewTokens ?? 32;
  const batchInvariant = o.batchInvariant ?? true;
  const forcedLengths = [Math.max(4, maxNew >> 1), maxNew, 2 * maxNew];
  // The forced-length requests go to the model's own engine (RexOmni.engine), so they share its batches, KV
  // budget and prefix cache with the task requests. Their prompt: the detection task's, per image, built as
  // RexOmni builds it at the soak's pixel limits (so the image's prefix-cache entry is the same).
  const tokenizer = await RexTokenizer.fromDir(o.model);
  const grammar = await fixedLengthGrammar(tokenizer);
  const forcedBases = await Promise.all(
    images.map(async (image, i) => {
      const built = await buildCase({
        name: `soak-forced-${i}`, task: TASKS[0]!.spec, imageFile: `synthetic:${size}x${size}:${100 + i}`, image,
        tokenizer, addon: loadAddon().addon, continuationTokens: 0, minPixels: MIN_PIXELS_DEFAULT, maxPixels: MAX_PIXELS,
      });
      return { promptIds: built.promptIds, image: built.image };
    }),
  );
  const forcedRequest = (image: number, length: number) =>
    fixedLengthRequest(forcedBases[image]!, grammar, length, { scores: DEFAULT_RUN_OPTIONS.scores, jumpForward: DEFAULT_RUN_OPTIONS.jumpForward });
  const model = await RexOmni.load(o.model, {
    backend: o.backend ?? 'cpu',
    maxActiveRequests: Math.min(o.concurrency, 64),
    batchInvariant,
    ...(o.prefillDecodeRows ? { prefillDecodeRows: o.prefillDecodeRows } : {}),
    ...(o.kvCacheGB ? { kvCacheGB: o.kvCacheGB } : {}),
    defaults: { minPixels: MIN_PIXELS_DEFAULT, maxPixels: MAX_PIXELS },
  });
  const report: SoakReport = {
    batchInvariant, seconds: 0, referenceSeconds: 0, requests: 0, completed: 0, cancelled: 0, deadlines: 0, badInputsRejected: 0, compared: 0,
    forcedLength: { completed: 0, tokens: 0, compared: 0 }, mismatches: [], divergences: { count: 0, examples: [] }, unexpectedErrors: [],
    generatedTokens: 0, cachedPromptTokens: 0, prefillRides: 0, prefixCache: { hits: 0, misses: 0, evictions: 0, entries: 0 },
    kvUsedBytes: { before: 0, after: 0, cacheHeld: 0 }, deviceUsedBytes: { before: 0, after: 0, slack: DEVICE_SLACK_BYTES }, passed: false,
  };
  try {
    const before = model.info();
    report.kvUsedBytes.before = before.memory.kvCacheUsedBytes;
    report.deviceUsedBytes.before = before.memory.deviceUsedBytes;
    const options = (n: number): RunOptions => ({ maxNewTokens: n, sampling: { temperature: 0 } });
    const alone = new Map<string, Promise<number[]>>();
    // The reference: the same request alone (once per key, on an idle engine
    // after the soak, so the soak's own batches are what is compared);
    // `runAlone` runs it again as it ran during the soak.
    const finished: { key: string; forced: boolean; tokens: number[]; runAlone: () => Promise<number[]> }[] = [];

    const one = async (): Promise<void> => {
      const image = Math.floor(rand() * images.length);
      const task = Math.floor(rand() * TASKS.length);
      const pixels = images[image]!;
      const { name, spec } = TASKS[task]!;
      // Three answer lengths, so the alone references stay few (images x tasks x 3).
      const n = [Math.max(4, maxNew >> 2), Math.max(6, maxNew >> 1), maxNew][Math.floor(rand() * 3)]!;
      const roll = rand();
      const fault: Fault = roll < 0.1 ? 'cancel' : roll < 0.15 ? 'deadline' : roll < 0.2 ? 'corrupt' : roll < 0.25 ? 'bad-option' : 'none';
      const forced = fault === 'none' && rand() < FORCED_LENGTH_SHARE;
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
          count(r.tokens, r.prefillRides);  // finished before the cancel landed: still a completed run, not compared
        } else if (fault === 'deadline') {
          const r = await model.run(pixels, spec, { ...options(n), deadlineMs: 1 + Math.floor(rand() * 30) });
          count(r.tokens, r.prefillRides);
        } else if (forced) {
          const length = forcedLengths[Math.floor(rand() * forcedLengths.length)]!;
          const request = forcedRequest(image, length);
          const { tokens, finish } = await model.engine.generate(request);
          count({ generated: finish.generatedTokens, cached: finish.cachedTokens }, finish.prefillRides);
          if (tokens.length !== length) report.unexpectedErrors.push(`forced-length: ${tokens.length} tokens where ${length} were forced`);
          report.forcedLength.completed++;
          report.forcedLength.tokens += tokens.length;
          const runAlone = async () => (await model.engine.generate(request)).tokens;
          finished.push({ key: `${image}/forced/${length}`, forced: true, tokens, runAlone });
        } else {
          const r = await model.run(pixels, spec, options(n));
          count(r.tokens, r.prefillRides);
          const runAlone = async () => (await model.run(pixels, spec, options(n))).outputTokenIds;
          finished.push({ key: `${image}/${name}/${n}`, forced: false, tokens: r.outputTokenIds, runAlone });
        }
      } catch (error) {
        const code = (error as { code?: string }).code;
        const message = (error as Error).message;
        if (fault === 'cancel' && (message.includes('soak cancel') || (error as Error).name === 'AbortError')) report.cancelled++;
        else if (fault === 'deadline' && code === 'ERR_REX_DEADLINE') report.deadlines++;
        else if ((fault === 'corrupt' || fault === 'bad-option') && typeof code === 'string') report.badInputsRejected++;
        else report.unexpectedErrors.push(`${forced ? 'forced-length' : fault}: ${code ?? ''} ${message}`);
      }
    };
    const count = (tokens: { generated: number; cached: number }, rides: number): void => {
      report.completed++;
      report.generatedTokens += tokens.generated;
      report.cachedPromptTokens += tokens.cached;
      report.prefillRides += rides;
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
            log(`soak: ${report.requests} requests, ${report.completed} completed (${report.forcedLength.completed} forced-length), ${report.generatedTokens} tokens`);
          }
        }
      }),
    );
    report.seconds = (performance.now() - started) / 1000;
    const referencesStarted = performance.now();

    for (const f of finished) {
      if (!alone.has(f.key)) alone.set(f.key, f.runAlone());
      const reference = await alone.get(f.key)!;
      report.compared++;
      if (f.forced) report.forcedLength.compared++;
      if (reference.join() === f.tokens.join()) continue;
      const difference = { key: f.key, alone: reference, together: f.tokens };
      // batchInvariant promises the alone bits, so a difference is a bug; the default path promises no more
      // than near ties resolved either way (on CUDA), so there it is counted, not failed.
      if (batchInvariant) {
        if (report.mismatches.length < DIFFERENCE_EXAMPLES) report.mismatches.push(difference);
      } else {
        report.divergences.count++;
        if (report.divergences.examples.length < DIFFERENCE_EXAMPLES) report.divergences.examples.push(difference);
      }
    }
    report.referenceSeconds = (performance.now() - referencesStarted) / 1000;
    log(`soak: ${report.compared} requests compared with alone in ${report.referenceSeconds.toFixed(1)} s`);
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
      // The engine's serving path (no batchInvariant): differences from alone are reported, not failed.
      'default-mode': { type: 'boolean', default: false },
      // Running requests decode inside prefill passes (the engine's prefillDecodeRows; batched prefills only).
      'prefill-decode-rows': { type: 'string', default: '0' },
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
    batchInvariant: !values['default-mode'],
    prefillDecodeRows: Number(values['prefill-decode-rows']),
    log: (line) => console.log(line),
  });
  const text = JSON.stringify(report, null, 2);
  if (values.out) writeFileSync(values.out, text);
  console.log(text);
  console.log(report.passed ? 'soak: PASSED' : 'soak: FAILED');
  process.exitCode = report.passed ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
