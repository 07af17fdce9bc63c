// See gemm.h. Eight independent partial sums let the compiler vectorise the
// dot product without -ffast-math while keeping a fixed, deterministic order.
#include "cpu/gemm.h"

#include <vector>

#include "common/bf16_host.h"

#include <algorithm>

namespace rex::cpu {

float dot(const float* a, const float* b, int n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

void matmul_bias(ThreadPool& pool, const float* x_in, int rows, int in, const float* w,
                 const float* bias, int out, float* y, ActivationPrecision input, ActivationPrecision output) {
  std::vector<float> rounded;
  const float* x = x_in;
  if (input == ActivationPrecision::kBf16) {
    rounded.assign(x_in, x_in + int64_t(rows) * in);
    for (float& v : rounded) v = round_to_bf16(v);
    x = rounded.data();
  }
  const bool round_out = output == ActivationPrecision::kBf16;
  // Slabs of ~16 weight rows per chunk keep the working set cache-sized.
  pool.parallel_for(0, out, [&](int64_t lo, int64_t hi) {
    for (int64_t n0 = lo; n0 < hi; n0 += 16) {
      int64_t n1 = std::min<int64_t>(hi, n0 + 16);
      for (int r = 0; r < rows; ++r) {
        const float* xr = x + int64_t(r) * in;
        float* yr = y + int64_t(r) * out;
        for (int64_t n = n0; n < n1; ++n) {
          const float v = dot(xr, w + n * in, in) + (bias ? bias[n] : 0.0f);
          yr[n] = round_out ? round_to_bf16(v) : v;
        }
      }
    }
  }, 16);
}

void linear(ThreadPool& pool, const float* x, int rows, const Linear& l, float* y, ActivationPrecision precision) {
  matmul_bias(pool, x, rows, l.in, l.w.data(), l.b.empty() ? nullptr : l.b.data(), l.out, y, precision, precision);
}

}  // namespace rex::cpu
