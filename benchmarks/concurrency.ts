// The serving benchmark of issue #10: many image requests at once on one
// engine, at concurrency 1, 8, 32, 64 and 128, for COCO-like answers (45
// generated tokens) and dense ones (440). Per level and answer length:
//  - throughput: images/s, generated tokens/s, predictions (boxes)/s;
//  - latency, p50 and p99: time to the first token, to the first decoded
//    prediction (the streaming parser's first event) and in total;
//  - the targets: at concurrency 64, COCO-like, images/s as a fraction of the
//    compute roofline (vision + prefill FLOPs per image, prefill-flops.ts,
//    over the bf16 GEMM rate torch measures in the same run); the dense
//    aggregate tokens/s (≥ 20,000); p99 at concurrency 8 over the batch-1
//    latency (≤ 2×).
// Each level keeps `concurrency` requests in flight (closed loop) until its
// request count is done. Every request has its own image (a few sizes, each
// request's pixels stamped distinct) and the 80-COCO-category detection
// prompt; its answer is the fixed-length polygon answer (fixed-length.ts:
// random weights, so the length is forced), jump-forward off so that every
// token is a decode step. No prefix cache: every request takes the full path.
// The peer (--peer): transformers' batched generate at the same batch sizes
// on the same checkpoint and images, in the same device call
// (benchmarks/gpu/peers.py --mode concurrency), run first on a free GPU.
// `runConcurrency` is what test/concurrency-bench.test.ts runs on the CPU;
//   node dist/benchmarks/concurrency.js --model 3b --backend cuda --out F [--levels 1,8] [--peer] [--quick]
//     [--prefill-decode-rows N] [--prefill-chunk-tokens N]
// is the device run (also `bash scripts/device-check.sh build concurrency`).
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { StreamingDetokenizer } from '../lib/detokenizer.js';
import { Engine } from '../lib/engine.js';
import { loadAddon } from '../lib/native.js';
import { StreamingOutputParser } from '../lib/parse/index.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { buildCase, ensure3bCheckpoint, runPython, scratchDir, textTable, writeCaseDir, type BuiltCase } from '../test/fixtures/gpu-harness.js';
import { syntheticRgb } from '../test/fixtures/synthetic-image.js';
import { FIXED_LENGTH_PARSE_TASK, GREEDY, fixedLengthGrammar, fixedLengthRequest } from './fixed-length.js';
import { COCO_CATEGORIES } from './gpu.js';
import { readFlopsConfig, requestFlops } from './prefill-flops.js';

export interface AnswerShape {
  name: string;
  /** Generated tokens per request (forced: exactly this many). */
  tokens: number;
}

export const COCO_LIKE: AnswerShape = { name: 'coco-like', tokens: 45 };
export const DENSE: AnswerShape = { name: 'dense', tokens: 440 };
export const DEFAULT_LEVELS = [1, 8, 32, 64, 128];
export const DEFAULT_IMAGE_SIZES: [number, number][] = [[1000, 750], [800, 600], [1280, 720], [640, 480]];
/** Peer: generated tokens of its dense runs at most (transformers is slow; per-token figures are reported). */
const PEER_DENSE_TOKENS = 64;
/** Peer: seconds it may spend on transformers' levels before skipping the rest. */
const PEER_BUDGET_SECONDS = 150;

export interface ConcurrencyOptions {
  model: string;
  backend?: 'cpu' | 'cuda';
  levels?: number[];
  answers?: AnswerShape[];
  imageSizes?: [number, number][];
  /** Requests at a level (default: requestsFor). */
  requests?: (answer: AnswerShape, concurrency: number) => number;
  /** Run a batch of short requests first (default true). */
  warmUp?: boolean;
  /**
   * The peer, run first in its own process (CUDA only): 'gemm' measures the
   * bf16 GEMM rate (the roofline), 'transformers' also transformers' batched
   * generate. Default 'none'.
   */
  peer?: 'none' | 'gemm' | 'transformers';
  /** The GEMM rate, when known already (skips measuring it). */
  gemmFlopsPerSecond?: number;
  /** The engine's prefillDecodeRows (running requests decoding inside prefill passes); default 0. */
  prefillDecodeRows?: number;
  /** The engine's prefillChunkTokens (prompt tokens a scheduler step prefills while others decode); its default if unset. */
  prefillChunkTokens?: number;
  log?: (line: string) => void;
}

