// See activation.h.
#include "cpu/activation.h"

#include <cmath>

namespace rex::cpu {

float silu(float x) { return x / (1.0f + std::exp(-x)); }
float gelu_erf(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

void swiglu_inplace(ThreadPool& pool, float* gate, const float* up, int64_t n, bool use_gelu) {
  pool.parallel_for(0, n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) gate[i] = (use_gelu ? gelu_erf(gate[i]) : silu(gate[i])) * up[i];
  }, 4096);
}

void gelu_inplace(ThreadPool& pool, float* x, int64_t n) {
  pool.parallel_for(0, n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] = gelu_erf(x[i]);
  }, 4096);
}

}  // namespace rex::cpu
