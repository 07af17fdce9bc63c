// Loading checkpoints through the binding: both layouts, shards, dtypes, the
// config, and a clear coded error (no crash) for each kind of damage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Checkpoint } from '../lib/checkpoint.js';
import {
  toFloat32,
  withEditedConfig,
  withEditedTensors,
  withGarbledHeader,
  withShardedWeights,
  withTruncatedWeights,
} from './fixtures/checkpoint-mutations.js';
import { ensureTinyCheckpoint, generateTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

let tiny: string;
const made: string[] = [];
const track = (dir: string): string => (made.push(dir), dir);

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
});
afterAll(async () => {
  await Promise.all(made.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function openError(dir: string): Promise<Error & { code?: string }> {
  try {
    const checkpoint = await Checkpoint.open(dir);
    checkpoint.close();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error(`expected opening ${dir} to fail, but it opened`);
}

describe('Checkpoint.open on the tiny checkpoint', () => {
  it('exposes the config from config.json (flat 4.x layout)', async () => {
    await using checkpoint = await Checkpoint.open(tiny);
    const { config } = checkpoint;
    expect(config.architecture).toBe('Qwen2_5_VLForConditionalGeneration');
    expect(config.configLayout).toBe('flat');
    expect(checkpoint.tensorLayout).toBe('flat');
    expect(config.text).toMatchObject({
      numLayers: 3, hiddenSize: 128, numHeads: 4, numKvHeads: 2, headDim: 32,
      vocabSize: 151936, mropeSection: [4, 6, 6], tieWordEmbeddings: true, ropeTheta: 1000000,
    });
    expect(config.vision).toMatchObject({
      depth: 4, hiddenSize: 64, numHeads: 4, headDim: 16, intermediateSize: 96,
      outHiddenSize: 128, patchSize: 14, spatialMergeSize: 2, windowSize: 112, fullAttentionBlocks: [1, 3],
    });
    expect(config.imageTokenId).toBe(151655);
    expect(checkpoint.tensorInfo('model.embed_tokens.weight')).toMatchObject({ dtype: 'BF16', shape: [151936, 128] });
    expect(checkpoint.tensorInfo('lm_head.weight')).toBeNull();
    expect(checkpoint.tensorNames()).toContain('visual.blocks.3.attn.qkv.bias');
  });

  it('opens the nested layout (model.visual.*, model.language_model.*, text_config) with the same model', async () => {
    const dir = track(await mkdtemp(join(tmpdir(), 'rex-nested-')));
    await generateTinyCheckpoint(dir, { layout: 'nested' });
    await using flat = await Checkpoint.open(tiny);
    await using nested = await Checkpoint.open(dir);
    expect(nested.tensorLayout).toBe('nested');
    expect(nested.config.configLayout).toBe('nested');
    expect(nested.config.text).toEqual(flat.config.text);
    expect(nested.config.vision).toEqual(flat.config.vision);
    expect(nested.tensorNames()).toEqual(flat.tensorNames());
  });

  it('opens sharded weights through model.safetensors.index.json', async () => {
    const dir = track(await withShardedWeights(tiny));
    await using checkpoint = await Checkpoint.open(dir);
    await using single = await Checkpoint.open(tiny);
    expect(checkpoint.tensorNames()).toEqual(single.tensorNames());
    const files = new Set(checkpoint.tensorNames().map((name) => checkpoint.tensorInfo(name)!.file.split('/').pop()));
    expect([...files].sort()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  });

  it('opens f32 weights', async () => {
    const dir = track(await withEditedTensors(tiny, 'f32', toFloat32));
    await using checkpoint = await Checkpoint.open(dir, { verify: true });
    expect(checkpoint.tensorInfo('model.norm.weight')).toMatchObject({ dtype: 'F32', shape: [128] });
  });

  it('keeps the event loop turning while it loads', async () => {
    let ticks = 0;
    const timer = setInterval(() => ++ticks, 1);
    try {
      // Four verified loads: each scans every weight on a worker thread.
      const loads = await Promise.all([0, 1, 2, 3].map(() => Checkpoint.open(tiny, { verify: true })));
      loads.forEach((checkpoint) => checkpoint.close());
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
  });
});

describe('Checkpoint.open on damaged checkpoints', () => {
  it('a truncated safetensors file', async () => {
    const error = await openError(track(await withTruncatedWeights(tiny, 1_000_000)));
    expect(error.code).toBe('ERR_REX_CORRUPT_FILE');
    expect(error.message).toContain('model.safetensors');
  });

  it('a file shorter than its own header', async () => {
    const error = await openError(track(await withTruncatedWeights(tiny, 100)));
    expect(error.code).toBe('ERR_REX_CORRUPT_FILE');
    expect(error.message).toContain('model.safetensors');
  });

  it('a header that is not JSON', async () => {
    const error = await openError(track(await withGarbledHeader(tiny)));
    expect(error.code).toBe('ERR_REX_BAD_HEADER');
    expect(error.message).toContain('model.safetensors');
  });

  it('a missing tensor', async () => {
    const dir = track(await withEditedTensors(tiny, 'missing', (t) => delete t['model.layers.1.mlp.up_proj.weight']));
    const error = await openError(dir);
    expect(error.code).toBe('ERR_REX_MISSING_TENSOR');
    expect(error.message).toContain('model.layers.1.mlp.up_proj.weight');
  });

  it('a tensor of the wrong shape', async () => {
    const dir = track(
      await withEditedTensors(tiny, 'shape', (t) => {
        t['visual.blocks.0.attn.qkv.weight']!.shape = [64, 192]; // same size, transposed shape
      }),
    );
    const error = await openError(dir);
    expect(error.code).toBe('ERR_REX_SHAPE_MISMATCH');
    expect(error.message).toContain('visual.blocks.0.attn.qkv.weight');
    expect(error.message).toContain('[64, 192]');
    expect(error.message).toContain('[192, 64]');
  });

  it('a config of another architecture', async () => {
    const dir = track(
      await withEditedConfig(tiny, 'arch', (c) => {
        c.architectures = ['LlamaForCausalLM'];
        c.model_type = 'llama';
      }),
    );
    const error = await openError(dir);
    expect(error.code).toBe('ERR_REX_UNSUPPORTED_ARCHITECTURE');
    expect(error.message).toContain('LlamaForCausalLM');
    expect(error.message).toContain('config.json');
  });

  it('a config.json that is not JSON', async () => {
    const dir = track(await withEditedConfig(tiny, 'badconfig', () => undefined));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'config.json'), '{"architectures": [');
    const error = await openError(dir);
    expect(error.code).toBe('ERR_REX_BAD_HEADER');
    expect(error.message).toContain('config.json');
  });

  it('a directory that does not exist', async () => {
    const error = await openError(join(tmpdir(), 'rex-omni-no-such-dir'));
    expect(error.code).toBe('ERR_REX_NOT_FOUND');
    expect(error.message).toContain('rex-omni-no-such-dir');
  });

  it('a non-finite weight, with verify', async () => {
    const dir = track(
      await withEditedTensors(tiny, 'nan', (t) => {
        (t['model.norm.weight']!.data as Uint16Array)[5] = 0x7fc0; // bf16 NaN
      }),
    );
    await expect(Checkpoint.open(dir)).resolves.toBeDefined();
    const error = await Checkpoint.open(dir, { verify: true }).then(
      () => { throw new Error('expected verify to fail'); },
      (e: Error & { code?: string }) => e,
    );
    expect(error.code).toBe('ERR_REX_CORRUPT_FILE');
    expect(error.message).toContain("'model.norm.weight'");
    expect(error.message).toContain('element 5');
  });

  it('rejects a non-string directory with a TypeError', async () => {
    await expect(Checkpoint.open(42 as unknown as string)).rejects.toThrow(
      'Checkpoint.open(dir): expected a non-empty directory path but got 42',
    );
  });

  it('the error keeps the caller stack', async () => {
    const error = await openError(join(tmpdir(), 'rex-omni-no-such-dir-2'));
    expect(error.stack).toContain('checkpoint.test.ts');
  });
});
