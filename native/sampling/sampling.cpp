// See sampling.h. Probabilities are computed in double: this runs once per
// step over one row, and it keeps the draw independent of summation noise.
#include "sampling/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rex {

void TokenHistory::add(int32_t id) {
  if (id < 0) return;
  if (size_t(id) >= seen_.size()) seen_.resize(size_t(id) + 1, 0);
  if (seen_[size_t(id)]) return;
  seen_[size_t(id)] = 1;
  distinct_.push_back(id);
}

void apply_repetition_penalty(float* logits, int vocab, const std::vector<int32_t>& ids, float penalty) {
  if (penalty == 1.0f) return;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) continue;
    float& x = logits[id];
    x = x < 0 ? x * penalty : x / penalty;
  }
}

void apply_temperature(float* logits, int vocab, float temperature) {
  if (temperature <= 0.0f || temperature == 1.0f) return;
  for (int i = 0; i < vocab; ++i) logits[i] /= temperature;
}

void apply_top_k(float* logits, int vocab, int k) {
  if (k <= 0 || k >= vocab) return;
  std::vector<float> sorted(logits, logits + vocab);
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float threshold = sorted[size_t(k - 1)];
  for (int i = 0; i < vocab; ++i)
    if (logits[i] < threshold) logits[i] = -INFINITY;
}

void apply_top_p(float* logits, int vocab, float top_p) {
  if (top_p >= 1.0f) return;
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Ascending by logit, as TopPLogitsWarper sorts (ties: higher id first, so
  // that lower ids count as "more probable", matching argmax's tie rule).
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] < logits[b] || (logits[a] == logits[b] && a > b);
  });
  const float mx = logits[order.back()];
  std::vector<double> p(static_cast<size_t>(vocab));
  double total = 0;
  for (int i = 0; i < vocab; ++i) total += p[size_t(i)] = std::exp(double(logits[order[size_t(i)]]) - mx);
  double cum = 0;
  for (int i = 0; i < vocab - 1; ++i) {  // the most probable token is always kept
    cum += p[size_t(i)] / total;
    if (cum <= 1.0 - double(top_p)) logits[order[size_t(i)]] = -INFINITY;
  }
}

int32_t argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

float log_softmax_at(const float* logits, int vocab, int32_t id) {
  float mx = logits[argmax(logits, vocab)];
  double sum = 0;
  for (int i = 0; i < vocab; ++i)
    if (logits[i] != -INFINITY) sum += std::exp(double(logits[i]) - mx);  // masked ids add exactly 0
  return float(double(logits[id]) - mx - std::log(sum));
}

SampledToken sample_token(float* logits, int vocab, const SamplingParams& params, const TokenHistory& history,
                          Pcg32& rng, const TokenMask* mask) {
  // The raw row's normaliser and a copy of it, for model_logprob.
  const std::vector<float> raw(logits, logits + vocab);
  const float raw_max = raw[size_t(argmax(raw.data(), vocab))];
  double raw_sum = 0;
  for (int i = 0; i < vocab; ++i) raw_sum += std::exp(double(raw[size_t(i)]) - raw_max);
  const double raw_log_norm = double(raw_max) + std::log(raw_sum);
  auto fallback = [&] { return mask ? std::max(mask->first_allowed(vocab), 0) : argmax(logits, vocab); };

  apply_repetition_penalty(logits, vocab, history.distinct_ids(), params.repetition_penalty);
  if (mask) apply_token_mask(logits, vocab, *mask);
  SampledToken out;
  if (is_greedy(params)) {
    out.id = argmax(logits, vocab);
    if (logits[out.id] == -INFINITY) out.id = fallback();  // nothing finite is allowed
    out.logprob = log_softmax_at(logits, vocab, out.id);
    out.model_logprob = float(double(raw[size_t(out.id)]) - raw_log_norm);
    return out;
  }
  apply_temperature(logits, vocab, params.temperature);
  apply_top_k(logits, vocab, params.top_k);
  apply_top_p(logits, vocab, params.top_p);
  const float mx = logits[argmax(logits, vocab)];
  double total = 0;
  for (int i = 0; i < vocab; ++i)
    if (logits[i] != -INFINITY) total += std::exp(double(logits[i]) - mx);
  const double u = rng.next_double() * total;
  double cum = 0;
  out.id = -1;
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] == -INFINITY) continue;
    cum += std::exp(double(logits[i]) - mx);
    out.id = i;  // the last allowed id, should rounding leave u unreached
    if (cum > u) break;
  }
  if (out.id < 0) out.id = fallback();  // nothing finite is allowed
  out.logprob = float(double(logits[out.id]) - mx - std::log(total));
  out.model_logprob = float(double(raw[size_t(out.id)]) - raw_log_norm);
  return out;
}

}  // namespace rex
