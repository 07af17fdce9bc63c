// Pillow's Image.resize(size, BICUBIC) for 8-bit RGB, bit for bit with
// Pillow 10.4's ImagingResampleInner: a horizontal pass over only the source
// rows the vertical pass will read (the `ybox` crop), then a vertical pass;
// a pass whose dimension is unchanged is skipped, and an unchanged size is a
// copy. Each pass accumulates 22-bit fixed-point taps into a 32-bit int that
// starts at half an output unit, then takes (sum >> 22) clipped to 0..255.
// Pillow stores RGB as 4-byte pixels; the 4th byte never mixes into the
// others, so working on packed 3-byte pixels gives the same channels.
// Coefficient tables are built once per axis; the vertical pass runs as
// whole-row multiply-adds so the compiler can vectorise it. The decisions
// (passes, ybox) are plan_bicubic_resize's, shared with native/cuda/preprocess.cu;
// a change to clip8 or the accumulation must be mirrored there.
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "preprocess/bicubic_coeffs.h"
#include "preprocess/preprocess.h"

namespace rex {
namespace {

using resample_detail::AxisCoeffs;
using resample_detail::kPrecisionBits;
using resample_detail::ResizePlan;

constexpr int32_t kHalf = resample_detail::kAccumulatorHalf;

// Bound on the accumulator: 2^21 + 255 * (sum of positive taps <= ~1.2) * 2^22
// stays below 2^31, as Pillow relies on too.
inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift: floor, like Pillow's table index
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Rows [row0, row0 + rows) of `src` (src_w wide) resampled to out_w wide.
void horizontal_pass(const uint8_t* src, int src_w, int row0, int rows, const AxisCoeffs& c, int out_w,
                     uint8_t* dst) {
  const size_t in_stride = static_cast<size_t>(src_w) * 3;
  const size_t out_stride = static_cast<size_t>(out_w) * 3;
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in = src + static_cast<size_t>(row0 + y) * in_stride;
    uint8_t* out = dst + static_cast<size_t>(y) * out_stride;
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* p = in + static_cast<size_t>(c.first[xx]) * 3;
      const int n = c.count[xx];
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int x = 0; x < n; ++x, p += 3) {
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      out[xx * 3 + 0] = clip8(s0);
      out[xx * 3 + 1] = clip8(s1);
      out[xx * 3 + 2] = clip8(s2);
    }
  }
}

// Each output row is a weighted sum of whole source rows (width*3 bytes).
void vertical_pass(const uint8_t* src, int width, const AxisCoeffs& c, int out_h, uint8_t* dst) {
  const size_t row_len = static_cast<size_t>(width) * 3;
  std::vector<int32_t> acc(row_len);
  int32_t* a = acc.data();
  for (int yy = 0; yy < out_h; ++yy) {
    for (size_t i = 0; i < row_len; ++i) a[i] = kHalf;
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t* row = src + static_cast<size_t>(c.first[yy] + y) * row_len;
      const int32_t ky = k[y];
      for (size_t i = 0; i < row_len; ++i) a[i] += static_cast<int32_t>(row[i]) * ky;
    }
    uint8_t* out = dst + static_cast<size_t>(yy) * row_len;
    for (size_t i = 0; i < row_len; ++i) out[i] = clip8(a[i]);
  }
}

std::string size_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

}  // namespace

namespace resample_detail {

ResizePlan plan_bicubic_resize(int width, int height, int out_width, int out_height) {
  ResizePlan plan;
  plan.horizontal = out_width != width;
  plan.vertical = out_height != height;
  plan.ybox_first = 0;
  plan.ybox_rows = height;
  if (!plan.horizontal && !plan.vertical) return plan;
  // Pillow's default box is (0, 0, width, height) as C floats. The vertical
  // taps are built even when that pass is skipped: they bound the ybox.
  plan.vert = bicubic_axis_coeffs(height, 0.0f, static_cast<float>(height), out_height);
  if (plan.horizontal) {
    const int ybox_first = plan.vert.first[0];
    const int ybox_last = plan.vert.first[out_height - 1] + plan.vert.count[out_height - 1];
    plan.horiz = bicubic_axis_coeffs(width, 0.0f, static_cast<float>(width), out_width);
    for (int& f : plan.vert.first) f -= ybox_first;
    plan.ybox_first = ybox_first;
    plan.ybox_rows = ybox_last - ybox_first;
  }
  if (!plan.vertical) plan.vert = AxisCoeffs();
  return plan;
}

}  // namespace resample_detail

Result<std::vector<uint8_t>> resize_bicubic_rgb8(const uint8_t* rgb, int width, int height, int out_width,
                                                 int out_height) {
  if (rgb == nullptr || width <= 0 || height <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "resize_bicubic_rgb8: expected a non-empty RGB image but got " +
                      (rgb == nullptr ? std::string("a null pointer for ") : std::string()) + size_text(width, height));
  }
  if (out_width <= 0 || out_height <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "resize_bicubic_rgb8: expected a positive output size but got " + size_text(out_width, out_height));
  }
  try {
    const ResizePlan plan = resample_detail::plan_bicubic_resize(width, height, out_width, out_height);
    if (!plan.horizontal && !plan.vertical) {
      return std::vector<uint8_t>(rgb, rgb + static_cast<size_t>(width) * height * 3);
    }
    const uint8_t* src = rgb;
    int src_w = width;
    std::vector<uint8_t> temp;
    if (plan.horizontal) {
      temp.resize(static_cast<size_t>(out_width) * plan.ybox_rows * 3);
      horizontal_pass(rgb, width, plan.ybox_first, plan.ybox_rows, plan.horiz, out_width, temp.data());
      if (!plan.vertical) return temp;  // ybox_rows == height here: the crop is the whole image
      src = temp.data();
      src_w = out_width;
    }
    std::vector<uint8_t> out(static_cast<size_t>(src_w) * out_height * 3);
    vertical_pass(src, src_w, plan.vert, out_height, out.data());
    return out;
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "resize_bicubic_rgb8: out of memory resizing " + size_text(width, height) +
                                                " to " + size_text(out_width, out_height));
  } catch (const std::length_error&) {
    return Status(StatusCode::kOutOfMemory, "resize_bicubic_rgb8: buffers too large resizing " +
                                                size_text(width, height) + " to " + size_text(out_width, out_height));
  }
}

}  // namespace rex
