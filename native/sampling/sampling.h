// Logits processing and token choice, as transformers' generate() does it:
//   1. repetition penalty over every id in prompt + generated (once per
//      distinct id: logit / p if positive, logit * p otherwise);
//   2. greedy (temperature <= 0 or top_k == 1): argmax, lowest id on ties;
//   3. otherwise temperature, then top-k, then top-p (TopPLogitsWarper's rule:
//      drop tokens whose ascending cumulative probability is <= 1 - top_p,
//      keeping at least one), then a draw from the softmax with a seeded
//      Pcg32: the first id (ascending) whose cumulative probability exceeds u.
// Every input is plain data (parameters, an id list, a float row), never a
// callback, so a GPU sampler can apply exactly the same rules.
//
// Reported log-probability: log_softmax of the *processed* logits at the
// chosen id — after the penalty, and for sampling after temperature and the
// top-k/top-p masks (so it is the log of the probability the token was drawn
// with). For greedy decoding it is log_softmax of the penalised logits at
// temperature 1.
//
// Grammar masks (token_mask.h): when a mask is given, every id it does not
// allow is set to -inf right after the repetition penalty, so temperature,
// top-k, top-p, the draw and greedy's argmax all see only allowed ids (greedy
// picks the best allowed id). `logprob` is then log_softmax over the masked,
// processed logits, i.e. renormalised over the allowed ids. `model_logprob` is
// the unconstrained model's view: log_softmax of the raw logits as they came
// from the model (no penalty, temperature, truncation or mask) at the chosen
// id; confidence scores are built from it. Without a mask nothing changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sampling/rng.h"
#include "sampling/token_mask.h"

namespace rex {

struct SamplingParams {
  float temperature = 0.0f;         // <= 0: greedy
  int top_k = 0;                    // 0: off; 1: greedy
  float top_p = 1.0f;               // 1: off
  float repetition_penalty = 1.0f;  // 1: off (the reference uses 1.05)
  uint64_t seed = 0;
};

inline bool is_greedy(const SamplingParams& p) { return p.temperature <= 0.0f || p.top_k == 1; }

// The distinct ids seen so far (prompt + generated), as plain data.
class TokenHistory {
 public:
  explicit TokenHistory(int vocab_size = 0) : seen_(size_t(vocab_size > 0 ? vocab_size : 0), 0) {}
  void add(int32_t id);
  void add(const std::vector<int32_t>& ids) { for (int32_t id : ids) add(id); }
  const std::vector<int32_t>& distinct_ids() const { return distinct_; }

 private:
  std::vector<uint8_t> seen_;
  std::vector<int32_t> distinct_;
};

void apply_repetition_penalty(float* logits, int vocab, const std::vector<int32_t>& distinct_ids, float penalty);
void apply_temperature(float* logits, int vocab, float temperature);
void apply_top_k(float* logits, int vocab, int k);       // others -> -inf; ties at the k-th value kept
void apply_top_p(float* logits, int vocab, float top_p); // others -> -inf
int32_t argmax(const float* logits, int vocab);          // lowest id on ties
float log_softmax_at(const float* logits, int vocab, int32_t id);

struct SampledToken {
  int32_t id = -1;
  float logprob = 0.0f;        // over the processed (and masked) logits
  float model_logprob = 0.0f;  // over the raw model logits
};

// Processes `logits` in place (they end as the processed logits) and picks a
// token; `mask` (may be null) restricts the choice.
SampledToken sample_token(float* logits, int vocab, const SamplingParams& params,
                          const TokenHistory& history, Pcg32& rng, const TokenMask* mask = nullptr);

}  // namespace rex
