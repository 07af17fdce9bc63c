// The model's weights on the device: converted to bf16 once, in one arena,
// and rearranged for the kernels that read them:
//  - text q/k/v projections fused into one [q+2kv, hidden] matrix (+ bias),
//    gate and up into one [2*inter, hidden] matrix: one GEMM each;
//  - the vision MLP's gate and up fused the same way, with the intermediate
//    size padded up to a multiple of 8 with zero rows (and zero columns of the
//    down projection), so every GEMM row stays 16-byte aligned; the padding
//    contributes exact zeros;
//  - the patch embedding's Conv3d as a [hidden, 1176] matrix.
// The LM head is the embedding table when the checkpoint ties them.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "cuda/bf16.cuh"
#include "cuda/device_buffer.h"
#include "model/config.h"
#include "model/weights.h"

namespace rex::cuda {

struct DeviceVisionBlock {
  const bf16 *norm1 = nullptr, *norm2 = nullptr;
  const bf16 *qkv_w = nullptr, *qkv_b = nullptr;       // [3*hidden, hidden], [3*hidden]
  const bf16 *proj_w = nullptr, *proj_b = nullptr;     // [hidden, hidden]
  const bf16 *gate_up_w = nullptr, *gate_up_b = nullptr;  // [2*inter_padded, hidden]
  const bf16 *down_w = nullptr, *down_b = nullptr;     // [hidden, inter_padded]
};

struct DeviceTextLayer {
  const bf16 *input_norm = nullptr, *post_norm = nullptr;
  const bf16 *qkv_w = nullptr, *qkv_b = nullptr;       // [(hq+2hkv)*hd, hidden]
  const bf16* o_w = nullptr;                           // [hidden, hq*hd]
  const bf16* gate_up_w = nullptr;                     // [2*inter, hidden]
  const bf16* down_w = nullptr;                        // [hidden, inter]
};

struct DeviceWeights {
  DeviceBuffer<bf16> arena;
  size_t bytes = 0;
  int vision_inter_padded = 0;

  const bf16* patch_embed = nullptr;                   // [hidden, 1176]
  std::vector<DeviceVisionBlock> vision_blocks;
  const bf16 *merger_norm = nullptr, *merger_fc1_w = nullptr, *merger_fc1_b = nullptr;
  const bf16 *merger_fc2_w = nullptr, *merger_fc2_b = nullptr;

  const bf16* embed_tokens = nullptr;                  // [vocab, hidden]
  const bf16* lm_head = nullptr;                       // == embed_tokens when tied
  std::vector<DeviceTextLayer> text_layers;
  const bf16* final_norm = nullptr;
};

// Converts and uploads every weight. Errors name the tensor (kMissingTensor,
// kShapeMismatch) or the allocation (kOutOfMemory).
Status upload_weights(const ModelConfig& config, const ModelWeights& weights, DeviceWeights* out);

}  // namespace rex::cuda
