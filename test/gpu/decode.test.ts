// GPU machine only (`npm run test:gpu`): the CUDA decode path on the tiny
// checkpoint, where every step samples on the device.
//  - Jump-forward: the same tokens, predictions and scores as plain decoding,
//    greedy and seeded, in fewer decode steps.
//  - The coordinate head: with scores off, steps whose grammar allows only a
//    few rows compute only those rows; the tokens are those of the full head.
//  - Batched and alone (batchInvariant): a seeded request gives the same
//    tokens alone and beside seven others (the GEMV and the attention are
//    row-invariant), jump-forward rows included.
//  - The default mode: steps of more than 2 rows run on cuBLASLt; sixteen
//    greedy requests at once begin as they do alone.
//  - Batched prefill (the default): sixteen requests whose
//    prompts share prefill passes (several images a pass, varlen attention,
//    one LM head, first tokens sampled together) begin as they do alone; one
//    alone gives a plain engine's tokens.
//  - Split prefill keys (the default since session 9; REX_OMNI_PREFILL_SPLIT=0
//    turns them off): requests begin as they do without.
//  - The image prefix cache: later tasks on an image read its KV (no vision,
//    no prefix prefill; a partial last block copied on the device) and give
//    the tokens of a model without the cache, also all at once.
//  - Growing slots (reserveGeneration: false, batchInvariant): four image
//    requests outgrow eight KV blocks; the newest are preempted and resume;
//    those never preempted give their tokens alone, and the KV ends empty.
//  - The CPU backend, sampling on the host, gives the same greedy tokens on
//    the first steps (bf16 against fp32: the first tokens only).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RexOmni, type RexOmniResult } from '../../lib/rex-omni.js';
import { JUMP_CATEGORIES, JUMP_IMAGE, JUMP_SAMPLINGS } from '../fixtures/jump-forward-cases.js';
import { loadWithEnv } from '../fixtures/load-with-env.js';
import { syntheticRgb } from '../fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from '../fixtures/tiny-checkpoint.js';

const IMAGE = JUMP_IMAGE;
const CATEGORIES = JUMP_CATEGORIES;
let model: RexOmni;

beforeAll(async () => {
  model = await RexOmni.load(await ensureTinyCheckpoint(), {
    backend: 'cuda',
    maxActiveRequests: 8,
    batchInvariant: true,
    defaults: { maxPixels: 64 * 28 * 28 },
  });
  expect(model.info().backend).toBe('cuda');
});
afterAll(async () => {
  await model?.close();
});

const settings = JUMP_SAMPLINGS;


/**
 * Sixteen greedy detections, alone on `model` and then all at once on
 * `other`. Other sums (bf16 logits, another order) may break a near tie: the
 * first four tokens must agree for nearly all. Returns the alone results.
 */
async function sixteenBeginAsAlone(other: RexOmni, label: string, images: { data: Uint8Array; width: number; height: number }[]) {
  const options = { maxNewTokens: 8, sampling: { temperature: 0 }, jumpForward: false };
  const requests = Array.from({ length: 16 }, (_, i) => [images[i % images.length]!, CATEGORIES.slice(0, 1 + (i % 3))] as const);
  const alone = [];
  for (const [image, categories] of requests) alone.push(await model.detect(image, [...categories], options));
  const together = await Promise.all(requests.map(([image, categories]) => other.detect(image, [...categories], options)));
  const agree = together.filter((r, i) => r.outputTokenIds.slice(0, 4).join() === alone[i]!.outputTokenIds.slice(0, 4).join());
  console.log(`${label}, 16 at once: ${agree.length}/16 begin as alone`);
  expect(agree.length).toBeGreaterThanOrEqual(14);
  return { alone, requests, options };
}

