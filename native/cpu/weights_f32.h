// fp32 copies of checkpoint tensors. The CPU backend is the readable oracle:
// it widens every bf16/f16/f32 weight to fp32 once at load, so each op is a
// plain float loop. (Self-contained widening: it only needs TensorView's
// dtype, shape and data, not the model library's helpers.)
#pragma once

#include <string>
#include <vector>

#include "model/tensor.h"
#include "rex/status.h"

namespace rex::cpu {

float bf16_to_f32(uint16_t bits);
float f16_to_f32(uint16_t bits);

// Widens `t` into `out`. Errors (kMissingTensor, kShapeMismatch) name `role`
// and the tensor when `t` is null or its element count is not `expected_numel`.
Status widen_tensor(const TensorView* t, int64_t expected_numel, const std::string& role,
                    std::vector<float>* out);

// y = x W^T + b, W stored [out, in] row-major as in PyTorch's nn.Linear.
struct Linear {
  int out = 0;
  int in = 0;
  std::vector<float> w;  // out * in
  std::vector<float> b;  // out, or empty when there is no bias
};

// `b` may be null (no bias).
Status load_linear(const TensorView* w, const TensorView* b, int out, int in,
                   const std::string& role, Linear* dst);

}  // namespace rex::cpu
