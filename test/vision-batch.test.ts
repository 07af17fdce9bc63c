// Batched vision on the CPU backend and the tiny checkpoint: the images of
// requests admitted in the same scheduler step go through one encoder pass
// (visionBatchPatches), and each request gives the tokens it gives alone (the
// CPU encoder's rows are independent, so the embeddings are the same bits);
// a corrupt image among them fails alone with its typed error (in JS, before
// the engine), an image the engine's preprocessing refuses fails alone with
// ERR_REX_INVALID_ARGUMENT (inside the batch), and the others complete; the
// option is checked. Which concurrent requests share a step depends on
// timing, except where fixtures/start-together.ts pins them to one step (then
// one pass gives each image the same visionMs; batchInvariant, one pass each).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine.js';
import { RexOmniError } from '../lib/errors.js';
import { loadAddon } from '../lib/native.js';
import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
import { collect, kvBudgetGB, startTogether } from './fixtures/start-together.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const defaults = { maxPixels: 48 * 28 * 28 };
const sizes: [number, number][] = [[112, 84], [56, 140], [98, 98], [70, 42], [140, 56]];
const images = sizes.map(([width, height], i) => ({ data: syntheticRgb(width, height, 70 + i), width, height }));
const cafe = join(import.meta.dirname, 'fixtures', 'images', 'cafe.jpg');
const greedy = { maxNewTokens: 16, constrained: false, sampling: { temperature: 0 } };
const seeded = (seed: number) => ({ maxNewTokens: 16, constrained: false, sampling: { temperature: 0.8, seed } });

let dir: string;
let alone: RexOmni;
beforeAll(async () => {
  dir = await ensureTinyCheckpoint();
  alone = await RexOmni.load(dir, { threads: 2, defaults });
});
afterAll(async () => {
  await alone?.close();
});

async function eachAlone(options: (i: number) => object): Promise<RexOmniResult[]> {
  const out = [];
  for (const [i, image] of images.entries()) out.push(await alone.detect(image, ['cat'], options(i)));
  return out;
}

describe('batched vision (CPU)', () => {
  it('concurrent requests with different images give the tokens each gives alone', async () => {
    const reference = { greedy: await eachAlone(() => greedy), seeded: await eachAlone(seeded) };
    for (const visionBatchPatches of [undefined, 64]) {
      const model = await RexOmni.load(dir, { threads: 2, defaults, ...(visionBatchPatches === undefined ? {} : { visionBatchPatches }) });
      try {
        for (const [kind, options] of [['greedy', () => greedy], ['seeded', seeded]] as const) {
          const together = await Promise.all(images.map((image, i) => model.detect(image, ['cat'], options(i))));
          for (const [i, r] of together.entries()) {
            const want = reference[kind][i]!;
            expect(r.outputTokenIds, `${kind} request ${i} (visionBatchPatches ${visionBatchPatches ?? 'default'})`).toEqual(want.outputTokenIds);
            expect(r.tokens.image).toBe(want.tokens.image);
            expect(r.timings.visionMs).toBeGreaterThan(0);
          }
        }
      } finally {
        await model.close();
      }
    }
  }, 120_000);

  it('a corrupt image among them fails alone with its typed error; the others complete', async () => {
    const reference = await eachAlone(() => greedy);
    const truncated = readFileSync(cafe).subarray(0, 20000);
    const settled = await Promise.allSettled([
      ...images.slice(0, 2).map((image) => alone.detect(image, ['cat'], greedy)),
      alone.detect(truncated, ['cat'], greedy),
      ...images.slice(2).map((image) => alone.detect(image, ['cat'], greedy)),
    ]);
    const bad = settled[2]!;
    expect(bad.status).toBe('rejected');
    if (bad.status === 'rejected') {
      expect(bad.reason).toBeInstanceOf(TypeError);
      expect((bad.reason as Error).message).toContain('loadImage(input): expected a complete jpeg image but got a truncated or corrupt one');
    }
    const good = settled.filter((_, i) => i !== 2);
    for (const [i, s] of good.entries()) {
      expect(s.status).toBe('fulfilled');
      if (s.status === 'fulfilled') expect(s.value.outputTokenIds).toEqual(reference[i]!.outputTokenIds);
    }
  }, 120_000);

  it('requests started in one step share one pass; an image the engine refuses fails alone in it', async () => {
    await using plain = await Engine.open(dir, { threads: 2, backend: 'cpu' });
    const c = plain.config;
    const { smartResize } = loadAddon().addon;
    const blocks = 4;
    const engineFor = (batchInvariant: boolean) =>
      Engine.open(dir, { threads: 2, backend: 'cpu', kvCacheGB: kvBudgetGB(c, 4, blocks), prefixCacheGB: 0, batchInvariant });
    const request = (image: { data: Uint8Array; width: number; height: number }, pads?: number) => {
      const resized = pads === undefined ? smartResize(image.height, image.width, 4 * 28 * 28, defaults.maxPixels) : undefined;
      const count = pads ?? (resized!.height / 28) * (resized!.width / 28);
      const promptIds = [5, 17, c.visionStartTokenId, ...Array<number>(count).fill(c.imageTokenId), c.visionEndTokenId, 42];
      return { promptIds, image: { ...image, minPixels: 4 * 28 * 28, maxPixels: defaults.maxPixels }, maxNewTokens: 8, sampling: { temperature: 0 } };
    };
    // 402 x 2: an aspect ratio over 200, which smart_resize refuses in the engine's preprocessing.
    const thin = { data: syntheticRgb(402, 2, 9), width: 402, height: 2 };
    const good = images.slice(0, 3).map((image) => request(image));
    const each = [];
    for (const r of good) each.push(await collect(plain.stream(r)));
    for (const batchInvariant of [false, true]) {
      await using engine = await engineFor(batchInvariant);
      const together = await startTogether(engine, blocks, () =>
        [good[0]!, request(thin, 4), good[1]!, good[2]!].map((r) => collect(engine.stream(r))),
      );
      const failed = together[1]!;
      expect(failed.finish.reason).toBe('error');
      expect(failed.finish.error).toBeInstanceOf(RexOmniError);
      expect(failed.finish.error?.code).toBe('ERR_REX_INVALID_ARGUMENT');
      expect(failed.finish.error?.message).toMatch(/aspect ratio/);
      const done = [together[0]!, together[2]!, together[3]!];
      for (const [i, r] of done.entries()) {
        expect(r.finish.reason).toBe('length');
        expect(r.tokens, `request ${i} (batchInvariant ${batchInvariant})`).toEqual(each[i]!.tokens);
      }
      // One pass gives each image the batch's time; under batchInvariant each image has a pass of its own.
      const visionMs = new Set(done.map((r) => r.finish.timings.visionMs));
      expect(visionMs.size).toBe(batchInvariant ? 3 : 1);
    }
  }, 120_000);

  it('visionBatchPatches is checked', async () => {
    await expect(RexOmni.load(dir, { visionBatchPatches: -1 })).rejects.toThrow(
      'options.visionBatchPatches: expected an integer >= 0 but got -1',
    );
    await expect(RexOmni.load(dir, { visionBatchPatches: 1.5 })).rejects.toThrow(
      'options.visionBatchPatches: expected an integer but got 1.5',
    );
  });
});
