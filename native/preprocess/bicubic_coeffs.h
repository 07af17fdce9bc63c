// Fixed-point filter taps for one axis of Pillow's BICUBIC resample
// (libImaging/Resample.c: precompute_coeffs + normalize_coeffs_8bpc).
// Separate from the passes so both axes, and tests, share one table builder;
// the table is built once per axis, never per pixel.
#pragma once

#include <cstdint>
#include <vector>

namespace rex {
namespace resample_detail {

// Pillow keeps 22 fractional bits: 8 for the result, 2 spare for the
// negative lobes / overshoot, within a 32-bit int accumulator.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct AxisCoeffs {
  int ksize = 0;               // stride of `weights` per output sample
  std::vector<int> first;      // first input index used by each output sample
  std::vector<int> count;      // number of input samples used (<= ksize)
  std::vector<int32_t> weights;// out_size * ksize fixed-point taps, zero past `count`
};

// Taps mapping in_size samples onto out_size over the box [in0, in1)
// (Pillow passes the box as C floats; the default box is [0, in_size)).
// Throws std::bad_alloc only.
AxisCoeffs bicubic_axis_coeffs(int in_size, float in0, float in1, int out_size);

}  // namespace resample_detail
}  // namespace rex
