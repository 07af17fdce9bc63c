// Builds Pillow's BICUBIC taps for one axis, reproducing its double-precision
// arithmetic expression by expression so every rounded tap is identical:
// the filter polynomial, the window bounds truncated with (int)(v + 0.5),
// normalisation by the tap sum, and the conversion to 22-bit fixed point with
// (int)(v * 2^22 +/- 0.5). FP contraction is switched off here: an FMA would
// change the doubles and, rarely, a fixed-point tap.
#include "preprocess/no_fp_contract.h"

#include "preprocess/bicubic_coeffs.h"

#include <cmath>

namespace rex {
namespace resample_detail {
namespace {

constexpr double kBicubicSupport = 2.0;

// Keys' cubic convolution kernel with a = -0.5, written in Pillow's form.
inline double bicubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

inline int32_t to_fixed(double k) {
  const double scaled = k * (1 << kPrecisionBits);
  return static_cast<int32_t>(k < 0 ? -0.5 + scaled : 0.5 + scaled);
}

}  // namespace

AxisCoeffs bicubic_axis_coeffs(int in_size, float in0, float in1, int out_size) {
  AxisCoeffs out;
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;  // antialias only when shrinking
  const double support = kBicubicSupport * filterscale;
  out.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;

  out.first.resize(out_size);
  out.count.resize(out_size);
  out.weights.assign(static_cast<size_t>(out_size) * out.ksize, 0);
  std::vector<double> k(out.ksize);

  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as in C
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;

    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_kernel((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    int32_t* dst = &out.weights[static_cast<size_t>(xx) * out.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double kn = ww != 0.0 ? k[x] / ww : k[x];
      dst[x] = to_fixed(kn);
    }
    out.first[xx] = xmin;
    out.count[xx] = xmax < 0 ? 0 : xmax;
  }
  return out;
}

}  // namespace resample_detail
}  // namespace rex
