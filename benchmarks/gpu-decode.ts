// The decode figures of the GPU benchmark (benchmarks/gpu.ts runs this after
// its TTFT and batch-1 runs), on the 3B-shaped checkpoint with random
// weights. Random weights cannot be made to write COCO answers of a chosen
// length, so lengths and step kinds are set by grammars instead
// (fixed-length.ts):
//  - text steps: unconstrained greedy decoding (the full LM head);
//  - coordinate steps: a one-phrase polygon grammar, whose steps after the
//    phrase allow only the 1000 coordinates and <|box_end|>; with scores off
//    they run the coordinate head, with scores on the full head;
//  - end to end: that polygon answer at exactly 45 and 440 tokens (the
//    grammar's budget rule closes it on the last tokens), scores on;
//  - decode steps per box: the 80-category detection grammar, sampled
//    (temperature 0.7, five seeds), with jump-forward on and off;
//  - aggregate decode tokens/s at batch 1, 8, 32 and 64: that many identical
//    unconstrained requests at once (1200-token contexts), counted from the
//    moment the last of them has its first token;
//  - the image prefix cache: the time to first token of five questions on
//    one image, one after another, on an engine with the cache (the first
//    misses, the others find the image's KV through <|vision_end|> and
//    prefill only the question) and on one without.
// Everything else runs on an engine without the prefix cache, so repeated
// requests on the benchmark's one image measure the full path every time.
import { compileGrammar } from '../lib/grammar/index.js';
import { Engine, type TokenRequest } from '../lib/engine.js';
import type { RexTokenizer } from '../lib/tokenizer.js';
import { log } from '../test/fixtures/gpu-harness.js';
import { GREEDY, fixedLengthGrammar, fixedLengthRequest } from './fixed-length.js';

export interface DecodeRun {
  wallMs: number;
  tokens: number;
  decodeSteps: number | undefined;
  decodeTokensPerSecond: number;
  coordinateTokens: number;
}

export interface DecodeBench {
  textSteps: DecodeRun;
  coordinateStepsCoordinateHead: DecodeRun;
  coordinateStepsFullHead: DecodeRun;
  coordinateStepSpeedupOverText: number;
  endToEnd: { tokens: number; wallMs: number; ttftMs: number }[];
  stepsPerBox: { jumpForward: boolean; boxes: number; tokens: number; decodeSteps: number; stepsPerBox: number }[];
  aggregate: { batch: number; tokensPerSecond: number; stepMs: number; perRequestTokensPerSecond: number }[];
  prefixCache: { uncachedTtftMs: number[]; cachedTtftMs: number[]; cachedTokens: number; secondTaskSpeedup: number };
}

// scores / jumpForward: the request options of the decode path (engine.h).
type Request = Omit<TokenRequest, 'promptIds'> & { promptIds: Int32Array | number[]; scores?: boolean; jumpForward?: boolean };

async function runOne(
  engine: Engine,
  request: Request,
  coordinate: (id: number) => boolean,
): Promise<DecodeRun & { ttftMs: number; cachedTokens: number }> {
  const started = performance.now();
  let first: number | undefined;
  let tokens = 0;
  let coords = 0;
  for await (const event of engine.stream(request as TokenRequest)) {
    if (event.type === 'token') {
      first ??= performance.now();
      tokens++;
      if (coordinate(event.token)) coords++;
      continue;
    }
    if (event.reason === 'error') throw event.error ?? new Error('generation failed');
    const wallMs = performance.now() - started;
    const steps = (event as { decodeSteps?: number }).decodeSteps;
    const decodeMs = event.timings.decodeMs;
    return {
      wallMs,
      ttftMs: (first ?? started) - started,
      tokens,
      decodeSteps: steps,
      decodeTokensPerSecond: decodeMs > 0 ? (tokens - 1) / (decodeMs / 1000) : NaN,
      coordinateTokens: coords,
      cachedTokens: event.cachedTokens,
    };
  }
  throw new Error('the stream ended without a finish event');
}

const best = <T extends { decodeTokensPerSecond: number }>(runs: T[]): T =>
  [...runs].sort((a, b) => a.decodeTokensPerSecond - b.decodeTokensPerSecond)[runs.length >> 1]!;

