// The vision tower on the GPU, in the order of work of the CPU encoder
// (native/cpu/vision.h): patch-embed GEMM, window permutation (a row gather
// into the fp32 residual stream), 32 blocks of norm -> qkv GEMM -> 2D rotary
// -> varlen attention (windows, or the whole image in the full-attention
// blocks) -> proj GEMM -> add+norm -> gate/up GEMM -> SwiGLU -> down GEMM,
// each residual add fused into the next norm, then the merger. The output
// stays in window-permuted order: the prefill's gather undoes the permutation
// for free (ImageEmbeddings keeps it). Several images go through one pass as
// on the CPU (cpu::plan_vision_batch): their rows concatenated, every image's
// windows in the window blocks, each image alone in the full-attention
// blocks (cu_seqlens = the image boundaries), the merger's rows split back
// per image. The GEMMs then see more rows, and cuBLASLt may pick another
// algorithm for them: batched outputs are close to alone, not the same bits.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/bf16.cuh"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cpu/vision.h"
#include "cuda/gemm.cuh"
#include "cuda/step_profile.h"
#include "engine/backend.h"
#include "model/config.h"

namespace rex::cuda {

// Device buffers for image embeddings, recycled: a pass takes the smallest
// kept one that fits (else allocates one), and an image's embeddings give
// theirs back when the engine drops them, after the image's prefill. A
// request then costs no cudaMalloc of its embeddings (~4 MB at 1000x750), nor
// their cudaFree, which waits for all the device's work. A buffer given back
// is reused only by later work on the backend's one stream, so work queued
// before still reads it first. Keeps at most kKept buffers; thread-safe.
class EmbeddingBuffers {
 public:
  static constexpr size_t kKept = 16;
  // A buffer of at least `count` elements into *out.
  Status take(size_t count, DeviceBuffer<bf16>* out);
  void give_back(DeviceBuffer<bf16> buffer);
  size_t kept() const;

 private:
  mutable std::mutex mutex_;
  std::vector<DeviceBuffer<bf16>> kept_;
};

struct VisionOutput {
  DeviceBuffer<bf16> tokens;        // [merged tokens, out_hidden] (or larger: recycled), window-permuted order
  std::vector<int> window_index;    // window_index[p] = raster token at permuted position p
  int count = 0;
  std::shared_ptr<EmbeddingBuffers> recycle;  // where `tokens` goes back when the embeddings are dropped
};

class VisionRunner {
 public:
  void init(const VisionConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream);
  // pixels: [grid_h*grid_w, 1176] bf16 on the device (merge-block row order).
  Result<VisionOutput> forward(const bf16* pixels, int grid_h, int grid_w, const TensorTap* tap);
  // Every image in one pass. pixels: the images' rows one after another
  // ([sum of h*w, 1176] bf16 on the device); one output per image, as
  // forward() gives it. The tap sees the whole batch's rows.
  Result<std::vector<VisionOutput>> forward_batch(const bf16* pixels, const std::vector<cpu::PatchGrid>& grids,
                                                  const TensorTap* tap);
  // Why this grid cannot be encoded (ok when it can).
  Status grid_error(int grid_h, int grid_w) const;
  size_t workspace_bytes() const;
  // Profiles one pass into this JSON file: the second of at least
  // kProfilePatches patches (step_profile.h); empty: off.
  void set_profile_path(std::string path) { profile_path_ = std::move(path); }
  static constexpr int kProfilePatches = 1024;

 private:
  // forward_batch() past the profile's choice.
  Result<std::vector<VisionOutput>> encode(const bf16* pixels, const std::vector<cpu::PatchGrid>& grids,
                                           const TensorTap* tap);
  Status ensure_buffers(int rows);
  Status emit(const TensorTap* tap, const std::string& name, const float* f32, const bf16* b16, int rows, int cols);

  VisionConfig config_;
  const DeviceWeights* w_ = nullptr;
  GemmRunner* gemm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<float> residual_, inv_freq_;
  DeviceBuffer<bf16> patch_, h_, qkv_, attn_, proj_, gate_up_, act_, mid_;
  DeviceBuffer<bf16> merged_;  // a batch's merger output, before it is split per image
  std::shared_ptr<EmbeddingBuffers> embedding_buffers_ = std::make_shared<EmbeddingBuffers>();
  DeviceBuffer<int32_t> gather_, pos_rows_, pos_cols_, cu_windows_, cu_full_;

  std::string profile_path_;
  int profiled_passes_ = 0;         // passes of at least kProfilePatches patches seen (the 2nd is profiled)
  StepProfile* profile_ = nullptr;  // set during the profiled pass
  void mark(const char* kind, double bytes, double flops = 0) {
    if (profile_) profile_->next(kind, bytes, flops);
  }
};

}  // namespace rex::cuda
