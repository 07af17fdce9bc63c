// See cuda_text.h.
#include "cuda/cuda_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "cpu/rope.h"
#include "cuda/activation.cuh"
#include "cuda/attention_decode.cuh"
#include "cuda/attention_prefill.cuh"
#include "cuda/embedding.cuh"
#include "cuda/gemv.cuh"
#include "cuda/norm.cuh"
#include "cuda/paged_kv.cuh"

namespace rex::cuda {

namespace {
// Prefill runs in chunks of at most this many rows: it bounds the activation
// buffers (the gate/up rows are 44 KB each) whatever the prompt length.
constexpr int kPrefillChunk = 2048;

Status tap_rows(const TensorTap* tap, const std::string& name, const float* dev, int rows, int cols, cudaStream_t s) {
  if (!tap || !*tap) return Status::Ok();
  std::vector<float> host(size_t(rows) * cols);
  REX_CUDA_TRY(cudaMemcpyAsync(host.data(), dev, host.size() * sizeof(float), cudaMemcpyDeviceToHost, s));
  REX_CUDA_TRY(cudaStreamSynchronize(s));
  (*tap)(name, host.data(), {rows, cols});
  return Status::Ok();
}
}  // namespace

Status TextRunner::Buffers::ensure(const TextConfig& c, int n) {
  if (n <= rows) return Status::Ok();
  const size_t r = size_t(n), hidden = size_t(c.hidden_size), hd = size_t(c.head_dim());
  const size_t qkv_w = (size_t(c.num_heads) + 2 * size_t(c.num_kv_heads)) * hd, inter = size_t(c.intermediate_size);
  REX_RETURN_IF_ERROR(residual.allocate(r * hidden, "the text residual stream"));
  REX_RETURN_IF_ERROR(h.allocate(r * hidden, "the text normed rows"));
  REX_RETURN_IF_ERROR(qkv.allocate(r * qkv_w, "the text qkv rows"));
  REX_RETURN_IF_ERROR(attn.allocate(r * size_t(c.num_heads) * hd, "the text attention output"));
  REX_RETURN_IF_ERROR(o.allocate(r * hidden, "the text o_proj output"));
  REX_RETURN_IF_ERROR(gate_up.allocate(r * 2 * inter, "the text gate/up rows"));
  REX_RETURN_IF_ERROR(act.allocate(r * inter, "the text SwiGLU rows"));
  REX_RETURN_IF_ERROR(down.allocate(r * hidden, "the text down_proj output"));
  rows = n;
  return Status::Ok();
}

size_t TextRunner::Buffers::bytes() const {
  return residual.bytes() + h.bytes() + qkv.bytes() + attn.bytes() + o.bytes() + gate_up.bytes() + act.bytes() + down.bytes();
}

size_t TextRunner::workspace_bytes() const {
  return pre_.bytes() + dec_.bytes() + step_.bytes() + dec_logits_.bytes() + attn_workspace_.bytes() + pre_logits_.bytes() +
         pre_head_rows_.bytes();
}

TextRunner::~TextRunner() {
  for (auto& [bucket, exec] : graphs_) cudaGraphExecDestroy(exec);
  if (step_host_) cudaFreeHost(step_host_);
  if (logits_pinned_) cudaFreeHost(logits_pinned_);
}

bool TextRunner::on_gemv(const std::vector<DecodeSequence>& batch, int bucket) const {
  if (!use_gemv_) return false;
  return bucket <= gemv_max_rows_ || one_sequence(batch);
}

int TextRunner::bucket_for(int batch) const {
  int b = 1;
  while (b < batch) b *= 2;
  return std::min(b, max_batch_);
}

// Steps on the GEMV (1-2 rows, a lone request's jump-forward rows, every
// step under batchInvariant) keep one split count, 16: a row's attention then
// depends on its own length alone, so a request decodes to the same bits
// alone, batched, or with jump-forward rows (16 sat between the best batch-1
// (16-32) and batch-64 counts measured on the H200, NOTES.md 5.3). cuBLASLt
// steps give up that invariance anyway, so their count follows the bucket:
// with many sequences, 16 splits leave each CTA ~80 of a 1300-token context's
// keys, so its fixed costs (Q, the 4-warp merge, the fp32 partials) outweigh
// the streaming. The counts are the graphed step's best on the H200 at
// 1200-token contexts (device-check splits, NOTES.md 5.3): 16 / 8 / 4 / 2
// splits took 3.09 / 2.95 / 2.92 / 3.24 ms at 16 rows, 3.47 / 3.31 / 3.10 /
// 3.31 at 32, 4.30 / 3.94 / 3.96 / 3.64 at 64, 5.83 / 5.23 / 4.96 / 5.14 at 128.
int TextRunner::splits_for(int bucket, bool gemv_path) const {
  if (gemv_path) return 16;
  if (!wide_step_splits_.empty()) {
    const auto it = wide_step_splits_.lower_bound(bucket);
    return it != wide_step_splits_.end() ? it->second : wide_step_splits_.rbegin()->second;
  }
  if (bucket <= 8) return 16;
  return bucket == 64 ? 2 : 4;
}

bool TextRunner::distinct_sequences(const std::vector<DecodeSequence>& batch) {
  std::vector<const std::vector<int32_t>*> blocks;
  blocks.reserve(batch.size());
  for (const DecodeSequence& s : batch) blocks.push_back(s.blocks);
  std::sort(blocks.begin(), blocks.end());
  return std::adjacent_find(blocks.begin(), blocks.end()) == blocks.end();
}

bool TextRunner::one_sequence(const std::vector<DecodeSequence>& batch) {
  for (const DecodeSequence& s : batch)
    if (s.blocks != batch.front().blocks) return false;
  return !batch.empty();
}

Status TextRunner::init(const TextConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream,
                        KvArena arena, int spare_block, int max_batch, int max_blocks_per_sequence, int seen_masks) {
  config_ = config;
  w_ = weights;
  gemm_ = gemm;
  stream_ = stream;
  arena_ = arena;
  spare_block_ = spare_block;
  max_batch_ = 1;
  while (max_batch_ < max_batch) max_batch_ *= 2;
  max_blocks_ = std::max(1, max_blocks_per_sequence);
  const std::vector<float> inv = cpu::rotary_inv_freq(config.rope_theta, config.head_dim());
  REX_RETURN_IF_ERROR(inv_freq_.upload(inv.data(), inv.size(), stream_, "the M-RoPE frequencies"));
  REX_RETURN_IF_ERROR(dec_.ensure(config_, max_batch_));
  const size_t step_ints = size_t(7) * max_batch_ + size_t(max_batch_) * max_blocks_;
  REX_RETURN_IF_ERROR(step_.allocate(step_ints, "the decode step inputs"));
  REX_CUDA_TRY(cudaMallocHost(&step_host_, step_ints * sizeof(int32_t)));
  REX_RETURN_IF_ERROR(dec_logits_.allocate(size_t(max_batch_) * config_.vocab_size, "the decode logits"));
  REX_RETURN_IF_ERROR(dec_head_logits_.allocate(size_t(max_batch_) * DecodeSampler::kRestrictedRows,
                                                "the restricted head's logits"));
  REX_RETURN_IF_ERROR(sampler_.init(config_.vocab_size, max_batch_, seen_masks, stream_));
  REX_CUDA_TRY(cudaMallocHost(&logits_pinned_, size_t(max_batch_) * config_.vocab_size * sizeof(float)));
  size_t ws = 0;
  for (int b = 1; b <= max_batch_; b *= 2)
    for (bool gemv_path : {false, true})
      ws = std::max(ws, attention_decode_workspace_floats(b, config_.num_heads, config_.head_dim(),
                                                          splits_for(b, gemv_path)));
  REX_RETURN_IF_ERROR(attn_workspace_.allocate(ws, "the decode attention workspace"));
  return Status::Ok();
}

DecodeRope TextRunner::step_rope(int layer) const {
  const KvPlane plane = arena_.layer(layer);
  DecodeRope rope;
  rope.positions = step_positions();
  rope.inv_freq = inv_freq_.get();
  rope.section_t = config_.mrope_section[0];
  rope.section_h = config_.mrope_section[1];
  rope.dest_rows = step_dest();
  rope.k = plane.k;
  rope.v = plane.v;
  return rope;
}

// The decode layers on the GEMV: bias, residual add and SwiGLU in the
// projections' epilogues, the norms alone. Each GEMV starts streaming its
// weights while the kernel before it finishes (programmatic dependent launch).
Status TextRunner::decode_layers_gemv(int bucket, bool rope_in_attention) {
  const TextConfig& c = config_;
  const int hidden = c.hidden_size, hd = c.head_dim(), hq = c.num_heads, hkv = c.num_kv_heads;
  const int qkv_width = (hq + 2 * hkv) * hd, inter = c.intermediate_size;
  const MropeSection section{c.mrope_section[0], c.mrope_section[1], c.mrope_section[2]};
  const int splits = splits_for(bucket, true);
  // Marks as in layers(): bytes the weights once (the GEMV's floor), FLOPs 2·rows·k·n.
  const double act = 2.0 * bucket, kv_bytes = double(profile_kv_tokens_) * hkv * hd * 2 * 2;
  const double rows = bucket, attention_flops = 4.0 * hq * hd * double(profile_attention_keys_);
  auto project = [&](GemvEpilogue e, const bf16* x, int k, const bf16* w, int n) {
    GemvArgs a;
    a.epilogue = e;
    a.x = x;
    a.lda = k;
    a.m = bucket;
    a.w = w;
    a.k = k;
    a.n = n;
    a.overlap_previous = true;
    return a;
  };
  // A projection of the RMSNorm of the residual stream (the norm in its prologue).
  auto project_normed = [&](GemvEpilogue e, const bf16* norm_weight, const bf16* w, int n) {
    GemvArgs a = project(e, nullptr, hidden, w, n);
    a.norm_input = dec_.residual.get();
    a.norm_weight = norm_weight;
    a.norm_eps = c.rms_norm_eps;
    return a;
  };
  auto qkv_of = [&](int li) {
    const DeviceTextLayer& l = w_->text_layers[size_t(li)];
    GemvArgs qkv = project_normed(GemvEpilogue::kStoreBf16, l.input_norm, l.qkv_w, qkv_width);
    qkv.bias = l.qkv_b;
    qkv.out_bf16 = dec_.qkv.get();
    return qkv;
  };
  for (int li = 0; li < c.num_layers; ++li) {
    const DeviceTextLayer& l = w_->text_layers[size_t(li)];
    mark("qkv_proj", 2.0 * qkv_width * hidden, 2 * rows * hidden * qkv_width);
    REX_RETURN_IF_ERROR(gemv(qkv_of(li), stream_));
    if (!rope_in_attention) {
      mark("mrope_kv_write", act * qkv_width * 2);
      REX_RETURN_IF_ERROR(mrope_qkv_to_cache_bf16(dec_.qkv.get(), bucket, hq, hkv, hd, step_positions(),
                                                  inv_freq_.get(), section, step_dest(), arena_.layer(li), stream_));
    }
    const KvPlane plane = arena_.layer(li);
    PagedKv kv{plane.k, plane.v, arena_.block_size, hkv, hd};
    mark(rope_in_attention ? "attention (+rotary, kv write)" : "attention", kv_bytes, attention_flops);
    const DecodeRope rope = step_rope(li);
    REX_RETURN_IF_ERROR(attention_decode_bf16(dec_.qkv.get(), qkv_width, bucket, hq, kv, step_tables(), max_blocks_,
                                              step_lengths(), splits, attn_workspace_.get(), dec_.attn.get(), stream_,
                                              decode_merge(splits, bucket), rope_in_attention ? &rope : nullptr,
                                              decode_overlap(splits, bucket)));
    GemvArgs o = project(GemvEpilogue::kAddResidual, dec_.attn.get(), hq * hd, l.o_w, hidden);
    o.residual = dec_.residual.get();
    GemvArgs gate_up = project_normed(GemvEpilogue::kSwiglu, l.post_norm, l.gate_up_w, inter);
    gate_up.pair_offset = inter;
    gate_up.out_bf16 = dec_.act.get();
    GemvArgs down = project(GemvEpilogue::kAddResidual, dec_.act.get(), inter, l.down_w, hidden);
    down.residual = dec_.residual.get();
    mark("o_proj+residual", 2.0 * hq * hd * hidden, 2 * rows * hq * hd * hidden);
    REX_RETURN_IF_ERROR(gemv(o, stream_));
    mark("gate_up_proj+swiglu", 4.0 * inter * hidden, 2 * rows * hidden * 2 * inter);
    REX_RETURN_IF_ERROR(gemv(gate_up, stream_));
    mark("down_proj+residual", 2.0 * inter * hidden, 2 * rows * inter * hidden);
    REX_RETURN_IF_ERROR(gemv(down, stream_));
  }
  return Status::Ok();
}

Status TextRunner::layers(Buffers& b, int rows, const int32_t* positions_dev, const int32_t* dest_rows_dev,
                          const AttentionFn& attention, const TensorTap* tap, bool rope_in_attention) {
  const TextConfig& c = config_;
  const int hidden = c.hidden_size, hd = c.head_dim(), hq = c.num_heads, hkv = c.num_kv_heads;
  const int qkv_width = (hq + 2 * hkv) * hd, inter = c.intermediate_size;
  const MropeSection section{c.mrope_section[0], c.mrope_section[1], c.mrope_section[2]};
  // The marks name the kernels of a profiled decode step or prefill
  // (step_profile.h). Bytes: weights once, plus the rows' activations (bf16;
  // the residual stream fp32) in and out. FLOPs, 2 per multiply-add: a GEMM
  // 2·rows·k·n (biases, norms, rope and activations not counted);
  // attention 4·heads·head_dim·(keys each row sees, summed over the rows):
  // QK^T and PV, 2·head_dim each per (query, key) pair and head. A causal
  // prefill chunk of r rows after `past` cached tokens sees
  // r·past + r(r+1)/2 keys, a decode row its length (the masked halves of
  // the diagonal tiles the kernel computes are not counted).
  const double act = 2.0 * rows, kv_bytes = double(profile_kv_tokens_) * hkv * hd * 2 * 2;
  const double m = rows, attention_flops = 4.0 * hq * hd * double(profile_attention_keys_);
  REX_RETURN_IF_ERROR(tap_rows(tap, "text.embed", b.residual.get(), rows, hidden, stream_));
  mark("rmsnorm", act * hidden * 3);
  REX_RETURN_IF_ERROR(rmsnorm_bf16(b.residual.get(), rows, hidden, w_->text_layers[0].input_norm, c.rms_norm_eps,
                                   b.h.get(), stream_));
  for (int li = 0; li < c.num_layers; ++li) {
    const DeviceTextLayer& l = w_->text_layers[size_t(li)];
    mark("qkv_proj (cuBLASLt)", 2.0 * qkv_width * hidden + act * (hidden + qkv_width), 2 * m * hidden * qkv_width);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(b.h.get(), rows, hidden, hidden, l.qkv_w, l.qkv_b, qkv_width, b.qkv.get(), stream_));
    if (!rope_in_attention) {
      mark("mrope_kv_write", act * qkv_width * 2);
      REX_RETURN_IF_ERROR(mrope_qkv_to_cache_bf16(b.qkv.get(), rows, hq, hkv, hd, positions_dev, inv_freq_.get(),
                                                  section, dest_rows_dev, arena_.layer(li), stream_));
    }
    mark(rope_in_attention ? "attention (+rotary, kv write)" : "attention", kv_bytes + act * 2 * hq * hd,
         attention_flops);  // + q in, out
    REX_RETURN_IF_ERROR(attention(li, b.qkv.get(), b.attn.get()));
    mark("o_proj (cuBLASLt)", 2.0 * hq * hd * hidden + act * (hq * hd + hidden), 2 * m * hq * hd * hidden);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(b.attn.get(), rows, hq * hd, hq * hd, l.o_w, nullptr, hidden, b.o.get(), stream_));
    mark("add_rmsnorm", act * hidden * 6);  // residual fp32 in and out, the addend in, h out
    REX_RETURN_IF_ERROR(add_rmsnorm_bf16(b.residual.get(), b.o.get(), rows, hidden, l.post_norm, c.rms_norm_eps, b.h.get(), stream_));
    mark("gate_up_proj (cuBLASLt)", 4.0 * inter * hidden + act * (hidden + 2 * inter), 2 * m * hidden * 2 * inter);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(b.h.get(), rows, hidden, hidden, l.gate_up_w, nullptr, 2 * inter, b.gate_up.get(), stream_));
    mark("swiglu", act * 3 * inter);
    REX_RETURN_IF_ERROR(swiglu_bf16(b.gate_up.get(), rows, inter, b.act.get(), false, stream_));
    mark("down_proj (cuBLASLt)", 2.0 * inter * hidden + act * (inter + hidden), 2 * m * inter * hidden);
    REX_RETURN_IF_ERROR(gemm_->linear_bf16(b.act.get(), rows, inter, inter, l.down_w, nullptr, hidden, b.down.get(), stream_));
    const bf16* next_norm = li + 1 < c.num_layers ? w_->text_layers[size_t(li + 1)].input_norm : w_->final_norm;
    mark("add_rmsnorm", act * hidden * 6);  // residual fp32 in and out, the addend in, h out
    REX_RETURN_IF_ERROR(add_rmsnorm_bf16(b.residual.get(), b.down.get(), rows, hidden, next_norm, c.rms_norm_eps, b.h.get(), stream_));
    if (tap && *tap) REX_RETURN_IF_ERROR(tap_rows(tap, "text.layer." + std::to_string(li), b.residual.get(), rows, hidden, stream_));
  }
  return Status::Ok();
}