describe('CUDA decode', () => {
  it.each(settings)('jump-forward, %s: the same output in fewer decode steps', async (_name, sampling) => {
    let stepsOff = 0, stepsOn = 0, forced = 0;
    for (const seed of [0, 1, 2, 3, 4, 5]) {
      const run = (jumpForward: boolean): Promise<RexOmniResult> =>
        model.detect(IMAGE, CATEGORIES, { maxNewTokens: 64, sampling: { ...sampling, seed }, jumpForward });
      const off = await run(false);
      const on = await run(true);
      expect(on.outputTokenIds).toEqual(off.outputTokenIds);
      expect(on.predictions).toEqual(off.predictions);
      stepsOff += off.decodeSteps;
      stepsOn += on.decodeSteps;
      forced += on.tokens.forced;
    }
    console.log(`jump-forward (${_name}): ${stepsOff} -> ${stepsOn} decode steps, ${forced} forced tokens`);
    expect(forced).toBeGreaterThan(0);
    expect(stepsOn).toBeLessThan(stepsOff);
  });

  it.each(settings)('the coordinate head (scores off), %s: the tokens of the full head', async (_name, sampling) => {
    for (const seed of [0, 1, 2]) {
      const options = { maxNewTokens: 64, sampling: { ...sampling, seed }, jumpForward: false };
      const full = await model.detect(IMAGE, CATEGORIES, options);
      const restricted = await model.detect(IMAGE, CATEGORIES, { ...options, scores: false });
      expect(restricted.outputTokenIds).toEqual(full.outputTokenIds);
      expect(restricted.predictions).toEqual(full.predictions.map(({ score: _score, ...p }) => p));
    }
  });

  it('a seeded request gives the same tokens alone and in a batch of eight', async () => {
    const options = (seed: number) => ({ maxNewTokens: 48, sampling: { temperature: 0.9, topP: 0.95, seed } });
    const alone = await model.detect(IMAGE, CATEGORIES, options(7));
    const batch = await Promise.all(
      [7, 1, 2, 3, 7, 4, 5, 6].map((seed, i) =>
        i % 2 ? model.point(IMAGE, ['cat'], options(seed)) : model.detect(IMAGE, CATEGORIES, options(seed)),
      ),
    );
    expect(batch[0]!.outputTokenIds).toEqual(alone.outputTokenIds);
    expect(batch[4]!.outputTokenIds).toEqual(alone.outputTokenIds);
  });

  it('the default mode: sixteen greedy requests at once (cuBLASLt steps) begin as they do alone', async () => {
    const fast = await RexOmni.load(await ensureTinyCheckpoint(), {
      backend: 'cuda',
      maxActiveRequests: 16,
      defaults: { maxPixels: 64 * 28 * 28 },
    });
    try {
      const images = [0, 1, 2, 3].map((seed) => ({ data: syntheticRgb(112, 112, seed), width: 112, height: 112 }));
      await sixteenBeginAsAlone(fast, 'default mode', images);
      expect(fast.info().backend).toBe('cuda');
    } finally {
      await fast.close();
    }
  });

  it('batched prefill (the default): sixteen requests prefilled together begin as they do alone', async () => {
    // Sixteen requests admitted together share each prefill pass: several
    // images in it, varlen attention, one LM head for the prompts that end
    // in the pass, their first tokens sampled together.
    const batched = await RexOmni.load(await ensureTinyCheckpoint(), {
      backend: 'cuda',
      maxActiveRequests: 16,
      prefixCacheGB: 0,
      defaults: { maxPixels: 64 * 28 * 28 },
    });
    try {
      const images = Array.from({ length: 16 }, (_, i) => ({ data: syntheticRgb(112, 112, 40 + i), width: 112, height: 112 }));
      const { alone, requests, options } = await sixteenBeginAsAlone(batched, 'batched prefill', images);
      // Alone on the batching engine: one request per pass, the tokens of a plain engine.
      const one = await batched.detect(images[0]!, [...requests[0]![1]], options);
      expect(one.outputTokenIds).toEqual(alone[0]!.outputTokenIds);
    } finally {
      await batched.close();
    }
  });

  it('split prefill keys (the default; REX_OMNI_PREFILL_SPLIT=0 without): requests begin as they do without', async () => {
    // 448x448 images (256 image tokens): the prompt's last attention tiles
    // see 4-5 key tiles, and the tiny checkpoint's passes (4 q heads, a few
    // tiles) fall far short of the target CTAs, so by default those
    // tiles split their keys (shares and a combine launch). The kernel's
    // parity is cuda_attention_prefill_test's; here the tokens begin as without.
    const tiny = await ensureTinyCheckpoint();
    const load = () =>
      RexOmni.load(tiny, { backend: 'cuda', maxActiveRequests: 8, prefixCacheGB: 0, defaults: { maxPixels: 512 * 28 * 28 } });
    const plain = await loadWithEnv('REX_OMNI_PREFILL_SPLIT', '0', load);
    const split = await load();
    try {
      const options = { maxNewTokens: 8, sampling: { temperature: 0 }, jumpForward: false };
      const images = Array.from({ length: 8 }, (_, i) => ({ data: syntheticRgb(448, 448, 90 + i), width: 448, height: 448 }));
      const run = (m: RexOmni) => Promise.all(images.map((image, i) => m.detect(image, CATEGORIES.slice(0, 1 + (i % 3)), options)));
      const without = await run(plain);
      const withSplit = await run(split);
      const agree = withSplit.filter((r, i) => r.outputTokenIds.slice(0, 4).join() === without[i]!.outputTokenIds.slice(0, 4).join());
      console.log(`split prefill keys: ${agree.length}/8 begin as without (prompts of ${without[0]!.tokens.prompt} tokens)`);
      expect(without[0]!.tokens.prompt).toBeGreaterThan(256);
      expect(agree.length).toBeGreaterThanOrEqual(7);
    } finally {
      await Promise.all([plain.close(), split.close()]);
    }
  });

  it('the image prefix cache: later tasks on an image give the tokens of a model without it', async () => {
    const plain = await RexOmni.load(await ensureTinyCheckpoint(), {
      backend: 'cuda',
      maxActiveRequests: 8,
      batchInvariant: true,
      prefixCacheGB: 0,
      defaults: { maxPixels: 64 * 28 * 28 },
    });
    try {
      const image = { data: syntheticRgb(112, 112, 31), width: 112, height: 112 };
      const options = { maxNewTokens: 32, sampling: { temperature: 0.8, topP: 0.9, seed: 3 } };
      const handle = await model.image(image);
      const cachedResults = [
        await handle.detect(CATEGORIES, options),
        await handle.point(['cat'], options),
        await handle.guiGround('the cat', options),
      ];
      const plainResults = [
        await plain.detect(image, CATEGORIES, options),
        await plain.point(image, ['cat'], options),
        await plain.guiGround(image, 'the cat', options),
      ];
      expect(cachedResults[0]!.tokens.cached).toBe(0);
      for (const r of cachedResults.slice(1)) {
        expect(r.tokens.cached).toBeGreaterThan(r.tokens.image);
        expect(r.timings.visionMs).toBe(0);
      }
      for (const [i, r] of cachedResults.entries()) expect(r.outputTokenIds).toEqual(plainResults[i]!.outputTokenIds);
      // All at once: hits and misses in one batch.
      const together = await Promise.all([
        handle.detect(CATEGORIES, options),
        handle.point(['cat'], options),
        handle.guiGround('the cat', options),
      ]);
      for (const [i, r] of together.entries()) expect(r.outputTokenIds).toEqual(plainResults[i]!.outputTokenIds);
      const info = model.info().prefixCache;
      console.log(`prefix cache: ${JSON.stringify(info)}`);
      expect(info.hits).toBeGreaterThanOrEqual(4);
    } finally {
      await plain.close();
    }
  });

  it('growing slots: requests that outgrow the KV budget are preempted and resume with their tokens alone', async () => {
    const dir = await ensureTinyCheckpoint();
    const images = [0, 1, 2, 3].map((i) => ({ data: syntheticRgb(56, 56, 40 + i), width: 56, height: 56 }));
    const options = (seed: number) => ({ maxNewTokens: 120, constrained: false, sampling: { temperature: 0.7, seed } });
    const alone = [];
    for (const [i, image] of images.entries()) alone.push(await model.detect(image, ['cat'], options(i)));
    // Eight blocks of 64 tokens (bf16 KV of the tiny model: 768 bytes a token):
    // each request (~35 prompt + 120 new tokens) needs three.
    const growing = await RexOmni.load(dir, {
      backend: 'cuda',
      maxActiveRequests: 4,
      batchInvariant: true,
      reserveGeneration: false,
      kvCacheGB: (8 * 64 * 768) / 2 ** 30,
      defaults: { maxPixels: 64 * 28 * 28 },
    });
    try {
      const results = await Promise.all(images.map((image, i) => growing.detect(image, ['cat'], options(i))));
      const preemptions = results.reduce((n, r) => n + r.preemptions, 0);
      console.log(`growing slots on the GPU: ${preemptions} preemptions over 4 requests`);
      expect(preemptions).toBeGreaterThan(0);
      // Never preempted: the bits of alone (the GEMV and attention are
      // row-invariant). Preempted: their resumed KV comes from a prefill (the
      // GEMM) instead of decode steps, so later tokens may differ by a near
      // tie; counted, not required.
      let same = 0;
      for (const [i, r] of results.entries()) {
        expect(r.tokens.generated).toBeGreaterThan(0);
        if (r.preemptions === 0) expect(r.outputTokenIds, `request ${i}`).toEqual(alone[i]!.outputTokenIds);
        else same += r.outputTokenIds.join() === alone[i]!.outputTokenIds.join() ? 1 : 0;
      }
      console.log(`preempted requests equal to alone: ${same}/${results.filter((r) => r.preemptions > 0).length}`);
      const info = growing.info();
      expect(info.memory.kvCacheUsedBytes - info.prefixCache.heldBytes).toBe(0);
    } finally {
      await growing.close();
    }
  });
});
