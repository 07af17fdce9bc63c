// Elementwise activations: SiLU (SwiGLU MLPs of both towers) and exact-erf
// GELU (the vision merger). Small enough to live together.
#pragma once

#include <cstdint>
#include <string>

#include "cpu/thread_pool.h"

namespace rex::cpu {

float silu(float x);
float gelu_erf(float x);

// gate[i] = act(gate[i]) * up[i]; the SwiGLU product, in place.
// act is "silu" (Qwen2.5-VL) or "gelu" / "gelu_pytorch_tanh" style names mapped to gelu_erf.
void swiglu_inplace(ThreadPool& pool, float* gate, const float* up, int64_t n, bool use_gelu = false);
void gelu_inplace(ThreadPool& pool, float* x, int64_t n);

}  // namespace rex::cpu