Status TextRunner::prefill(const std::vector<PrefillPart>& parts, float* logits_host, const TensorTap* tap) {
  int rows = 0, logit_rows = 0;
  for (const PrefillPart& p : parts) {
    if (p.n <= 0 || p.logit_rows < 0 || p.logit_rows > p.n || !p.ids || !p.positions || !p.blocks)
      return Status(StatusCode::kInvalidArgument, "cuda prefill: expected 1 or more tokens with positions, blocks and 0.." +
                    std::to_string(std::max(p.n, 0)) + " logit rows but got " + std::to_string(p.n) + " tokens and " +
                    std::to_string(p.logit_rows) + " logit rows");
    if (int64_t(p.blocks->size()) * arena_.block_size < int64_t(p.past) + p.n)
      return Status(StatusCode::kInvalidArgument, "cuda prefill: the slot holds " +
                    std::to_string(p.blocks->size() * arena_.block_size) + " tokens; expected at most that many but got " +
                    std::to_string(p.past + p.n));
    if (p.image && p.image_row.size() != size_t(p.n))
      return Status(StatusCode::kInvalidArgument, "cuda prefill: expected an image row per token (" + std::to_string(p.n) +
                    ") but got " + std::to_string(p.image_row.size()));
    rows += p.n;
    logit_rows += p.logit_rows;
  }
  if (parts.empty()) return Status(StatusCode::kInvalidArgument, "cuda prefill: expected 1 or more parts but got none");
  // The second call of kProfilePrefillRows rows or more is profiled (the
  // first warmed the kernels' module loads and cuBLASLt's plans), and beside
  // it (".suffix") the second shorter call that continues one sequence (a
  // question after its image's prefix, cached or just prefilled); taps copy
  // to the host between kernels, so a tapped call neither counts nor is profiled.
  std::string profile_path;
  if (!prefill_profile_path_.empty() && !(tap && *tap)) {
    if (rows >= kProfilePrefillRows) {
      if (++profiled_prefills_ == 2) profile_path = prefill_profile_path_;
    } else if (parts.size() == 1 && parts[0].past > 0 && ++profiled_suffixes_ == 2) {
      profile_path = profile_sibling(prefill_profile_path_, ".suffix");
    }
  }
  if (profile_path.empty()) return prefill_passes(parts, rows, logit_rows, logits_host, tap);
  StepProfile profile(stream_);
  profile.field("rows", rows);
  profile.field("past", parts.size() == 1 ? parts[0].past : -1);
  profile.field("sequences", int(parts.size()));
  profile_ = &profile;
  Status st = prefill_passes(parts, rows, logit_rows, logits_host, tap);
  profile_ = nullptr;
  REX_RETURN_IF_ERROR(st);
  profile.write(profile_path);
  return Status::Ok();
}

