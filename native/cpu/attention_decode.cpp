// See attention_decode.h.
#include "cpu/attention_decode.h"

#include <cmath>
#include <cstdint>

#include "cpu/attention_row.h"

namespace rex::cpu {

void attention_decode(ThreadPool& pool, const float* q, int q_stride, int batch, int q_heads, int kv_heads,
                      int head_dim, const std::vector<const float*>& k_caches,
                      const std::vector<const float*>& v_caches, const std::vector<int>& lens, float* out) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int group = q_heads / kv_heads;
  const int kv_stride = kv_heads * head_dim;
  pool.parallel_for(0, int64_t(batch) * q_heads, [&](int64_t lo, int64_t hi) {
    std::vector<float> scores;
    for (int64_t item = lo; item < hi; ++item) {
      const int b = int(item / q_heads), h = int(item % q_heads);
      const int kvh = h / group;
      attend_row(q + int64_t(b) * q_stride + h * head_dim, k_caches[size_t(b)] + kvh * head_dim,
                 v_caches[size_t(b)] + kvh * head_dim, kv_stride, 0, lens[size_t(b)], head_dim, scale, scores,
                 out + int64_t(b) * q_heads * head_dim + h * head_dim);
    }
  }, 1);
}

}  // namespace rex::cpu
