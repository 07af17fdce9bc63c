// See attention_prefill.h.
#include "cpu/attention_prefill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/attention_row.h"

namespace rex::cpu {

void attention_causal_gqa(ThreadPool& pool, const float* q, int n_new, int past, const float* k_cache,
                          const float* v_cache, int q_heads, int kv_heads, int head_dim, float* out) {
  CausalSegment one;
  one.n = n_new;
  one.past = past;
  one.k_cache = k_cache;
  one.v_cache = v_cache;
  attention_causal_gqa_varlen(pool, q, {one}, q_heads, kv_heads, head_dim, out);
}

void attention_causal_gqa_varlen(ThreadPool& pool, const float* q, const std::vector<CausalSegment>& segments,
                                 int q_heads, int kv_heads, int head_dim, float* out) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int group = q_heads / kv_heads;
  const int q_stride = q_heads * head_dim, kv_stride = kv_heads * head_dim;
  // Work items (row, head) of all segments, numbered segment by segment:
  // segment s owns items [first[s], first[s + 1]).
  std::vector<int64_t> first(segments.size() + 1, 0);
  for (size_t s = 0; s < segments.size(); ++s)
    first[s + 1] = first[s] + int64_t(std::max(segments[s].n, 0)) * q_heads;
  pool.parallel_for(0, first.back(), [&](int64_t lo, int64_t hi) {
    std::vector<float> scores;
    size_t s = size_t(std::upper_bound(first.begin(), first.end(), lo) - first.begin()) - 1;
    for (int64_t item = lo; item < hi; ++item) {
      while (item >= first[s + 1]) ++s;
      const CausalSegment& seg = segments[s];
      const int i = int((item - first[s]) / q_heads), h = int((item - first[s]) % q_heads);
      const int kvh = h / group;
      const int64_t row = int64_t(seg.row_start) + i;
      attend_row(q + row * q_stride + h * head_dim, seg.k_cache + kvh * head_dim, seg.v_cache + kvh * head_dim,
                 kv_stride, 0, seg.past + i + 1, head_dim, scale, scores, out + row * q_stride + h * head_dim);
    }
  }, 2);
}

}  // namespace rex::cpu
