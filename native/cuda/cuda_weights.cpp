// See cuda_weights.h. Two passes over the same plan: the first only adds up
// sizes (so the arena is one allocation), the second converts each piece to
// bf16 in a host staging buffer and copies it to its place.
#include "cuda/cuda_weights.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "common/bf16_host.h"

namespace rex::cuda {
namespace {

// One piece of a device matrix: `rows` rows of `cols` source values from a
// tensor (or zeros when src is null); pieces stack by rows.
struct Piece {
  const TensorView* src = nullptr;
  int64_t rows = 0, cols = 0;
};

class ArenaWriter {
 public:
  explicit ArenaWriter(bool writing, bf16* base) : writing_(writing), base_(base) {}

  // Reserves a [rows, cols] bf16 matrix and fills it from pieces stacked by
  // rows (each piece's cols <= cols; missing columns and absent sources are
  // zeros). Returns the device pointer (null while sizing).
  Result<const bf16*> matrix(int64_t rows, int64_t cols, const std::vector<Piece>& pieces, const std::string& what) {
    const size_t offset = cursor_;
    cursor_ += align(size_t(rows * cols));
    if (!writing_) return static_cast<const bf16*>(nullptr);
    staging_.assign(size_t(rows * cols), 0);
    int64_t r0 = 0;
    for (const Piece& p : pieces) {
      if (p.src) {
        if (p.src->numel() != p.rows * p.cols)
          return Status(StatusCode::kShapeMismatch, what + ": " + p.src->name + " has shape " + p.src->shape_string() +
                        " but " + std::to_string(p.rows) + " x " + std::to_string(p.cols) + " values were expected");
        if (p.src->dtype == DType::kBF16 && p.cols == cols) {
          std::memcpy(&staging_[size_t(r0 * cols)], p.src->data, size_t(p.rows * p.cols) * sizeof(uint16_t));
        } else {
          for (int64_t r = 0; r < p.rows; ++r)
            for (int64_t c = 0; c < p.cols; ++c)
              staging_[size_t((r0 + r) * cols + c)] = to_bits(*p.src, size_t(r * p.cols + c));
        }
      }
      r0 += p.rows;
    }
    bf16* dst = base_ + offset;
    REX_CUDA_TRY(cudaMemcpy(dst, staging_.data(), staging_.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
    return static_cast<const bf16*>(dst);
  }
  Result<const bf16*> vector(const TensorView* t, int64_t n, const std::string& what) {
    if (!t && writing_) return Status(StatusCode::kMissingTensor, what + " is missing");
    return matrix(1, n, {{t, 1, n}}, what);
  }
  size_t elements() const { return cursor_; }

 private:
  static size_t align(size_t n) { return (n + 127) & ~size_t(127); }  // 256-byte alignment
  static uint16_t to_bits(const TensorView& t, size_t i) {
    if (t.dtype == DType::kBF16) {
      uint16_t bits;
      std::memcpy(&bits, static_cast<const uint8_t*>(t.data) + 2 * i, 2);
      return bits;
    }
    return float_to_bf16_bits(tensor_element_f32(t, i));
  }
  bool writing_;
  bf16* base_;
  size_t cursor_ = 0;
  std::vector<uint16_t> staging_;
};

#define REX_ASSIGN(dst, expr)            \
  do {                                   \
    auto rex_r_ = (expr);                \
    if (!rex_r_.ok()) return rex_r_.status(); \
    dst = rex_r_.value();                \
  } while (0)

Status lay_out(const ModelConfig& config, const ModelWeights& w, ArenaWriter& a, DeviceWeights* out) {
  const VisionConfig& v = config.vision;
  const TextConfig& t = config.text;
  const int64_t vh = v.hidden_size, vi = v.intermediate_size, vp = (vi + 7) / 8 * 8;
  const int64_t patch_in = int64_t(v.in_channels) * v.temporal_patch_size * v.patch_size * v.patch_size;
  const int64_t unit = int64_t(v.spatial_merge_size) * v.spatial_merge_size;
  out->vision_inter_padded = int(vp);

  REX_ASSIGN(out->patch_embed, a.matrix(vh, patch_in, {{w.vision.patch_embed, vh, patch_in}}, "visual.patch_embed.proj.weight"));
  out->vision_blocks.resize(size_t(v.depth));
  for (int i = 0; i < v.depth; ++i) {
    const auto& b = w.vision.blocks[size_t(i)];
    auto& d = out->vision_blocks[size_t(i)];
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    REX_ASSIGN(d.norm1, a.vector(b.norm1, vh, p + "norm1.weight"));
    REX_ASSIGN(d.norm2, a.vector(b.norm2, vh, p + "norm2.weight"));
    REX_ASSIGN(d.qkv_w, a.matrix(3 * vh, vh, {{b.qkv_w, 3 * vh, vh}}, p + "attn.qkv.weight"));
    REX_ASSIGN(d.qkv_b, a.vector(b.qkv_b, 3 * vh, p + "attn.qkv.bias"));
    REX_ASSIGN(d.proj_w, a.matrix(vh, vh, {{b.proj_w, vh, vh}}, p + "attn.proj.weight"));
    REX_ASSIGN(d.proj_b, a.vector(b.proj_b, vh, p + "attn.proj.bias"));
    REX_ASSIGN(d.gate_up_w, a.matrix(2 * vp, vh, {{b.gate_w, vi, vh}, {nullptr, vp - vi, vh}, {b.up_w, vi, vh},
                                                  {nullptr, vp - vi, vh}}, p + "mlp.gate_proj/up_proj.weight"));
    REX_ASSIGN(d.gate_up_b, a.matrix(1, 2 * vp, {}, p + "mlp bias"));  // filled below
    if (d.gate_up_b) {
      if (!b.gate_b || !b.up_b) return Status(StatusCode::kMissingTensor, p + "mlp.gate_proj.bias / up_proj.bias is missing");
      // Biases of the fused, padded gate/up: [gate (vi), 0 (pad), up (vi), 0 (pad)].
      std::vector<uint16_t> bias(size_t(2 * vp), 0);
      for (int64_t j = 0; j < vi; ++j) {
        bias[size_t(j)] = float_to_bf16_bits(tensor_element_f32(*b.gate_b, size_t(j)));
        bias[size_t(vp + j)] = float_to_bf16_bits(tensor_element_f32(*b.up_b, size_t(j)));
      }
      REX_CUDA_TRY(cudaMemcpy(const_cast<bf16*>(d.gate_up_b), bias.data(), bias.size() * 2, cudaMemcpyHostToDevice));
    }
    // The down projection [vh, vi] becomes [vh, vp]: each row padded with zero columns.
    REX_ASSIGN(d.down_w, a.matrix(vh, vp, {}, p + "mlp.down_proj.weight"));
    if (d.down_w) {
      if (!b.down_w || b.down_w->numel() != vh * vi)
        return Status(StatusCode::kShapeMismatch, p + "mlp.down_proj.weight: expected " + std::to_string(vh) + " x " +
                      std::to_string(vi) + " values");
      std::vector<uint16_t> rows(size_t(vh * vp), 0);
      for (int64_t r = 0; r < vh; ++r)
        for (int64_t c = 0; c < vi; ++c)
          rows[size_t(r * vp + c)] = float_to_bf16_bits(tensor_element_f32(*b.down_w, size_t(r * vi + c)));
      REX_CUDA_TRY(cudaMemcpy(const_cast<bf16*>(d.down_w), rows.data(), rows.size() * 2, cudaMemcpyHostToDevice));
    }
    REX_ASSIGN(d.down_b, a.vector(b.down_b, vh, p + "mlp.down_proj.bias"));
  }
  REX_ASSIGN(out->merger_norm, a.vector(w.vision.merger_norm, vh, "visual.merger.ln_q.weight"));
  REX_ASSIGN(out->merger_fc1_w, a.matrix(unit * vh, unit * vh, {{w.vision.merger_fc1_w, unit * vh, unit * vh}}, "visual.merger.mlp.0.weight"));
  REX_ASSIGN(out->merger_fc1_b, a.vector(w.vision.merger_fc1_b, unit * vh, "visual.merger.mlp.0.bias"));
  REX_ASSIGN(out->merger_fc2_w, a.matrix(v.out_hidden_size, unit * vh, {{w.vision.merger_fc2_w, v.out_hidden_size, unit * vh}}, "visual.merger.mlp.2.weight"));
  REX_ASSIGN(out->merger_fc2_b, a.vector(w.vision.merger_fc2_b, v.out_hidden_size, "visual.merger.mlp.2.bias"));

  const int64_t h = t.hidden_size, hd = t.head_dim(), qd = int64_t(t.num_heads) * hd, kvd = int64_t(t.num_kv_heads) * hd;
  const int64_t inter = t.intermediate_size, vocab = t.vocab_size;
  REX_ASSIGN(out->embed_tokens, a.matrix(vocab, h, {{w.text.embed_tokens, vocab, h}}, "model.embed_tokens.weight"));
  const bool tied = w.text.lm_head == nullptr || w.text.lm_head == w.text.embed_tokens ||
                    (w.text.embed_tokens && w.text.lm_head->data == w.text.embed_tokens->data);
  if (tied) {
    out->lm_head = out->embed_tokens;
  } else {
    REX_ASSIGN(out->lm_head, a.matrix(vocab, h, {{w.text.lm_head, vocab, h}}, "lm_head.weight"));
  }
  out->text_layers.resize(size_t(t.num_layers));
  for (int i = 0; i < t.num_layers; ++i) {
    const auto& l = w.text.layers[size_t(i)];
    auto& d = out->text_layers[size_t(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    REX_ASSIGN(d.input_norm, a.vector(l.input_norm, h, p + "input_layernorm.weight"));
    REX_ASSIGN(d.post_norm, a.vector(l.post_norm, h, p + "post_attention_layernorm.weight"));
    REX_ASSIGN(d.qkv_w, a.matrix(qd + 2 * kvd, h, {{l.q_w, qd, h}, {l.k_w, kvd, h}, {l.v_w, kvd, h}}, p + "self_attn.q/k/v_proj.weight"));
    REX_ASSIGN(d.qkv_b, a.matrix(1, qd + 2 * kvd, {}, p + "self_attn.q/k/v_proj.bias"));
    if (d.qkv_b) {
      std::vector<uint16_t> bias(size_t(qd + 2 * kvd), 0);
      const TensorView* parts[3] = {l.q_b, l.k_b, l.v_b};
      const int64_t sizes[3] = {qd, kvd, kvd};
      for (int s = 0, o = 0; s < 3; o += int(sizes[s]), ++s) {
        if (!parts[s]) continue;  // absent bias: zeros
        for (int64_t j = 0; j < sizes[s]; ++j) bias[size_t(o + j)] = float_to_bf16_bits(tensor_element_f32(*parts[s], size_t(j)));
      }
      REX_CUDA_TRY(cudaMemcpy(const_cast<bf16*>(d.qkv_b), bias.data(), bias.size() * 2, cudaMemcpyHostToDevice));
    }
    REX_ASSIGN(d.o_w, a.matrix(h, qd, {{l.o_w, h, qd}}, p + "self_attn.o_proj.weight"));
    REX_ASSIGN(d.gate_up_w, a.matrix(2 * inter, h, {{l.gate_w, inter, h}, {l.up_w, inter, h}}, p + "mlp.gate_proj/up_proj.weight"));
    REX_ASSIGN(d.down_w, a.matrix(h, inter, {{l.down_w, h, inter}}, p + "mlp.down_proj.weight"));
  }
  REX_ASSIGN(out->final_norm, a.vector(w.text.final_norm, h, "model.norm.weight"));
  return Status::Ok();
}

}  // namespace

Status upload_weights(const ModelConfig& config, const ModelWeights& weights, DeviceWeights* out) {
  if (int(weights.vision.blocks.size()) != config.vision.depth || int(weights.text.layers.size()) != config.text.num_layers)
    return Status(StatusCode::kMissingTensor, "cuda weights: the bound weights do not match the config's layer counts");
  ArenaWriter sizing(false, nullptr);
  REX_RETURN_IF_ERROR(lay_out(config, weights, sizing, out));
  REX_RETURN_IF_ERROR(out->arena.allocate(sizing.elements(), "the model weights (bf16)"));
  out->bytes = out->arena.bytes();
  ArenaWriter writing(true, out->arena.get());
  return lay_out(config, weights, writing, out);
}

}  // namespace rex::cuda
