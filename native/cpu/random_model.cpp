// See random_model.h. Linear weights are uniform in +-1/sqrt(fan_in) so
// activations keep their scale through the layers; norm weights are near 1.
#include "cpu/random_model.h"

#include <cmath>
#include <cstring>

#include "sampling/rng.h"

namespace rex::cpu {

namespace {

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return uint16_t(u >> 16);
}

uint16_t f32_to_f16(float f) {  // normal range only, enough for small weights
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  int exp = int((u >> 23) & 0xff) - 127 + 15;
  uint32_t mant = u & 0x7fffff;
  if (exp <= 0) return uint16_t(sign);
  if (exp >= 31) return uint16_t(sign | 0x7c00);
  uint32_t h = sign | uint32_t(exp) << 10 | (mant >> 13);
  if ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) == 0x1000 && (h & 1))) ++h;
  return uint16_t(h);
}

struct Builder {
  RandomModel& m;
  DType dtype;
  Pcg32 rng;

  const TensorView* make(const std::string& name, std::vector<int64_t> shape, float center, float scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint8_t> bytes(size_t(n) * (dtype == DType::kF32 ? 4 : 2));
    for (int64_t i = 0; i < n; ++i) {
      float v = center + scale * float(2.0 * rng.next_double() - 1.0);
      if (dtype == DType::kF32) std::memcpy(&bytes[size_t(i) * 4], &v, 4);
      else {
        uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(&bytes[size_t(i) * 2], &h, 2);
      }
    }
    m.storage.push_back(std::move(bytes));
    TensorView t;
    t.name = name;
    t.file = "<random model>";
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = m.storage.back().data();
    t.nbytes = m.storage.back().size();
    m.views.push_back(std::move(t));
    return &m.views.back();
  }
  const TensorView* linear_w(const std::string& name, int out, int in) {
    return make(name, {out, in}, 0.0f, 1.0f / std::sqrt(float(in)));
  }
  const TensorView* bias(const std::string& name, int out) { return make(name, {out}, 0.0f, 0.05f); }
  const TensorView* norm(const std::string& name, int dim) { return make(name, {dim}, 1.0f, 0.1f); }
};

}  // namespace

