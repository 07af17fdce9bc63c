// A read-only view of one tensor inside a memory-mapped checkpoint file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rex {

enum class DType { kBF16, kF16, kF32 };

const char* dtype_name(DType dtype);   // "BF16", "F16", "F32" (safetensors spelling)
size_t dtype_size(DType dtype);

struct TensorView {
  std::string name;            // canonical (transformers 4.x) name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::string file;            // the file it lives in, for error messages
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // points into the mapping; valid while the Checkpoint lives
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_string() const;  // "[2048, 1280]"
};

// Element i of a tensor, widened to float (bf16, f16 and f32 all supported).
// An index past the end yields NaN (never a crash).
float tensor_element_f32(const TensorView& t, size_t i);
// The whole tensor widened to float.
std::vector<float> tensor_to_f32(const TensorView& t);

// Scalar conversions between the stored 16-bit formats and float.
float bf16_bits_to_f32(uint16_t bits);
float f16_bits_to_f32(uint16_t bits);     // exact, incl. subnormals, inf and NaN
uint16_t f32_to_bf16_bits(float value);   // round to nearest even; NaN stays NaN

}  // namespace rex
