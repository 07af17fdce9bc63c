// The Qwen2.5-VL vision encoder in fp32, in the order of work REXOMNI.md gives:
// patch embed (a 1176 -> hidden matmul), 2D rotary ids in merge-block order,
// window permutation, blocks (windowed or full attention), merger, reverse
// permutation. The window planning is a pure function so tests can check it
// on its own. Several images go through one pass: their patch rows
// concatenated, each image's windows offset into the sequence, the
// full-attention blocks attending within each image (cu_seqlens = the image
// boundaries); every op works row by row, so an image's output is the same
// bits batched or alone.
#pragma once

#include <memory>
#include <vector>

#include "cpu/rope.h"
#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "cpu/weights_f32.h"
#include "engine/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace rex::cpu {

struct WindowPlan {
  // window_index[p] = merged-token index (raster order of the merged grid)
  // that sits at permuted position p. Windows in raster order, tokens in
  // raster order inside each, padding dropped.
  std::vector<int> window_index;
  // Cumulative window lengths in patch rows (valid tokens * merge^2), from 0;
  // empty windows vanish (no repeated entries).
  std::vector<int> cu_seqlens;
};

// merged_h/merged_w: the merged grid; window: merged tokens per window side
// (window_size / patch_size / merge = 4); unit: patch rows per merged token (4).
// Pads exactly like transformers: pad = window - dim % window, so a grid that
// is already a multiple still gets a whole (empty) window row/column.
WindowPlan plan_windows(int merged_h, int merged_w, int window, int unit);

// Patch (row, col) of each patch row, in the preprocessor's merge-block order.
void patch_positions_block_order(int grid_h, int grid_w, int merge, std::vector<int32_t>* rows,
                                 std::vector<int32_t>* cols);

// A batch of images in one sequence (the CUDA runner plans with it too):
// image i holds patch rows [row_offset[i], row_offset[i+1]) of the input and
// of the window-permuted sequence, and its merged tokens
// [row_offset[i]/unit, row_offset[i+1]/unit) of the merger's output.
struct PatchGrid {
  int h = 0, w = 0;  // patches (a multiple of the merge size)
};
struct VisionBatchPlan {
  std::vector<int> row_offset;                  // images + 1 entries, from 0
  std::vector<int32_t> gather;                  // permuted row p reads input row gather[p]
  std::vector<int32_t> pos_rows, pos_cols;      // 2-D rotary ids of permuted row p
  std::vector<int> window_seqlens;              // every image's windows, offset, from 0
  std::vector<int> full_seqlens;                // the image boundaries (= row_offset)
  std::vector<std::vector<int>> window_index;   // each image's own WindowPlan::window_index
  int max_window = 0, max_image = 0;            // longest window / image, in patch rows
};
// merge: the spatial merge size; window: merged tokens per window side.
VisionBatchPlan plan_vision_batch(const std::vector<PatchGrid>& grids, int merge, int window);

// One image of a batch: [h*w, 1176] pixel values in merge-block row order.
struct VisionImage {
  const float* pixel_values = nullptr;
  PatchGrid grid;
};

class VisionEncoder {
 public:
  // kBf16: every GEMM reads and writes bf16-rounded activations (cpu/gemm.h).
  void set_activation_precision(ActivationPrecision p) { precision_ = p; }
  Status load(const VisionConfig& config, const VisionWeights& weights);

  // pixel_values: [grid_h*grid_w, 1176]. Returns [grid_h*grid_w/merge^2, out_hidden]
  // in merged-grid raster order.
  Result<std::vector<float>> forward(ThreadPool& pool, const float* pixel_values, int grid_h,
                                     int grid_w, const TensorTap* tap) const;
  // Every image in one pass; one output per image, as forward() gives it.
  // The tap sees the whole batch's rows. A grid not divisible by the merge
  // size fails the call (callers check each image first: grid_error).
  Result<std::vector<std::vector<float>>> forward_batch(ThreadPool& pool, const std::vector<VisionImage>& images,
                                                        const TensorTap* tap) const;
  // Why this grid cannot be encoded (ok when it can).
  Status grid_error(int grid_h, int grid_w) const;

 private:
  ActivationPrecision precision_ = ActivationPrecision::kFp32;
  struct Block {
    std::vector<float> norm1, norm2;
    Linear qkv, proj, gate, up, down;
  };
  VisionConfig config_;
  Linear patch_embed_;
  std::vector<Block> blocks_;
  std::vector<float> merger_norm_;
  Linear merger_fc1_, merger_fc2_;
};

}  // namespace rex::cpu
