// GPU machine only (`npm run test:gpu`): batched vision on the CUDA backend
// and the tiny checkpoint. Requests are pinned to one scheduler step
// (fixtures/start-together.ts), so their images go through one encoder pass
// (the same visionMs for each generating request shows it).
//  - Batched ≈ alone: teacher-forced logits (score, full rows) of four images
//    scored in one pass (beside two generating requests) against each scored alone. cuBLASLt picks its algorithm
//    per shape, rows included, so a batch need not give alone's bits; the bar
//    is bf16's own error on this checkpoint (CUDA alone against the CPU fp32
//    engine), as parity-3b takes transformers' bf16 error: min cosine within
//    0.0005 of it, relative max error within 1.5 times it, top-1 no worse.
//  - batchInvariant: one image per pass, so greedy requests started together
//    give the tokens each gives alone, exactly; and an image the engine
//    refuses (aspect ratio over 200) fails alone among them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../../lib/engine.js';
import { loadAddon } from '../../lib/native.js';
import { compareRows, log } from '../fixtures/gpu-harness.js';
import { collect, kvBudgetGB, startTogether, type Finished } from '../fixtures/start-together.js';
import { syntheticRgb } from '../fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from '../fixtures/tiny-checkpoint.js';

const MIN_PIXELS = 4 * 28 * 28;
const MAX_PIXELS = 48 * 28 * 28;
const BLOCKS = 16; // the holder decodes ~1000 steps while the others queue
const sizes: [number, number][] = [[112, 84], [56, 140], [98, 98], [70, 42]];
const images = sizes.map(([width, height], i) => ({ data: syntheticRgb(width, height, 90 + i), width, height }));

let dir: string;
let cpu: Engine;
let alone: Engine;
beforeAll(async () => {
  dir = await ensureTinyCheckpoint();
  cpu = await Engine.open(dir, { threads: 4, backend: 'cpu' });
  alone = await Engine.open(dir, { backend: 'cuda', batchInvariant: true });
  expect(alone.info().backend).toBe('cuda');
});
afterAll(async () => {
  await alone?.close();
  await cpu?.close();
});

function request(image: { data: Uint8Array; width: number; height: number }, pads?: number) {
  const c = alone.config;
  const resized = loadAddon().addon.smartResize(image.height, image.width, MIN_PIXELS, MAX_PIXELS);
  const count = pads ?? (resized.height / 28) * (resized.width / 28);
  const promptIds = [5, 17, c.visionStartTokenId, ...Array<number>(count).fill(c.imageTokenId), c.visionEndTokenId, 42];
  return { promptIds, image: { ...image, minPixels: MIN_PIXELS, maxPixels: MAX_PIXELS } };
}

const CONTINUATION = [7, 8, 9, 10, 11];

describe('batched vision (CUDA)', () => {
  it('four images scored in one pass are close to each scored alone (within bf16 error)', async () => {
    await using batched = await Engine.open(dir, {
      backend: 'cuda',
      kvCacheGB: kvBudgetGB(alone.config, 2, BLOCKS),
      prefixCacheGB: 0,
    });
    const vocab = alone.config.text.vocabSize;
    const rows = CONTINUATION.length + 1;
    const score = (engine: Engine, i: number) =>
      engine.score({ ...request(images[i]!), continuationIds: CONTINUATION, topK: 1, fullLogits: true });
    const flat = (r: Awaited<ReturnType<typeof score>>) => {
      const out = new Float32Array(rows * vocab);
      r.positions.forEach((p, j) => out.set(p.logits!, j * vocab));
      return out;
    };
    // Two generating requests beside the scores (score results carry no
    // timings): their equal visionMs shows the step's images took one pass.
    const generate = (i: number) => collect(batched.stream({ ...request(images[i]!), maxNewTokens: 4, sampling: { temperature: 0 } }));
    type Out = { scored: Awaited<ReturnType<typeof score>> } | { generated: Finished };
    const all = await startTogether<Out>(batched, BLOCKS, () => [
      ...images.map((_, i) => score(batched, i).then((scored) => ({ scored }))),
      generate(0).then((generated) => ({ generated })),
      generate(1).then((generated) => ({ generated })),
    ]);
    const together = all.flatMap((r) => ('scored' in r ? [r.scored] : []));
    const visionMs = new Set(all.flatMap((r) => ('generated' in r ? [r.generated.finish.timings.visionMs] : [])));
    log(`six images in one step: visionMs ${[...visionMs].join(', ')}`);
    expect(visionMs.size).toBe(1);
    for (const [i, r] of together.entries()) {
      const own = flat(await score(alone, i));
      const ref = flat(await score(cpu, i));
      const batch = compareRows(own, flat(r), rows, vocab);
      const bf16 = compareRows(ref, own, rows, vocab);
      log(
        `image ${i} ${sizes[i]!.join('x')}: batched vs alone cos ${batch.minCosine.toFixed(6)} rel ${batch.relMaxErr.toExponential(3)} ` +
          `top-1 ${batch.top1}; CUDA vs CPU fp32 cos ${bf16.minCosine.toFixed(6)} rel ${bf16.relMaxErr.toExponential(3)} top-1 ${bf16.top1}`,
      );
      expect(batch.minCosine, `image ${i}: min cosine`).toBeGreaterThanOrEqual(Math.min(0.9999, bf16.minCosine - 0.0005));
      expect(batch.relMaxErr, `image ${i}: rel max err`).toBeLessThanOrEqual(Math.max(1e-3, 1.5 * bf16.relMaxErr));
      expect(batch.top1, `image ${i}: top-1`).toBeGreaterThanOrEqual(bf16.top1);
    }
  }, 300_000);

  it('batchInvariant: greedy requests started together give their tokens alone; a refused image fails alone', async () => {
    await using together = await Engine.open(dir, {
      backend: 'cuda',
      batchInvariant: true,
      kvCacheGB: kvBudgetGB(alone.config, 2, BLOCKS),
      prefixCacheGB: 0,
    });
    const generate = (i: number) => ({ ...request(images[i]!), maxNewTokens: 8, sampling: { temperature: 0 } });
    const each = [];
    for (let i = 0; i < images.length; ++i) each.push(await collect(alone.stream(generate(i))));
    const thin = { data: syntheticRgb(402, 2, 9), width: 402, height: 2 };
    const results = await startTogether(together, BLOCKS, () => [
      ...images.map((_, i) => collect(together.stream(generate(i)))),
      collect(together.stream({ ...request(images[0]!, 4), image: { ...thin, minPixels: MIN_PIXELS, maxPixels: MAX_PIXELS }, maxNewTokens: 8 })),
    ]);
    for (const [i, r] of results.slice(0, images.length).entries()) {
      expect(r.finish.reason, `request ${i}`).toBe('length');
      expect(r.tokens, `request ${i}`).toEqual(each[i]!.tokens);
    }
    const refused = results[images.length]!;
    expect(refused.finish.reason).toBe('error');
    expect(refused.finish.error?.code).toBe('ERR_REX_INVALID_ARGUMENT');
    expect(refused.finish.error?.message).toMatch(/aspect ratio/);
    // One pass per image: each image its own time.
    expect(new Set(results.slice(0, images.length).map((r) => r.finish.timings.visionMs)).size).toBe(images.length);
  }, 300_000);
});
