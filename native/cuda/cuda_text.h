// The text decoder on the GPU. One layer loop serves prefill (any number of
// rows of one sequence, in chunks) and batched decode (one row per
// sequence); they differ only in the attention kernel. Per layer:
// fused QKV GEMM -> M-RoPE fused with the KV-cache write -> attention ->
// o GEMM -> add+norm -> fused gate/up GEMM -> SwiGLU -> down GEMM -> add+norm
// (into the next layer's input norm, or the final norm). The residual stream
// is fp32. A decode step is captured once per batch-size bucket as a CUDA
// graph over fixed buffers; each step then uploads its small inputs (ids,
// positions, cache rows, lengths, block tables) in one copy and replays.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <vector>

#include "cuda/bf16.cuh"
#include "cuda/cuda_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/gemm.cuh"
#include "cuda/rope.cuh"
#include "engine/backend.h"
#include "model/config.h"

namespace rex::cuda {

// The paged KV cache: per layer a K and a V plane of `tokens` rows.
struct KvArena {
  bf16* base = nullptr;
  int64_t tokens = 0;       // physical rows per plane (all blocks, the spare one included)
  int block_size = 64;
  int kv_dim = 0;           // kv_heads * head_dim
  KvPlane layer(int l) const {
    const int64_t plane = tokens * kv_dim;
    return {base + plane * (2 * l), base + plane * (2 * l + 1)};
  }
};

// One sequence of a decode batch.
struct DecodeSequence {
  int32_t token = 0;
  int32_t position = 0;
  int length = 0;                         // tokens in its cache before this step
  const std::vector<int32_t>* blocks = nullptr;
};

class TextRunner {
 public:
  // spare_block: a block no sequence owns; padded rows of a graph bucket write there.
  Status init(const TextConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream,
              KvArena arena, int spare_block, int max_batch, int max_blocks_per_sequence);

  // Appends n tokens at cache positions past..past+n-1 of the sequence
  // holding `blocks`. positions: host, axis-major [3][n]. image: device
  // embeddings (may be null); image_row[i] >= 0 picks the image row for token
  // i. Writes the last logit_rows rows' logits (fp32) to logits_host.
  Status prefill(const int32_t* ids, int n, const int32_t* positions, int past, const std::vector<int32_t>& blocks,
                 const bf16* image, const std::vector<int32_t>& image_row, int logit_rows, float* logits_host,
                 const TensorTap* tap);

  // One token for each sequence; logits_host: [batch, vocab].
  Status decode(const std::vector<DecodeSequence>& batch, float* logits_host, bool use_graphs, const TensorTap* tap);

  size_t workspace_bytes() const;
  ~TextRunner();

 private:
  struct Buffers {
    DeviceBuffer<float> residual;
    DeviceBuffer<bf16> h, qkv, attn, o, gate_up, act, down;
    int rows = 0;
    Status ensure(const TextConfig& c, int rows);
    size_t bytes() const;
  };
  // Attention for layer l: reads q inside qkv (row stride qkv width), writes attn.
  using AttentionFn = std::function<Status(int layer, const bf16* qkv, bf16* out)>;
  Status layers(Buffers& b, int rows, const int32_t* positions_dev, const int32_t* dest_rows_dev,
                const AttentionFn& attention, const TensorTap* tap);
  Status decode_body(int bucket, const TensorTap* tap);
  int bucket_for(int batch) const;
  int splits_for(int bucket) const;

  TextConfig config_;
  const DeviceWeights* w_ = nullptr;
  GemmRunner* gemm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  KvArena arena_;
  int spare_block_ = 0;
  int max_batch_ = 1;
  int max_blocks_ = 1;
  DeviceBuffer<float> inv_freq_;

  // Prefill (grows with the chunk size).
  Buffers pre_;
  DeviceBuffer<int32_t> pre_ids_, pre_positions_, pre_dest_, pre_image_row_, pre_blocks_;
  DeviceBuffer<float> pre_logits_;

  // Decode (fixed at init: graphs point into these).
  Buffers dec_;
  DeviceBuffer<int32_t> step_;            // ids | positions (3 axes) | dest rows | lengths | block tables
  int32_t* step_host_ = nullptr;          // pinned mirror of step_
  DeviceBuffer<float> dec_logits_, attn_workspace_;
  float* logits_pinned_ = nullptr;
  std::map<int, cudaGraphExec_t> graphs_;
  int32_t* step_ids() const { return step_.get(); }
  int32_t* step_positions() const { return step_.get() + max_batch_; }
  int32_t* step_dest() const { return step_.get() + 4 * max_batch_; }
  int32_t* step_lengths() const { return step_.get() + 5 * max_batch_; }
  int32_t* step_tables() const { return step_.get() + 6 * max_batch_; }
};

}  // namespace rex::cuda
