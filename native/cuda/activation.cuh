// Elementwise activations of the CUDA backend: the SwiGLU product of both
// towers' MLPs (act(gate) * up, in fp32, rounded once to bf16) and the
// merger's exact-erf GELU. gate and up come from one fused GEMM whose output
// rows are [gate (inter) | up (inter)].
// CPU twin: native/cpu/activation.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

// out[r, i] = act(gate_up[r, i]) * gate_up[r, inter + i]; act = SiLU, or
// exact GELU when use_gelu. out: [rows, inter], not overlapping gate_up. Any
// inter >= 1: 16-byte accesses when inter % 8 == 0 (text, 11008), 8-byte
// when inter % 4 == 0 (vision, 3420), narrower otherwise.
Status swiglu_bf16(const bf16* gate_up, int rows, int inter, bf16* out, bool use_gelu, cudaStream_t stream);

// x[i] = gelu_erf(x[i]) in place, count elements.
Status gelu_bf16(bf16* x, int64_t count, cudaStream_t stream);

}  // namespace rex::cuda
