// See attention_vision.h.
#include "cpu/attention_vision.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/attention_row.h"

namespace rex::cpu {

void attention_varlen(ThreadPool& pool, const float* q, const float* k, const float* v, int stride,
                      int heads, int head_dim, const std::vector<int>& cu_seqlens, float* out) {
  const int tokens = cu_seqlens.empty() ? 0 : cu_seqlens.back();
  const float scale = 1.0f / std::sqrt(float(head_dim));
  pool.parallel_for(0, int64_t(tokens) * heads, [&](int64_t lo, int64_t hi) {
    std::vector<float> scores;
    for (int64_t item = lo; item < hi; ++item) {
      const int i = int(item / heads), h = int(item % heads);
      // The segment holding token i.
      auto it = std::upper_bound(cu_seqlens.begin(), cu_seqlens.end(), i);
      const int k1 = *it, k0 = *(it - 1);
      attend_row(q + int64_t(i) * stride + h * head_dim, k + h * head_dim, v + h * head_dim, stride,
                 k0, k1, head_dim, scale, scores, out + int64_t(i) * heads * head_dim + h * head_dim);
    }
  }, 4);
}

}  // namespace rex::cpu
