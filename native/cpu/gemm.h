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

// How a GEMM's inputs and outputs are held. kFp32 is the oracle. kBf16
// rounds them to bf16 (round to nearest even), as the CUDA backend holds its
// activations (bf16 operands, fp32 accumulation): the CPU can then show what
// bf16 activations alone do to a checkpoint.
enum class ActivationPrecision { kFp32, kBf16 };

// y[rows, l.out] = x[rows, l.in] * l.w^T + l.b
void linear(ThreadPool& pool, const float* x, int rows, const Linear& l, float* y,
            ActivationPrecision precision = ActivationPrecision::kFp32);

// Same, over raw pointers: w is [out, in], bias may be null. The input and
// the output precision are separate (the LM head reads bf16, writes fp32).
void matmul_bias(ThreadPool& pool, const float* x, int rows, int in, const float* w,
                 const float* bias, int out, float* y,
                 ActivationPrecision input = ActivationPrecision::kFp32,
                 ActivationPrecision output = ActivationPrecision::kFp32);

}  // namespace rex::cpu
