// See norm.h. The sum of squares is accumulated in double: this is the oracle,
// and it keeps the result independent of summation order for any dim.
#include "cpu/norm.h"

#include <cmath>

namespace rex::cpu {

void rmsnorm(ThreadPool& pool, const float* x, int rows, int dim, const float* weight, float eps,
             float* out) {
  pool.parallel_for(0, rows, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* xr = x + r * dim;
      float* yr = out + r * dim;
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
      float inv = float(1.0 / std::sqrt(ss / dim + double(eps)));
      for (int i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
    }
  }, 4);
}

}  // namespace rex::cpu