std::unique_ptr<RandomModel> make_random_model(const RandomModelSpec& s) {
  auto m = std::make_unique<RandomModel>();
  ModelConfig& c = m->config;
  c.architecture = "Qwen2_5_VLForConditionalGeneration";
  c.layout = "flat";
  c.torch_dtype = "float32";
  c.text.num_layers = s.text_layers;
  c.text.hidden_size = s.text_hidden;
  c.text.num_heads = s.text_heads;
  c.text.num_kv_heads = s.text_kv_heads;
  c.text.intermediate_size = s.text_intermediate;
  c.text.vocab_size = s.vocab;
  c.text.max_position_embeddings = 32768;
  c.text.rope_theta = 1e6f;
  c.text.mrope_section = s.mrope_section;
  c.text.tie_word_embeddings = true;
  c.vision.depth = s.vision_depth;
  c.vision.hidden_size = s.vision_hidden;
  c.vision.num_heads = s.vision_heads;
  c.vision.intermediate_size = s.vision_intermediate;
  c.vision.out_hidden_size = s.text_hidden;
  c.vision.fullatt_block_indexes = s.fullatt;
  c.image_token_id = s.image_token_id;
  c.vision_start_token_id = s.vision_start_token_id;
  c.vision_end_token_id = s.vision_end_token_id;

  Builder b{*m, s.dtype, Pcg32(s.seed)};
  const VisionConfig& v = c.vision;
  const int vh = v.hidden_size, vi = v.intermediate_size, unit = v.spatial_merge_size * v.spatial_merge_size;
  VisionWeights& vw = m->weights.vision;
  vw.patch_embed = b.make("visual.patch_embed.proj.weight",
                          {vh, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size}, 0.0f,
                          1.0f / std::sqrt(float(v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size)));
  for (int i = 0; i < v.depth; ++i) {
    const std::string p = "visual.blocks." + std::to_string(i) + ".";
    VisionBlockWeights bw;
    bw.norm1 = b.norm(p + "norm1.weight", vh);
    bw.norm2 = b.norm(p + "norm2.weight", vh);
    bw.qkv_w = b.linear_w(p + "attn.qkv.weight", 3 * vh, vh);
    bw.qkv_b = b.bias(p + "attn.qkv.bias", 3 * vh);
    bw.proj_w = b.linear_w(p + "attn.proj.weight", vh, vh);
    bw.proj_b = b.bias(p + "attn.proj.bias", vh);
    bw.gate_w = b.linear_w(p + "mlp.gate_proj.weight", vi, vh);
    bw.gate_b = b.bias(p + "mlp.gate_proj.bias", vi);
    bw.up_w = b.linear_w(p + "mlp.up_proj.weight", vi, vh);
    bw.up_b = b.bias(p + "mlp.up_proj.bias", vi);
    bw.down_w = b.linear_w(p + "mlp.down_proj.weight", vh, vi);
    bw.down_b = b.bias(p + "mlp.down_proj.bias", vh);
    vw.blocks.push_back(bw);
  }
  vw.merger_norm = b.norm("visual.merger.ln_q.weight", vh);
  vw.merger_fc1_w = b.linear_w("visual.merger.mlp.0.weight", unit * vh, unit * vh);
  vw.merger_fc1_b = b.bias("visual.merger.mlp.0.bias", unit * vh);
  vw.merger_fc2_w = b.linear_w("visual.merger.mlp.2.weight", v.out_hidden_size, unit * vh);
  vw.merger_fc2_b = b.bias("visual.merger.mlp.2.bias", v.out_hidden_size);

  const TextConfig& t = c.text;
  const int h = t.hidden_size, hd = t.head_dim(), qd = t.num_heads * hd, kvd = t.num_kv_heads * hd;
  TextWeights& tw = m->weights.text;
  tw.embed_tokens = b.make("model.embed_tokens.weight", {t.vocab_size, h}, 0.0f, 1.0f);
  for (int i = 0; i < t.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    TextLayerWeights lw;
    lw.input_norm = b.norm(p + "input_layernorm.weight", h);
    lw.post_norm = b.norm(p + "post_attention_layernorm.weight", h);
    lw.q_w = b.linear_w(p + "self_attn.q_proj.weight", qd, h);
    lw.q_b = b.bias(p + "self_attn.q_proj.bias", qd);
    lw.k_w = b.linear_w(p + "self_attn.k_proj.weight", kvd, h);
    lw.k_b = b.bias(p + "self_attn.k_proj.bias", kvd);
    lw.v_w = b.linear_w(p + "self_attn.v_proj.weight", kvd, h);
    lw.v_b = b.bias(p + "self_attn.v_proj.bias", kvd);
    lw.o_w = b.linear_w(p + "self_attn.o_proj.weight", h, qd);
    lw.gate_w = b.linear_w(p + "mlp.gate_proj.weight", t.intermediate_size, h);
    lw.up_w = b.linear_w(p + "mlp.up_proj.weight", t.intermediate_size, h);
    lw.down_w = b.linear_w(p + "mlp.down_proj.weight", h, t.intermediate_size);
    tw.layers.push_back(lw);
  }
  tw.final_norm = b.norm("model.norm.weight", h);
  tw.lm_head = tw.embed_tokens;  // tied
  return m;
}

PreprocessedImage make_random_image(int grid_h, int grid_w, uint64_t seed) {
  PreprocessedImage img;
  img.grid_h = grid_h;
  img.grid_w = grid_w;
  img.resized_height = grid_h * 14;
  img.resized_width = grid_w * 14;
  Pcg32 rng(seed);
  img.pixel_values.resize(size_t(grid_h) * grid_w * 1176);
  for (auto& v : img.pixel_values) v = float(4 * rng.next_double() - 2);
  return img;
}

}  // namespace rex::cpu
