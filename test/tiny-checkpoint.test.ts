// The tiny checkpoint generator: byte-for-byte determinism, the specified
// config values, tensor names/shapes/dtypes in both layouts, and weight scales
// that make wrong computations visible.
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bfloat16BitsToFloat32, float32ToBfloat16Bits } from '../lib/tiny-checkpoint/bfloat16.js';
import { readSafetensorsHeader, readSafetensorsTensorBytes, type SafetensorsHeader } from './fixtures/safetensors-reader.js';
import { sha256File } from './fixtures/sha256-file.js';
import {
  TINY_CHECKPOINT_FILES,
  TINY_CHECKPOINT_VERSION,
  VERSION_STAMP_FILE,
  ensureTinyCheckpoint,
  generateTinyCheckpoint,
} from './fixtures/tiny-checkpoint.js';

/** The tensors REXOMNI.md / the brief specify, 4.x names. */
function expectedTensorShapes(): Map<string, number[]> {
  const shapes = new Map<string, number[]>([['visual.patch_embed.proj.weight', [64, 3, 2, 14, 14]]]);
  for (let n = 0; n < 4; n++) {
    const p = `visual.blocks.${n}.`;
    shapes.set(`${p}norm1.weight`, [64]).set(`${p}norm2.weight`, [64]);
    shapes.set(`${p}attn.qkv.weight`, [192, 64]).set(`${p}attn.qkv.bias`, [192]);
    shapes.set(`${p}attn.proj.weight`, [64, 64]).set(`${p}attn.proj.bias`, [64]);
    shapes.set(`${p}mlp.gate_proj.weight`, [96, 64]).set(`${p}mlp.gate_proj.bias`, [96]);
    shapes.set(`${p}mlp.up_proj.weight`, [96, 64]).set(`${p}mlp.up_proj.bias`, [96]);
    shapes.set(`${p}mlp.down_proj.weight`, [64, 96]).set(`${p}mlp.down_proj.bias`, [64]);
  }
  shapes.set('visual.merger.ln_q.weight', [64]);
  shapes.set('visual.merger.mlp.0.weight', [256, 256]).set('visual.merger.mlp.0.bias', [256]);
  shapes.set('visual.merger.mlp.2.weight', [128, 256]).set('visual.merger.mlp.2.bias', [128]);
  shapes.set('model.embed_tokens.weight', [151936, 128]);
  for (let n = 0; n < 3; n++) {
    const p = `model.layers.${n}.`;
    shapes.set(`${p}input_layernorm.weight`, [128]).set(`${p}post_attention_layernorm.weight`, [128]);
    shapes.set(`${p}self_attn.q_proj.weight`, [128, 128]).set(`${p}self_attn.q_proj.bias`, [128]);
    shapes.set(`${p}self_attn.k_proj.weight`, [64, 128]).set(`${p}self_attn.k_proj.bias`, [64]);
    shapes.set(`${p}self_attn.v_proj.weight`, [64, 128]).set(`${p}self_attn.v_proj.bias`, [64]);
    shapes.set(`${p}self_attn.o_proj.weight`, [128, 128]);
    shapes.set(`${p}mlp.gate_proj.weight`, [256, 128]).set(`${p}mlp.up_proj.weight`, [256, 128]);
    shapes.set(`${p}mlp.down_proj.weight`, [128, 256]);
  }
  shapes.set('model.norm.weight', [128]);
  return shapes;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

async function tensorValues(path: string, header: SafetensorsHeader, name: string): Promise<Float32Array> {
  const bytes = await readSafetensorsTensorBytes(path, header, name);
  const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  const widened = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) widened[i] = bits[i]! << 16; // bf16 is the top half of an f32
  return new Float32Array(widened.buffer);
}

function meanAndStd(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  const mean = sum / values.length;
  let squares = 0;
  for (let i = 0; i < values.length; i++) squares += (values[i]! - mean) ** 2;
  return { mean, std: Math.sqrt(squares / values.length) };
}

let scratch: string;
let cachedDir: string;

