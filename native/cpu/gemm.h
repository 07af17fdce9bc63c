// Dense matmul with optional bias: the op that carries almost all the FLOPs.
// Threads split the output features (columns of y), so a single-row decode
// step uses every thread too; each thread walks a slab of weight rows that
// stays in cache while it sweeps all input rows.
#pragma once

#include "cpu/thread_pool.h"
#include "cpu/weights_f32.h"

namespace rex::cpu {

// Dot product of two contiguous float vectors (fixed summation order).
float dot(const float* a, const float* b, int n);

// y[rows, l.out] = x[rows, l.in] * l.w^T + l.b
void linear(ThreadPool& pool, const float* x, int rows, const Linear& l, float* y);

// Same, over raw pointers: w is [out, in], bias may be null.
void matmul_bias(ThreadPool& pool, const float* x, int rows, int in, const float* w,
                 const float* bias, int out, float* y);

}  // namespace rex::cpu
