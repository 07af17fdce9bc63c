// Normalisation and patchification in one pass over the resized image.
// Values follow transformers' numpy path exactly: rescale computes
// float32(double(x) * (1/255)), normalize computes (r - mean) / std in float32.
// Only 256 inputs exist per channel, so a 3x256 lookup table holds every
// possible output; patchify is then a gather into rows ordered
// (block row, block col, 2x2 in row-major) x (channel, frame, py, px),
// i.e. transformers' reshape + transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).
#include "preprocess/no_fp_contract.h"

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"

namespace rex {

Status check_preprocess_options(const PreprocessOptions& o) {
  if (o.patch_size <= 0 || o.merge_size <= 0 || o.temporal_patch_size <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "expected positive patch_size, merge_size and temporal_patch_size but got " +
                      std::to_string(o.patch_size) + ", " + std::to_string(o.merge_size) + ", " +
                      std::to_string(o.temporal_patch_size));
  }
  for (int c = 0; c < 3; ++c) {
    if (!(o.std[c] != 0.0f)) {
      return Status(StatusCode::kInvalidArgument,
                    "expected a non-zero std for channel " + std::to_string(c) + " but got " + std::to_string(o.std[c]));
    }
  }
  return Status::Ok();
}

NormalizeConstants normalize_constants(const PreprocessOptions& options) {
  NormalizeConstants k;
  k.rescale = 1.0 / 255.0;  // 0.00392156862745098, the processor's rescale_factor
  for (int c = 0; c < 3; ++c) {
    k.mean[c] = options.mean[c];
    k.std[c] = options.std[c];
  }
  return k;
}

Result<std::vector<float>> normalize_patchify(const uint8_t* rgb, int width, int height,
                                              const PreprocessOptions& options) {
  REX_RETURN_IF_ERROR(check_preprocess_options(options));
  if (rgb == nullptr || width <= 0 || height <= 0) {
    return Status(StatusCode::kInvalidArgument, "normalize_patchify: expected a non-empty RGB image but got " +
                                                    (rgb == nullptr ? std::string("a null pointer for ") : std::string()) +
                                                    std::to_string(width) + "x" + std::to_string(height));
  }
  const int p = options.patch_size, m = options.merge_size, t_frames = options.temporal_patch_size;
  const int unit = p * m;
  if (width % unit != 0 || height % unit != 0) {
    return Status(StatusCode::kInvalidArgument, "normalize_patchify: expected width and height to be multiples of " +
                                                    std::to_string(unit) + " but got " + std::to_string(width) + "x" +
                                                    std::to_string(height));
  }

  // Every possible normalised value, per channel. The GPU twin
  // (native/cuda/preprocess.cu, normalize_value) spells out the same operations.
  float lut[3][256];
  const NormalizeConstants k = normalize_constants(options);
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float r = static_cast<float>(static_cast<double>(v) * k.rescale);
      const float centred = r - k.mean[c];
      lut[c][v] = centred / k.std[c];
    }
  }

  const int grid_h = height / p, grid_w = width / p;
  const int blocks_h = grid_h / m, blocks_w = grid_w / m;
  const size_t row_size = static_cast<size_t>(patch_row_size(options));
  const size_t frame_size = static_cast<size_t>(p) * p;
  const size_t stride = static_cast<size_t>(width) * 3;
  try {
    std::vector<float> out(static_cast<size_t>(grid_h) * grid_w * row_size);
    float* dst = out.data();
    for (int bh = 0; bh < blocks_h; ++bh) {
      for (int bw = 0; bw < blocks_w; ++bw) {
        for (int mh = 0; mh < m; ++mh) {
          for (int mw = 0; mw < m; ++mw) {
            const int y0 = (bh * m + mh) * p, x0 = (bw * m + mw) * p;
            for (int c = 0; c < 3; ++c) {
              // Frame 0 gathered from the image; the still image repeats it.
              float* frame0 = dst;
              for (int py = 0; py < p; ++py) {
                const uint8_t* src = rgb + static_cast<size_t>(y0 + py) * stride + static_cast<size_t>(x0) * 3 + c;
                for (int px = 0; px < p; ++px) *dst++ = lut[c][src[px * 3]];
              }
              for (int t = 1; t < t_frames; ++t) {
                for (size_t i = 0; i < frame_size; ++i) *dst++ = frame0[i];
              }
            }
          }
        }
      }
    }
    return out;
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "normalize_patchify: out of memory for " + std::to_string(width) + "x" +
                                                std::to_string(height));
  } catch (const std::length_error&) {
    return Status(StatusCode::kOutOfMemory, "normalize_patchify: buffer too large for " + std::to_string(width) + "x" +
                                                std::to_string(height));
  }
}

}  // namespace rex
