// Grouped-query decode attention: one new query row per sequence of a batch,
// against that sequence's paged KV cache, split over the KV length so a
// batch of one still fills the chip (split-K, then a combine pass that merges
// the partial softmaxes). The launch shape depends only on batch and
// num_splits, never on the lengths, which the kernel reads from device
// memory: the decode step can be captured once in a CUDA graph and replayed
// at any length.
// CPU twin: native/cpu/attention_decode.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/paged_kv.cuh"
#include "rex/status.h"

namespace rex::cuda {

// How the splits' partials are merged. kCombineLaunch (the default): the
// split kernel writes them to the workspace and a second launch merges them.
// kCluster: the num_splits CTAs of each (kv head, sequence) run as one
// thread-block cluster and merge through distributed shared memory inside
// the one launch (num_splits <= kMaxClusterSplits; the workspace is unused),
// with the combine's arithmetic: the same bits.
enum class DecodeMerge { kCombineLaunch, kCluster };
constexpr int kMaxClusterSplits = 16;  // the largest (non-portable) cluster on Hopper

// The rotary step done inside the attention (an A/B variant, with
// DecodeMerge::kCluster only): q then points at the raw fused qkv rows (bias
// added, not rotated: q | k | v heads, q_stride >= (q_heads + 2 * kv_heads)
// * head_dim); every CTA rotates its group's q heads itself, and the CTA
// whose split holds a row's newest key (position seq_lens - 1) rotates that
// row's k head and writes it and the v head to cache row dest_rows[row]
// (< 0: none) before it reads the key: what mrope_qkv_to_cache_bf16 does, with
// its arithmetic (rope_rotate.cuh), so the same bits, and no launch of its
// own. Only for batches whose rows are distinct sequences: a row that reads a
// key another row of the same call writes would race.
struct DecodeRope {
  const int32_t* positions = nullptr;  // device, axis-major [3][batch] M-RoPE ids
  const float* inv_freq = nullptr;     // device, head_dim / 2
  int section_t = 0, section_h = 0;    // frequencies taking t, then h (the rest w)
  const int32_t* dest_rows = nullptr;  // device, [batch]
  bf16* k = nullptr;                   // the cache planes written (cache.k and cache.v, writable)
  bf16* v = nullptr;
};

// Floats of workspace the call needs (partial outputs, maxima and sums).
size_t attention_decode_workspace_floats(int batch, int q_heads, int head_dim, int num_splits);

// q: row b at q + b*q_stride, [q_heads*head_dim] (rotated). block_tables
// (device): [batch, max_blocks] int32. seq_lens (device): [batch] keys per
// sequence, the new one included (>= 1). out: [batch, q_heads*head_dim] bf16.
// head_dim 128 (64 and 32 also accepted). workspace: device floats, size above.
// merge, rope: above. overlap_previous (with kCluster; an A/B variant): the
// launch may start while the kernel before it on the stream finishes
// (programmatic dependent launch); the kernel waits for it before it reads q
// or the cache.
Status attention_decode_bf16(const bf16* q, int q_stride, int batch, int q_heads, PagedKv cache,
                             const int32_t* block_tables, int max_blocks, const int32_t* seq_lens, int num_splits,
                             float* workspace, bf16* out, cudaStream_t stream,
                             DecodeMerge merge = DecodeMerge::kCombineLaunch, const DecodeRope* rope = nullptr,
                             bool overlap_previous = false);

}  // namespace rex::cuda
