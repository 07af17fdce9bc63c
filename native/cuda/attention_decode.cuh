// Grouped-query decode attention: one new query row per sequence of a batch,
// against that sequence's paged KV cache, split over the KV length so a
// batch of one still fills the chip (split-K; the last split of each kv head
// to finish merges the partial softmaxes, in one launch). The launch shape depends only on batch and
// num_splits, never on the lengths, which the kernel reads from device
// memory: the decode step can be captured once in a CUDA graph and replayed
// at any length.
// CPU twin: native/cpu/attention_decode.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/l2_prefetch.cuh"
#include "cuda/paged_kv.cuh"
#include "rex/status.h"

namespace rex::cuda {

// Floats of workspace the call needs (partial outputs, maxima and sums).
size_t attention_decode_workspace_floats(int batch, int q_heads, int head_dim, int num_splits);

// q: row b at q + b*q_stride, [q_heads*head_dim] (rotated). block_tables
// (device): [batch, max_blocks] int32. seq_lens (device): [batch] keys per
// sequence, the new one included (>= 1). out: [batch, q_heads*head_dim] bf16.
// head_dim 128 (64 also accepted). workspace: device floats, size above.
// done_counts (device): attention_decode_counter_words(batch, kv_heads)
// words, zero before the first call; every call leaves them zero (the splits
// of a kv head count themselves in, and the last one resets its word).
// overlap: launched with programmatic dependent launch (it waits for the
// previous kernel before reading anything). prefetch: weights of a later
// kernel pulled into L2 first thing (the kernel is latency-bound; DRAM idles).
Status attention_decode_bf16(const bf16* q, int q_stride, int batch, int q_heads, PagedKv cache,
                             const int32_t* block_tables, int max_blocks, const int32_t* seq_lens, int num_splits,
                             float* workspace, unsigned* done_counts, bf16* out, cudaStream_t stream,
                             bool overlap = false, const L2Prefetch& prefetch = L2Prefetch{});

// Words of done_counts the call needs.
size_t attention_decode_counter_words(int batch, int kv_heads);

}  // namespace rex::cuda
