// See attention.h. Both variants reduce to one routine: one query row against
// a contiguous run of key rows [k0, k1).
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"

namespace rex::cpu {

// out[0..d) = softmax_j(q . k_j * scale) v_j over j in [k0, k1).
static void attend_row(const float* q, const float* k, const float* v, int kv_stride, int k0, int k1,
                       int d, float scale, std::vector<float>& scores, float* out) {
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
