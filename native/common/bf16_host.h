// Short names for the host-side bf16 conversions of model/tensor.h (round to
// nearest even, NaN kept), as the CUDA backend and its tests use them.
#pragma once

#include <cstdint>

#include "model/tensor.h"

namespace rex {

inline float bf16_bits_to_float(uint16_t bits) { return bf16_bits_to_f32(bits); }
inline uint16_t float_to_bf16_bits(float value) { return f32_to_bf16_bits(value); }
// The value a float takes after a round trip through bf16.
inline float round_to_bf16(float value) { return bf16_bits_to_f32(f32_to_bf16_bits(value)); }

}  // namespace rex
