// RMSNorm as Qwen2 computes it: mean of squares in fp32, x * rsqrt(ms + eps),
// then times the weight. One row at a time; rows in parallel. add_rmsnorm is
// the fused "x += delta; h = norm(x)" every Qwen2.5-VL block ends a half
// with (the CUDA twin is add_rmsnorm_bf16 in native/cuda/norm.cuh).
#pragma once

#include "cpu/thread_pool.h"

namespace rex::cpu {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight; out may alias x.
void rmsnorm(ThreadPool& pool, const float* x, int rows, int dim, const float* weight, float eps,
             float* out);

// residual[r] += delta[r] (fp32), then out[r] = rmsnorm(residual[r]) * weight.
// Bit-identical to the add loop followed by rmsnorm(). out must not alias
// residual or delta.
void add_rmsnorm(ThreadPool& pool, float* residual, const float* delta, int rows, int dim,
                 const float* weight, float eps, float* out);

}  // namespace rex::cpu
