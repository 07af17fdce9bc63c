// The decode-step projections: Y[m, n] = X[m, k] . W[n, k] for a few rows
// (m <= 64), streaming W at the memory-bandwidth limit, with the operation
// after each projection fused into its epilogue. cuBLASLt stays for prefill
// and large m (gemm.cuh).
//
// Row invariance: a row's outputs depend only on that row's inputs and k,
// never on m, n or the other rows, so a request decodes to the same bits
// alone or in any batch, and the restricted LM head (row_ids) gives the same
// logits as the full one.
// CPU twin: cpu::linear (native/cpu/gemm.h) with the bf16 rounding the
// epilogue names.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

enum class GemvEpilogue {
  kStoreBf16,    // out_bf16[r, j] = bf16(acc + bias[j])          (bias may be null)
  kStoreF32,     // out_f32[r, j] = acc                            (logits)
  kAddResidual,  // residual[r, j] += float(bf16(acc))             (o_proj, down_proj)
  kSwiglu,       // out_bf16[r, j] = bf16(silu(bf16(acc_gate)) * bf16(acc_up)), up rows at j + pair_offset
};

struct GemvArgs {
  GemvEpilogue epilogue = GemvEpilogue::kStoreBf16;
  const bf16* x = nullptr;  // [m, k], row stride lda (elements, multiple of 8, 16-byte aligned rows)
  int lda = 0;
  // Instead of x: the RMSNorm of fp32 rows (the residual stream), computed
  // in the prologue: x = bf16(bf16(r * rsqrt(mean(r^2) + eps)) * norm_weight),
  // the rounding of norm.cuh. Every block reduces its rows' squares itself
  // (m rows of k floats from L2), so no norm kernel runs between projections.
  const float* norm_input = nullptr;  // [m, k], row stride lda
  const bf16* norm_weight = nullptr;
  float norm_eps = 1e-6f;
  int m = 0;                // 1..64
  const bf16* w = nullptr;  // [rows, k] contiguous, 16-byte aligned; k a multiple of 32
  int k = 0;
  int n = 0;                // outputs per row
  // Output j reads weight row row_ids[j] when set (the restricted LM head),
  // else row j. kSwiglu: gate row j, up row j + pair_offset.
  const int32_t* row_ids = nullptr;
  int pair_offset = 0;
  const bf16* bias = nullptr;
  bf16* out_bf16 = nullptr;
  float* out_f32 = nullptr;
  float* residual = nullptr;
  int ldo = 0;              // output / residual row stride (elements); 0: n
  // Launch with programmatic dependent launch: the kernel streams its first
  // weights before waiting on the previous kernel (inside a CUDA graph).
  bool overlap_previous = false;
};

// Whether gemv can take this shape (else use the GEMM).
bool gemv_supports(int m, int k, int n);

Status gemv(const GemvArgs& args, cudaStream_t stream);

}  // namespace rex::cuda
