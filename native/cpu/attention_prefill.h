// Causal grouped-query attention for the text decoder's prefill (and the
// CPU backend's decode rows): n_new query rows of one sequence against a KV
// cache that already holds the new keys; query i sits at absolute position
// past + i and sees keys 0 .. past + i. Softmax in fp32 with max subtraction;
// one (query row, head) per work item.
// CUDA twin: native/cuda/attention_prefill.cuh.
#pragma once

#include "cpu/thread_pool.h"

namespace rex::cpu {

// q: [n_new, q_heads*head_dim]; k_cache/v_cache: [past+n_new, kv_heads*head_dim].
// out: [n_new, q_heads*head_dim]. Query head h reads kv head h / (q_heads/kv_heads).
void attention_causal_gqa(ThreadPool& pool, const float* q, int n_new, int past, const float* k_cache,
                          const float* v_cache, int q_heads, int kv_heads, int head_dim, float* out);

}  // namespace rex::cpu
