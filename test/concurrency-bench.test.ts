// The serving benchmark (benchmarks/concurrency.ts) on the CPU backend with
// the tiny checkpoint, at concurrency 1 and 4 with short answers: the report
// has its shape and its numbers agree with each other (every request
// generates exactly its tokens, each after the first a decode step of its
// own; rates are counts over the wall time; p99 ≥ p50). No timing
// thresholds: the device run gives the figures. The FLOPs count is checked
// against a hand count of one small case.
import { describe, expect, it } from 'vitest';

import { runConcurrency, type AnswerShape } from '../benchmarks/concurrency.js';
import { prefillFlops, readFlopsConfig, visionFlops } from '../benchmarks/prefill-flops.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

describe('serving benchmark (CPU, tiny checkpoint)', () => {
  it('reports throughput and latency per level and answer length, consistently', async () => {
    const answers: AnswerShape[] = [
      { name: 'coco-like', tokens: 6 },
      { name: 'dense', tokens: 14 },
    ];
    const requests = (_answer: AnswerShape, concurrency: number) => 2 * concurrency;
    const report = await runConcurrency({
      model: await ensureTinyCheckpoint(),
      backend: 'cpu',
      levels: [1, 4],
      answers,
      requests,
      imageSizes: [[56, 56], [84, 56]],
      gemmFlopsPerSecond: 1e12,  // a given rate, so the roofline fields are filled in
    });
    expect(report.errors).toEqual([]);
    expect(report.levels.map((l) => `${l.answer} x${l.concurrency}`)).toEqual(['coco-like x1', 'coco-like x4', 'dense x1', 'dense x4']);
    for (const l of report.levels) {
      const tokens = answers.find((a) => a.name === l.answer)!.tokens;
      expect(l.requests).toBe(requests(answers[0]!, l.concurrency));
      expect(l.tokensPerRequest).toBe(tokens);
      expect(l.generatedTokens).toBe(l.requests * tokens);
      expect(l.decodeSteps).toBe(l.requests * (tokens - 1));  // jump-forward off: every token after the first is a step
      expect(l.forcedTokens).toBe(0);
      expect(l.answerTokens).toBeLessThanOrEqual(l.generatedTokens);
      expect(l.wallSeconds).toBeGreaterThan(0);
      expect(l.imagesPerSecond).toBeCloseTo(l.requests / l.wallSeconds, 6);
      expect(l.generatedTokensPerSecond).toBeCloseTo(l.generatedTokens / l.wallSeconds, 6);
      expect(l.predictionsPerSecond).toBeCloseTo(l.predictions / l.wallSeconds, 6);
      for (const p of [l.timeToFirstTokenMs, l.totalMs]) {
        expect(p.p50).toBeGreaterThan(0);
        expect(p.p99).toBeGreaterThanOrEqual(p.p50);
      }
      expect(l.totalMs.p50).toBeGreaterThanOrEqual(l.timeToFirstTokenMs.p50);
      expect(l.totalMs.p99).toBeLessThanOrEqual(l.wallSeconds * 1000);
      // The tiny checkpoint may close its answer before any polygon: then no first prediction.
      expect(l.predictionsMissing).toBeGreaterThanOrEqual(0);
      if (l.predictionsMissing < l.requests) {
        expect(l.timeToFirstPredictionMs.p99).toBeGreaterThanOrEqual(l.timeToFirstPredictionMs.p50);
        expect(l.timeToFirstPredictionMs.p50).toBeGreaterThan(0);
      } else {
        expect(l.predictions).toBe(0);
      }
      expect(l.computeRooflineFraction).toBeCloseTo(l.imagesPerSecond / report.computeRooflineImagesPerSecond!, 9);
    }
    expect(report.gemm?.flopsPerSecond).toBe(1e12);
    expect(report.computeRooflineImagesPerSecond).toBeCloseTo(1e12 / report.flopsPerImage.totalFlops, 6);
    expect(report.flopsPerImage.bySize).toHaveLength(2);
    expect(report.flopsPerImage.totalFlops).toBeCloseTo(report.flopsPerImage.visionFlops + report.flopsPerImage.prefillFlops, 0);
    // No level 64 or 8 here: those targets are null; the dense one takes the best dense level.
    expect(report.targets.computeRooflineFractionCocoAt64.value).toBeNull();
    expect(report.targets.p99AtConcurrency8OverBatch1.value).toBeNull();
    const dense = report.levels.filter((l) => l.answer === 'dense');
    expect(report.targets.denseAggregateTokensPerSecond.value).toBe(Math.max(...dense.map((l) => l.generatedTokensPerSecond)));
    expect(report.targets.denseAggregateTokensPerSecond.met).toBe(report.targets.denseAggregateTokensPerSecond.value! >= 20000);
    expect(report.peer).toBeNull();
    expect(JSON.parse(JSON.stringify(report))).toMatchObject({ settings: { backend: 'cpu', levels: [1, 4] } });
  }, 120_000);

  it('counts vision and prefill FLOPs as the model config gives them', async () => {
    const c = readFlopsConfig(await ensureTinyCheckpoint());
    // Tiny vision: depth 4, hidden 64, MLP 96, full attention in blocks 1 and 3; an 8x8 patch grid is one window of 64 patches.
    const d = 64;
    const patches = 64;
    const expected =
      2 * patches * 1176 * d +  // patch embedding
      2 * patches * (4 * d * d + 3 * d * 96) * 4 +  // q, k, v, o and the gated MLP in 4 blocks
      4 * 4 * d * patches * patches +  // attention: one window (= the image) in every block
      2 * 16 * (256 * 256 + 256 * 128);  // the merger over 16 merged tokens
    expect(visionFlops(c.vision, 8, 8)).toBe(expected);
    // Tiny decoder: 3 layers, hidden 128, 4 heads / 2 kv heads of 32, MLP 256, vocab 151936; 10 tokens.
    const perLayer = 2 * 10 * (128 * (128 + 2 * 64) + 128 * 128 + 3 * 128 * 256) + 2 * 2 * 128 * 55;
    expect(prefillFlops(c.text, 10)).toBe(3 * perLayer + 2 * 128 * 151936);
  });
});
