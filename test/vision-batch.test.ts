// Batched vision on the CPU backend and the tiny checkpoint: the images of
// requests admitted in the same scheduler step go through one encoder pass
// (visionBatchPatches), and each request gives the tokens it gives alone (the
// CPU encoder's rows are independent, so the embeddings are the same bits);
// a corrupt image among them fails alone with its typed error (in JS, before
// the engine), an image the engine's preprocessing refuses fails alone with
// ERR_REX_INVALID_ARGUMENT (inside the batch), and the others complete; the
// option is checked. Which requests share a step depends on timing here;
// native/tests/engine_vision_batch_test.cpp pins a step and counts the passes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine.js';
import { RexOmniError } from '../lib/errors.js';
import { loadAddon } from '../lib/native.js';
import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
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

  it('an image the engine cannot preprocess fails alone inside the batch with ERR_REX_INVALID_ARGUMENT', async () => {
    await using engine = await Engine.open(dir, { threads: 2, backend: 'cpu' });
    const c = engine.config;
    const { smartResize } = loadAddon().addon;
    const request = (image: { data: Uint8Array; width: number; height: number }, pads?: number) => {
      const resized = pads === undefined ? smartResize(image.height, image.width, 4 * 28 * 28, defaults.maxPixels) : undefined;
      const count = pads ?? (resized!.height / 28) * (resized!.width / 28);
      const promptIds = [5, 17, c.visionStartTokenId, ...Array<number>(count).fill(c.imageTokenId), c.visionEndTokenId, 42];
      return { promptIds, image: { ...image, minPixels: 4 * 28 * 28, maxPixels: defaults.maxPixels }, maxNewTokens: 8, sampling: { temperature: 0 } };
    };
    // 402 x 2: an aspect ratio over 200, which smart_resize refuses in the engine's preprocessing.
    const thin = { data: syntheticRgb(402, 2, 9), width: 402, height: 2 };
    const run = async (r: ReturnType<typeof request>) => {
      const tokens: number[] = [];
      for await (const event of engine.stream(r)) {
        if (event.type === 'token') tokens.push(event.token);
        else return { tokens, finish: event };
      }
      throw new Error('no finish event');
    };
    const good = images.slice(0, 3).map((image) => request(image));
    const each = [];
    for (const r of good) each.push(await run(r));
    const together = await Promise.all([run(good[0]!), run(request(thin, 4)), run(good[1]!), run(good[2]!)]);
    const failed = together[1]!;
    expect(failed.finish.reason).toBe('error');
    expect(failed.finish.error).toBeInstanceOf(RexOmniError);
    expect(failed.finish.error?.code).toBe('ERR_REX_INVALID_ARGUMENT');
    expect(failed.finish.error?.message).toMatch(/aspect ratio/);
    for (const [j, i] of [[0, 0], [2, 1], [3, 2]] as const) {
      expect(together[j]!.finish.reason).toBe('length');
      expect(together[j]!.tokens).toEqual(each[i]!.tokens);
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
