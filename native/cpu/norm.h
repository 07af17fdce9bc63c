// RMSNorm as Qwen2 computes it: mean of squares in fp32, x * rsqrt(ms + eps),
// then times the weight. One row at a time; rows in parallel.
#pragma once

#include "cpu/thread_pool.h"

namespace rex::cpu {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight; out may alias x.
void rmsnorm(ThreadPool& pool, const float* x, int rows, int dim, const float* weight, float eps,
             float* out);

}  // namespace rex::cpu