export interface Percentiles {
  p50: number;
  p99: number;
}

export interface LevelResult {
  answer: string;
  concurrency: number;
  requests: number;
  tokensPerRequest: number;
  wallSeconds: number;
  imagesPerSecond: number;
  generatedTokensPerSecond: number;
  predictionsPerSecond: number;
  generatedTokens: number;
  /** Generated tokens before the answer's <|im_end|> (the rest is forced padding to the length). */
  answerTokens: number;
  predictions: number;
  decodeSteps: number;
  forcedTokens: number;
  /** Tokens decoded as rows riding prefill passes (--prefill-decode-rows). */
  prefillRides: number;
  timeToFirstTokenMs: Percentiles;
  /** Requests without a prediction are left out (predictionsMissing counts them). */
  timeToFirstPredictionMs: Percentiles;
  predictionsMissing: number;
  totalMs: Percentiles;
  /** imagesPerSecond over the compute roofline's (null without a GEMM rate). */
  computeRooflineFraction: number | null;
}

export interface PeerLevel {
  batch: number;
  answer: string;
  newTokens: number;
  /** One batched generate: every request of the batch finishes at once. */
  totalMs: number;
  firstTokenMs: number;
  msPerDecodeStep: number;
  imagesPerSecond: number;
  generatedTokensPerSecond: number;
  /** The time `tokensPerRequest` of ours would take: firstTokenMs + (tokens − 1) · msPerDecodeStep. */
  extrapolatedTotalMs: number;
  extrapolatedImagesPerSecond: number;
  peakMemoryBytes?: number;
}

export interface ConcurrencyReport {
  settings: Record<string, unknown>;
  gpu: string | undefined;
  gemm: { flopsPerSecond: number; source: string; matmul?: unknown } | null;
  flopsPerImage: { visionFlops: number; prefillFlops: number; totalFlops: number; bySize: Record<string, unknown>[] };
  /** The compute roofline: gemm rate / flopsPerImage.totalFlops (null without a GEMM rate). */
  computeRooflineImagesPerSecond: number | null;
  levels: LevelResult[];
  peer: { note: string; levels: PeerLevel[]; skipped: string[]; errors: Record<string, string> } | null;
  targets: {
    computeRooflineFractionCocoAt64: { value: number | null; target: 0.5; met: boolean | null; concurrency: number | null };
    denseAggregateTokensPerSecond: { value: number | null; target: 20000; met: boolean | null; concurrency: number | null };
    p99AtConcurrency8OverBatch1: { value: number | null; target: 2; met: boolean | null; answer: string };
  };
  errors: string[];
}

/** Requests per level: twice the concurrency (16 at least, fewer for long answers alone), the dense 128 once over. */
export function requestsFor(answer: AnswerShape, concurrency: number): number {
  const long = answer.tokens > 200;
  if (concurrency === 1) return long ? 4 : 16;
  if (long && concurrency >= 128) return concurrency;
  return Math.max(2 * concurrency, 16);
}

/** The COCO-like answer is the shortest, the dense one the longest (when there are two or more). */
function cocoAndDense(answers: AnswerShape[]): { coco: AnswerShape; dense: AnswerShape | undefined } {
  const sorted = [...answers].sort((a, b) => a.tokens - b.tokens);
  return { coco: sorted[0] ?? COCO_LIKE, dense: sorted.length > 1 ? sorted.at(-1) : undefined };
}

const percentiles = (xs: number[]): Percentiles => {
  if (xs.length === 0) return { p50: NaN, p99: NaN };
  const s = [...xs].sort((a, b) => a - b);
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { p50: at(50), p99: at(99) };
};

