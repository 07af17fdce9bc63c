// See cuda_vision.h. Host work per batch is only the window plan (pure
// integer bookkeeping shared with the CPU encoder) and its upload.
#include "cuda/cuda_vision.h"

#include <algorithm>
#include <string>

#include "cpu/rope.h"
#include "cpu/vision.h"
#include "cuda/activation.cuh"
#include "cuda/attention_vision.cuh"
#include "cuda/embedding.cuh"
#include "cuda/norm.cuh"
#include "cuda/rope.cuh"
#include "common/bf16_host.h"

namespace rex::cuda {

void VisionRunner::init(const VisionConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream) {
  config_ = config;
  w_ = weights;
  gemm_ = gemm;
  stream_ = stream;
}

size_t VisionRunner::workspace_bytes() const {
  return residual_.bytes() + patch_.bytes() + h_.bytes() + qkv_.bytes() + attn_.bytes() + proj_.bytes() +
         gate_up_.bytes() + act_.bytes() + mid_.bytes() + merged_.bytes();
}

Status EmbeddingBuffers::take(size_t count, DeviceBuffer<bf16>* out) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = kept_.size();
    for (size_t i = 0; i < kept_.size(); ++i)
      if (kept_[i].size() >= count && (best == kept_.size() || kept_[i].size() < kept_[best].size())) best = i;
    if (best < kept_.size()) {
      *out = std::move(kept_[best]);
      kept_.erase(kept_.begin() + std::ptrdiff_t(best));
      return Status::Ok();
    }
  }
  return out->allocate(count, "the image embeddings");
}

void EmbeddingBuffers::give_back(DeviceBuffer<bf16> buffer) {
  if (!buffer.get()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (kept_.size() < kKept) {
    kept_.push_back(std::move(buffer));
    return;
  }
  // Full: keep the larger of it and the smallest kept one (the other is freed).
  auto smallest = std::min_element(kept_.begin(), kept_.end(),
                                   [](const DeviceBuffer<bf16>& a, const DeviceBuffer<bf16>& b) { return a.size() < b.size(); });
  if (smallest->size() < buffer.size()) std::swap(*smallest, buffer);
}

size_t EmbeddingBuffers::kept() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return kept_.size();
}

Status VisionRunner::ensure_buffers(int n) {
  const size_t h = size_t(config_.hidden_size), vp = size_t(w_->vision_inter_padded), rows = size_t(n);
  REX_RETURN_IF_ERROR(residual_.ensure(rows * h, "the vision residual stream"));
  REX_RETURN_IF_ERROR(patch_.ensure(rows * h, "the patch embeddings"));
  REX_RETURN_IF_ERROR(h_.ensure(rows * h, "the vision normed rows"));
  REX_RETURN_IF_ERROR(qkv_.ensure(rows * 3 * h, "the vision qkv rows"));
  REX_RETURN_IF_ERROR(attn_.ensure(rows * h, "the vision attention output"));
  REX_RETURN_IF_ERROR(proj_.ensure(rows * h, "the vision projection output"));
  REX_RETURN_IF_ERROR(gate_up_.ensure(rows * 2 * vp, "the vision gate/up rows"));
  REX_RETURN_IF_ERROR(act_.ensure(rows * vp, "the vision SwiGLU rows"));
  REX_RETURN_IF_ERROR(mid_.ensure(rows * h, "the merger's hidden rows"));
  return Status::Ok();
}

