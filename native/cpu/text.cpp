// See text.h.
#include "cpu/text.h"

#include <algorithm>

#include "cpu/activation.h"
#include "cpu/attention_prefill.h"
#include "cpu/embedding.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/rope.h"

namespace rex::cpu {

Status TextDecoder::load(const TextConfig& c, const TextWeights& w) {
  config_ = c;
  const int hidden = c.hidden_size, hd = c.head_dim(), inter = c.intermediate_size;
  if (hidden <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0 ||
      hidden % c.num_heads != 0 || hd % 2 != 0)
    return Status(StatusCode::kInvalidArgument, "text config: heads " + std::to_string(c.num_heads) + "/" +
                  std::to_string(c.num_kv_heads) + " do not fit hidden " + std::to_string(hidden));
  if (c.mrope_section[0] + c.mrope_section[1] + c.mrope_section[2] != hd / 2)
    return Status(StatusCode::kInvalidArgument, "text config: mrope_section must sum to head_dim/2 = " +
                  std::to_string(hd / 2));
  if (int(w.layers.size()) != c.num_layers)
    return Status(StatusCode::kMissingTensor, "text weights: " + std::to_string(w.layers.size()) +
                  " layers bound, config has " + std::to_string(c.num_layers));
  const int64_t vocab_hidden = int64_t(c.vocab_size) * hidden;
  REX_RETURN_IF_ERROR(widen_tensor(w.embed_tokens, vocab_hidden, "model.embed_tokens.weight", &embed_));
  lm_head_own_.clear();
  const bool tied = w.lm_head == nullptr || w.lm_head == w.embed_tokens ||
                    (w.embed_tokens && w.lm_head->data == w.embed_tokens->data);
  if (!tied) REX_RETURN_IF_ERROR(widen_tensor(w.lm_head, vocab_hidden, "lm_head.weight", &lm_head_own_));
  layers_.resize(size_t(c.num_layers));
  const int qd = c.num_heads * hd, kvd = c.num_kv_heads * hd;
  for (int i = 0; i < c.num_layers; ++i) {
    const auto& lw = w.layers[size_t(i)];
    auto& l = layers_[size_t(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    REX_RETURN_IF_ERROR(widen_tensor(lw.input_norm, hidden, p + "input_layernorm.weight", &l.input_norm));
    REX_RETURN_IF_ERROR(widen_tensor(lw.post_norm, hidden, p + "post_attention_layernorm.weight", &l.post_norm));
    REX_RETURN_IF_ERROR(load_linear(lw.q_w, lw.q_b, qd, hidden, p + "self_attn.q_proj", &l.q));
    REX_RETURN_IF_ERROR(load_linear(lw.k_w, lw.k_b, kvd, hidden, p + "self_attn.k_proj", &l.k));
    REX_RETURN_IF_ERROR(load_linear(lw.v_w, lw.v_b, kvd, hidden, p + "self_attn.v_proj", &l.v));
    REX_RETURN_IF_ERROR(load_linear(lw.o_w, nullptr, hidden, qd, p + "self_attn.o_proj", &l.o));
    REX_RETURN_IF_ERROR(load_linear(lw.gate_w, nullptr, inter, hidden, p + "mlp.gate_proj", &l.gate));
    REX_RETURN_IF_ERROR(load_linear(lw.up_w, nullptr, inter, hidden, p + "mlp.up_proj", &l.up));
    REX_RETURN_IF_ERROR(load_linear(lw.down_w, nullptr, hidden, inter, p + "mlp.down_proj", &l.down));
  }
  REX_RETURN_IF_ERROR(widen_tensor(w.final_norm, hidden, "model.norm.weight", &final_norm_));
  return Status::Ok();
}

Status TextDecoder::embed(const int32_t* ids, int n, float* out) const {
  return embed_rows(ids, nullptr, n, embed_.data(), config_.vocab_size, nullptr, 0, config_.hidden_size, out);
}

void TextDecoder::init_cache(KvCache* cache, int capacity_hint) const {
  const size_t kvd = size_t(config_.num_kv_heads) * config_.head_dim();
  // Reserve for the hint, but not beyond 4096 tokens: the vectors grow anyway.
  const size_t reserve = size_t(std::min(std::max(capacity_hint, 0), 4096)) * kvd;
  cache->length = 0;
  cache->k.assign(size_t(config_.num_layers), {});
  cache->v.assign(size_t(config_.num_layers), {});
  for (int l = 0; l < config_.num_layers; ++l) {
    cache->k[size_t(l)].reserve(reserve);
    cache->v[size_t(l)].reserve(reserve);
  }
}

Status TextDecoder::forward(ThreadPool& pool, std::vector<float> x, const std::vector<TextSegment>& segments,
                            float* logits, const TensorTap* tap) const {
  const TextConfig& c = config_;
  int head_rows = 0;
  for (const auto& s : segments) {
    if (s.logit_rows < 0 || s.logit_rows > s.n)
      return Status(StatusCode::kInvalidArgument, "text forward: expected 0.." + std::to_string(s.n) +
                    " logit rows but got " + std::to_string(s.logit_rows));
    head_rows += s.logit_rows;
  }
  const int hidden = c.hidden_size, hd = c.head_dim(), hq = c.num_heads, hkv = c.num_kv_heads;
  const int qd = hq * hd, kvd = hkv * hd, inter = c.intermediate_size;
  int rows = 0;
  for (const auto& s : segments) {
    if (!s.cache || s.n <= 0 || !s.positions)
      return Status(StatusCode::kInvalidArgument, "text forward: empty segment");
    rows += s.n;
  }
  if (x.size() != size_t(rows) * hidden)
    return Status(StatusCode::kInternal, "text forward: input rows do not match segments");
  const bool tapping = tap && *tap;
  auto emit = [&](const std::string& name, const float* t) {
    if (tapping) (*tap)(name, t, {rows, hidden});
  };
  emit("text.embed", x.data());

  // Rotary table over all rows: each segment's positions are axis-major on their own.
  RotaryTable rope;
  rope.tokens = rows;
  rope.head_dim = hd;
  rope.cos.resize(size_t(rows) * hd);
  rope.sin.resize(size_t(rows) * hd);
  int r0 = 0;
  for (const auto& s : segments) {
    RotaryTable part = mrope_table(s.positions, s.n, hd, c.rope_theta, c.mrope_section);
    std::copy(part.cos.begin(), part.cos.end(), rope.cos.begin() + ptrdiff_t(r0) * hd);
    std::copy(part.sin.begin(), part.sin.end(), rope.sin.begin() + ptrdiff_t(r0) * hd);
    r0 += s.n;
  }

  std::vector<float> h(x.size()), q(size_t(rows) * qd), k(size_t(rows) * kvd), v(size_t(rows) * kvd);
  std::vector<float> attn(size_t(rows) * qd), tmp(x.size());
  std::vector<float> gate(size_t(rows) * inter), up(size_t(rows) * inter);
  std::vector<CausalSegment> causal(segments.size());
  // h = input_norm(x) of the first layer; each half-block ends with the fused
  // x += delta; h = next_norm(x) (the next layer's input norm, or the final norm).
  rmsnorm(pool, x.data(), rows, hidden, c.num_layers > 0 ? layers_[0].input_norm.data() : final_norm_.data(),
          c.rms_norm_eps, h.data());
  for (int li = 0; li < c.num_layers; ++li) {
    const Layer& l = layers_[size_t(li)];
    linear(pool, h.data(), rows, l.q, q.data(), precision_);
    linear(pool, h.data(), rows, l.k, k.data(), precision_);
    linear(pool, h.data(), rows, l.v, v.data(), precision_);
    apply_rotary(pool, q.data(), rows, hq, qd, rope);
    apply_rotary(pool, k.data(), rows, hkv, kvd, rope);
    // Each segment's new keys and values into its cache, then one attention
    // pass over every segment (each one's rows as it gets alone). A later
    // resize moves no earlier pointer: every segment has a cache of its own.
    r0 = 0;
    for (size_t i = 0; i < segments.size(); ++i) {
      const TextSegment& s = segments[i];
      auto& kc = s.cache->k[size_t(li)];
      auto& vc = s.cache->v[size_t(li)];
      const int past = s.cache->length;
      kc.resize(size_t(past + s.n) * kvd);
      vc.resize(size_t(past + s.n) * kvd);
      std::copy_n(&k[size_t(r0) * kvd], size_t(s.n) * kvd, &kc[size_t(past) * kvd]);
      std::copy_n(&v[size_t(r0) * kvd], size_t(s.n) * kvd, &vc[size_t(past) * kvd]);
      causal[i] = CausalSegment{r0, s.n, past, kc.data(), vc.data()};
      r0 += s.n;
    }
    attention_causal_gqa_varlen(pool, q.data(), causal, hq, hkv, hd, attn.data());
    linear(pool, attn.data(), rows, l.o, tmp.data(), precision_);
    add_rmsnorm(pool, x.data(), tmp.data(), rows, hidden, l.post_norm.data(), c.rms_norm_eps, h.data());
    linear(pool, h.data(), rows, l.gate, gate.data(), precision_);
    linear(pool, h.data(), rows, l.up, up.data(), precision_);
    swiglu_inplace(pool, gate.data(), up.data(), int64_t(gate.size()));
    linear(pool, gate.data(), rows, l.down, tmp.data(), precision_);
    const float* next_norm = li + 1 < c.num_layers ? layers_[size_t(li) + 1].input_norm.data() : final_norm_.data();
    add_rmsnorm(pool, x.data(), tmp.data(), rows, hidden, next_norm, c.rms_norm_eps, h.data());
    if (tapping) emit("text.layer." + std::to_string(li), x.data());
  }
  for (auto& s : segments) s.cache->length += s.n;

  emit("text.final_norm", h.data());  // h = final_norm(x), from the last add_rmsnorm
  if (head_rows == 0) return Status::Ok();  // prefill chunks whose logits nobody reads
  // Gather each segment's last rows, then one LM-head matmul for the batch.
  std::vector<float> last(size_t(head_rows) * hidden);
  for (size_t i = 0, r = 0, at = 0; i < segments.size(); ++i) {
    r += size_t(segments[i].n);
    const size_t per = size_t(segments[i].logit_rows);
    std::copy_n(&h[(r - per) * hidden], per * hidden, &last[at * hidden]);
    at += per;
  }
  matmul_bias(pool, last.data(), head_rows, hidden, lm_head(), nullptr, c.vocab_size, logits, precision_,
              ActivationPrecision::kFp32);
  return Status::Ok();
}

}  // namespace rex::cpu
