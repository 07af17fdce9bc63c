#include "model/verify_weights.h"

#include <cmath>
#include <cstring>
#include <string>

namespace rex {
namespace {

// Index of the first non-finite element, or -1. Works on raw bits: an all-ones
// exponent means Inf or NaN in every one of these formats.
int64_t first_non_finite(const TensorView& t) {
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::kBF16: {
      const uint16_t* v = static_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < n; ++i)
        if ((v[i] & 0x7F80u) == 0x7F80u) return i;
      return -1;
    }
    case DType::kF16: {
      const uint16_t* v = static_cast<const uint16_t*>(t.data);
      for (int64_t i = 0; i < n; ++i)
        if ((v[i] & 0x7C00u) == 0x7C00u) return i;
      return -1;
    }
    case DType::kF32: {
      const unsigned char* bytes = static_cast<const unsigned char*>(t.data);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, bytes + i * 4, 4);
        if ((bits & 0x7F800000u) == 0x7F800000u) return i;
      }
      return -1;
    }
  }
  return -1;
}

}  // namespace

Status verify_weights_finite(const Checkpoint& checkpoint) {
  for (const std::string& name : checkpoint.tensor_names()) {
    const TensorView* t = checkpoint.find(name);
    if (t == nullptr) continue;
    int64_t bad = first_non_finite(*t);
    if (bad >= 0) {
      float value = tensor_element_f32(*t, static_cast<size_t>(bad));
      return Status(StatusCode::kCorruptFile,
                    "tensor '" + name + "' in " + t->file + " holds a non-finite value (" +
                        (std::isnan(value) ? "nan" : "inf") + ") at element " + std::to_string(bad));
    }
  }
  return Status::Ok();
}

}  // namespace rex
