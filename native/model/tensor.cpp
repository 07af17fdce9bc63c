// TensorView helpers: dtype names and sizes, shapes as text, and widening of
// bf16 / f16 / f32 elements to float. Reads go through memcpy because a
// tensor inside a safetensors file need not be aligned.
#include "model/tensor.h"

#include <cstring>
#include <limits>

namespace rex {

namespace {

float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);  // safetensors is little-endian, as is every host we build for
  return v;
}

// Elements actually backed by bytes: numel, capped by nbytes for safety.
size_t element_count(const TensorView& t) {
  int64_t n = t.numel();
  size_t by_bytes = t.nbytes / dtype_size(t.dtype);
  if (n < 0) return 0;
  return static_cast<size_t>(n) < by_bytes ? static_cast<size_t>(n) : by_bytes;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
  }
  return "?";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF32: return 4;
  }
  return 4;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

float bf16_bits_to_f32(uint16_t bits) {
  return bits_to_float(static_cast<uint32_t>(bits) << 16);
}

float f16_bits_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1Fu;
  uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) {  // inf or NaN; keep the payload, in the top mantissa bits
    return bits_to_float(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    if (mantissa == 0) return bits_to_float(sign);  // signed zero
    // Subnormal: mantissa * 2^-24. Normalise so the leading 1 becomes implicit.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3FFu;
    uint32_t exp32 = static_cast<uint32_t>(127 - 15 + 1 - shift);
    return bits_to_float(sign | (exp32 << 23) | (mantissa << 13));
  }
  return bits_to_float(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

uint16_t f32_to_bf16_bits(float value) {
  uint32_t bits = float_to_bits(value);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, never rounded to inf
  }
  uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float tensor_element_f32(const TensorView& t, size_t i) {
  if (t.data == nullptr || i >= element_count(t)) return std::numeric_limits<float>::quiet_NaN();
  const uint8_t* base = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::kBF16: return bf16_bits_to_f32(load_u16(base + 2 * i));
    case DType::kF16: return f16_bits_to_f32(load_u16(base + 2 * i));
    case DType::kF32: {
      float f;
      std::memcpy(&f, base + 4 * i, sizeof f);
      return f;
    }
  }
  return std::numeric_limits<float>::quiet_NaN();
}

std::vector<float> tensor_to_f32(const TensorView& t) {
  size_t n = t.data == nullptr ? 0 : element_count(t);
  std::vector<float> out(n);
  const uint8_t* base = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_bits_to_f32(load_u16(base + 2 * i));
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_bits_to_f32(load_u16(base + 2 * i));
      break;
    case DType::kF32:
      if (n > 0) std::memcpy(out.data(), base, n * sizeof(float));
      break;
  }
  return out;
}

}  // namespace rex
