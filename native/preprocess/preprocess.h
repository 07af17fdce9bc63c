// Image preprocessing exactly as the reference feeds Qwen2.5-VL:
// smart_resize (Python rounding), Pillow-exact BICUBIC on 8-bit RGB,
// normalisation with the CLIP mean/std, and patchification into 1176-value
// rows ordered by 2x2 merge block. See test/golden/FORMAT.md, "Reference preprocessing".
#pragma once

#include <cstdint>
#include <vector>

#include "rex/status.h"

namespace rex {

struct ResizeTarget {
  int height = 0;
  int width = 0;
};

// Errors: kInvalidArgument for non-positive sizes, or aspect ratio > 200.
Result<ResizeTarget> smart_resize(int height, int width, int factor = 28,
                                  int min_pixels = 16 * 28 * 28, int max_pixels = 2560 * 28 * 28);

// Pillow's Image.resize(..., BICUBIC) on interleaved 8-bit RGB, bit for bit
// (Pillow 10.4 pass order: horizontal, then vertical).
Result<std::vector<uint8_t>> resize_bicubic_rgb8(const uint8_t* rgb, int width, int height,
                                                 int out_width, int out_height);

struct PreprocessOptions {
  int min_pixels = 16 * 28 * 28;
  int max_pixels = 2560 * 28 * 28;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
};

struct PreprocessedImage {
  int resized_width = 0;
  int resized_height = 0;
  int grid_t = 1;                  // image_grid_thw = (grid_t, grid_h, grid_w)
  int grid_h = 0;                  // resized_height / patch_size
  int grid_w = 0;                  // resized_width / patch_size
  std::vector<uint8_t> resized_rgb;  // resized_width * resized_height * 3
  std::vector<float> pixel_values;   // (grid_t*grid_h*grid_w) rows x (3*temporal*patch*patch) = 1176
};

inline int patch_row_size(const PreprocessOptions& o) {
  return 3 * o.temporal_patch_size * o.patch_size * o.patch_size;
}

// Positive patch_size, merge_size and temporal_patch_size, non-zero std.
// Errors: kInvalidArgument ("expected ... but got ...").
Status check_preprocess_options(const PreprocessOptions& options);

// preprocess_image's input check (the CUDA path makes the same one): a
// non-null, non-empty image, then check_preprocess_options.
Status check_preprocess_input(const uint8_t* rgb, int width, int height, const PreprocessOptions& options);

// The constants of step 4 exactly as normalize_patchify uses them: for an
// 8-bit value v of channel c the result is, in IEEE arithmetic without FMA,
//   r = float32(double(v) * rescale);  out = (r - mean[c]) / std[c]  (float32).
// native/cuda/preprocess.cu computes the same operations from these values.
struct NormalizeConstants {
  double rescale = 0.0;  // 1/255 as a double, the processor's rescale_factor
  float mean[3] = {0, 0, 0};
  float std[3] = {0, 0, 0};
};
NormalizeConstants normalize_constants(const PreprocessOptions& options);

// Steps 4-5 on an image already at its smart_resize size (width and height
// multiples of patch_size * merge_size): rescale by 1/255 (float64, then
// float32), (x - mean) / std in float32 (transformers' numpy path), repeat the
// still image to temporal_patch_size frames and emit rows in merge-block order.
// Returns (height/patch)*(width/patch) rows of patch_row_size(options) floats.
// Errors: kInvalidArgument (null image, sizes not multiples, bad options).
Result<std::vector<float>> normalize_patchify(const uint8_t* rgb, int width, int height,
                                              const PreprocessOptions& options);

// Errors: kInvalidArgument (null/zero-sized image, aspect ratio > 200).
Result<PreprocessedImage> preprocess_image(const uint8_t* rgb, int width, int height,
                                           const PreprocessOptions& options);

}  // namespace rex
