// See weights_f32.h.
#include "cpu/weights_f32.h"

#include <cstring>

namespace rex::cpu {

float bf16_to_f32(uint16_t bits) {
  uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400) == 0);
      u = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp - 15 + 127) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Status widen_tensor(const TensorView* t, int64_t expected_numel, const std::string& role,
                    std::vector<float>* out) {
  if (t == nullptr || t->data == nullptr)
    return Status(StatusCode::kMissingTensor, "cpu backend: weight '" + role + "' is not bound");
  int64_t n = 1;
  for (int64_t d : t->shape) n *= d;
  if (n != expected_numel)
    return Status(StatusCode::kShapeMismatch, "cpu backend: weight '" + role + "' (" + t->name +
                  ") has " + std::to_string(n) + " elements, expected " + std::to_string(expected_numel));
  out->resize(size_t(n));
  float* dst = out->data();
  switch (t->dtype) {
    case DType::kF32:
      std::memcpy(dst, t->data, size_t(n) * 4);
      break;
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(t->data);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
      break;
    }
    case DType::kF16: {
      const uint16_t* src = static_cast<const uint16_t*>(t->data);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
      break;
    }
  }
  return Status::Ok();
}

Status load_linear(const TensorView* w, const TensorView* b, int out, int in,
                   const std::string& role, Linear* dst) {
  dst->out = out;
  dst->in = in;
  REX_RETURN_IF_ERROR(widen_tensor(w, int64_t(out) * in, role + ".weight", &dst->w));
  dst->b.clear();
  if (b) REX_RETURN_IF_ERROR(widen_tensor(b, out, role + ".bias", &dst->b));
  return Status::Ok();
}

}  // namespace rex::cpu
