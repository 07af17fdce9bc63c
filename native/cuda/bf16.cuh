// The element types of the CUDA backend: weights and activations are bf16
// (__nv_bfloat16), accumulation and the residual stream are fp32. Small
// helpers for 16-byte vector access (8 bf16 per load), and for a 32-bit word
// of two bf16 (used by elementwise.cuh and the attention kernels).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace rex::cuda {

using bf16 = __nv_bfloat16;

#ifdef __CUDACC__
// Eight bf16 in one 16-byte register group.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};

// Through uint4 so the compiler emits one 16-byte access (a struct of four
// bf162 would be split into four 4-byte ones). p must be 16-byte aligned.
__device__ __forceinline__ Bf16x8 load_bf16x8(const bf16* p) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  Bf16x8 v;
  *reinterpret_cast<uint4*>(&v) = raw;
  return v;
}
__device__ __forceinline__ void store_bf16x8(bf16* p, const Bf16x8& v) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&v);
}

__device__ __forceinline__ void bf16x8_to_float(const Bf16x8& v, float out[8]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 f = __bfloat1622float2(v.h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ Bf16x8 float_to_bf16x8(const float in[8]) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  return v;
}

// One 32-bit word of two bf16 (lo at the lower address) and two floats:
// bf16 -> fp32 is exact (a shift); fp32 -> bf16 rounds to nearest even.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (lo) at the lower address
  return *reinterpret_cast<const uint32_t*>(&h);
}

#endif  // __CUDACC__

inline unsigned ceil_div(size_t a, size_t b) { return unsigned((a + b - 1) / b); }

}  // namespace rex::cuda
