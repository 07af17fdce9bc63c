// The CPU backend against transformers, through the binding: every golden
// case's preprocessing (bytes and pixel_values), vision output, last-position
// logits, and 32 greedy tokens with repetition penalty 1.05.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine.js';
import { loadAddon } from '../lib/native.js';
import {
  goldenDir,
  goldenImage,
  modelCases,
  preprocessCases,
  readVisionOutput,
  sha256,
  type GoldenPreprocess,
} from './fixtures/golden-cases.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';
import { sha256File } from './fixtures/sha256-file.js';

const IM_END = 151645;
let tiny: string;
let engine: Engine;

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
  engine = await Engine.open(tiny);
});
afterAll(async () => {
  await engine?.close();
});

const f32Sha = (values: Float32Array): string =>
  createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');

async function imageFor(c: GoldenPreprocess) {
  const image = await goldenImage(c.image, c.exif_transpose);
  return { ...image, minPixels: c.min_pixels, maxPixels: c.max_pixels };
}

describe('golden files', () => {
  it('were made from the checkpoint the tests generate', async () => {
    const manifest = JSON.parse(readFileSync(join(goldenDir, 'manifest.json'), 'utf8')) as {
      checkpoint: Record<string, string>;
    };
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json'])
      expect(await sha256File(join(tiny, file)), `${file} changed: regenerate the golden files`).toBe(manifest.checkpoint[file]);
  });
});

describe.each(preprocessCases().map((c) => [c.case, c] as const))('preprocess %s', (_name, c) => {
  it('decodes to the reference RGB', async () => {
    const image = await goldenImage(c.image, c.exif_transpose);
    expect([image.width, image.height]).toEqual(c.source_size);
    expect(sha256(image.data)).toBe(c.source_rgb_sha256);
  });

  it('resizes and patchifies exactly as Pillow + transformers', async () => {
    const { addon } = loadAddon();
    const out = await addon.preprocessImage(await imageFor(c));
    expect([out.resizedWidth, out.resizedHeight]).toEqual(c.resized_size);
    expect([out.gridT, out.gridH, out.gridW]).toEqual(c.grid_thw);
    expect(sha256(out.resizedRgb)).toBe(c.resized_rgb_sha256);
    expect(f32Sha(out.pixelValues)).toBe(c.pixel_values.sha256_f32le);
  });
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; ++i) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe.each(modelCases().map((c) => [c.case, c] as const))('model %s', (_name, c) => {
  it('matches the vision output and the last-position logits within 1e-3 of their max', async () => {
    const { addon } = loadAddon();
    const forward = await addon.referenceForward(tiny, { promptIds: c.input_ids, image: await imageFor(c) });
    const [tokens, hidden] = c.vision_output.shape;
    expect(forward.visionTokens).toBe(tokens);
    if (c.vision_output.file) {
      const golden = readVisionOutput(c.vision_output.file);
      expect(maxAbsDiff(forward.vision, golden)).toBeLessThanOrEqual(1e-3 * c.vision_output.max_abs);
    } else {
      for (const [row, values] of Object.entries(c.vision_output.rows)) {
        const ours = forward.vision.subarray(Number(row) * hidden, (Number(row) + 1) * hidden);
        expect(maxAbsDiff(ours, values)).toBeLessThanOrEqual(1e-3 * c.vision_output.max_abs);
      }
    }
    const tol = 1e-3 * c.logits_last.max_abs;
    for (const [id, value] of c.logits_last.top) expect(Math.abs(forward.lastLogits[id]! - value)).toBeLessThanOrEqual(tol);
    const sampled = c.logits_last.sample.map((_, i) => forward.lastLogits[i * c.logits_last.sample_stride]!);
    expect(maxAbsDiff(sampled, c.logits_last.sample)).toBeLessThanOrEqual(tol);
  });

  it('dumps the named intermediates in debug mode, matching transformers at the first layer', async () => {
    const { addon } = loadAddon();
    const forward = await addon.referenceForward(tiny, { promptIds: c.input_ids, image: await imageFor(c), intermediates: true });
    const golden = (c as unknown as { intermediates: Record<string, { shape: number[]; head: number[] }> }).intermediates;
    for (const name of ['vision.patch_embed', 'vision.block.0', 'vision.merger', 'text.embed', 'text.layer.0', 'text.final_norm'])
      expect(Object.keys(forward.intermediates)).toContain(name);
    const patchEmbed = forward.intermediates['vision.patch_embed']!;
    expect(patchEmbed.shape).toEqual(golden['vision.patch_embed']!.shape);
    const head = golden['vision.patch_embed']!.head;
    const scale = Math.max(...head.map(Math.abs));
    expect(maxAbsDiff(patchEmbed.data.subarray(0, head.length), head)).toBeLessThanOrEqual(1e-3 * scale);
  });

  it('generates the same 32 greedy tokens (repetition penalty 1.05)', async () => {
    const result = await engine.generate({
      promptIds: c.input_ids,
      image: await imageFor(c),
      maxNewTokens: c.greedy.max_new_tokens,
      stopTokenIds: [IM_END],
      sampling: { temperature: 0, repetitionPenalty: c.greedy.repetition_penalty },
    });
    expect(result.tokens).toEqual(c.greedy.tokens);
    expect(result.finish.reason).toBe(c.greedy.stop_reason === 'eos' ? 'eos' : 'length');
    expect(result.finish.imageTokens).toBe(c.vision_output.shape[0]);
  });
});
