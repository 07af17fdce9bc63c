// The vision tower on the GPU, in the order of work of the CPU encoder
// (native/cpu/vision.h): patch-embed GEMM, window permutation (a row gather
// into the fp32 residual stream), 32 blocks of norm -> qkv GEMM -> 2D rotary
// -> varlen attention (windows, or the whole image in the full-attention
// blocks) -> proj GEMM -> add+norm -> gate/up GEMM -> SwiGLU -> down GEMM,
// each residual add fused into the next norm, then the merger. The output
// stays in window-permuted order: the prefill's gather undoes the permutation
// for free (ImageEmbeddings keeps it).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "cuda/bf16.cuh"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/gemm.cuh"
#include "engine/backend.h"
#include "model/config.h"

namespace rex::cuda {

struct VisionOutput {
  DeviceBuffer<bf16> tokens;        // [merged tokens, out_hidden], window-permuted order
  std::vector<int> window_index;    // window_index[p] = raster token at permuted position p
  int count = 0;
};

class VisionRunner {
 public:
  void init(const VisionConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream);
  // pixels: [grid_h*grid_w, 1176] bf16 on the device (merge-block row order).
  Result<VisionOutput> forward(const bf16* pixels, int grid_h, int grid_w, const TensorTap* tap);
  size_t workspace_bytes() const;

 private:
  Status ensure_buffers(int rows);
  Status emit(const TensorTap* tap, const std::string& name, const float* f32, const bf16* b16, int rows, int cols);

  VisionConfig config_;
  const DeviceWeights* w_ = nullptr;
  GemmRunner* gemm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<float> residual_, inv_freq_;
  DeviceBuffer<bf16> patch_, h_, qkv_, attn_, proj_, gate_up_, act_, mid_;
  DeviceBuffer<int32_t> gather_, pos_rows_, pos_cols_, cu_windows_, cu_full_;
};

}  // namespace rex::cuda
