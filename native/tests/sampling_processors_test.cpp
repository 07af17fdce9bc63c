// Logits processors and the seeded sampler: transformers' repetition penalty
// rule, argmax ties, top-k ties, top-p boundary, PCG32 reference output,
// determinism per seed, and the frequencies of a plain temperature-1 draw.
#include <cmath>
#include <vector>

#include "sampling/rng.h"
#include "sampling/sampling.h"
#include "test_harness.h"

using namespace rex;

REX_TEST(pcg32_reference_sequence) {
  // pcg32-demo from the PCG reference distribution: pcg32_srandom(42, 54).
  Pcg32 rng(42, 54);
  const uint32_t expected[6] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u, 0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
  for (uint32_t e : expected) CHECK_EQ(rng.next_u32(), e);
}

REX_TEST(repetition_penalty_rule) {
  std::vector<float> logits = {2.0f, -2.0f, 0.5f, 1.0f, 0.0f};
  TokenHistory h(5);
  h.add({0, 1, 1, 4, 0});  // duplicates count once
  CHECK(h.distinct_ids() == std::vector<int32_t>({0, 1, 4}));
  apply_repetition_penalty(logits.data(), 5, h.distinct_ids(), 2.0f);
  CHECK_EQ(logits[0], 1.0f);   // positive: divided
  CHECK_EQ(logits[1], -4.0f);  // negative: multiplied
  CHECK_EQ(logits[2], 0.5f);   // unseen: untouched
  CHECK_EQ(logits[3], 1.0f);
  CHECK_EQ(logits[4], 0.0f);   // zero stays zero
}

REX_TEST(greedy_argmax_lowest_id_on_ties) {
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, -1.0f};
  CHECK_EQ(argmax(logits.data(), 4), 1);
  // The penalty can change the winner: 3 / 1.5 = 2 < 2.5.
  std::vector<float> l2 = {2.5f, 3.0f, 0.0f};
  TokenHistory h(3);
  h.add(1);
  Pcg32 rng(0);
  SamplingParams greedy;
  greedy.repetition_penalty = 1.5f;
  SampledToken t = sample_token(l2.data(), 3, greedy, h, rng);
  CHECK_EQ(t.id, 0);
  double z = std::exp(2.5) + std::exp(2.0) + std::exp(0.0);
  CHECK_NEAR(t.logprob, 2.5 - std::log(z), 1e-6);
}

REX_TEST(top_k_keeps_ties_at_threshold) {
  std::vector<float> l = {1, 5, 3, 4, 4};
  apply_top_k(l.data(), 5, 2);
  CHECK(std::isinf(l[0]) && std::isinf(l[2]));
  CHECK_EQ(l[1], 5.0f);
  CHECK_EQ(l[3], 4.0f);
  CHECK_EQ(l[4], 4.0f);
}

REX_TEST(top_p_rule) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (ids 0..3).
  const std::vector<float> base = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  std::vector<float> l = base;
  apply_top_p(l.data(), 4, 0.75f);  // ascending cumsum .05 .20 .50 1: drop those <= .25
  CHECK(!std::isinf(l[0]) && !std::isinf(l[1]) && std::isinf(l[2]) && std::isinf(l[3]));
  l = base;
  apply_top_p(l.data(), 4, 0.9f);  // drop those <= .1: only id 3
  CHECK(!std::isinf(l[2]) && std::isinf(l[3]));
  l = base;
  apply_top_p(l.data(), 4, 0.01f);  // the top token always survives
  CHECK(!std::isinf(l[0]) && std::isinf(l[1]));
}

static std::vector<int32_t> draw(uint64_t seed, int n, const SamplingParams& base) {
  SamplingParams p = base;
  p.seed = seed;
  Pcg32 rng(p.seed);
  TokenHistory h(6);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {0.1f, 0.5f, 0.2f, 0.9f, -0.3f, 0.0f};
    out.push_back(sample_token(l.data(), 6, p, h, rng).id);
  }
  return out;
}

REX_TEST(seeded_sampling_is_deterministic) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 4;
  p.top_p = 0.95f;
  CHECK(draw(7, 50, p) == draw(7, 50, p));
  CHECK(draw(7, 50, p) != draw(8, 50, p));
  for (int32_t id : draw(3, 200, p)) CHECK(id == 0 || id == 1 || id == 2 || id == 3);  // top-4 only
}

REX_TEST(temperature_one_frequencies) {
  std::vector<double> probs = {0.5, 0.3, 0.2};
  SamplingParams p;
  p.temperature = 1.0f;
  Pcg32 rng(99);
  TokenHistory h(3);
  std::vector<int> counts(3, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {float(std::log(0.5)), float(std::log(0.3)), float(std::log(0.2))};
    SampledToken t = sample_token(l.data(), 3, p, h, rng);
    counts[size_t(t.id)]++;
    CHECK_NEAR(t.logprob, std::log(probs[size_t(t.id)]), 1e-5);
  }
  for (int i = 0; i < 3; ++i) CHECK_NEAR(double(counts[size_t(i)]) / n, probs[size_t(i)], 0.015);
}