export async function benchmarkDecode(
  dir: string,
  tokenizer: RexTokenizer,
  base: Request,
  categories: readonly string[],
): Promise<DecodeBench> {
  const coordinateIds = new Set(tokenizer.coordinateIds);
  const isCoordinate = (id: number) => coordinateIds.has(id);
  const polygon = await fixedLengthGrammar(tokenizer);
  const detection = JSON.stringify(await compileGrammar({ syntax: 'groups', kind: 'box', phrases: categories }, tokenizer));

  const engine = await Engine.open(dir, { backend: 'cuda', maxActiveRequests: 64, prefixCacheGB: 0 });
  try {
    const repeat = async (request: Request, n = 3) => {
      await runOne(engine, request, isCoordinate);  // warm-up (captures the graphs)
      const runs = [];
      for (let i = 0; i < n; ++i) runs.push(await runOne(engine, request, isCoordinate));
      return best(runs);
    };
    const text = await repeat({ ...base, maxNewTokens: 256, stopTokenIds: [], sampling: GREEDY });
    log(`decode: text steps ${text.decodeTokensPerSecond.toFixed(1)} tok/s`);
    const polygonRequest = (maxNewTokens: number, scores: boolean): Request =>
      fixedLengthRequest(base, polygon, maxNewTokens, { scores, jumpForward: false });
    const coordHead = await repeat(polygonRequest(256, false));
    const coordFull = await repeat(polygonRequest(256, true));
    log(
      `decode: coordinate steps ${coordHead.decodeTokensPerSecond.toFixed(1)} tok/s (coordinate head), ` +
        `${coordFull.decodeTokensPerSecond.toFixed(1)} tok/s (full head, scores on); ` +
        `${coordHead.coordinateTokens}/${coordHead.tokens} tokens are coordinates`,
    );

    const endToEnd = [];
    for (const n of [45, 440]) {
      const r = await repeat({ ...polygonRequest(n, true), jumpForward: true });
      endToEnd.push({ tokens: r.tokens, wallMs: r.wallMs, ttftMs: r.ttftMs });
      log(`decode: a ${r.tokens}-token answer end to end in ${r.wallMs.toFixed(1)} ms (first token ${r.ttftMs.toFixed(1)} ms)`);
    }

    const stepsPerBox = [];
    for (const jumpForward of [false, true]) {
      let boxes = 0;
      let tokens = 0;
      let steps = 0;
      for (let seed = 0; seed < 5; ++seed) {
        const r = await runOne(
          engine,
          { ...base, maxNewTokens: 256, grammar: detection, jumpForward, scores: false, sampling: { temperature: 0.7, seed, repetitionPenalty: 1.05 } },
          isCoordinate,
        );
        boxes += r.coordinateTokens / 4;
        tokens += r.tokens;
        steps += r.decodeSteps ?? NaN;
      }
      stepsPerBox.push({ jumpForward, boxes, tokens, decodeSteps: steps, stepsPerBox: boxes > 0 ? steps / boxes : NaN });
      log(`decode: jump-forward ${jumpForward ? 'on' : 'off'}: ${boxes} boxes, ${tokens} tokens, ${steps} decode steps`);
    }

    const aggregate = [];
    for (const batch of [1, 8, 32, 64]) {
      const request = { ...base, maxNewTokens: 128, stopTokenIds: [] as number[], sampling: GREEDY };
      const firsts: number[] = [];
      const stamps: number[][] = [];
      await Promise.all(
        Array.from({ length: batch }, async (_, i) => {
          stamps[i] = [];
          for await (const event of engine.stream(request as TokenRequest)) {
            if (event.type === 'token') stamps[i]!.push(performance.now());
            else if (event.reason === 'error') throw event.error ?? new Error('generation failed');
          }
          firsts[i] = stamps[i]![0]!;
        }),
      );
      const start = Math.max(...firsts);
      const end = Math.max(...stamps.map((s) => s.at(-1)!));
      const counted = stamps.reduce((n, s) => n + s.filter((t) => t > start).length, 0);
      const tokensPerSecond = counted / ((end - start) / 1000);
      aggregate.push({
        batch,
        tokensPerSecond,
        stepMs: (1000 * batch) / tokensPerSecond,
        perRequestTokensPerSecond: tokensPerSecond / batch,
      });
      log(`decode: batch ${batch}: ${tokensPerSecond.toFixed(0)} tok/s aggregate, ${((1000 * batch) / tokensPerSecond).toFixed(2)} ms/step`);
    }
    const prefixCache = await benchmarkPrefixCache(dir, engine, base, isCoordinate);
    return {
      textSteps: text,
      coordinateStepsCoordinateHead: coordHead,
      coordinateStepsFullHead: coordFull,
      coordinateStepSpeedupOverText: coordHead.decodeTokensPerSecond / text.decodeTokensPerSecond,
      endToEnd,
      stepsPerBox,
      aggregate,
      prefixCache,
    };
  } finally {
    await engine.close();
  }
}

// Five questions on one image, one after another: uncached on `uncached`,
// then on a fresh engine with the prefix cache (its first question misses).
async function benchmarkPrefixCache(
  dir: string,
  uncached: Engine,
  base: Request,
  isCoordinate: (id: number) => boolean,
): Promise<DecodeBench['prefixCache']> {
  const request: Request = { ...base, maxNewTokens: 8, stopTokenIds: [], sampling: { temperature: 0 } };
  const uncachedTtftMs: number[] = [];
  for (let i = 0; i < 5; ++i) uncachedTtftMs.push((await runOne(uncached, request, isCoordinate)).ttftMs);
  const cachedEngine = await Engine.open(dir, { backend: 'cuda', maxActiveRequests: 8 });
  try {
    const { image: _image, ...textOnly } = request;
    await runOne(cachedEngine, { ...textOnly, promptIds: Array.from(base.promptIds).slice(0, 8) }, isCoordinate);  // warm-up, no image
    const cachedRuns = [];
    for (let i = 0; i < 5; ++i) cachedRuns.push(await runOne(cachedEngine, request, isCoordinate));
    const cachedTtftMs = cachedRuns.map((r) => r.ttftMs);
    const cachedTokens = cachedRuns.at(-1)!.cachedTokens;
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const secondTaskSpeedup = median(uncachedTtftMs.slice(1)) / median(cachedTtftMs.slice(1));
    log(
      `decode: prefix cache: time to first token uncached ${uncachedTtftMs.map((t) => t.toFixed(1)).join(' ')} ms, ` +
        `cached ${cachedTtftMs.map((t) => t.toFixed(1)).join(' ')} ms (${cachedTokens} prompt tokens from the cache): ` +
        `x${secondTaskSpeedup.toFixed(1)} from the second question on`,
    );
    return { uncachedTtftMs, cachedTtftMs, cachedTokens, secondTaskSpeedup };
  } finally {
    await cachedEngine.close();
  }
}
