// The whole reference preprocessing for one decoded RGB image:
// validate -> smart_resize -> Pillow BICUBIC -> normalize + patchify.
// Only orchestration lives here so each step stays testable on its own.
#include <string>
#include <utility>

#include "preprocess/preprocess.h"

namespace rex {

Status check_preprocess_input(const uint8_t* rgb, int width, int height, const PreprocessOptions& options) {
  if (rgb == nullptr || width <= 0 || height <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  "expected a non-empty RGB image but got " +
                      (rgb == nullptr && width > 0 && height > 0 ? std::string("a null pointer for ") : std::string()) +
                      std::to_string(width) + "x" + std::to_string(height));
  }
  return check_preprocess_options(options);
}

Result<PreprocessedImage> preprocess_image(const uint8_t* rgb, int width, int height,
                                           const PreprocessOptions& options) {
  REX_RETURN_IF_ERROR(check_preprocess_input(rgb, width, height, options));
  const int factor = options.patch_size * options.merge_size;
  Result<ResizeTarget> target = smart_resize(height, width, factor, options.min_pixels, options.max_pixels);
  if (!target.ok()) return target.status();

  PreprocessedImage out;
  out.resized_width = target->width;
  out.resized_height = target->height;
  out.grid_t = 1;
  out.grid_h = target->height / options.patch_size;
  out.grid_w = target->width / options.patch_size;

  Result<std::vector<uint8_t>> resized = resize_bicubic_rgb8(rgb, width, height, target->width, target->height);
  if (!resized.ok()) return resized.status();
  out.resized_rgb = std::move(resized).value();

  Result<std::vector<float>> values =
      normalize_patchify(out.resized_rgb.data(), out.resized_width, out.resized_height, options);
  if (!values.ok()) return values.status();
  out.pixel_values = std::move(values).value();
  return out;
}

}  // namespace rex
