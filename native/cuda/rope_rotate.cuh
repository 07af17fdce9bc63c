// The text decoder's M-RoPE arithmetic as device functions, shared by the
// rotary kernel (rope.cu) and the decode attention that can rotate its own
// q and new k (attention_decode.cu, DecodeRope): one code, so both give the
// same bits. rotate_half convention: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s),
// separate rounded products and sum in fp32 (no FMA contraction), as the
// CPU twin (native/cpu/rope.h) evaluates it, rounded once to bf16.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "cuda/elementwise.cuh"

namespace rex::cuda {

// (x1, x2) -> (x1 c - x2 s, x2 c + x1 s) over VEC pairs: x1 at p, x2 at p + half;
// results to q (q + half).
template <int VEC>
__device__ __forceinline__ void rotate(const bf16* p, bf16* q, int half, const float* cs, const float* sn) {
  float x1[VEC], x2[VEC], o1[VEC], o2[VEC];
  load_bf16<VEC>(p, x1);
  load_bf16<VEC>(p + half, x2);
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    o1[i] = __fsub_rn(__fmul_rn(x1[i], cs[i]), __fmul_rn(x2[i], sn[i]));
    o2[i] = __fadd_rn(__fmul_rn(x2[i], cs[i]), __fmul_rn(x1[i], sn[i]));
  }
  store_bf16<VEC>(q, o1);
  store_bf16<VEC>(q + half, o2);
}

// Frequency j's cos and sin for a row at M-RoPE positions pos (t, h, w):
// j < section_t takes t, j < section_th takes h, the rest w; the angle is
// one fp32 product (__fmul_rn), and sincosf, not the fast forms (positions
// reach 10^4 and more).
__device__ __forceinline__ void mrope_cos_sin(int j, const float (&pos)[3], int section_t, int section_th,
                                              const float* inv_freq, float* cs, float* sn) {
  const float p = j < section_t ? pos[0] : (j < section_th ? pos[1] : pos[2]);
  sincosf(__fmul_rn(p, inv_freq[j]), sn, cs);
}

}  // namespace rex::cuda
