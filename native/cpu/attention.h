// Scaled dot-product attention, the two shapes the model needs:
//  - vision: non-causal, variable-length segments given by cu_seqlens (the
//    windows, or the whole image in the full-attention blocks); q, k, v come
//    packed in one [tokens, 3*hidden] qkv row as nn.Linear wrote it;
//  - text: causal, grouped-query, new queries against a KV cache that already
//    holds the new keys (query i sits at absolute position past + i).
// Softmax in fp32 with max subtraction; one (head, query row) per work item.
#pragma once

#include <vector>

#include "cpu/thread_pool.h"

namespace rex::cpu {

// q/k/v: element (token i, head h, dim j) at ptr[i*stride + h*head_dim + j].
// out: [tokens, heads*head_dim]. cu_seqlens: 0 = c0 < c1 < ... = tokens.
void attention_varlen(ThreadPool& pool, const float* q, const float* k, const float* v, int stride,
                      int heads, int head_dim, const std::vector<int>& cu_seqlens, float* out);

// q: [n_new, q_heads*head_dim]; k_cache/v_cache: [past+n_new, kv_heads*head_dim].
// out: [n_new, q_heads*head_dim]. Query head h reads kv head h / (q_heads/kv_heads).
void attention_causal_gqa(ThreadPool& pool, const float* q, int n_new, int past, const float* k_cache,
                          const float* v_cache, int q_heads, int kv_heads, int head_dim, float* out);

}  // namespace rex::cpu
