// Causal grouped-query attention for the text decoder's prefill (and the
// CPU backend's decode rows): n_new query rows of one sequence against a KV
// cache that already holds the new keys; query i sits at absolute position
// past + i and sees keys 0 .. past + i. Softmax in fp32 with max subtraction;
// one (query row, head) per work item.
// Varlen: several sequences' rows in one q (a batch of prefill chunks), each
// segment with its own rows, past and cache; every segment's output is
// attention_causal_gqa's on that segment alone, bit for bit.
// CUDA twin: native/cuda/attention_prefill.cuh (attention_prefill_bf16 and
// attention_prefill_varlen_bf16).
#pragma once

#include <vector>

#include "cpu/thread_pool.h"

namespace rex::cpu {

// q: [n_new, q_heads*head_dim]; k_cache/v_cache: [past+n_new, kv_heads*head_dim].
// out: [n_new, q_heads*head_dim]. Query head h reads kv head h / (q_heads/kv_heads).
void attention_causal_gqa(ThreadPool& pool, const float* q, int n_new, int past, const float* k_cache,
                          const float* v_cache, int q_heads, int kv_heads, int head_dim, float* out);

// One sequence of a varlen batch: q/out rows [row_start, row_start + n) sit
// at positions past .. past + n - 1 of a sequence whose keys and values are
// k_cache/v_cache: [past + n, kv_heads*head_dim] (the new ones included).
struct CausalSegment {
  int row_start = 0;
  int n = 0;
  int past = 0;
  const float* k_cache = nullptr;
  const float* v_cache = nullptr;
};

// q/out: rows of q_heads*head_dim; each segment's rows as attention_causal_gqa
// computes them (the same bits), all segments in one parallel pass. Rows that
// lie in no segment are not written; segments must not share rows.
void attention_causal_gqa_varlen(ThreadPool& pool, const float* q, const std::vector<CausalSegment>& segments,
                                 int q_heads, int kv_heads, int head_dim, float* out);

}  // namespace rex::cpu
