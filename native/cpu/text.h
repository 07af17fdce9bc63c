// The Qwen2.5-VL text decoder in fp32 with a per-sequence KV cache.
// One forward routine serves prefill and batched decode: the call carries a
// list of segments (sequence, new tokens); the dense layers run over all new
// rows at once, attention in one pass with each segment against its own cache. Logits are
// produced for each segment's last logit_rows rows only (tied LM head).
#pragma once

#include <vector>

#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "cpu/weights_f32.h"
#include "engine/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace rex::cpu {

struct KvCache {
  int length = 0;                         // tokens stored
  std::vector<std::vector<float>> k, v;   // per layer: [length, kv_heads*head_dim]
};

struct TextSegment {
  KvCache* cache = nullptr;
  int n = 0;                      // new tokens; their rows are consecutive in the call's input
  const int32_t* positions = nullptr;  // axis-major [t(n), h(n), w(n)]
  int logit_rows = 0;             // its last rows with logits, 0..n
};

class TextDecoder {
 public:
  // kBf16: every GEMM reads and writes bf16-rounded activations (cpu/gemm.h).
  void set_activation_precision(ActivationPrecision p) { precision_ = p; }
  Status load(const TextConfig& config, const TextWeights& weights);
  const TextConfig& config() const { return config_; }

  // Embedding rows for ids (kInvalidArgument for an id outside the vocabulary).
  Status embed(const int32_t* ids, int n, float* out) const;

  // x: [sum n, hidden] input embeddings. Appends to each segment's cache and
  // writes logits [sum of logit rows, vocab], segment by segment: the last
  // logit_rows rows of each (1 for a prompt's last chunk; more for
  // teacher-forced scoring; every row for decode; 0: none). With no logit
  // rows at all logits may be null.
  Status forward(ThreadPool& pool, std::vector<float> x, const std::vector<TextSegment>& segments,
                 float* logits, const TensorTap* tap) const;

  void init_cache(KvCache* cache, int capacity_hint) const;

 private:
  ActivationPrecision precision_ = ActivationPrecision::kFp32;
  struct Layer {
    std::vector<float> input_norm, post_norm;
    Linear q, k, v, o, gate, up, down;
  };
  TextConfig config_;
  std::vector<float> embed_;       // [vocab, hidden]
  std::vector<float> lm_head_own_; // empty when tied to embed_
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  const float* lm_head() const { return lm_head_own_.empty() ? embed_.data() : lm_head_own_.data(); }
};

}  // namespace rex::cpu
