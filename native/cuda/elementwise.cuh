// Helpers shared by the memory-bound kernels (activation.cu, norm.cu,
// rope.cu, embedding.cu; NOTES.md section 4): VEC-wide bf16 and fp32
// access through registers on the device, and on the host the argument
// checks and launch sizes their entry points have in common.
//
// Everything here is header-only and internal to native/cuda (no public API).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

#ifdef __CUDACC__
// bf16 access, VEC (1, 2, 4 or 8) elements at once through one plain
// integer load/store (uint4 for 8: one 16-byte access). bf16.cuh's Bf16x8
// struct copy compiles to four 4-byte accesses, hence these. bf16 -> fp32 is
// exact (a shift); fp32 -> bf16 rounds to nearest even (bf16.cuh's
// bf16_lo / bf16_hi / pack_bf16x2).
template <int VEC>
__device__ __forceinline__ void load_bf16(const bf16* p, float (&v)[VEC]) {
  if constexpr (VEC == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    v[0] = bf16_lo(u.x), v[1] = bf16_hi(u.x), v[2] = bf16_lo(u.y), v[3] = bf16_hi(u.y);
    v[4] = bf16_lo(u.z), v[5] = bf16_hi(u.z), v[6] = bf16_lo(u.w), v[7] = bf16_hi(u.w);
  } else if constexpr (VEC == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    v[0] = bf16_lo(u.x), v[1] = bf16_hi(u.x), v[2] = bf16_lo(u.y), v[3] = bf16_hi(u.y);
  } else if constexpr (VEC == 2) {
    const uint32_t u = *reinterpret_cast<const uint32_t*>(p);
    v[0] = bf16_lo(u), v[1] = bf16_hi(u);
  } else {
    static_assert(VEC == 1, "VEC is 1, 2, 4 or 8");
    v[0] = __bfloat162float(*p);
  }
}

template <int VEC>
__device__ __forceinline__ void store_bf16(bf16* p, const float (&v)[VEC]) {
  if constexpr (VEC == 8) {
    *reinterpret_cast<uint4*>(p) = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]),
                                              pack_bf16x2(v[4], v[5]), pack_bf16x2(v[6], v[7]));
  } else if constexpr (VEC == 4) {
    *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]));
  } else if constexpr (VEC == 2) {
    *reinterpret_cast<uint32_t*>(p) = pack_bf16x2(v[0], v[1]);
  } else {
    static_assert(VEC == 1, "VEC is 1, 2, 4 or 8");
    *p = __float2bfloat16_rn(v[0]);
  }
}

// fp32 access, VEC elements: two 16-byte accesses (float4) for 8, scalar
// otherwise.
template <int VEC>
__device__ __forceinline__ void load_f32(const float* p, float (&v)[VEC]) {
  if constexpr (VEC == 8) {
    const float4 a = reinterpret_cast<const float4*>(p)[0];
    const float4 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = p[i];
  }
}

template <int VEC>
__device__ __forceinline__ void store_f32(float* p, const float (&v)[VEC]) {
  if constexpr (VEC == 8) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = v[i];
  }
}
#endif  // __CUDACC__

// p is a multiple of `bytes` (a power of two).
inline bool aligned(const void* p, unsigned bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }
inline bool aligned16(const void* p) { return aligned(p, 16u); }

// Byte ranges [a, a+na) and [b, b+nb) share a byte.
inline bool overlaps(const void* a, size_t na, const void* b, size_t nb) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + nb && y < x + na;
}

inline Status invalid(const std::string& what) { return Status(StatusCode::kInvalidArgument, what); }

// Blocks of a grid-stride launch: one per `per_block` work items, at most max_blocks.
inline unsigned grid_stride_blocks(int64_t work, int64_t per_block, int64_t max_blocks) {
  return unsigned(std::min<int64_t>((work + per_block - 1) / per_block, max_blocks));
}

// A thread count rounded up to whole warps.
inline int whole_warps(int threads) { return (threads + 31) / 32 * 32; }

}  // namespace rex::cuda
