// Teacher-forced scoring, backend selection and the KV budget through the
// binding, on the CPU backend and the tiny checkpoint: score() reproduces the
// golden greedy tokens as its top-1 and the raw log-probabilities the engine
// reports while generating; the backend options are validated; a request
// that can never fit the KV budget fails with ERR_REX_OUT_OF_MEMORY while a
// request beside it completes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine.js';
import { RexOmniError } from '../lib/errors.js';
import { loadAddon } from '../lib/native.js';
import { goldenImage, modelCases } from './fixtures/golden-cases.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const IM_END = 151645;
let tiny: string;
let engine: Engine;
const golden = modelCases().find((c) => c.case === 'syn_20x20_min')!;

async function image() {
  const rgb = await goldenImage(golden.image, false);
  return { ...rgb, minPixels: golden.min_pixels, maxPixels: golden.max_pixels };
}

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
  engine = await Engine.open(tiny, { threads: 2, backend: 'cpu' });
});
afterAll(async () => {
  await engine?.close();
});

describe('Engine.score', () => {
  it('gives greedy generation as its top-1, with the same raw log-probabilities', async () => {
    // Greedy without a repetition penalty picks the raw argmax: what score() reports as top-1.
    const generated = [];
    for await (const event of engine.stream({
      promptIds: golden.input_ids, image: await image(), maxNewTokens: 12, stopTokenIds: [IM_END], sampling: { repetitionPenalty: 1.0 },
    })) if (event.type === 'token') generated.push(event);
    const continuation = generated.map((e) => e.token);
    expect(continuation.length).toBeGreaterThan(0);
    expect(continuation[0]).toBe(golden.greedy.tokens[0]);
    const scored = await engine.score({ promptIds: golden.input_ids, image: await image(), continuationIds: continuation, topK: 4 });
    expect(scored.positions).toHaveLength(continuation.length + 1);
    expect(scored.promptTokens).toBe(golden.input_ids.length);
    expect(scored.imageTokens).toBeGreaterThan(0);
    scored.positions.forEach((p, i) => {
      expect(p.topIds).toBeInstanceOf(Int32Array);
      expect(p.topIds).toHaveLength(4);
      expect(p.topLogits[0]).toBeGreaterThanOrEqual(p.topLogits[1]!);
      expect(p.logits).toBeUndefined();
      if (i < continuation.length) {
        expect(p.topIds[0]).toBe(continuation[i]);
        expect(p.logprob).toBeCloseTo(generated[i]!.modelLogprob, 4);
      } else {
        expect(p.logprob).toBeNull();
      }
    });
  });

  it('returns whole logits rows on request, consistent with top-k', async () => {
    const scored = await engine.score({ promptIds: golden.input_ids, image: await image(), continuationIds: [], topK: 2, fullLogits: true });
    expect(scored.positions).toHaveLength(1);
    const [p] = scored.positions;
    expect(p!.logits).toHaveLength(engine.config.text.vocabSize);
    let best = 0;
    for (let i = 1; i < p!.logits!.length; ++i) if (p!.logits![i]! > p!.logits![best]!) best = i;
    expect(p!.topIds[0]).toBe(best);
    expect(p!.topIds[0]).toBe(golden.greedy.tokens[0]);
  });

  it('rejects bad requests with typed errors, and the engine goes on', async () => {
    await expect(engine.score({ promptIds: golden.input_ids, continuationIds: [1, -5] })).rejects.toThrow(
      /expected continuationIds\[1\]|expected continuation_ids\[1\] in \[0, 151936\) but got -5/,
    );
    await expect(engine.score({ promptIds: [1, 2], continuationIds: [3], topK: -1 })).rejects.toThrow(/expected top_k in \[0, /);
    await expect(engine.score({ promptIds: golden.input_ids, continuationIds: [3] })).rejects.toThrow(/expected 0 image tokens \(0x0 merged grid\) but the prompt has/);
    const ok = await engine.score({ promptIds: [1, 2, 3], continuationIds: [4] });
    expect(ok.positions).toHaveLength(2);
  });
});

describe('backend selection and info', () => {
  it('reports the backend it runs on', () => {
    const info = engine.info();
    expect(info.backend).toBe('cpu');
    expect(info.memory.weightsBytes).toBeGreaterThan(0);
    expect(info.memory.kvCacheUsedBytes).toBe(0);
  });

  it('picks the CUDA backend for "auto" only when the loaded build has a device', async () => {
    const { info } = loadAddon();
    await using auto = await Engine.open(tiny, { threads: 1 });
    expect(auto.info().backend).toBe(info.backend === 'cuda' && info.available ? 'cuda' : 'cpu');
  });

  it('refuses "cuda" on a build without a usable device, and bad options', async () => {
    const { info } = loadAddon();
    if (!(info.backend === 'cuda' && info.available)) {
      await expect(Engine.open(tiny, { backend: 'cuda' })).rejects.toSatisfy(
        (e: unknown) => e instanceof RexOmniError && e.code === 'ERR_REX_BACKEND_UNAVAILABLE' && /CUDA backend is not available/.test(e.message),
      );
    }
    await expect(Engine.open(tiny, { backend: 'tpu' as 'cpu' })).rejects.toThrow('options.backend: expected "auto", "cpu" or "cuda" but got "tpu"');
    await expect(Engine.open(tiny, { kvCacheGB: -1 })).rejects.toThrow('options.kvCacheGB: expected a positive number of GiB but got -1');
    await expect(Engine.open(tiny, { gpuMemoryFraction: 1.5 })).rejects.toThrow('options.gpuMemoryFraction: expected a number in (0, 1] but got 1.5');
    await expect(Engine.open(tiny, { maxActiveRequests: 0 })).rejects.toThrow('options.maxActiveRequests: expected an integer >= 1 but got 0');
  });
});

describe('bf16 emulation on the CPU', () => {
  it('moves the logits a little, as bf16 activations do, and only when asked', async () => {
    await using emu = await Engine.open(tiny, { threads: 2, backend: 'cpu', emulateBf16: true });
    const request = { promptIds: golden.input_ids, image: await image(), continuationIds: [], topK: 1, fullLogits: true };
    const [fp32, bf16] = await Promise.all([engine.score(request), emu.score(request)]);
    const a = fp32.positions[0]!.logits!;
    const b = bf16.positions[0]!.logits!;
    let dot = 0, na = 0, nb = 0, differ = 0;
    for (let i = 0; i < a.length; ++i) {
      dot += a[i]! * b[i]!;
      na += a[i]! * a[i]!;
      nb += b[i]! * b[i]!;
      if (a[i] !== b[i]) differ++;
    }
    expect(differ).toBeGreaterThan(a.length / 2);
    expect(dot / Math.sqrt(na * nb)).toBeGreaterThan(0.9);
    await expect(Engine.open(tiny, { emulateBf16: 'yes' as unknown as boolean })).rejects.toThrow(
      'options.emulateBf16: expected a boolean but got "yes"',
    );
  });

  it('batchInvariant is checked, and accepted on the CPU backend (row-invariant either way)', async () => {
    await expect(Engine.open(tiny, { batchInvariant: 1 as unknown as boolean })).rejects.toThrow(
      'options.batchInvariant: expected a boolean but got 1',
    );
    await using invariant = await Engine.open(tiny, { threads: 2, backend: 'cpu', batchInvariant: true });
    expect(invariant.info().backend).toBe('cpu');
  });
});

describe('KV budget', () => {
  it('rejects a request that can never fit with ERR_REX_OUT_OF_MEMORY while others complete', async () => {
    // The tiny model's CPU KV cache: layers * 2 * kv_heads * head_dim fp32 per token.
    const t = engine.config.text;
    const perToken = t.numLayers * 2 * t.numKvHeads * t.headDim * 4;
    await using small = await Engine.open(tiny, { threads: 1, backend: 'cpu', kvCacheGB: (perToken * 256) / 2 ** 30 });
    expect(small.info().memory.kvCacheBytes).toBe(perToken * 256);
    const tooBig = small.generate({ promptIds: [1, 2, 3], maxNewTokens: 1000 });
    const fits = small.generate({ promptIds: [1, 2, 3], maxNewTokens: 20 });
    await expect(tooBig).rejects.toSatisfy(
      (e: unknown) => e instanceof RexOmniError && e.code === 'ERR_REX_OUT_OF_MEMORY' && /needs 1003 tokens/.test(e.message),
    );
    const done = await fits;
    expect(done.tokens).toHaveLength(20);
    expect(small.info().memory.kvCacheUsedBytes).toBe(0);
  });
});
