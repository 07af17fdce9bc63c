// The token-level engine through the binding: streaming on the engine's own
// thread, concurrent requests, cancellation, close, and bad requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineEvent } from '../lib/engine.js';
import { modelCases, goldenImage } from './fixtures/golden-cases.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const IM_END = 151645;
let tiny: string;
let engine: Engine;
const golden = modelCases().find((c) => c.case === 'syn_20x20_min')!;

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
  engine = await Engine.open(tiny, { threads: 2 });
});
afterAll(async () => {
  await engine?.close();
});

async function request(maxNewTokens: number, extra: object = {}) {
  const image = await goldenImage(golden.image, false);
  return {
    promptIds: golden.input_ids,
    image: { ...image, minPixels: golden.min_pixels, maxPixels: golden.max_pixels },
    maxNewTokens,
    stopTokenIds: [IM_END],
    sampling: { repetitionPenalty: 1.05 },
    ...extra,
  };
}

describe('Engine', () => {
  it('exposes the model config', () => {
    expect(engine.config.text.numLayers).toBe(3);
  });

  it('streams token events with increasing steps, then one finish event with timings', async () => {
    const events: EngineEvent[] = [];
    for await (const event of engine.stream(await request(8))) events.push(event);
    const tokens = events.filter((e) => e.type === 'token');
    expect(tokens.map((e) => e.step)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(tokens.map((e) => e.token)).toEqual(golden.greedy.tokens.slice(0, 8));
    for (const t of tokens) expect(t.logprob).toBeLessThanOrEqual(0);
    const finish = events.at(-1)!;
    expect(finish.type).toBe('finish');
    if (finish.type !== 'finish') return;
    expect(finish.reason).toBe('length');
    expect(finish.promptTokens).toBe(golden.input_ids.length);
    expect(finish.imageTokens).toBe(16);
    expect(finish.generatedTokens).toBe(8);
    for (const key of ['preprocessMs', 'visionMs', 'prefillMs', 'decodeMs'] as const)
      expect(finish.timings[key]).toBeGreaterThanOrEqual(0);
    expect(finish.timings.visionMs + finish.timings.prefillMs).toBeGreaterThan(0);
  });

  it('keeps the event loop turning while it generates', async () => {
    let ticks = 0;
    const timer = setInterval(() => ++ticks, 1);
    try {
      await engine.generate(await request(32));
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
  });

  it('runs concurrent requests to the same tokens as one at a time', async () => {
    const alone = await engine.generate(await request(12));
    const together = await Promise.all([0, 1, 2].map(async () => engine.generate(await request(12))));
    for (const result of together) expect(result.tokens).toEqual(alone.tokens);
  });

  it('samples reproducibly with a seed, and differently with another', async () => {
    const sampled = async (seed: number) =>
      (await engine.generate(await request(24, { sampling: { temperature: 1.5, topK: 50, topP: 0.95, seed } }))).tokens;
    const a = await sampled(7);
    expect(await sampled(7)).toEqual(a);
    expect(await sampled(8)).not.toEqual(a);
  });

  it('cancels a request through its AbortSignal; others go on', async () => {
    const controller = new AbortController();
    const doomed = engine.generate(await request(2000, { signal: controller.signal }));
    const bystander = engine.generate(await request(6));
    setTimeout(() => controller.abort(new Error('stop it')), 5);
    await expect(doomed).rejects.toThrow('stop it');
    expect((await bystander).tokens).toEqual(golden.greedy.tokens.slice(0, 6));
  });

  it('rejects a malformed request with a TypeError and keeps serving', async () => {
    expect(() => engine.stream({ promptIds: 'nope' as unknown as number[] })).toThrow(
      'request.promptIds: expected an Int32Array or an array of integers but got a string',
    );
    const badImage = { ...(await request(4)), image: { data: new Uint8Array(10), width: 4, height: 4 } };
    expect(() => engine.stream(badImage)).toThrow(/expected raw_image.rgb of width\*height\*3 bytes but got 10/);
    expect((await engine.generate(await request(3))).tokens).toHaveLength(3);
  });

  it('close() cancels what is in flight', async () => {
    const own = await Engine.open(tiny, { threads: 1 });
    const events: EngineEvent[] = [];
    const consumer = (async () => {
      for await (const event of own.stream(await request(5000))) events.push(event);
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await own.close();
    await consumer;
    const finish = events.at(-1);
    expect(finish?.type === 'finish' && finish.reason).toBe('cancelled');
    expect(() => own.stream({ promptIds: [1, 2, 3] })).toThrow('the engine is closed');
  });
});
