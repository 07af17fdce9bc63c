// See vision.h. Buffers are plain std::vector<float>, row-major [rows, width].
#include "cpu/vision.h"

#include <algorithm>

#include "cpu/activation.h"
#include "cpu/attention_vision.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"

namespace rex::cpu {

WindowPlan plan_windows(int merged_h, int merged_w, int window, int unit) {
  WindowPlan plan;
  const int pad_h = window - merged_h % window;  // a full window when already a multiple
  const int pad_w = window - merged_w % window;
  const int windows_h = (merged_h + pad_h) / window;
  const int windows_w = (merged_w + pad_w) / window;
  plan.cu_seqlens.push_back(0);
  for (int wr = 0; wr < windows_h; ++wr) {
    for (int wc = 0; wc < windows_w; ++wc) {
      int valid = 0;
      for (int r = wr * window; r < (wr + 1) * window; ++r) {
        for (int c = wc * window; c < (wc + 1) * window; ++c) {
          if (r >= merged_h || c >= merged_w) continue;  // padding
          plan.window_index.push_back(r * merged_w + c);
          ++valid;
        }
      }
      if (valid > 0) plan.cu_seqlens.push_back(plan.cu_seqlens.back() + valid * unit);
    }
  }
  return plan;
}

void patch_positions_block_order(int grid_h, int grid_w, int merge, std::vector<int32_t>* rows,
                                 std::vector<int32_t>* cols) {
  rows->clear();
  cols->clear();
  for (int br = 0; br < grid_h / merge; ++br)
    for (int bc = 0; bc < grid_w / merge; ++bc)
      for (int i = 0; i < merge; ++i)
        for (int j = 0; j < merge; ++j) {
          rows->push_back(br * merge + i);
          cols->push_back(bc * merge + j);
        }
}

Status VisionEncoder::load(const VisionConfig& c, const VisionWeights& w) {
  config_ = c;
  const int hidden = c.hidden_size, inter = c.intermediate_size;
  const int patch_in = c.in_channels * c.temporal_patch_size * c.patch_size * c.patch_size;
  const int unit = c.spatial_merge_size * c.spatial_merge_size;
  if (hidden <= 0 || c.num_heads <= 0 || hidden % c.num_heads != 0 || c.head_dim() % 4 != 0)
    return Status(StatusCode::kInvalidArgument, "vision config: hidden_size " + std::to_string(hidden) +
                  " and num_heads " + std::to_string(c.num_heads) + " give no usable head dim");
  if (int(w.blocks.size()) != c.depth)
    return Status(StatusCode::kMissingTensor, "vision weights: " + std::to_string(w.blocks.size()) +
                  " blocks bound, config depth is " + std::to_string(c.depth));
  REX_RETURN_IF_ERROR(load_linear(w.patch_embed, nullptr, hidden, patch_in, "visual.patch_embed.proj", &patch_embed_));
  blocks_.resize(size_t(c.depth));
  for (int i = 0; i < c.depth; ++i) {
    const auto& bw = w.blocks[size_t(i)];
    auto& b = blocks_[size_t(i)];
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    REX_RETURN_IF_ERROR(widen_tensor(bw.norm1, hidden, p + "norm1.weight", &b.norm1));
    REX_RETURN_IF_ERROR(widen_tensor(bw.norm2, hidden, p + "norm2.weight", &b.norm2));
    REX_RETURN_IF_ERROR(load_linear(bw.qkv_w, bw.qkv_b, 3 * hidden, hidden, p + "attn.qkv", &b.qkv));
    REX_RETURN_IF_ERROR(load_linear(bw.proj_w, bw.proj_b, hidden, hidden, p + "attn.proj", &b.proj));
    REX_RETURN_IF_ERROR(load_linear(bw.gate_w, bw.gate_b, inter, hidden, p + "mlp.gate_proj", &b.gate));
    REX_RETURN_IF_ERROR(load_linear(bw.up_w, bw.up_b, inter, hidden, p + "mlp.up_proj", &b.up));
    REX_RETURN_IF_ERROR(load_linear(bw.down_w, bw.down_b, hidden, inter, p + "mlp.down_proj", &b.down));
  }
  REX_RETURN_IF_ERROR(widen_tensor(w.merger_norm, hidden, "visual.merger.ln_q.weight", &merger_norm_));
  REX_RETURN_IF_ERROR(load_linear(w.merger_fc1_w, w.merger_fc1_b, unit * hidden, unit * hidden,
                                  "visual.merger.mlp.0", &merger_fc1_));
  REX_RETURN_IF_ERROR(load_linear(w.merger_fc2_w, w.merger_fc2_b, c.out_hidden_size, unit * hidden,
                                  "visual.merger.mlp.2", &merger_fc2_));
  return Status::Ok();
}

VisionBatchPlan plan_vision_batch(const std::vector<PatchGrid>& grids, int merge, int window) {
  VisionBatchPlan b;
  const int unit = merge * merge;
  b.row_offset.push_back(0);
  b.window_seqlens.push_back(0);
  std::vector<int32_t> rows, cols;
  for (const PatchGrid& g : grids) {
    const int off = b.row_offset.back(), n = g.h * g.w;
    patch_positions_block_order(g.h, g.w, merge, &rows, &cols);
    WindowPlan plan = plan_windows(g.h / merge, g.w / merge, window, unit);
    for (size_t p = 0; p < plan.window_index.size(); ++p)
      for (int u = 0; u < unit; ++u) {
        const size_t src = size_t(plan.window_index[p]) * unit + size_t(u);
        b.gather.push_back(int32_t(off + int(src)));
        b.pos_rows.push_back(rows[src]);
        b.pos_cols.push_back(cols[src]);
      }
    for (size_t i = 1; i < plan.cu_seqlens.size(); ++i) {
      b.window_seqlens.push_back(off + plan.cu_seqlens[i]);
      b.max_window = std::max(b.max_window, plan.cu_seqlens[i] - plan.cu_seqlens[i - 1]);
    }
    b.max_image = std::max(b.max_image, n);
    b.row_offset.push_back(off + n);
    b.window_index.push_back(std::move(plan.window_index));
  }
  b.full_seqlens = b.row_offset;
  return b;
}

Status VisionEncoder::grid_error(int grid_h, int grid_w) const {
  const int merge = config_.spatial_merge_size;
  if (grid_h <= 0 || grid_w <= 0 || merge <= 0 || grid_h % merge || grid_w % merge)
    return Status(StatusCode::kInvalidArgument, "vision encoder: expected a grid divisible by " +
                  std::to_string(merge) + " but got " + std::to_string(grid_h) + "x" + std::to_string(grid_w));
  return Status::Ok();
}

Result<std::vector<float>> VisionEncoder::forward(ThreadPool& pool, const float* pixel_values, int grid_h,
                                                  int grid_w, const TensorTap* tap) const {
  auto out = forward_batch(pool, {VisionImage{pixel_values, PatchGrid{grid_h, grid_w}}}, tap);
  if (!out.ok()) return out.status();
  return std::move(out.value()[0]);
}

Result<std::vector<std::vector<float>>> VisionEncoder::forward_batch(ThreadPool& pool,
                                                                     const std::vector<VisionImage>& images,
                                                                     const TensorTap* tap) const {
  const VisionConfig& c = config_;
  const int merge = c.spatial_merge_size, unit = merge * merge;
  if (images.empty()) return std::vector<std::vector<float>>{};
  std::vector<PatchGrid> grids;
  for (const VisionImage& im : images) {
    REX_RETURN_IF_ERROR(grid_error(im.grid.h, im.grid.w));
    grids.push_back(im.grid);
  }
  const int window = c.window_size / merge / c.patch_size;
  const VisionBatchPlan plan = plan_vision_batch(grids, merge, window);
  const int n = plan.row_offset.back(), hidden = c.hidden_size, heads = c.num_heads, hd = c.head_dim();
  const int inter = c.intermediate_size;
  const int patch_in = c.in_channels * c.temporal_patch_size * c.patch_size * c.patch_size;
  const bool mlp_gelu = c.hidden_act.find("gelu") != std::string::npos;
  auto emit = [&](const std::string& name, const std::vector<float>& t, int rows, int cols) {
    if (tap && *tap) (*tap)(name, t.data(), {rows, cols});
  };

  // 1. Patch embed, over every image's rows at once.
  const float* pixels = images[0].pixel_values;
  std::vector<float> joined;
  if (images.size() > 1) {
    joined.resize(size_t(n) * patch_in);
    for (size_t i = 0; i < images.size(); ++i)
      std::copy_n(images[i].pixel_values, size_t(plan.row_offset[i + 1] - plan.row_offset[i]) * patch_in,
                  &joined[size_t(plan.row_offset[i]) * patch_in]);
    pixels = joined.data();
  }
  std::vector<float> x(size_t(n) * hidden);
  linear(pool, pixels, n, patch_embed_, x.data(), precision_);
  emit("vision.patch_embed", x, n, hidden);

  // 2-3. Window permutation of rows; rotary ids in the permuted order.
  {
    std::vector<float> permuted(x.size());
    for (int p = 0; p < n; ++p)
      std::copy_n(&x[size_t(plan.gather[size_t(p)]) * hidden], hidden, &permuted[size_t(p) * hidden]);
    x.swap(permuted);
  }
  const RotaryTable rope = vision_rotary_table(plan.pos_rows, plan.pos_cols, hd);

  // 4. Blocks.
  std::vector<float> h(x.size()), qkv(size_t(n) * 3 * hidden), attn(x.size()), tmp(x.size());
  std::vector<float> gate(size_t(n) * inter), up(size_t(n) * inter);
  // h = norm1(x) of the first block; each half-block ends with the fused
  // x += delta; h = next_norm(x) (the next block's norm1, or the merger's ln_q).
  rmsnorm(pool, x.data(), n, hidden, c.depth > 0 ? blocks_[0].norm1.data() : merger_norm_.data(), c.rms_norm_eps,
          h.data());
  for (int bi = 0; bi < c.depth; ++bi) {
    const Block& b = blocks_[size_t(bi)];
    const bool full = std::find(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end(), bi) !=
                      c.fullatt_block_indexes.end();
    linear(pool, h.data(), n, b.qkv, qkv.data(), precision_);
    apply_rotary(pool, qkv.data(), n, heads, 3 * hidden, rope);            // q
    apply_rotary(pool, qkv.data() + hidden, n, heads, 3 * hidden, rope);   // k
    attention_varlen(pool, qkv.data(), qkv.data() + hidden, qkv.data() + 2 * hidden, 3 * hidden, heads, hd,
                     full ? plan.full_seqlens : plan.window_seqlens, attn.data());
    linear(pool, attn.data(), n, b.proj, tmp.data(), precision_);
    add_rmsnorm(pool, x.data(), tmp.data(), n, hidden, b.norm2.data(), c.rms_norm_eps, h.data());
    linear(pool, h.data(), n, b.gate, gate.data(), precision_);
    linear(pool, h.data(), n, b.up, up.data(), precision_);
    swiglu_inplace(pool, gate.data(), up.data(), int64_t(gate.size()), mlp_gelu);
    linear(pool, gate.data(), n, b.down, tmp.data(), precision_);
    const float* next_norm = bi + 1 < c.depth ? blocks_[size_t(bi) + 1].norm1.data() : merger_norm_.data();
    add_rmsnorm(pool, x.data(), tmp.data(), n, hidden, next_norm, c.rms_norm_eps, h.data());
    if (tap && *tap) emit("vision.block." + std::to_string(bi), x, n, hidden);
  }

  // 5. Merger (norm per patch row, then unit rows -> one token), then each
  // image's tokens out of the batch, its own permutation reversed.
  const int tokens = n / unit, out_hidden = c.out_hidden_size;
  // h = ln_q(x), from the last add_rmsnorm.
  std::vector<float> mid(size_t(tokens) * unit * hidden), merged(size_t(tokens) * out_hidden);
  linear(pool, h.data(), tokens, merger_fc1_, mid.data(), precision_);
  gelu_inplace(pool, mid.data(), int64_t(mid.size()));
  linear(pool, mid.data(), tokens, merger_fc2_, merged.data(), precision_);
  emit("vision.merger", merged, tokens, out_hidden);

  std::vector<std::vector<float>> outs(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const std::vector<int>& index = plan.window_index[i];
    const size_t first = size_t(plan.row_offset[i] / unit);
    std::vector<float>& out = outs[i];
    out.resize(index.size() * size_t(out_hidden));
    for (size_t p = 0; p < index.size(); ++p)
      std::copy_n(&merged[(first + p) * out_hidden], out_hidden, &out[size_t(index[p]) * out_hidden]);
  }
  return outs;
}

}  // namespace rex::cpu
