// CPU engine throughput on the tiny checkpoint: prefill and decode tokens/s,
// batch 1 and a batch of concurrent requests. A benchmark, not a test: it
// prints a table and writes JSON; nothing asserts a speed.
import { Engine } from '../lib/engine.js';
import { syntheticRgb } from '../test/fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from '../test/fixtures/tiny-checkpoint.js';

export interface CpuTinyResult {
  name: string;
  imageTokens: number;
  promptTokens: number;
  generatedTokens: number;
  concurrency: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  visionMs: number;
  prefillMs: number;
  decodeMs: number;
  wallMs: number;
}

const IMAGE_PAD = 151655;

function promptWithImage(imagePads: number): number[] {
  // <|im_start|>user\n<|vision_start|> pads <|vision_end|> text <|im_end|>\n<|im_start|>assistant\n
  const text = [151644, 872, 198, 151652, ...new Array<number>(imagePads).fill(IMAGE_PAD), 151653];
  return [...text, 35, 2385, 1700, 13, 151645, 198, 151644, 77091, 198];
}

async function measure(engine: Engine, side: number, newTokens: number, concurrency: number): Promise<CpuTinyResult> {
  const pads = (side / 28) * (side / 28);
  const image = { data: syntheticRgb(side, side, 3), width: side, height: side, maxPixels: side * side, minPixels: 28 * 28 };
  const request = {
    promptIds: promptWithImage(pads),
    image,
    maxNewTokens: newTokens,
    stopTokenIds: [],
    sampling: { temperature: 0, repetitionPenalty: 1.05 },
  };
  await engine.generate({ ...request, maxNewTokens: 2 }); // warm-up
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: concurrency }, () => engine.generate(request)));
  const wallMs = performance.now() - start;
  const f = results[0]!.finish;
  const decodeSteps = results.reduce((n, r) => n + r.finish.generatedTokens - 1, 0);
  const decodeMs = Math.max(...results.map((r) => r.finish.timings.decodeMs));
  return {
    name: `${side}x${side} image, ${newTokens} new tokens, ${concurrency} concurrent`,
    imageTokens: f.imageTokens,
    promptTokens: f.promptTokens,
    generatedTokens: f.generatedTokens,
    concurrency,
    prefillTokensPerSecond: f.promptTokens / ((f.timings.visionMs + f.timings.prefillMs) / 1000),
    decodeTokensPerSecond: decodeSteps / (decodeMs / 1000),
    visionMs: f.timings.visionMs,
    prefillMs: f.timings.prefillMs,
    decodeMs,
    wallMs,
  };
}

export async function benchmarkCpuTiny(): Promise<CpuTinyResult[]> {
  const dir = await ensureTinyCheckpoint();
  await using engine = await Engine.open(dir, { backend: 'cpu' });
  const results: CpuTinyResult[] = [];
  for (const [side, tokens, concurrency] of [
    [224, 128, 1],
    [448, 128, 1],
    [224, 128, 8],
  ] as const) {
    results.push(await measure(engine, side, tokens, concurrency));
  }
  return results;
}
