// The compute an image request needs before its first token, from the model
// config: the vision encoder over the image's patches and the decoder's
// prefill over the whole prompt. The serving benchmark (concurrency.ts)
// divides it into the bf16 GEMM rate measured in the same run to get the
// compute roofline in images/s.
//
// Counted as 2 FLOPs per multiply-add:
//  - linear layers: 2 · weights · rows (biases and norms left out);
//  - vision: the patch embedding (3·2·14·14 → hidden), per block q/k/v/o
//    and the gated MLP (gate, up, down), attention within each 8×8-patch
//    window (4 · window² · hidden) except in the full-attention blocks
//    (4 · patches² · hidden), and the merger (4·hidden → 4·hidden → out);
//  - prefill: per layer q, k, v (kv heads · head dim), o and the gated MLP,
//    causal attention (2 · 2 · heads · head dim · T(T+1)/2), and the LM head
//    for the one row that gives the first token.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FlopsConfig {
  vision: {
    depth: number;
    hidden: number;
    intermediate: number;
    patchSize: number;
    temporalPatchSize: number;
    inChannels: number;
    merge: number;
    windowSize: number;
    fullAttentionBlocks: number[];
    outHidden: number;
  };
  text: { layers: number; hidden: number; heads: number; kvHeads: number; headDim: number; intermediate: number; vocab: number };
}

export interface RequestFlops {
  visionFlops: number;
  prefillFlops: number;
  totalFlops: number;
}

/** The checkpoint's config.json, in the fields the count needs (Qwen2.5-VL defaults where absent). */
export function readFlopsConfig(checkpointDir: string): FlopsConfig {
  const raw = JSON.parse(readFileSync(join(checkpointDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const text = { ...raw, ...((raw.text_config as Record<string, unknown> | undefined) ?? {}) } as Record<string, number>;
  const v = (raw.vision_config ?? {}) as Record<string, unknown>;
  const n = (key: string, fallback: number): number => (typeof v[key] === 'number' ? (v[key] as number) : fallback);
  const heads = text.num_attention_heads!;
  return {
    vision: {
      depth: n('depth', 32),
      hidden: n('hidden_size', 1280),
      intermediate: n('intermediate_size', 3420),
      patchSize: n('patch_size', 14),
      temporalPatchSize: n('temporal_patch_size', 2),
      inChannels: n('in_chans', n('in_channels', 3)),
      merge: n('spatial_merge_size', 2),
      windowSize: n('window_size', 112),
      fullAttentionBlocks: Array.isArray(v.fullatt_block_indexes) ? (v.fullatt_block_indexes as number[]) : [7, 15, 23, 31],
      outHidden: n('out_hidden_size', text.hidden_size!),
    },
    text: {
      layers: text.num_hidden_layers!,
      hidden: text.hidden_size!,
      heads,
      kvHeads: text.num_key_value_heads!,
      headDim: text.head_dim ?? text.hidden_size! / heads,
      intermediate: text.intermediate_size!,
      vocab: text.vocab_size!,
    },
  };
}

/** Vision FLOPs of one image whose patch grid is gridH × gridW (one frame). */
export function visionFlops(c: FlopsConfig['vision'], gridH: number, gridW: number): number {
  const patches = gridH * gridW;
  const d = c.hidden;
  const embed = 2 * patches * c.inChannels * c.temporalPatchSize * c.patchSize * c.patchSize * d;
  const perBlockWeights = d * 3 * d + d * d + 3 * d * c.intermediate;
  // Windows: (windowSize / patchSize / merge)² merged tokens each, in raster order over the merged grid.
  const mh = gridH / c.merge;
  const mw = gridW / c.merge;
  const w = c.windowSize / c.patchSize / c.merge;
  let windowSquares = 0;
  for (let y = 0; y < mh; y += w) {
    for (let x = 0; x < mw; x += w) {
      const rows = Math.min(w, mh - y) * Math.min(w, mw - x) * c.merge * c.merge;
      windowSquares += rows * rows;
    }
  }
  let attention = 0;
  for (let b = 0; b < c.depth; ++b) attention += 4 * d * (c.fullAttentionBlocks.includes(b) ? patches * patches : windowSquares);
  const merged = patches / (c.merge * c.merge);
  const mergerIn = d * c.merge * c.merge;
  const merger = 2 * merged * (mergerIn * mergerIn + mergerIn * c.outHidden);
  return embed + 2 * patches * perBlockWeights * c.depth + attention + merger;
}

/** Prefill FLOPs of a prompt of `tokens` tokens (image pads included), through the first token's LM-head row. */
export function prefillFlops(c: FlopsConfig['text'], tokens: number): number {
  const q = c.heads * c.headDim;
  const kv = c.kvHeads * c.headDim;
  const perLayerWeights = c.hidden * (q + 2 * kv) + q * c.hidden + 3 * c.hidden * c.intermediate;
  const attention = 2 * 2 * q * ((tokens * (tokens + 1)) / 2);
  return c.layers * (2 * tokens * perLayerWeights + attention) + 2 * c.hidden * c.vocab;
}

export function requestFlops(c: FlopsConfig, gridH: number, gridW: number, promptTokens: number): RequestFlops {
  const vision = visionFlops(c.vision, gridH, gridW);
  const prefill = prefillFlops(c.text, promptTokens);
  return { visionFlops: vision, prefillFlops: prefill, totalFlops: vision + prefill };
}
