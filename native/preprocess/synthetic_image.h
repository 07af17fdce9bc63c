// Deterministic synthetic RGB images (test/golden/FORMAT.md, "Synthetic
// images"): golden files name them "synthetic:WxH:SEED" instead of storing
// pixels, so tests, benchmarks and the Python generators must agree on this
// formula bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rex/status.h"

namespace rex {

struct SyntheticSpec {
  int width = 0;
  int height = 0;
  uint32_t seed = 0;
};

// Interleaved 8-bit RGB, row-major, width*height*3 bytes.
// Errors: kInvalidArgument for non-positive sizes; kOutOfMemory.
Result<std::vector<uint8_t>> make_synthetic_rgb(int width, int height, uint32_t seed);

// Parses "synthetic:WxH:SEED". Errors: kInvalidArgument.
Result<SyntheticSpec> parse_synthetic_name(const std::string& name);

}  // namespace rex
