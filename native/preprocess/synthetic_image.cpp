// The FORMAT.md synthetic image formula, in uint32 arithmetic that wraps
// mod 2^32 exactly like the Python/numpy side. A hash term gives texture
// (so resampling errors show up) and gradient terms give structure.
#include "preprocess/synthetic_image.h"

#include <new>
#include <stdexcept>
#include <string>

namespace rex {

Result<std::vector<uint8_t>> make_synthetic_rgb(int width, int height, uint32_t seed) {
  if (width <= 0 || height <= 0) {
    return Status(StatusCode::kInvalidArgument, "make_synthetic_rgb: expected a positive size but got " +
                                                    std::to_string(width) + "x" + std::to_string(height));
  }
  try {
    std::vector<uint8_t> out(static_cast<size_t>(width) * height * 3);
    const uint32_t w = static_cast<uint32_t>(width), h = static_cast<uint32_t>(height);
    const uint32_t dx = w > 1 ? w - 1 : 1, dy = h > 1 ? h - 1 : 1;
    const uint32_t dxy = w + h - 2 > 0 ? w + h - 2 : 1;
    const uint32_t seed_term = seed * 2654435761u;
    size_t i = 0;
    for (uint32_t y = 0; y < h; ++y) {
      const uint32_t y_term = y * 19349663u;
      for (uint32_t x = 0; x < w; ++x) {
        const uint32_t x_term = x * 73856093u;
        for (uint32_t c = 0; c < 3; ++c) {
          uint32_t n = x_term ^ y_term ^ ((c + 1) * 83492791u) ^ seed_term;
          n = (n * 2246822519u) >> 24;
          const uint32_t g = c == 0 ? (x * 255u) / dx : c == 1 ? (y * 255u) / dy : ((x + y) * 255u) / dxy;
          out[i++] = static_cast<uint8_t>((3u * g + n) / 4u);
        }
      }
    }
    return out;
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "make_synthetic_rgb: out of memory for " + std::to_string(width) + "x" +
                                                std::to_string(height));
  } catch (const std::length_error&) {
    return Status(StatusCode::kOutOfMemory, "make_synthetic_rgb: too large: " + std::to_string(width) + "x" +
                                                std::to_string(height));
  }
}

namespace {

// Parses a decimal unsigned number spanning [begin, end) exactly.
bool parse_uint(const std::string& s, size_t begin, size_t end, unsigned long long max, unsigned long long* out) {
  if (begin >= end || end - begin > 20) return false;
  unsigned long long v = 0;
  for (size_t i = begin; i < end; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

}  // namespace

Result<SyntheticSpec> parse_synthetic_name(const std::string& name) {
  const std::string prefix = "synthetic:";
  auto bad = [&]() {
    return Status(StatusCode::kInvalidArgument, "expected an image name like \"synthetic:WxH:SEED\" but got \"" + name + "\"");
  };
  if (name.compare(0, prefix.size(), prefix) != 0) return bad();
  const size_t x = name.find('x', prefix.size());
  if (x == std::string::npos) return bad();
  const size_t colon = name.find(':', x);
  if (colon == std::string::npos) return bad();
  unsigned long long w = 0, h = 0, seed = 0;
  if (!parse_uint(name, prefix.size(), x, 0x7fffffffull, &w) || !parse_uint(name, x + 1, colon, 0x7fffffffull, &h) ||
      !parse_uint(name, colon + 1, name.size(), 0xffffffffull, &seed) || w == 0 || h == 0) {
    return bad();
  }
  SyntheticSpec spec;
  spec.width = static_cast<int>(w);
  spec.height = static_cast<int>(h);
  spec.seed = static_cast<uint32_t>(seed);
  return spec;
}

}  // namespace rex
