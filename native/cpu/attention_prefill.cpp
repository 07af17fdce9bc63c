// See attention_prefill.h.
#include "cpu/attention_prefill.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/attention_row.h"

namespace rex::cpu {

void attention_causal_gqa(ThreadPool& pool, const float* q, int n_new, int past, const float* k_cache,
                          const float* v_cache, int q_heads, int kv_heads, int head_dim, float* out) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int group = q_heads / kv_heads;
  const int q_stride = q_heads * head_dim, kv_stride = kv_heads * head_dim;
  pool.parallel_for(0, int64_t(n_new) * q_heads, [&](int64_t lo, int64_t hi) {
    std::vector<float> scores;
    for (int64_t item = lo; item < hi; ++item) {
      const int i = int(item / q_heads), h = int(item % q_heads);
      const int kvh = h / group;
      attend_row(q + int64_t(i) * q_stride + h * head_dim, k_cache + kvh * head_dim,
                 v_cache + kvh * head_dim, kv_stride, 0, past + i + 1, head_dim, scale, scores,
                 out + int64_t(i) * q_stride + h * head_dim);
    }
  }, 2);
}

}  // namespace rex::cpu
