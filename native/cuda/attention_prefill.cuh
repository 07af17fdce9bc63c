// Causal grouped-query attention for prefill (flash-style, tiles of keys with
// an online softmax): n new query rows of one sequence against its paged KV
// cache, which already holds the new keys. Query i sits at absolute position
// past + i and sees keys 0 .. past + i. Query head h reads kv head
// h / (q_heads / kv_heads). Softmax in fp32, scale 1/sqrt(head_dim).
// CPU twin: native/cpu/attention_prefill.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/paged_kv.cuh"
#include "rex/status.h"

namespace rex::cuda {

// q: rows of q_stride elements, q of row i at q + i*q_stride ([q_heads*head_dim],
// rotated) — so the q part of the fused qkv rows can be read in place.
// block_table (device): the sequence's blocks. out: [n, q_heads*head_dim] bf16.
// head_dim: 128 (64 also accepted).
Status attention_prefill_bf16(const bf16* q, int q_stride, int n, int past, int q_heads, PagedKv cache,
                              const int32_t* block_table, bf16* out, cudaStream_t stream);

}  // namespace rex::cuda
