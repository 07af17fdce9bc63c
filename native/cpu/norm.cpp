// See norm.h. The sum of squares is accumulated in double: this is the oracle,
// and it keeps the result independent of summation order for any dim.
#include "cpu/norm.h"

#include <cmath>

namespace rex::cpu {

static void rmsnorm_row(const float* xr, int dim, const float* weight, float eps, float* yr) {
  double ss = 0;
  for (int i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
  float inv = float(1.0 / std::sqrt(ss / dim + double(eps)));
  for (int i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
}

void rmsnorm(ThreadPool& pool, const float* x, int rows, int dim, const float* weight, float eps,
             float* out) {
  pool.parallel_for(0, rows, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) rmsnorm_row(x + r * dim, dim, weight, eps, out + r * dim);
  }, 4);
}

void add_rmsnorm(ThreadPool& pool, float* residual, const float* delta, int rows, int dim,
                 const float* weight, float eps, float* out) {
  pool.parallel_for(0, rows, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      float* xr = residual + r * dim;
      const float* dr = delta + r * dim;
      for (int i = 0; i < dim; ++i) xr[i] += dr[i];
      rmsnorm_row(xr, dim, weight, eps, out + r * dim);
    }
  }, 4);
}

}  // namespace rex::cpu
