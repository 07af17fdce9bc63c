// See attention_row.h.
#include "cpu/attention_row.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/gemm.h"

namespace rex::cpu {

void attend_row(const float* q, const float* k, const float* v, int kv_stride, int k0, int k1, int d,
                float scale, std::vector<float>& scores, float* out) {
  const int n = k1 - k0;
  scores.resize(size_t(n));
  float mx = -INFINITY;
  for (int j = 0; j < n; ++j) {
    scores[size_t(j)] = dot(q, k + int64_t(k0 + j) * kv_stride, d) * scale;
    mx = std::max(mx, scores[size_t(j)]);
  }
  float sum = 0;
  for (int j = 0; j < n; ++j) {
    scores[size_t(j)] = std::exp(scores[size_t(j)] - mx);
    sum += scores[size_t(j)];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < d; ++i) out[i] = 0;
  for (int j = 0; j < n; ++j) {
    const float p = scores[size_t(j)] * inv;
    const float* vj = v + int64_t(k0 + j) * kv_stride;
    for (int i = 0; i < d; ++i) out[i] += p * vj[i];
  }
}

}  // namespace rex::cpu
