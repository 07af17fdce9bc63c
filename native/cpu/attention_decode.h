// Grouped-query decode attention: one query row per sequence of a batch,
// each against its own KV cache of lens[b] keys (the new key included), so
// the row sees all of them. The same function as attention_causal_gqa's last
// row; kept as its own entry so the CUDA decode kernel has a twin of the same
// shape. Softmax in fp32 with max subtraction; one (sequence, head) per work
// item.
// CUDA twin: native/cuda/attention_decode.cuh.
#pragma once

#include <vector>

#include "cpu/thread_pool.h"

namespace rex::cpu {

// q: row b at q + b*q_stride, [q_heads*head_dim]. k_caches[b]/v_caches[b]:
// [lens[b], kv_heads*head_dim] (lens[b] >= 1). out: [batch, q_heads*head_dim].
// Query head h reads kv head h / (q_heads/kv_heads).
void attention_decode(ThreadPool& pool, const float* q, int q_stride, int batch, int q_heads, int kv_heads,
                      int head_dim, const std::vector<const float*>& k_caches,
                      const std::vector<const float*>& v_caches, const std::vector<int>& lens, float* out);

}  // namespace rex::cpu