beforeAll(async () => {
  cachedDir = await ensureTinyCheckpoint();
  scratch = await mkdtemp(join(tmpdir(), 'rex-tiny-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('generateTinyCheckpoint', () => {
  it('writes identical bytes every time (and identical to the cached copy)', async () => {
    const first = join(scratch, 'first');
    const second = join(scratch, 'second');
    await generateTinyCheckpoint(first);
    await generateTinyCheckpoint(second, { layout: 'flat' });
    for (const file of TINY_CHECKPOINT_FILES) {
      const digest = await sha256File(join(first, file));
      expect(await sha256File(join(second, file)), file).toBe(digest);
      expect(await sha256File(join(cachedDir, file)), file).toBe(digest);
    }
  });

  it('writes the specified flat (transformers 4.x) config', async () => {
    const config = await readJson(join(cachedDir, 'config.json'));
    expect(config).toMatchObject({
      architectures: ['Qwen2_5_VLForConditionalGeneration'],
      model_type: 'qwen2_5_vl',
      hidden_size: 128,
      intermediate_size: 256,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 151936,
      max_position_embeddings: 32768,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      rope_scaling: { type: 'mrope', rope_type: 'default', mrope_section: [4, 6, 6] },
      tie_word_embeddings: true,
      hidden_act: 'silu',
      torch_dtype: 'bfloat16',
      bos_token_id: 151643,
      eos_token_id: 151645,
      image_token_id: 151655,
      video_token_id: 151656,
      vision_start_token_id: 151652,
      vision_end_token_id: 151653,
      vision_token_id: 151654,
      use_sliding_window: false,
      vision_config: {
        model_type: 'qwen2_5_vl',
        depth: 4,
        hidden_size: 64,
        num_heads: 4,
        intermediate_size: 96,
        out_hidden_size: 128,
        in_chans: 3,
        patch_size: 14,
        temporal_patch_size: 2,
        spatial_merge_size: 2,
        window_size: 112,
        fullatt_block_indexes: [1, 3],
        hidden_act: 'silu',
        tokens_per_second: 2,
      },
    });
    expect(config).not.toHaveProperty('text_config');
  });

  it('writes the preprocessor and generation configs', async () => {
    expect(await readJson(join(cachedDir, 'preprocessor_config.json'))).toMatchObject({
      image_processor_type: 'Qwen2VLImageProcessor',
      min_pixels: 12544,
      max_pixels: 2007040,
      patch_size: 14,
      temporal_patch_size: 2,
      merge_size: 2,
      image_mean: [0.48145466, 0.4578275, 0.40821073],
      image_std: [0.26862954, 0.26130258, 0.27577711],
    });
    expect(await readJson(join(cachedDir, 'generation_config.json'))).toEqual({
      bos_token_id: 151643,
      eos_token_id: 151645,
      pad_token_id: 151643,
    });
    expect(await readJson(join(cachedDir, 'tokenizer_config.json'))).toMatchObject({
      tokenizer_class: 'Qwen2TokenizerFast',
      eos_token: '<|im_end|>',
      pad_token: '<|endoftext|>',
    });
  });

  it('writes exactly the specified bf16 tensors, contiguous and 8-byte aligned', async () => {
    const path = join(cachedDir, 'model.safetensors');
    const header = await readSafetensorsHeader(path);
    const expected = expectedTensorShapes();
    expect([...header.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    expect(header.metadata).toEqual({ format: 'pt' });
    expect((8 + header.headerLength) % 8).toBe(0);
    expect(header.headerText.trimEnd().endsWith('}')).toBe(true);
    expect(header.headerText.slice(header.headerText.trimEnd().length)).toMatch(/^ *$/);
    let offset = 0;
    for (const [name, entry] of header.tensors) {
      expect(entry.dtype, name).toBe('BF16');
      expect(entry.shape, name).toEqual(expected.get(name));
      expect(entry.data_offsets[0], name).toBe(offset);
      offset = entry.data_offsets[1];
      expect(offset - entry.data_offsets[0], name).toBe(2 * entry.shape.reduce((a, b) => a * b, 1));
    }
    expect((await stat(path)).size).toBe(8 + header.headerLength + offset);
  });

  it('draws weights at the documented scales', async () => {
    const path = join(cachedDir, 'model.safetensors');
    const header = await readSafetensorsHeader(path);
    const stats = async (name: string) => meanAndStd(await tensorValues(path, header, name));
    const close = (actual: number, expected: number, relative = 0.1) =>
      expect(Math.abs(actual - expected)).toBeLessThan(relative * Math.abs(expected));

    close((await stats('model.layers.1.self_attn.q_proj.weight')).std, 3 / Math.sqrt(128));
    close((await stats('model.layers.1.self_attn.k_proj.weight')).std, 3 / Math.sqrt(128));
    close((await stats('model.layers.1.self_attn.v_proj.weight')).std, 1 / Math.sqrt(128));
    close((await stats('model.layers.2.mlp.down_proj.weight')).std, 1 / Math.sqrt(256));
    close((await stats('model.embed_tokens.weight')).std, 0.5, 0.01);
    close((await stats('visual.patch_embed.proj.weight')).std, 2 / Math.sqrt(1176));
    const norm = await stats('model.norm.weight');
    close(norm.mean, 1, 0.05);
    close(norm.std, 0.1, 0.3);

    const qkv = await tensorValues(path, header, 'visual.blocks.0.attn.qkv.weight');
    close(meanAndStd(qkv.subarray(0, 128 * 64)).std, 3 / 8); // q and k rows: 3/sqrt(64)
    close(meanAndStd(qkv.subarray(128 * 64)).std, 1 / 8); // v rows: 1/sqrt(64)
    const bias = await stats('visual.blocks.0.attn.qkv.bias');
    expect(bias.std).toBeGreaterThan(0.02);
    expect(bias.std).toBeLessThan(0.1);
  });

  it('writes the nested layout with model.visual.* / model.language_model.* and text_config', async () => {
    const nested = join(scratch, 'nested');
    await generateTinyCheckpoint(nested, { layout: 'nested' });
    const config = await readJson(join(nested, 'config.json'));
    expect(config).toMatchObject({
      architectures: ['Qwen2_5_VLForConditionalGeneration'],
      model_type: 'qwen2_5_vl',
      image_token_id: 151655,
      tie_word_embeddings: true,
      text_config: {
        model_type: 'qwen2_5_vl_text',
        hidden_size: 128,
        num_hidden_layers: 3,
        num_key_value_heads: 2,
        rope_scaling: { type: 'mrope', rope_type: 'default', mrope_section: [4, 6, 6] },
      },
      vision_config: { depth: 4, hidden_size: 64 },
    });
    expect(config).not.toHaveProperty('hidden_size');

    const path = join(nested, 'model.safetensors');
    const header = await readSafetensorsHeader(path);
    const renamed = [...expectedTensorShapes().keys()].map((name) =>
      name.startsWith('visual.') ? `model.${name}` : `model.language_model.${name.slice('model.'.length)}`,
    );
    expect([...header.tensors.keys()].sort()).toEqual(renamed.sort());
    expect(header.tensors.get('model.visual.merger.mlp.0.weight')?.shape).toEqual([256, 256]);
    expect(header.tensors.get('model.language_model.embed_tokens.weight')?.shape).toEqual([151936, 128]);

    // Same values as the flat layout: each tensor's stream is seeded by its 4.x name.
    const flatPath = join(cachedDir, 'model.safetensors');
    const flatHeader = await readSafetensorsHeader(flatPath);
    expect(await readSafetensorsTensorBytes(path, header, 'model.language_model.layers.2.self_attn.k_proj.weight')).toEqual(
      await readSafetensorsTensorBytes(flatPath, flatHeader, 'model.layers.2.self_attn.k_proj.weight'),
    );
    expect(await sha256File(join(nested, 'tokenizer.json'))).toBe(await sha256File(join(cachedDir, 'tokenizer.json')));
  });
});

describe('bfloat16 conversion', () => {
  it('rounds fp32 to nearest even and keeps specials', () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2)).toBe(0xc000);
    // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to the even mantissa (1).
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(float32ToBfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBfloat16Bits(Infinity)).toBe(0x7f80);
    expect(float32ToBfloat16Bits(3.4e38)).toBe(0x7f80); // rounds up to infinity, as torch does
    expect(Number.isNaN(bfloat16BitsToFloat32(float32ToBfloat16Bits(NaN)))).toBe(true);
    expect(bfloat16BitsToFloat32(0x3f82)).toBe(1 + 2 ** -6);
  });
});

describe('ensureTinyCheckpoint', () => {
  it('keeps a current copy and regenerates a stale or incomplete one', async () => {
    const dir = join(scratch, 'cache-copy');
    await cp(cachedDir, dir, { recursive: true });
    const modelPath = join(dir, 'model.safetensors');
    const originalDigest = await sha256File(modelPath);
    const mtimeBefore = (await stat(modelPath)).mtimeMs;

    expect(await ensureTinyCheckpoint(dir)).toBe(dir);
    expect((await stat(modelPath)).mtimeMs).toBe(mtimeBefore);

    await writeFile(join(dir, VERSION_STAMP_FILE), `${TINY_CHECKPOINT_VERSION - 1}\n`);
    await rm(join(dir, 'preprocessor_config.json'));
    await writeFile(modelPath, 'stale');
    await ensureTinyCheckpoint(dir);
    expect((await readFile(join(dir, VERSION_STAMP_FILE), 'utf8')).trim()).toBe(String(TINY_CHECKPOINT_VERSION));
    expect(await sha256File(modelPath)).toBe(originalDigest);
    expect((await stat(join(dir, 'preprocessor_config.json'))).isFile()).toBe(true);
  });
});
