// Non-causal variable-length attention for the vision tower (flash-style:
// keys streamed in tiles with an online softmax, never an S x S matrix):
// within each window in ordinary blocks, across the whole image in the
// full-attention blocks (up to ~10k patches). q, k, v come packed in the qkv
// GEMM's rows. Softmax in fp32, scale 1/sqrt(head_dim).
// CPU twin: native/cpu/attention_vision.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

// qkv: [tokens, 3*heads*head_dim] bf16 (q | k | v). cu_seqlens (device):
// num_segments+1 ascending offsets from 0 to tokens; max_seqlen: the longest
// segment. out: [tokens, heads*head_dim] bf16. head_dim: 80 (the model), or 16, 32, 64, 128.
Status attention_vision_bf16(const bf16* qkv, int tokens, int heads, int head_dim, const int32_t* cu_seqlens,
                             int num_segments, int max_seqlen, bf16* out, cudaStream_t stream);

namespace detail {
// For tests and tuning: the same call with the CTA's query tile forced to
// query_rows (64: 4 warps, 128: 8 warps). attention_vision_bf16 uses 64 when
// max_seqlen <= 64 (windows) and 128 otherwise.
Status attention_vision_bf16_rows(const bf16* qkv, int tokens, int heads, int head_dim, const int32_t* cu_seqlens,
                                  int num_segments, int max_seqlen, int query_rows, bf16* out, cudaStream_t stream);
}  // namespace detail

}  // namespace rex::cuda