Status VisionRunner::emit(const TensorTap* tap, const std::string& name, const float* f32, const bf16* b16, int rows,
                          int cols) {
  if (!tap || !*tap) return Status::Ok();
  std::vector<float> host(size_t(rows) * cols);
  if (f32) {
    REX_CUDA_TRY(cudaMemcpyAsync(host.data(), f32, host.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  } else {
    std::vector<uint16_t> bits(host.size());
    REX_CUDA_TRY(cudaMemcpyAsync(bits.data(), b16, bits.size() * 2, cudaMemcpyDeviceToHost, stream_));
    REX_CUDA_TRY(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i < host.size(); ++i) host[i] = bf16_bits_to_float(bits[i]);
  }
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  (*tap)(name, host.data(), {rows, cols});
  return Status::Ok();
}

Status VisionRunner::grid_error(int grid_h, int grid_w) const {
  const int merge = config_.spatial_merge_size;
  if (grid_h <= 0 || grid_w <= 0 || merge <= 0 || grid_h % merge || grid_w % merge)
    return Status(StatusCode::kInvalidArgument, "vision encoder: expected a grid divisible by " + std::to_string(merge) +
                  " but got " + std::to_string(grid_h) + "x" + std::to_string(grid_w));
  return Status::Ok();
}

Result<VisionOutput> VisionRunner::forward(const bf16* pixels, int grid_h, int grid_w, const TensorTap* tap) {
  auto out = forward_batch(pixels, {cpu::PatchGrid{grid_h, grid_w}}, tap);
  if (!out.ok()) return out.status();
  return std::move(out.value()[0]);
}

// The second pass of kProfilePatches patches or more is profiled (the first
// warmed the kernels' module loads and cuBLASLt's plans); taps copy to the
// host between kernels, so a tapped pass neither counts nor is profiled.
Result<std::vector<VisionOutput>> VisionRunner::forward_batch(const bf16* pixels, const std::vector<cpu::PatchGrid>& grids,
                                                              const TensorTap* tap) {
  int64_t patches = 0;
  for (const cpu::PatchGrid& g : grids) patches += int64_t(g.h) * g.w;
  const bool profiled = !profile_path_.empty() && !(tap && *tap) && patches >= kProfilePatches && ++profiled_passes_ == 2;
  if (!profiled) return encode(pixels, grids, tap);
  StepProfile profile(stream_);
  profile_ = &profile;
  auto out = encode(pixels, grids, tap);
  profile_ = nullptr;
  if (!out.ok()) return out;
  profile.write(profile_path_);
  return out;
}

// Marks (step_profile.h): bytes the weights once plus the rows in and out
// (bf16; the residual stream fp32), FLOPs 2 per multiply-add: a GEMM
// 2·rows·k·n at the shapes it runs (the MLP at its padded width), attention
// 4·heads·head_dim·(sum over the segments of their length squared: every
// query sees its window's, or in the full blocks its image's, keys; QK^T and
// PV). Norms, rotary, gather and activations count bytes only.
Result<std::vector<VisionOutput>> VisionRunner::encode(const bf16* pixels, const std::vector<cpu::PatchGrid>& grids,
                                                       const TensorTap* tap) {
  const VisionConfig& c = config_;
  const int merge = c.spatial_merge_size, unit = merge * merge;
  if (grids.empty()) return std::vector<VisionOutput>{};
  for (const cpu::PatchGrid& g : grids) REX_RETURN_IF_ERROR(grid_error(g.h, g.w));
  const int window = c.window_size / merge / c.patch_size;
  const cpu::VisionBatchPlan plan = cpu::plan_vision_batch(grids, merge, window);
  const int n = plan.row_offset.back(), hidden = c.hidden_size, heads = c.num_heads, hd = c.head_dim();
  const int patch_in = c.in_channels * c.temporal_patch_size * c.patch_size * c.patch_size;
  const int vp = w_->vision_inter_padded;
  const bool gelu_mlp = c.hidden_act.find("gelu") != std::string::npos;
  REX_RETURN_IF_ERROR(ensure_buffers(n));

  // The permutation's gather, rotary ids in permuted order, both seqlens.
  const std::vector<int32_t> cu_windows(plan.window_seqlens.begin(), plan.window_seqlens.end());
  const std::vector<int32_t> cu_full(plan.full_seqlens.begin(), plan.full_seqlens.end());
  const int windows = int(cu_windows.size()) - 1, images = int(grids.size());
  const std::vector<float> inv_freq = cpu::rotary_inv_freq(10000.0f, hd / 2);
  const double rows = n, h = hidden, vpd = vp;
  // The (query, key) pairs per head of a window block and of a full block: segment lengths squared, summed.
  auto pairs = [](const std::vector<int32_t>& cu) {
    double sum = 0;
    for (size_t i = 0; i + 1 < cu.size(); ++i) sum += double(cu[i + 1] - cu[i]) * double(cu[i + 1] - cu[i]);
    return sum;
  };
  const double window_pairs = profile_ ? pairs(cu_windows) : 0, full_pairs = profile_ ? pairs(cu_full) : 0;
  if (profile_) {
    profile_->field("patches", n);
    profile_->field("images", images);
    profile_->field("windows", windows);
  }
  mark("inputs (H2D)", 4.0 * (plan.gather.size() + plan.pos_rows.size() + plan.pos_cols.size() + cu_windows.size() +
                              cu_full.size() + inv_freq.size()));
  REX_RETURN_IF_ERROR(gather_.upload(plan.gather.data(), plan.gather.size(), stream_, "the window permutation"));
  REX_RETURN_IF_ERROR(pos_rows_.upload(plan.pos_rows.data(), plan.pos_rows.size(), stream_, "the vision rotary rows"));
  REX_RETURN_IF_ERROR(pos_cols_.upload(plan.pos_cols.data(), plan.pos_cols.size(), stream_, "the vision rotary columns"));
  REX_RETURN_IF_ERROR(cu_windows_.upload(cu_windows.data(), cu_windows.size(), stream_, "the window offsets"));
  REX_RETURN_IF_ERROR(cu_full_.upload(cu_full.data(), cu_full.size(), stream_, "the full-attention offsets"));
  REX_RETURN_IF_ERROR(inv_freq_.upload(inv_freq.data(), inv_freq.size(), stream_, "the vision rotary frequencies"));

  // 1. Patch embed; 2-3. permuted into the fp32 residual stream.
  mark("patch_embed (cuBLASLt)", 2.0 * patch_in * h + 2 * rows * (patch_in + h), 2 * rows * patch_in * h);
  REX_RETURN_IF_ERROR(gemm_->linear_bf16(pixels, n, patch_in, patch_in, w_->patch_embed, nullptr, hidden, patch_.get(), stream_));
  REX_RETURN_IF_ERROR(emit(tap, "vision.patch_embed", nullptr, patch_.get(), n, hidden));
  mark("window_permute", 6 * rows * h);  // a bf16 row in, an fp32 row out
  REX_RETURN_IF_ERROR(embed_rows(gather_.get(), nullptr, n, patch_.get(), n, nullptr, hidden, residual_.get(), stream_));

  // 4. Blocks. Each block's closing residual add is fused into the next norm.
  mark("rmsnorm", 6 * rows * h);
  REX_RETURN_IF_ERROR(rmsnorm_bf16(residual_.get(), n, hidden, w_->vision_blocks[0].norm1, c.rms_norm_eps, h_.get(), stream_));
  for (int bi = 0; bi < c.depth; ++bi) {
    const DeviceVisionBlock& b = w_->vision_blocks[size_t(bi)];
    const bool full = std::find(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end(), bi) !=
                      c.fullatt_block_indexes.end();
    mark("qkv_proj (cuBLASLt)", 2 * h * 3 * h + 2 * rows * 4 * h, 2 * rows * h * 3 * h);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(h_.get(), n, hidden, hidden, b.qkv_w, b.qkv_b, 3 * hidden, qkv_.get(), stream_));
    mark("rope_2d", 2 * rows * 2 * h * 2);  // q and k, in and out
    REX_RETURN_IF_ERROR(vision_rope_bf16(qkv_.get(), n, heads, hd, pos_rows_.get(), pos_cols_.get(), inv_freq_.get(), stream_));
    mark(full ? "attention (full)" : "attention (window)", 2 * rows * 4 * h,  // q, k, v once in, out
         4.0 * heads * hd * (full ? full_pairs : window_pairs));
    REX_RETURN_IF_ERROR(attention_vision_bf16(qkv_.get(), n, heads, hd, full ? cu_full_.get() : cu_windows_.get(),
                                              full ? images : windows, full ? plan.max_image : plan.max_window,
                                              attn_.get(), stream_));
    mark("o_proj (cuBLASLt)", 2 * h * h + 2 * rows * 2 * h, 2 * rows * h * h);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(attn_.get(), n, hidden, hidden, b.proj_w, b.proj_b, hidden, proj_.get(), stream_));
    mark("add_rmsnorm", 12 * rows * h);  // residual fp32 in and out, the addend in, h out
    REX_RETURN_IF_ERROR(add_rmsnorm_bf16(residual_.get(), proj_.get(), n, hidden, b.norm2, c.rms_norm_eps, h_.get(), stream_));
    mark("gate_up_proj (cuBLASLt)", 2 * h * 2 * vpd + 2 * rows * (h + 2 * vpd), 2 * rows * h * 2 * vpd);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(h_.get(), n, hidden, hidden, b.gate_up_w, b.gate_up_b, 2 * vp, gate_up_.get(), stream_));
    mark(gelu_mlp ? "gelu_glu" : "swiglu", 2 * rows * 3 * vpd);
    REX_RETURN_IF_ERROR(swiglu_bf16(gate_up_.get(), n, vp, act_.get(), gelu_mlp, stream_));
    mark("down_proj (cuBLASLt)", 2 * vpd * h + 2 * rows * (vpd + h), 2 * rows * vpd * h);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(act_.get(), n, vp, vp, b.down_w, b.down_b, hidden, proj_.get(), stream_));
    // The next norm: the next block's norm1, or the merger's ln_q after the last block.
    const bf16* next_norm = bi + 1 < c.depth ? w_->vision_blocks[size_t(bi + 1)].norm1 : w_->merger_norm;
    mark("add_rmsnorm", 12 * rows * h);
    REX_RETURN_IF_ERROR(add_rmsnorm_bf16(residual_.get(), proj_.get(), n, hidden, next_norm, c.rms_norm_eps, h_.get(), stream_));
    REX_RETURN_IF_ERROR(emit(tap, "vision.block." + std::to_string(bi), residual_.get(), nullptr, n, hidden));
  }

  // 5. Merger: unit consecutive normed rows form one [unit*hidden] row. One
  // image writes its embeddings directly; a batch writes merged_, then each
  // image's rows are copied out (image i's are contiguous, from row_offset[i]/unit).
  const int tokens = n / unit, wide = unit * hidden, out_hidden = c.out_hidden_size;
  const double t = tokens, wd = wide, od = out_hidden;
  mark("outputs (allocation)", 0);  // host time only, while the GPU catches up
  std::vector<VisionOutput> outs(grids.size());
  for (size_t i = 0; i < grids.size(); ++i) {
    VisionOutput& o = outs[i];
    o.count = (plan.row_offset[i + 1] - plan.row_offset[i]) / unit;
    REX_RETURN_IF_ERROR(embedding_buffers_->take(size_t(o.count) * out_hidden, &o.tokens));
    o.recycle = embedding_buffers_;
    o.window_index = plan.window_index[i];
  }
  bf16* merged = outs.size() == 1 ? outs[0].tokens.get() : nullptr;
  if (!merged) {
    REX_RETURN_IF_ERROR(merged_.ensure(size_t(tokens) * out_hidden, "the batch's image embeddings"));
    merged = merged_.get();
  }
  mark("merger_fc1 (cuBLASLt)", 2 * wd * wd + 2 * t * 2 * wd, 2 * t * wd * wd);
  REX_RETURN_IF_ERROR(gemm_->linear_bf16(h_.get(), tokens, wide, wide, w_->merger_fc1_w, w_->merger_fc1_b, wide, mid_.get(), stream_));
  mark("merger_gelu", 2 * t * wd * 2);
  REX_RETURN_IF_ERROR(gelu_bf16(mid_.get(), int64_t(tokens) * wide, stream_));
  mark("merger_fc2 (cuBLASLt)", 2 * wd * od + 2 * t * (wd + od), 2 * t * wd * od);
  REX_RETURN_IF_ERROR(gemm_->linear_bf16(mid_.get(), tokens, wide, wide, w_->merger_fc2_w, w_->merger_fc2_b, out_hidden,
                                         merged, stream_));
  REX_RETURN_IF_ERROR(emit(tap, "vision.merger", nullptr, merged, tokens, out_hidden));
  if (outs.size() > 1) {
    mark("split per image (D2D)", 2 * t * od * 2);
    for (size_t i = 0; i < outs.size(); ++i)
      REX_CUDA_TRY(cudaMemcpyAsync(outs[i].tokens.get(), merged + size_t(plan.row_offset[i] / unit) * out_hidden,
                                   size_t(outs[i].count) * out_hidden * sizeof(bf16), cudaMemcpyDeviceToDevice,
                                   stream_));
  }
  if (profile_) profile_->end();
  return outs;
}

}  // namespace rex::cuda
