// The decode attention's split partials (attention_decode.cuh) and their
// merge, a warp per (sequence, q head), as the combine launch
// (attention_decode.cu) runs it.
//
// Layout: item = sequence * heads + q head; partial s of an item at
// item * num_splits + s: O (head_dim floats, unnormalised) in o, the running
// max (log2 domain) in m, the sum in l. An empty split is (-inf, 0, 0).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"

namespace rex::cuda {

struct DecodeSplitPartials {
  const float* o = nullptr;
  const float* m = nullptr;
  const float* l = nullptr;
  int heads = 0, head_dim = 0, num_splits = 0;
};

#ifdef __CUDACC__
// The merged output of one item for this lane's 4 dims (lane * 4 .., valid
// while lane * 4 < HD), packed bf16: every lane of the warp must call it (the
// maxima, sums and weights go across the lanes). Weights exp2(m_s - M), M the
// largest; no key at all (length 0) gives zeros.
//
// Shape: lane s holds split s's max and weight (s in chunks of 32); the sum
// is each lane's own terms, then a butterfly; O is added split by split in
// order, the weight broadcast from its lane. Every O load is unconditional
// (an empty split's O is zeros, in bounds), so an unrolled loop keeps 8 in
// flight: an item costs about two L2 round trips, not two per split (the
// version that loaded m, then O, split after split, was a chain of 2 x
// num_splits dependent loads: NOTES §5.3).
// merge_splits: the same merge over any store of the partials (the combine
// launch reads them from global memory, the cluster variant of the split
// kernel from its CTAs' shared memory): m_at(s), l_at(s) give split s's max
// and sum, o_at(s) its O for this lane's 4 dims (called only by lanes that
// own dims, for every split, empty or not). One code, so the same bits.
template <int HD, typename MAt, typename LAt, typename OAt>
__device__ __forceinline__ uint2 merge_splits(int num_splits, int lane, MAt m_at, LAt l_at, OAt o_at) {
  float mx = -INFINITY;
  for (int s = lane; s < num_splits; s += 32) mx = fmaxf(mx, m_at(s));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
  for (int s = lane; s < num_splits; s += 32) {
    const float ms = m_at(s);
    if (ms != -INFINITY) sum += exp2f(ms - mx) * l_at(s);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);

  const bool owns_dims = lane * 4 < HD;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int c0 = 0; c0 < num_splits; c0 += 32) {
    const int mine = c0 + lane;  // this lane's split of the chunk
    const float m_mine = mine < num_splits ? m_at(mine) : -INFINITY;
    const float wt_mine = m_mine == -INFINITY ? 0.f : exp2f(m_mine - mx);
    const int chunk = min(32, num_splits - c0);
#pragma unroll 8
    for (int i = 0; i < chunk; ++i) {
      const float ms = __shfl_sync(0xffffffffu, m_mine, i);
      const float wt = __shfl_sync(0xffffffffu, wt_mine, i);
      const float4 o = owns_dims ? o_at(c0 + i) : make_float4(0.f, 0.f, 0.f, 0.f);
      if (ms == -INFINITY) continue;  // a split with no keys (the same for every lane)
      acc.x += wt * o.x;
      acc.y += wt * o.y;
      acc.z += wt * o.z;
      acc.w += wt * o.w;
    }
  }
  const float inv = sum > 0.f ? 1.0f / sum : 0.f;
  uint2 packed;
  packed.x = pack_bf16x2(acc.x * inv, acc.y * inv);
  packed.y = pack_bf16x2(acc.z * inv, acc.w * inv);
  return packed;
}

// The combine launch's merge of one item, from global memory.
template <int HD>
__device__ __forceinline__ uint2 merge_decode_splits(const DecodeSplitPartials p, int64_t item, int lane) {
  const int64_t base = item * p.num_splits;
  return merge_splits<HD>(
      p.num_splits, lane, [&](int s) { return p.m[base + s]; }, [&](int s) { return p.l[base + s]; },
      [&](int s) { return *reinterpret_cast<const float4*>(p.o + (base + s) * HD + lane * 4); });
}
#endif

}  // namespace rex::cuda