interface ImageCase {
  size: string;
  built: BuiltCase;
  flops: ReturnType<typeof requestFlops>;
}

interface RequestResult {
  ttftMs: number;
  ttfpMs: number | undefined;
  totalMs: number;
  tokens: number;
  answerTokens: number;
  predictions: number;
  decodeSteps: number;
  forcedTokens: number;
  prefillRides: number;
}

// One request: streamed, detokenized and parsed as RexOmni.stream does, timed.
async function runRequest(
  engine: Engine,
  tokenizer: RexTokenizer,
  c: ImageCase,
  index: number,
  grammar: string,
  tokens: number,
): Promise<RequestResult> {
  const { built } = c;
  // Each request its own pixels: the base image with the request's index stamped into its first pixels.
  const data = Uint8Array.from(built.image.data);
  for (let i = 0; i < 24; ++i) data[i] = (Math.imul(index + 1, 2654435761 + i * 40503) >>> 24) & 0xff;
  const base = { promptIds: built.promptIds, image: { data, width: built.image.width, height: built.image.height } };
  // Jump-forward off: every generated token after the first is a decode step of its own, so should the
  // model close its answer early, the forced <|im_end|> padding still costs what answer tokens cost.
  const request = fixedLengthRequest(base, grammar, tokens, { scores: true, jumpForward: false });
  const parser = new StreamingOutputParser(FIXED_LENGTH_PARSE_TASK, { width: built.image.width, height: built.image.height });
  const detokenizer = new StreamingDetokenizer(tokenizer);
  const imEnd = tokenizer.ids.imEnd;
  const started = performance.now();
  let first: number | undefined;
  let firstPrediction: number | undefined;
  let count = 0;
  let answerTokens = 0;
  let ended = false;
  const seen = (events: { type: string }[]) => {
    if (firstPrediction === undefined && events.some((e) => e.type === 'prediction')) firstPrediction = performance.now();
  };
  for await (const event of engine.stream(request)) {
    if (event.type === 'token') {
      first ??= performance.now();
      count++;
      if (!ended) {
        if (event.token === imEnd) ended = true;
        else answerTokens++;
      }
      seen(parser.push(detokenizer.push(event.token)));
      continue;
    }
    if (event.reason === 'error' || event.reason === 'deadline' || event.reason === 'cancelled')
      throw event.error ?? new Error(`the request finished with reason ${event.reason}`);
    const tail = detokenizer.flush();
    if (tail) seen(parser.push(tail));
    const parsed = parser.finish();
    seen(parser.drain());
    const end = performance.now();
    return {
      ttftMs: (first ?? end) - started,
      ttfpMs: firstPrediction === undefined ? undefined : firstPrediction - started,
      totalMs: end - started,
      tokens: count,
      answerTokens,
      predictions: parsed.predictions.length,
      decodeSteps: event.decodeSteps,
      forcedTokens: event.forcedTokens,
      prefillRides: event.prefillRides,
    };
  }
  throw new Error('the stream ended without a finish event');
}

async function runLevel(
  engine: Engine,
  tokenizer: RexTokenizer,
  cases: ImageCase[],
  grammar: string,
  answer: AnswerShape,
  concurrency: number,
  requests: number,
  firstIndex: number,
): Promise<{ results: RequestResult[]; wallSeconds: number }> {
  const results: RequestResult[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, requests) }, async () => {
      while (next < requests) {
        const i = next++;
        results.push(await runRequest(engine, tokenizer, cases[i % cases.length]!, firstIndex + i, grammar, answer.tokens));
      }
    }),
  );
  return { results, wallSeconds: (performance.now() - started) / 1000 };
}