// The parts' rows one after another, cut into passes of kPrefillChunk rows;
// each pass one layers() pass, its attention varlen over the parts' pieces in it.
Status TextRunner::prefill_passes(const std::vector<PrefillPart>& parts, int rows, int logit_rows, float* logits_host,
                                  const TensorTap* tap) {
  const TextConfig& c = config_;
  const int hidden = c.hidden_size, vocab = c.vocab_size, qkv_width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim();
  // Every part's block table, one after another (one upload).
  std::vector<int32_t> tables, table_offset;
  for (const PrefillPart& p : parts) {
    table_offset.push_back(int32_t(tables.size()));
    tables.insert(tables.end(), p.blocks->begin(), p.blocks->end());
  }
  mark("inputs (H2D)", 4.0 * tables.size());
  REX_RETURN_IF_ERROR(pre_blocks_.upload(tables.data(), tables.size(), stream_, "the block tables"));
  if (logit_rows > 0) REX_RETURN_IF_ERROR(pre_logits_.ensure(size_t(logit_rows) * vocab, "the prefill logits"));
  // Sized once here, so nothing a queued pass reads is reallocated by a later one.
  if (parts.size() > 1) {
    REX_RETURN_IF_ERROR(pre_plan_.reserve(kPrefillChunk / kPrefillTileRows + int(parts.size())));
    if (logit_rows > 0)
      REX_RETURN_IF_ERROR(pre_head_rows_.ensure(size_t(std::min(logit_rows, kPrefillChunk)) * hidden, "the prefill LM head rows"));
  }
  REX_RETURN_IF_ERROR(pre_decode_.ensure(size_t(max_batch_) * (max_blocks_ + 1), "the riding decode rows' tables"));
  size_t part = 0;
  int in_part = 0;   // rows of parts[part] done in earlier passes
  int logits_done = 0;
  for (int start = 0; start < rows; start += kPrefillChunk) {
    const int pass = std::min(kPrefillChunk, rows - start);
    REX_RETURN_IF_ERROR(pre_.ensure(c, pass));
    // The pass's pieces: consecutive rows of one part each.
    struct Piece {
      size_t part;
      int from, n, row;  // the part's rows [from, from + n) at pass row `row`
    };
    std::vector<Piece> pieces;
    for (int row = 0; row < pass;) {
      const PrefillPart& p = parts[part];
      const int n = std::min(p.n - in_part, pass - row);
      pieces.push_back({part, in_part, n, row});
      row += n;
      in_part += n;
      if (in_part == p.n) {
        ++part;
        in_part = 0;
      }
    }
    const size_t pass_rows = size_t(pass);
    std::vector<int32_t> ids(pass_rows), pos(3 * pass_rows), dest(pass_rows), img(pass_rows, -1);
    std::vector<PrefillSegment> segments;
    const bf16* image = nullptr;  // the pass's one image (several: each piece's own, below)
    bool several_images = false;
    for (const Piece& q : pieces) {
      const PrefillPart& p = parts[q.part];
      std::copy_n(p.ids + q.from, q.n, &ids[size_t(q.row)]);
      for (int a = 0; a < 3; ++a) std::copy_n(p.positions + size_t(a) * p.n + q.from, q.n, &pos[size_t(a) * pass + q.row]);
      for (int i = 0; i < q.n; ++i)
        dest[size_t(q.row + i)] = int32_t(paged_row(p.blocks->data(), arena_.block_size, p.past + q.from + i));
      segments.push_back({q.row, q.n, p.past + q.from, table_offset[q.part]});
      if (!p.image) continue;
      std::copy_n(p.image_row.begin() + q.from, q.n, img.begin() + q.row);
      several_images |= image && p.image != image;
      image = p.image;
    }
    mark("inputs (H2D)", 4.0 * pass * 6);  // ids, 3 position axes, cache rows, image rows
    REX_RETURN_IF_ERROR(pre_ids_.upload(ids.data(), ids.size(), stream_, "the prefill ids"));
    REX_RETURN_IF_ERROR(pre_positions_.upload(pos.data(), pos.size(), stream_, "the prefill positions"));
    REX_RETURN_IF_ERROR(pre_dest_.upload(dest.data(), dest.size(), stream_, "the prefill cache rows"));
    REX_RETURN_IF_ERROR(pre_image_row_.upload(img.data(), img.size(), stream_, "the image rows"));
    for (const Piece& q : pieces)
      if (parts[q.part].seen_mask >= 0) {
        mark("mark_seen", 4.0 * q.n);
        REX_RETURN_IF_ERROR(sampler_.mark(parts[q.part].seen_mask, pre_ids_.get() + q.row, q.n));
      }
    // A row of the embedding table or of the image (bf16) in, a residual row (fp32) out.
    mark("embed (+image rows)", 6.0 * pass * hidden);
    profile_kv_tokens_ = 0;
    profile_attention_keys_ = 0;
    for (const PrefillSegment& g : segments) {
      profile_kv_tokens_ += int64_t(g.past) + g.n;  // the cache rows the pass's attention reads
      profile_attention_keys_ += int64_t(g.n) * g.past + int64_t(g.n) * (g.n + 1) / 2;  // causal
    }
    if (!several_images) {
      REX_RETURN_IF_ERROR(embed_rows(pre_ids_.get(), image ? pre_image_row_.get() : nullptr, pass, w_->embed_tokens, vocab,
                                     image, hidden, pre_.residual.get(), stream_));
    } else {  // one launch per piece, each with its own image (the same rows as one launch would write)
      for (const Piece& q : pieces) {
        const bf16* own = parts[q.part].image;
        REX_RETURN_IF_ERROR(embed_rows(pre_ids_.get() + q.row, own ? pre_image_row_.get() + q.row : nullptr, q.n,
                                       w_->embed_tokens, vocab, own, hidden, pre_.residual.get() + size_t(q.row) * hidden,
                                       stream_));
      }
    }
    // The pass's tail of one-row parts (decode rows riding it, the engine's
    // prefill_decode_rows, come last): their attention on the decode kernel,
    // a row a sequence, where the prefill kernel would spend a 64-row tile on
    // each (NOTES.md §11).
    size_t riding_rows = 0;  // at most a step's rows (the decode workspace's)
    while (riding_rows < pieces.size() && riding_rows < size_t(max_batch_)) {
      const Piece& q = pieces[pieces.size() - 1 - riding_rows];
      if (q.n != 1 || parts[q.part].n != 1 || parts[q.part].blocks->size() > size_t(max_blocks_)) break;
      ++riding_rows;
    }
    const size_t head_pieces = pieces.size() - riding_rows;
    std::vector<int32_t> riding_table(riding_rows * (size_t(max_blocks_) + 1), 0);  // the tables, then the lengths
    for (size_t k = 0; k < riding_rows; ++k) {
      const PrefillPart& p = parts[pieces[head_pieces + k].part];
      std::copy(p.blocks->begin(), p.blocks->end(), riding_table.begin() + std::ptrdiff_t(k * max_blocks_));
      riding_table[riding_rows * max_blocks_ + k] = p.past + 1;
    }
    // One piece: the one-sequence attention (no plan to upload), unless its
    // keys are split; several: varlen. Split keys (prefill_split_ctas_) when
    // the pass's tiles leave the GPU short of that many CTAs.
    PrefillSplit split;
    if (prefill_split_ctas_ > 0) split = PrefillSplit{c.num_heads, c.head_dim(), prefill_split_ctas_};
    int pass_tiles = 0;
    for (size_t k = 0; k < head_pieces; ++k) pass_tiles += prefill_tiles(segments[k].n);
    const bool planned = head_pieces > 1 || (head_pieces == 1 && split.applies(pass_tiles));
    if (planned)
      REX_RETURN_IF_ERROR(pre_plan_.build(segments.data(), int(head_pieces), pass, arena_.block_size, int(tables.size()),
                                          stream_, split));
    const int riding_row0 = riding_rows > 0 ? pieces[head_pieces].row : pass;
    if (riding_rows > 0) {
      mark("inputs (H2D)", 4.0 * riding_table.size());
      REX_RETURN_IF_ERROR(pre_decode_.upload(riding_table.data(), riding_table.size(), stream_, "the riding decode rows' tables"));
    }
    PagedKv kv{nullptr, nullptr, arena_.block_size, c.num_kv_heads, c.head_dim()};
    const PrefillSegment one = segments.front();
    const int riding_splits = riding_rows > 0 ? splits_for(bucket_for(int(riding_rows)), false) : 0;
    auto attention = [&](int layer, const bf16* qkv, bf16* out) {
      const KvPlane plane = arena_.layer(layer);
      kv.k = plane.k;
      kv.v = plane.v;
      if (planned) {
        REX_RETURN_IF_ERROR(
            attention_prefill_varlen_bf16(qkv, qkv_width, pre_plan_, c.num_heads, kv, pre_blocks_.get(), out, stream_));
      } else if (head_pieces == 1) {
        REX_RETURN_IF_ERROR(attention_prefill_bf16(qkv, qkv_width, one.n, one.past, c.num_heads, kv,
                                                   pre_blocks_.get() + one.table_offset, out, stream_));
      }
      if (riding_rows == 0) return Status::Ok();
      const int out_width = c.num_heads * c.head_dim();
      return attention_decode_bf16(qkv + size_t(riding_row0) * qkv_width, qkv_width, int(riding_rows), c.num_heads, kv,
                                   pre_decode_.get(), max_blocks_, pre_decode_.get() + riding_rows * size_t(max_blocks_),
                                   riding_splits, attn_workspace_.get(), out + size_t(riding_row0) * out_width, stream_,
                                   decode_merge(riding_splits, int(riding_rows)));
    };
    REX_RETURN_IF_ERROR(layers(pre_, pass, pre_positions_.get(), pre_dest_.get(), attention, tap));
    // The LM head over the logit rows that end a part in this pass (a
    // part's logit rows are its last): gathered when they are not one run.
    struct Run {
      int row, n;  // pass rows [row, row + n)
    };
    std::vector<Run> runs;  // the logit rows that end a part in this pass, in part order
    int head_rows = 0;
    for (const Piece& q : pieces) {
      const PrefillPart& p = parts[q.part];
      const int lo = std::max(p.n - p.logit_rows, q.from), hi = q.from + q.n;
      if (lo >= hi) continue;
      const int at = q.row + (lo - q.from);
      if (!runs.empty() && runs.back().row + runs.back().n == at)
        runs.back().n += hi - lo;
      else
        runs.push_back({at, hi - lo});
      head_rows += hi - lo;
    }
    if (head_rows > 0) {
      const bf16* head_in = pre_.h.get() + size_t(runs.front().row) * hidden;
      if (runs.size() > 1) {  // gathered into one block of rows
        int gathered = 0;
        for (const Run& r : runs) {
          REX_CUDA_TRY(cudaMemcpyAsync(pre_head_rows_.get() + size_t(gathered) * hidden, pre_.h.get() + size_t(r.row) * hidden,
                                       size_t(r.n) * hidden * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_));
          gathered += r.n;
        }
        head_in = pre_head_rows_.get();
      }
      mark("lm_head (cuBLASLt, fp32)", 2.0 * vocab * hidden + double(head_rows) * (2.0 * hidden + 4.0 * vocab),
           2.0 * head_rows * hidden * vocab);
      REX_RETURN_IF_ERROR(gemm_->linear_f32(head_in, head_rows, hidden, hidden, w_->lm_head, vocab,
                                            pre_logits_.get() + size_t(logits_done) * vocab, stream_));
      logits_done += head_rows;
    }
  }
  if (profile_) profile_->end();  // the logits' copy to the host is not a kernel
  if (logit_rows == 0) return cuda_status(cudaStreamSynchronize(stream_), "cuda prefill");  // no logits asked for
  if (!logits_host) return Status::Ok();  // sampled on the device next (sample_prefill)
  REX_CUDA_TRY(cudaMemcpyAsync(logits_host, pre_logits_.get(), size_t(logit_rows) * vocab * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_));
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

// The decode step over the fixed buffers, for `bucket` rows: what a graph captures.
Status TextRunner::decode_body(int bucket, bool gemv_path, StepOutput output, const TensorTap* tap,
                               bool rope_in_attention) {
  const TextConfig& c = config_;
  const int hidden = c.hidden_size, vocab = c.vocab_size, qkv_width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim();
  mark("embed", 2.0 * bucket * hidden * 3);
  REX_RETURN_IF_ERROR(embed_rows(step_ids(), nullptr, bucket, w_->embed_tokens, vocab, nullptr, hidden, dec_.residual.get(), stream_));
  const bool tapping = tap && *tap;
  const int inter = c.intermediate_size;
  // The GEMV path normalises inside the projections (k a multiple of 128) and
  // never writes h: the LM head then reads the residual stream too.
  const bool fused = gemv_path && !tapping && gemv_supports(bucket, hidden, qkv_width) && gemv_supports(bucket, inter, hidden) &&
                     (c.num_heads * c.head_dim()) % 32 == 0 && hidden % 128 == 0;
  const bool restricted = output == StepOutput::kSampledRestricted;
  // The restricted head is the GEMV's alone (it reads 1088 rows, so more
  // launches of 8 rows cost little); the full head follows the layers' choice.
  const bool head_gemv = use_gemv_ && (restricted || gemv_path) && gemv_supports(bucket, hidden, vocab);
  if (restricted && !head_gemv) return Status(StatusCode::kInternal, "the restricted LM head needs the GEMV");
  GemvArgs head;
  head.epilogue = GemvEpilogue::kStoreF32;
  head.x = dec_.h.get();
  if (fused) {  // the GEMV path normalises in the head's prologue too
    head.x = nullptr;
    head.norm_input = dec_.residual.get();
    head.norm_weight = w_->final_norm;
    head.norm_eps = c.rms_norm_eps;
  }
  head.lda = hidden;
  head.m = bucket;
  head.w = w_->lm_head;
  head.k = hidden;
  head.n = restricted ? DecodeSampler::kRestrictedRows : vocab;
  head.row_ids = restricted ? sampler_.head_rows() : nullptr;
  head.out_f32 = restricted ? dec_head_logits_.get() : dec_logits_.get();
  head.overlap_previous = true;
  if (fused) {
    REX_RETURN_IF_ERROR(decode_layers_gemv(bucket, rope_in_attention));
  } else {
    const int splits = splits_for(bucket, gemv_path);
    PagedKv kv{nullptr, nullptr, arena_.block_size, c.num_kv_heads, c.head_dim()};
    auto attention = [&](int layer, const bf16* qkv, bf16* out) {
      const KvPlane plane = arena_.layer(layer);
      kv.k = plane.k;
      kv.v = plane.v;
      const DecodeRope rope = step_rope(layer);
      return attention_decode_bf16(qkv, qkv_width, bucket, c.num_heads, kv, step_tables(), max_blocks_, step_lengths(), splits,
                                   attn_workspace_.get(), out, stream_, decode_merge(splits, bucket),
                                   rope_in_attention ? &rope : nullptr, decode_overlap(splits, bucket));
    };
    REX_RETURN_IF_ERROR(layers(dec_, bucket, step_positions(), step_dest(), attention, tap, rope_in_attention));
  }
  if (output != StepOutput::kLogits) REX_RETURN_IF_ERROR(sampler_.mark_rows(step_ids(), step_seen(), bucket));
  const double head_rows = restricted ? DecodeSampler::kRestrictedRows : vocab;
  mark(restricted ? "lm_head (restricted)" : "lm_head", 2.0 * hidden * head_rows, 2.0 * bucket * hidden * head_rows);
  if (head_gemv) {
    REX_RETURN_IF_ERROR(gemv(head, stream_));
  } else {
    if (fused) return Status(StatusCode::kInternal, "the fused decode layers need the GEMV LM head");
    REX_RETURN_IF_ERROR(gemm_->linear_f32(dec_.h.get(), bucket, hidden, hidden, w_->lm_head, vocab, dec_logits_.get(), stream_));
  }
  mark("sampler", 4.0 * bucket * head_rows);
  if (output != StepOutput::kLogits) REX_RETURN_IF_ERROR(sampler_.sample(bucket));
  return Status::Ok();
}

// Uploads the step's inputs and runs the step for batch (eagerly, or through
// the bucket's graph for this output, captured on first use).
Status TextRunner::run_step(const std::vector<DecodeSequence>& batch, StepOutput output, bool use_graphs,
                            const TensorTap* tap) {
  const int n = int(batch.size());
  const int bucket = bucket_for(n);
  // Step inputs: rows past n are padding that reads and writes only the spare block.
  int32_t* ids = step_host_;
  int32_t* pos = step_host_ + max_batch_;
  int32_t* dest = step_host_ + 4 * max_batch_;
  int32_t* lengths = step_host_ + 5 * max_batch_;
  int32_t* seen = step_host_ + 6 * max_batch_;
  int32_t* tables = step_host_ + 7 * max_batch_;
  for (int i = 0; i < bucket; ++i) {
    int32_t* table = tables + size_t(i) * max_blocks_;
    if (i < n) {
      const DecodeSequence& s = batch[size_t(i)];
      const int nb = int(s.blocks->size());
      if (int64_t(nb) * arena_.block_size < int64_t(s.length) + 1 || nb > max_blocks_)
        return Status(StatusCode::kInvalidArgument, "cuda decode: a sequence of " + std::to_string(s.length) +
                      " tokens has no room for one more in its " + std::to_string(nb) + " blocks");
      ids[i] = s.token;
      for (int a = 0; a < 3; ++a) pos[a * bucket + i] = s.position;
      std::copy_n(s.blocks->data(), nb, table);
      dest[i] = int32_t(paged_row(table, arena_.block_size, s.length));
      lengths[i] = s.length + 1;
      seen[i] = s.seen_mask >= 0 ? s.seen_mask : sampler_.padding_mask();
    } else {
      ids[i] = 0;
      for (int a = 0; a < 3; ++a) pos[a * bucket + i] = 0;
      table[0] = spare_block_;
      dest[i] = int32_t(int64_t(spare_block_) * arena_.block_size);
      lengths[i] = 1;
      seen[i] = sampler_.padding_mask();
    }
  }
  // One copy: the fixed-position arrays, then the used rows of the block tables.
  const size_t ints = size_t(7) * max_batch_ + size_t(bucket) * max_blocks_;
  REX_CUDA_TRY(cudaMemcpyAsync(step_.get(), step_host_, ints * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  const bool tapping = tap && *tap;
  const bool gemv_path = on_gemv(batch, bucket);
  // The rotary step inside the attention: only when no two rows are one
  // sequence's (a row would read a key another row's CTA writes) and the
  // step's split count takes the cluster merge.
  const bool rope = decode_rope_in_attention_ && distinct_sequences(batch) &&
                    decode_merge(splits_for(bucket, gemv_path), bucket) == DecodeMerge::kCluster;
  // A lone request's jump-forward rows are not a batch's step: not profiled above 1 row.
  if (!profile_path_.empty() && (bucket == 1 || bucket == 8 || bucket == 64) && (bucket == 1 || !one_sequence(batch)) &&
      ++profiled_steps_[bucket] == 32)
    return profile_step(batch, bucket, gemv_path, output, rope);
  if (!use_graphs || tapping) return decode_body(bucket, gemv_path, output, tap, rope);  // taps copy to the host: no graph
  const auto key = std::make_tuple(bucket, gemv_path, output, rope);
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    REX_CUDA_TRY(cudaGraphLaunch(it->second, stream_));
    return Status::Ok();
  }
  // First step of this kind: run it eagerly (it also warms every GEMM's
  // cached plan), then capture the same work for the steps after.
  REX_RETURN_IF_ERROR(decode_body(bucket, gemv_path, output, nullptr, rope));
  const std::string what = "the decode graph (batch " + std::to_string(bucket) + ")";
  cudaGraph_t graph = nullptr;
  REX_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  Status body = decode_body(bucket, gemv_path, output, nullptr, rope);
  cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  if (!body.ok()) {
    if (graph) cudaGraphDestroy(graph);
    return Status(body.code(), "while capturing " + what + ": " + body.message());
  }
  REX_RETURN_IF_ERROR(cuda_status(end, "cudaStreamEndCapture (" + what + ")"));
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  REX_RETURN_IF_ERROR(cuda_status(inst, "cudaGraphInstantiate (" + what + ")"));
  graphs_[key] = exec;
  return Status::Ok();
}

// One eager step with events around every kernel (step_profile.h), written
// to the profile path at batch 1 and beside it (".batch8.json", ...) for
// the other buckets.
Status TextRunner::profile_step(const std::vector<DecodeSequence>& batch, int bucket, bool gemv_path, StepOutput output,
                                bool rope) {
  // The same step once unprofiled first: the first eager launch of a kernel
  // that so far ran only in graphs pays its lazy module load (it put 1.7 ms
  // on the sampler's line). Running a step twice is harmless: it writes the
  // same K/V rows and marks, and samples from the same inputs.
  REX_RETURN_IF_ERROR(decode_body(bucket, gemv_path, output, nullptr, rope));
  StepProfile profile(stream_);
  profile.field("rows", bucket);
  profile_ = &profile;
  profile_kv_tokens_ = 0;
  for (const DecodeSequence& s : batch) profile_kv_tokens_ += s.length + 1;
  profile_attention_keys_ = profile_kv_tokens_;  // each row sees its sequence's keys
  Status st = decode_body(bucket, gemv_path, output, nullptr, rope);
  profile_ = nullptr;
  REX_RETURN_IF_ERROR(st);
  profile.end();
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  profile.write(bucket == 1 ? profile_path_ : profile_sibling(profile_path_, ".batch" + std::to_string(bucket)));
  return Status::Ok();
}

Status TextRunner::decode(const std::vector<DecodeSequence>& batch, float* logits_host, bool use_graphs, const TensorTap* tap) {
  const int n = int(batch.size());
  if (n == 0) return Status::Ok();
  if (n > max_batch_)
    return Status(StatusCode::kInvalidArgument, "cuda decode: expected at most " + std::to_string(max_batch_) +
                  " rows but got " + std::to_string(n));
  REX_RETURN_IF_ERROR(run_step(batch, StepOutput::kLogits, use_graphs, tap));
  const int vocab = config_.vocab_size;
  REX_CUDA_TRY(cudaMemcpyAsync(logits_pinned_, dec_logits_.get(), size_t(n) * vocab * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  std::memcpy(logits_host, logits_pinned_, size_t(n) * vocab * sizeof(float));
  return Status::Ok();
}

Status TextRunner::decode_sampled(const std::vector<DecodeSequence>& batch, const std::vector<RowSampling>& sampling,
                                  bool use_graphs, std::vector<SampledToken>* out) {
  const int n = int(batch.size());
  if (n == 0) return Status::Ok();
  if (n > max_batch_ || int(sampling.size()) != n)
    return Status(StatusCode::kInvalidArgument, "cuda decode: expected at most " + std::to_string(max_batch_) +
                  " rows, each with its sampling, but got " + std::to_string(n) + " rows and " +
                  std::to_string(sampling.size()) + " samplings");
  std::vector<int> masks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) masks[size_t(i)] = batch[size_t(i)].seen_mask;
  bool restricted = false;
  const int bucket = bucket_for(n);
  REX_RETURN_IF_ERROR(sampler_.plan(sampling, masks, bucket, dec_logits_.get(), dec_head_logits_.get(), &restricted));
  const bool head_gemv = use_gemv_ && gemv_supports(bucket, config_.hidden_size, config_.vocab_size);
  if (restricted && !head_gemv) {
    // Without the GEMV there is no restricted head: plan again for the full one.
    std::vector<RowSampling> full = sampling;
    for (auto& s : full) s.model_logprob = true;
    REX_RETURN_IF_ERROR(sampler_.plan(full, masks, bucket, dec_logits_.get(), dec_head_logits_.get(), &restricted));
  }
  REX_RETURN_IF_ERROR(run_step(batch, restricted ? StepOutput::kSampledRestricted : StepOutput::kSampledFull, use_graphs, nullptr));
  REX_RETURN_IF_ERROR(sampler_.queue_download(n));
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  return sampler_.read(n, out);
}

Status TextRunner::mark_seen(int seen_mask, const int32_t* ids, int n) {
  for (int start = 0; start < n; start += kPrefillChunk) {
    const int rows = std::min(kPrefillChunk, n - start);
    REX_RETURN_IF_ERROR(pre_ids_.upload(ids + start, size_t(rows), stream_, "the prefix ids"));
    REX_RETURN_IF_ERROR(sampler_.mark(seen_mask, pre_ids_.get(), rows));
  }
  return Status::Ok();
}

Status TextRunner::sample_prefill(const std::vector<RowSampling>& sampling, const std::vector<int>& seen_masks,
                                  std::vector<SampledToken>* out) {
  const int rows = int(sampling.size());
  if (rows == 0 || seen_masks.size() != sampling.size())
    return Status(StatusCode::kInvalidArgument, "cuda sample_prefill: expected a seen mask per row (" + std::to_string(rows) +
                  ") but got " + std::to_string(seen_masks.size()));
  out->clear();
  // In groups of the sampler's rows (a step's).
  for (int first = 0; first < rows; first += max_batch_) {
    const int n = std::min(max_batch_, rows - first);
    std::vector<RowSampling> full(sampling.begin() + first, sampling.begin() + first + n);
    for (RowSampling& r : full) r.model_logprob = true;  // the prefill's logits are the full head's
    const std::vector<int> masks(seen_masks.begin() + first, seen_masks.begin() + first + n);
    bool restricted = false;
    REX_RETURN_IF_ERROR(sampler_.plan(full, masks, n, pre_logits_.get() + size_t(first) * config_.vocab_size, nullptr,
                                      &restricted));
    REX_RETURN_IF_ERROR(sampler_.sample(n));
    REX_RETURN_IF_ERROR(sampler_.queue_download(n));
    REX_CUDA_TRY(cudaStreamSynchronize(stream_));
    std::vector<SampledToken> group;
    REX_RETURN_IF_ERROR(sampler_.read(n, &group));
    out->insert(out->end(), group.begin(), group.end());
  }
  for (int i = 0; i < rows; ++i)
    if (!sampling[size_t(i)].model_logprob) (*out)[size_t(i)].model_logprob = NAN;
  return Status::Ok();
}

}  // namespace rex::cuda
