// bind_model_weights: looks up every tensor the model uses by its canonical
// name and checks its exact shape against the config, so backends can trust
// ModelWeights without re-checking.
#include "model/weights.h"

#include <string>

namespace rex {

namespace {

// Binds tensors of one checkpoint; the first failure sticks and later binds are skipped.
class Binder {
 public:
  explicit Binder(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  void bind(const TensorView** slot, const std::string& name, std::vector<int64_t> shape) {
    if (!status_.ok()) return;
    auto found = checkpoint_.require(name, shape);
    if (!found.ok()) {
      status_ = found.status();
      return;
    }
    *slot = found.value();
  }

  const Status& status() const { return status_; }

 private:
  const Checkpoint& checkpoint_;
  Status status_;
};

void bind_vision(Binder& b, const VisionConfig& v, VisionWeights* w) {
  const int64_t h = v.hidden_size, inter = v.intermediate_size;
  const int64_t merged = h * v.spatial_merge_size * v.spatial_merge_size;
  b.bind(&w->patch_embed, "visual.patch_embed.proj.weight",
         {h, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  w->blocks.resize(static_cast<size_t>(v.depth));
  for (int i = 0; i < v.depth; ++i) {
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    VisionBlockWeights& blk = w->blocks[static_cast<size_t>(i)];
    b.bind(&blk.norm1, p + "norm1.weight", {h});
    b.bind(&blk.norm2, p + "norm2.weight", {h});
    b.bind(&blk.qkv_w, p + "attn.qkv.weight", {3 * h, h});
    b.bind(&blk.qkv_b, p + "attn.qkv.bias", {3 * h});
    b.bind(&blk.proj_w, p + "attn.proj.weight", {h, h});
    b.bind(&blk.proj_b, p + "attn.proj.bias", {h});
    b.bind(&blk.gate_w, p + "mlp.gate_proj.weight", {inter, h});
    b.bind(&blk.gate_b, p + "mlp.gate_proj.bias", {inter});
    b.bind(&blk.up_w, p + "mlp.up_proj.weight", {inter, h});
    b.bind(&blk.up_b, p + "mlp.up_proj.bias", {inter});
    b.bind(&blk.down_w, p + "mlp.down_proj.weight", {h, inter});
    b.bind(&blk.down_b, p + "mlp.down_proj.bias", {h});
  }
  b.bind(&w->merger_norm, "visual.merger.ln_q.weight", {h});
  b.bind(&w->merger_fc1_w, "visual.merger.mlp.0.weight", {merged, merged});
  b.bind(&w->merger_fc1_b, "visual.merger.mlp.0.bias", {merged});
  b.bind(&w->merger_fc2_w, "visual.merger.mlp.2.weight", {v.out_hidden_size, merged});
  b.bind(&w->merger_fc2_b, "visual.merger.mlp.2.bias", {v.out_hidden_size});
}

void bind_text(Binder& b, const TextConfig& t, TextWeights* w) {
  const int64_t h = t.hidden_size, inter = t.intermediate_size, hd = t.head_dim();
  const int64_t q = t.num_heads * hd, kv = t.num_kv_heads * hd;
  b.bind(&w->embed_tokens, "model.embed_tokens.weight", {t.vocab_size, h});
  w->layers.resize(static_cast<size_t>(t.num_layers));
  for (int i = 0; i < t.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    TextLayerWeights& l = w->layers[static_cast<size_t>(i)];
    b.bind(&l.input_norm, p + "input_layernorm.weight", {h});
    b.bind(&l.post_norm, p + "post_attention_layernorm.weight", {h});
    b.bind(&l.q_w, p + "self_attn.q_proj.weight", {q, h});
    b.bind(&l.q_b, p + "self_attn.q_proj.bias", {q});
    b.bind(&l.k_w, p + "self_attn.k_proj.weight", {kv, h});
    b.bind(&l.k_b, p + "self_attn.k_proj.bias", {kv});
    b.bind(&l.v_w, p + "self_attn.v_proj.weight", {kv, h});
    b.bind(&l.v_b, p + "self_attn.v_proj.bias", {kv});
    b.bind(&l.o_w, p + "self_attn.o_proj.weight", {h, q});
    b.bind(&l.gate_w, p + "mlp.gate_proj.weight", {inter, h});
    b.bind(&l.up_w, p + "mlp.up_proj.weight", {inter, h});
    b.bind(&l.down_w, p + "mlp.down_proj.weight", {h, inter});
  }
  b.bind(&w->final_norm, "model.norm.weight", {h});
}

// lm_head.weight when the checkpoint has one; embed_tokens when tied; otherwise an error.
Status bind_lm_head(const Checkpoint& checkpoint, const TextConfig& t, TextWeights* w) {
  const char* kName = "lm_head.weight";
  if (checkpoint.find(kName) != nullptr || !t.tie_word_embeddings) {
    auto found = checkpoint.require(kName, {t.vocab_size, t.hidden_size});
    if (!found.ok()) {
      if (found.status().code() != StatusCode::kMissingTensor) return found.status();
      return Status(StatusCode::kMissingTensor,
                    found.status().message() + "; config.json does not set tie_word_embeddings, so it is needed");
    }
    w->lm_head = found.value();
    return Status::Ok();
  }
  w->lm_head = w->embed_tokens;
  return Status::Ok();
}

}  // namespace

Result<ModelWeights> bind_model_weights(const Checkpoint& checkpoint) {
  const ModelConfig& config = checkpoint.config();
  ModelWeights weights;
  Binder binder(checkpoint);
  bind_vision(binder, config.vision, &weights.vision);
  bind_text(binder, config.text, &weights.text);
  REX_RETURN_IF_ERROR(binder.status());
  REX_RETURN_IF_ERROR(bind_lm_head(checkpoint, config.text, &weights.text));
  return weights;
}

}  // namespace rex
