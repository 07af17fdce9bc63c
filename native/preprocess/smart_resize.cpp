// smart_resize as qwen_vl_utils 0.0.14 computes it, including Python's float
// semantics: int/int true division in double, round() with halves to even,
// math.floor / math.ceil, and the products h*w as exact (64-bit) integers.
// Kept apart from the resampler because the engine needs the target size (for
// token counts) without touching pixels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "preprocess/preprocess.h"

namespace rex {
namespace {

// Python's round(x) for a double: nearest integer, exact halves to even.
// Explicit rather than std::nearbyint so a caller's rounding mode can't leak in.
double round_half_even(double v) {
  double lo = std::floor(v);
  double diff = v - lo;  // exact for |v| < 2^52
  if (diff > 0.5) return lo + 1.0;
  if (diff < 0.5) return lo;
  return std::fmod(lo, 2.0) == 0.0 ? lo : lo + 1.0;
}

// Shortest decimal that reads back as the same double (like Python's repr).
std::string shortest_double(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

Result<ResizeTarget> smart_resize(int height, int width, int factor, int min_pixels, int max_pixels) {
  if (height <= 0 || width <= 0) {
    return Status(StatusCode::kInvalidArgument, "smart_resize: expected a positive height and width but got " +
                                                    std::to_string(width) + "x" + std::to_string(height));
  }
  if (factor <= 0 || min_pixels < 0 || max_pixels <= 0 || min_pixels > max_pixels) {
    return Status(StatusCode::kInvalidArgument,
                  "smart_resize: expected factor > 0 and 0 <= min_pixels <= max_pixels but got factor=" +
                      std::to_string(factor) + ", min_pixels=" + std::to_string(min_pixels) +
                      ", max_pixels=" + std::to_string(max_pixels));
  }
  const double h = height, w = width, f = factor;
  const double aspect = (height > width ? h : w) / (height > width ? w : h);
  if (aspect > 200.0) {
    return Status(StatusCode::kInvalidArgument,
                  "expected an aspect ratio of at most 200 but got " + shortest_double(aspect) + " (" +
                      std::to_string(width) + "x" + std::to_string(height) + ")");
  }

  const int64_t hw = static_cast<int64_t>(height) * width;
  int64_t h_bar = std::max<int64_t>(factor, static_cast<int64_t>(round_half_even(h / f)) * factor);
  int64_t w_bar = std::max<int64_t>(factor, static_cast<int64_t>(round_half_even(w / f)) * factor);
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(hw) / static_cast<double>(max_pixels));
    h_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    w_bar = std::max<int64_t>(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(hw));
    h_bar = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  if (h_bar > INT32_MAX || w_bar > INT32_MAX) {
    return Status(StatusCode::kInvalidArgument, "smart_resize: target size overflows for " + std::to_string(width) +
                                                    "x" + std::to_string(height));
  }
  ResizeTarget target;
  target.height = static_cast<int>(h_bar);
  target.width = static_cast<int>(w_bar);
  return target;
}

}  // namespace rex
