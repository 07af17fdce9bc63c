// Fixed-point filter taps for one axis of Pillow's BICUBIC resample
// (libImaging/Resample.c: precompute_coeffs + normalize_coeffs_8bpc), and the
// plan of a whole resize (which passes run, which source rows they read).
// Separate from the passes so both axes, tests and the CUDA passes
// (native/cuda/preprocess.cu) share one table builder and one set of
// decisions; the table is built once per axis, never per pixel.
#pragma once

#include <cstdint>
#include <vector>

namespace rex {
namespace resample_detail {

// Pillow keeps 22 fractional bits: 8 for the result, 2 spare for the
// negative lobes / overshoot, within a 32-bit int accumulator.
constexpr int kPrecisionBits = 32 - 8 - 2;
// Each pass's accumulator starts at half an output unit (round to nearest),
// then the result is (sum >> kPrecisionBits) clipped to 0..255.
constexpr int32_t kAccumulatorHalf = 1 << (kPrecisionBits - 1);

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

// What Pillow 10.4's ImagingResampleInner does for width x height -> out_width
// x out_height with the default box: a horizontal pass when the width changes,
// over only the source rows [ybox_first, ybox_first + ybox_rows) that the
// vertical pass reads, then a vertical pass when the height changes. Neither
// pass: the output is a copy of the input.
struct ResizePlan {
  bool horizontal = false;  // out_width != width
  bool vertical = false;    // out_height != height
  // Rows of the source that the horizontal pass reads; its output has
  // ybox_rows rows (== height when !vertical). 0 and height when !horizontal.
  int ybox_first = 0;
  int ybox_rows = 0;
  AxisCoeffs horiz;  // set when horizontal: width -> out_width
  // Set when vertical: height -> out_height. Its `first` indexes the rows of
  // the vertical pass's source: the horizontal pass's output (already shifted
  // by ybox_first) when horizontal, else the input image.
  AxisCoeffs vert;
};

// Throws std::bad_alloc only. Sizes must be positive (the caller checks).
ResizePlan plan_bicubic_resize(int width, int height, int out_width, int out_height);

}  // namespace resample_detail
}  // namespace rex