function summarize(
  answer: AnswerShape,
  concurrency: number,
  results: RequestResult[],
  wallSeconds: number,
  rooflineImagesPerSecond: number | null,
): LevelResult {
  const sum = (f: (r: RequestResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const generatedTokens = sum((r) => r.tokens);
  const predictions = sum((r) => r.predictions);
  const imagesPerSecond = results.length / wallSeconds;
  const ttfp = results.flatMap((r) => (r.ttfpMs === undefined ? [] : [r.ttfpMs]));
  return {
    answer: answer.name,
    concurrency,
    requests: results.length,
    tokensPerRequest: answer.tokens,
    wallSeconds,
    imagesPerSecond,
    generatedTokensPerSecond: generatedTokens / wallSeconds,
    predictionsPerSecond: predictions / wallSeconds,
    generatedTokens,
    answerTokens: sum((r) => r.answerTokens),
    predictions,
    decodeSteps: sum((r) => r.decodeSteps),
    forcedTokens: sum((r) => r.forcedTokens),
    prefillRides: sum((r) => r.prefillRides),
    timeToFirstTokenMs: percentiles(results.map((r) => r.ttftMs)),
    timeToFirstPredictionMs: percentiles(ttfp),
    predictionsMissing: results.length - ttfp.length,
    totalMs: percentiles(results.map((r) => r.totalMs)),
    computeRooflineFraction: rooflineImagesPerSecond ? imagesPerSecond / rooflineImagesPerSecond : null,
  };
}

// The peer in its own process, before our engine loads (the GPU is then free).
function runPeers(
  o: ConcurrencyOptions,
  cases: ImageCase[],
  levels: number[],
  { coco, dense }: ReturnType<typeof cocoAndDense>,
  log: (line: string) => void,
): { report: Record<string, unknown> | undefined; failure?: string } {
  const root = scratchDir('concurrency');
  const out = join(root, 'peers-concurrency.json');
  // An earlier run's file must not stand in for this run's, should peers.py fail before writing it.
  rmSync(out, { force: true });
  const args = ['--mode', o.peer === 'transformers' ? 'concurrency' : 'gemm', '--checkpoint', o.model, '--out', out];
  if (o.peer === 'transformers') {
    // The case folders (large pixel files) only for transformers: --mode gemm reads no cases.
    const caseDirs = cases.map((c) => writeCaseDir(root, c.built));
    args.push('--cases', caseDirs.join(','), '--levels', levels.join(','), '--coco-tokens', String(coco.tokens));
    if (dense) args.push('--dense-tokens', String(Math.min(dense.tokens, PEER_DENSE_TOKENS)));
    args.push('--budget-s', String(PEER_BUDGET_SECONDS));
  }
  let failure: string | undefined;
  try {
    runPython('benchmarks/gpu/peers.py', args, 10 * 60_000);
  } catch (error) {
    failure = (error as Error).message;
    log(`peers.py failed: ${failure}`);
  }
  const report = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>) : undefined;
  return failure === undefined ? { report } : { report, failure };
}

interface PeerRawLevel {
  batch: number;
  answer: string;
  new_tokens: number;
  total_ms: number;
  first_token_ms: number;
  ms_per_decode_step: number;
  peak_memory_bytes?: number;
}

function peerLevels(raw: PeerRawLevel[], answers: AnswerShape[]): PeerLevel[] {
  return raw.map((r) => {
    const ours = answers.find((a) => a.name === r.answer)?.tokens ?? r.new_tokens;
    const extrapolatedTotalMs = r.first_token_ms + (ours - 1) * r.ms_per_decode_step;
    return {
      batch: r.batch,
      answer: r.answer,
      newTokens: r.new_tokens,
      totalMs: r.total_ms,
      firstTokenMs: r.first_token_ms,
      msPerDecodeStep: r.ms_per_decode_step,
      imagesPerSecond: r.batch / (r.total_ms / 1000),
      generatedTokensPerSecond: (r.batch * r.new_tokens) / (r.total_ms / 1000),
      extrapolatedTotalMs,
      extrapolatedImagesPerSecond: r.batch / (extrapolatedTotalMs / 1000),
      ...(r.peak_memory_bytes !== undefined ? { peakMemoryBytes: r.peak_memory_bytes } : {}),
    };
  });
}

export async function runConcurrency(o: ConcurrencyOptions): Promise<ConcurrencyReport> {
  const log = o.log ?? (() => {});
  const backend = o.backend ?? 'cpu';
  const levels = o.levels ?? DEFAULT_LEVELS;
  const answers = o.answers ?? [COCO_LIKE, DENSE];
  const sizes = o.imageSizes ?? DEFAULT_IMAGE_SIZES;
  const requestsAt = o.requests ?? requestsFor;
  const shapes = cocoAndDense(answers);
  const errors: string[] = [];

  const tokenizer = await RexTokenizer.fromDir(o.model);
  const { addon } = loadAddon();
  const flopsConfig = readFlopsConfig(o.model);
  const task = { task: 'detection' as const, categories: [...COCO_CATEGORIES] };
  const cases: ImageCase[] = [];
  for (const [i, [width, height]] of sizes.entries()) {
    const built = await buildCase({
      name: `concurrency_${width}x${height}`,
      task,
      imageFile: `synthetic:${width}x${height}:${i + 1}`,
      image: { data: syntheticRgb(width, height, i + 1), width, height },
      tokenizer,
      addon,
      continuationTokens: 0,
    });
    cases.push({ size: `${width}x${height}`, built, flops: requestFlops(flopsConfig, built.pre.gridH, built.pre.gridW, built.promptIds.length) });
  }
  const mean = (f: (c: ImageCase) => number) => cases.reduce((n, c) => n + f(c), 0) / cases.length;
  const flopsPerImage = {
    visionFlops: mean((c) => c.flops.visionFlops),
    prefillFlops: mean((c) => c.flops.prefillFlops),
    totalFlops: mean((c) => c.flops.totalFlops),
    bySize: cases.map((c) => ({
      size: c.size,
      resized: `${c.built.pre.resizedWidth}x${c.built.pre.resizedHeight}`,
      imageTokens: c.built.imageTokens,
      promptTokens: c.built.promptIds.length,
      ...c.flops,
    })),
  };

  let peerRaw: Record<string, unknown> | undefined;
  let peerFailure: string | undefined;
  if (backend === 'cuda' && (o.peer ?? 'none') !== 'none' && o.gemmFlopsPerSecond === undefined) {
    ({ report: peerRaw, failure: peerFailure } = runPeers(o, cases, levels, shapes, log));
    if (peerFailure) errors.push(`peers.py: ${peerFailure}`);
  }
  const peerGemm = peerRaw?.gemm as { flops_per_s?: number } | undefined;
  const gemm =
    o.gemmFlopsPerSecond !== undefined
      ? { flopsPerSecond: o.gemmFlopsPerSecond, source: 'given (--gemm-tflops)' }
      : peerGemm?.flops_per_s
        ? { flopsPerSecond: peerGemm.flops_per_s, source: 'torch.matmul bf16 (benchmarks/gpu/peers.py), this run', matmul: peerGemm }
        : null;
  const roofline = gemm ? gemm.flopsPerSecond / flopsPerImage.totalFlops : null;
  if (gemm) log(`roofline: ${(gemm.flopsPerSecond / 1e12).toFixed(1)} TFLOP/s over ${(flopsPerImage.totalFlops / 1e12).toFixed(2)} TFLOP per image = ${roofline!.toFixed(1)} images/s`);

  const grammar = await fixedLengthGrammar(tokenizer);
  const maxLevel = Math.max(...levels);
  const prefillDecodeRows = o.prefillDecodeRows ?? 0;
  const chunk = o.prefillChunkTokens === undefined ? {} : { prefillChunkTokens: o.prefillChunkTokens };
  const engine = await Engine.open(o.model, { backend, maxActiveRequests: maxLevel, prefixCacheGB: 0, prefillDecodeRows, ...chunk });
  const results: LevelResult[] = [];
  let gpu: string | undefined;
  let index = 0;
  try {
    gpu = engine.info().device?.name;
    if (o.warmUp ?? true) {
      // Short answers of different lengths, so the batch drains through many sizes.
      const started = performance.now();
      await Promise.all(
        Array.from({ length: maxLevel }, (_, i) =>
          runRequest(engine, tokenizer, cases[i % cases.length]!, index++, grammar, 4 + (i % 12)),
        ),
      );
      log(`warm-up: ${maxLevel} short requests in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    for (const answer of answers) {
      for (const concurrency of levels) {
        const requests = requestsAt(answer, concurrency);
        try {
          const run = await runLevel(engine, tokenizer, cases, grammar, answer, concurrency, requests, index);
          index += requests;
          const r = summarize(answer, concurrency, run.results, run.wallSeconds, roofline);
          results.push(r);
          log(
            `${answer.name} x${concurrency}: ${requests} requests in ${r.wallSeconds.toFixed(2)} s: ${r.imagesPerSecond.toFixed(1)} images/s, ` +
              `${r.generatedTokensPerSecond.toFixed(0)} tok/s, ${r.predictionsPerSecond.toFixed(1)} predictions/s; ` +
              `first token p50 ${r.timeToFirstTokenMs.p50.toFixed(0)} / p99 ${r.timeToFirstTokenMs.p99.toFixed(0)} ms, ` +
              `total p50 ${r.totalMs.p50.toFixed(0)} / p99 ${r.totalMs.p99.toFixed(0)} ms` +
              (r.prefillRides ? `; ${r.prefillRides} tokens rode prefill passes` : ''),
          );
        } catch (error) {
          errors.push(`${answer.name} x${concurrency}: ${(error as Error).message}`);
          log(`${answer.name} x${concurrency} failed: ${(error as Error).stack ?? String(error)}`);
        }
      }
    }
  } finally {
    await engine.close();
  }

  const level = (answer: string, c: number) => results.find((r) => r.answer === answer && r.concurrency === c);
  const coco = shapes.coco.name;
  const denseName = shapes.dense?.name;
  const at64 = level(coco, 64);
  const denseBest = denseName
    ? results.filter((r) => r.answer === denseName).sort((a, b) => b.generatedTokensPerSecond - a.generatedTokensPerSecond)[0]
    : undefined;
  const one = level(coco, 1);
  const eight = level(coco, 8);
  const p99Ratio = one && eight ? eight.totalMs.p99 / one.totalMs.p50 : null;
  const met = (v: number | null | undefined, ok: (v: number) => boolean) => (v === null || v === undefined || !Number.isFinite(v) ? null : ok(v));

  const peerReport = peerRaw?.concurrency as { levels?: PeerRawLevel[]; skipped?: string[]; note?: string } | undefined;
  const peerErrors = (peerRaw?.errors ?? {}) as Record<string, string>;
  const peer =
    o.peer === 'transformers'
      ? {
          note:
            (peerReport?.note ?? 'transformers did not run') +
            ' Its dense runs generate fewer tokens than ours (transformers is slow): compare msPerDecodeStep and the extrapolated figures.',
          levels: peerLevels(peerReport?.levels ?? [], answers),
          skipped: peerReport?.skipped ?? [],
          errors: peerFailure ? { ...peerErrors, process: peerFailure } : peerErrors,
        }
      : null;

  return {
    settings: {
      checkpoint: o.model,
      backend,
      levels,
      answers,
      requestsPerLevel: results.map((r) => `${r.answer} x${r.concurrency}: ${r.requests}`),
      imageSizes: sizes.map(([w, h]) => `${w}x${h}`),
      images: 'synthetic RGB (test/fixtures/synthetic-image.ts), sizes in turn; every request its own pixels (its index stamped into the first 8 pixels)',
      prompt: `the detection prompt over the 80 COCO categories (${cases.map((c) => `${c.size}: ${c.built.promptIds.length} tokens`).join(', ')})`,
      answer:
        'fixed-length (benchmarks/fixed-length.ts): the one-phrase polygon grammar, greedy (repetition penalty ' +
        `${GREEDY.repetitionPenalty}), no stop ids, so exactly tokensPerRequest tokens; scores on, jump-forward off (every token after the first is a decode step, answer or <|im_end|> padding alike); parsed as ocr_polygon ` +
        '(random weights: mostly one polygon per answer, so predictions/s counts polygons, not COCO boxes at 7.6 tokens each)',
      engine: { maxActiveRequests: maxLevel, prefixCacheGB: 0, prefillDecodeRows, ...chunk },
      closedLoop: 'each level keeps `concurrency` requests in flight until its requests are done; wall time from the first submit to the last finish',
      latency: 'per request from the submit: first token event, first prediction event of the streaming parser, finish; nearest-rank percentiles',
      computeRoofline: 'gemm.flopsPerSecond / flopsPerImage.totalFlops (vision + prefill, benchmarks/prefill-flops.ts, mean over the image sizes)',
      p99Target: 'p99 total latency at concurrency 8 over the p50 total latency at concurrency 1 (coco-like)',
      warmUp: o.warmUp ?? true,
      peer:
        o.peer === 'transformers'
          ? `transformers' batched generate (benchmarks/gpu/peers.py --mode concurrency) at the same batch sizes on the same checkpoint, ` +
            `images and prompts, run first in this call; COCO-like at ${shapes.coco.tokens} tokens, dense at ` +
            `${Math.min(shapes.dense?.tokens ?? 0, PEER_DENSE_TOKENS)} tokens (fewer than ours, for time: ` +
            'per-token figures, msPerDecodeStep, and extrapolations to our lengths), levels past its time budget skipped'
          : o.peer === 'gemm'
            ? 'the GEMM rate only (benchmarks/gpu/peers.py --mode gemm)'
            : 'none',
    },
    gpu,
    gemm,
    flopsPerImage,
    computeRooflineImagesPerSecond: roofline,
    levels: results,
    peer,
    targets: {
      computeRooflineFractionCocoAt64: {
        value: at64?.computeRooflineFraction ?? null,
        target: 0.5,
        met: met(at64?.computeRooflineFraction, (v) => v >= 0.5),
        concurrency: at64 ? 64 : null,
      },
      denseAggregateTokensPerSecond: {
        value: denseBest?.generatedTokensPerSecond ?? null,
        target: 20000,
        met: met(denseBest?.generatedTokensPerSecond, (v) => v >= 20000),
        concurrency: denseBest?.concurrency ?? null,
      },
      p99AtConcurrency8OverBatch1: { value: p99Ratio, target: 2, met: met(p99Ratio, (v) => v <= 2), answer: coco },
    },
    errors,
  };
}

const fixed = (v: number | null | undefined, digits = 1): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');

export function printConcurrencyTable(r: ConcurrencyReport): void {
  console.log(
    `\n==== serving benchmark (${r.settings.backend}${r.gpu ? `, ${r.gpu}` : ''}): ${fixed(r.flopsPerImage.totalFlops / 1e9, 1)} GFLOP per image ` +
      `(vision ${fixed(r.flopsPerImage.visionFlops / 1e9, 1)}, prefill ${fixed(r.flopsPerImage.prefillFlops / 1e9, 1)}); ` +
      `GEMM ${r.gemm ? `${fixed(r.gemm.flopsPerSecond / 1e12)} TFLOP/s -> roofline ${fixed(r.computeRooflineImagesPerSecond)} images/s` : 'not measured'}`,
  );
  console.log(
    textTable(
      r.levels.map((l) => ({
        answer: `${l.answer} (${l.tokensPerRequest})`,
        concurrency: l.concurrency,
        requests: l.requests,
        'images/s': fixed(l.imagesPerSecond, 2),
        'tokens/s': fixed(l.generatedTokensPerSecond, 0),
        'preds/s': fixed(l.predictionsPerSecond, 2),
        'TTFT p50/p99 ms': `${fixed(l.timeToFirstTokenMs.p50, 0)} / ${fixed(l.timeToFirstTokenMs.p99, 0)}`,
        'first pred p50/p99 ms': `${fixed(l.timeToFirstPredictionMs.p50, 0)} / ${fixed(l.timeToFirstPredictionMs.p99, 0)}`,
        'total p50/p99 ms': `${fixed(l.totalMs.p50, 0)} / ${fixed(l.totalMs.p99, 0)}`,
        'roofline frac': fixed(l.computeRooflineFraction, 3),
      })),
    ),
  );
  if (r.peer) {
    console.log(`peer: transformers batched generate. ${r.peer.note}`);
    console.log(
      textTable(
        r.peer.levels.map((p) => ({
          answer: p.answer,
          batch: p.batch,
          'new tokens': p.newTokens,
          'first token ms': fixed(p.firstTokenMs, 0),
          'ms/step': fixed(p.msPerDecodeStep, 2),
          'total ms': fixed(p.totalMs, 0),
          'images/s': fixed(p.imagesPerSecond, 2),
          'tokens/s': fixed(p.generatedTokensPerSecond, 0),
          'images/s at our length': fixed(p.extrapolatedImagesPerSecond, 2),
        })),
      ),
    );
    if (r.peer.skipped.length) console.log(`peer skipped: ${r.peer.skipped.join('; ')}`);
    if (Object.keys(r.peer.errors).length) console.log(`peer errors: ${JSON.stringify(r.peer.errors)}`);
  }
  const t = r.targets;
  console.log(
    `targets: roofline fraction at 64 (coco-like) ${fixed(t.computeRooflineFractionCocoAt64.value, 3)} (>= 0.5: ${t.computeRooflineFractionCocoAt64.met ?? '-'}); ` +
      `dense aggregate ${fixed(t.denseAggregateTokensPerSecond.value, 0)} tok/s at x${t.denseAggregateTokensPerSecond.concurrency ?? '-'} ` +
      `(>= 20000: ${t.denseAggregateTokensPerSecond.met ?? '-'}); p99 at 8 over batch 1 ${fixed(t.p99AtConcurrency8OverBatch1.value, 2)} ` +
      `(<= 2: ${t.p99AtConcurrency8OverBatch1.met ?? '-'})`,
  );
  if (r.errors.length) console.log(`errors: ${r.errors.join('; ')}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      backend: { type: 'string', default: 'cuda' },
      levels: { type: 'string' },
      out: { type: 'string' },
      peer: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      'gemm-tflops': { type: 'string' },
      'prefill-decode-rows': { type: 'string' },
      'prefill-chunk-tokens': { type: 'string' },
    },
  });
  if (!values.model) throw new Error('concurrency: expected --model DIR (or 3b)');
  const model = values.model === '3b' ? await ensure3bCheckpoint() : values.model;
  const backend = values.backend === 'cpu' ? 'cpu' : 'cuda';
  const quick = values.quick;
  const levels = values.levels ? values.levels.split(',').map(Number) : quick ? [1, 4] : DEFAULT_LEVELS;
  if (levels.some((l) => !Number.isInteger(l) || l < 1)) throw new Error(`concurrency: expected --levels like 1,8,32 but got ${values.levels}`);
  const report = await runConcurrency({
    model,
    backend,
    levels,
    // --quick (CI, the CPU): short answers, twice the concurrency in requests, small images.
    ...(quick
      ? {
          answers: [{ ...COCO_LIKE, tokens: 12 }, { ...DENSE, tokens: 40 }],
          requests: (_a: AnswerShape, c: number) => Math.max(2 * c, 2),
          imageSizes: [[84, 56], [56, 56], [112, 84]] as [number, number][],
        }
      : {}),
    peer: backend === 'cuda' ? (values.peer ? 'transformers' : 'gemm') : 'none',
    ...(values['gemm-tflops'] ? { gemmFlopsPerSecond: Number(values['gemm-tflops']) * 1e12 } : {}),
    ...(values['prefill-decode-rows'] ? { prefillDecodeRows: Number(values['prefill-decode-rows']) } : {}),
    ...(values['prefill-chunk-tokens'] ? { prefillChunkTokens: Number(values['prefill-chunk-tokens']) } : {}),
    log: (line) => console.log(`[concurrency ${new Date().toISOString().slice(11, 19)}] ${line}`),
  });
  if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
  printConcurrencyTable(report);
  process.exitCode = report.errors.length === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
