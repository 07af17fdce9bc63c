// RMSNorm for the CUDA backend, fused with the residual add that precedes it
// in every Qwen2.5-VL block (x += delta; h = norm(x)). The residual stream is
// fp32; the normalised output is bf16 for the next GEMM. Math as
// transformers' Qwen2RMSNorm: mean of squares in fp32, x * rsqrt(ms + eps),
// rounded to bf16, then times the bf16 weight (rounded again).
// CPU twin: native/cpu/norm.h.
#pragma once

#include <cuda_runtime.h>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

// out[r] = rmsnorm(x[r]) * weight, for rows x [rows, dim] fp32.
Status rmsnorm_bf16(const float* x, int rows, int dim, const bf16* weight, float eps, bf16* out,
                    cudaStream_t stream);

// residual[r] += float(delta[r]); out[r] = rmsnorm(residual[r]) * weight.
// delta is a bf16 GEMM output [rows, dim]; residual is updated in place.
Status add_rmsnorm_bf16(float* residual, const bf16* delta, int rows, int dim, const bf16* weight, float eps,
                        bf16* out, cudaStream_t stream);

// residual[r] += float(delta[r]) with no norm (the vision tower's last block
// feeds the merger's own norm through rmsnorm_bf16).
Status add_residual(float* residual, const bf16* delta, int64_t count, cudaStream_t stream);

}  // namespace rex::cuda
