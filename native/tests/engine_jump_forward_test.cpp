// Jump-forward and multi-row decode over a random in-memory model (vocabulary
// 1000: text 0..99, coordinates 100..899, structural 900..905):
//  - the CPU backend's multi-row decode (several consecutive rows of one
//    slot) gives the same logits as one row per step, and rejects rows of a
//    slot that are apart, positions that skip, and rows past the capacity;
//  - through the Engine, jump-forward on and off give the same tokens and
//    the same logprob and model_logprob, bit for bit, greedy and seeded, on
//    the host sampling path and on the device-sampling path (the CPU backend
//    behind decode_sampled, checking every row's draw against its own Pcg32),
//    with fewer decode steps; a forced stop is never fed; a forced run that
//    reaches max_new_tokens ends there;
//  - the row budget: with a decode step of only max_active rows, a request
//    alone still jumps forward, four at once never exceed the step's rows,
//    and each gives the tokens it gives alone;
//  - chunked prefill: a long prompt goes in chunks with the running
//    request's decode steps between them, and gives the tokens it gives
//    prefilled whole.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "engine/mrope_positions.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

namespace {

constexpr int32_t kStop = 900, kRefStart = 901, kRefEnd = 902, kBoxStart = 903, kBoxEnd = 904;
constexpr int kVocab = 1000;

// Multi-token phrases with distinct first tokens (after the first, the rest
// is forced, then REF_END BOX_START), a two-token "None", and a two-token
// group separator (its second token and REF_START are forced).
OutputGrammar phrases_grammar(int max_predictions) {
  OutputGrammar g;
  g.coord_first = 100;
  g.coord_count = 800;
  g.stop_ids = {kStop};
  g.ref_start = kRefStart;
  g.ref_end = kRefEnd;
  g.box_start = kBoxStart;
  g.box_end = kBoxEnd;
  g.none_tokens = {30, 31};
  g.item_separators = {{11}, {11, 20}};
  g.group_separators = {{12, 20}};
  g.arity = ItemArity::kBox;
  g.phrase_mode = PhraseMode::kFixed;
  g.phrases = {{40, 41, 42, 43}, {50, 51, 52}};
  g.free_text_banned = {{100, 1000}};
  g.max_predictions = max_predictions;
  return g;
}

// One phrase, one prediction: after REF_START everything but the
// coordinates is forced, BOX_END and STOP included.
OutputGrammar single_box_grammar() {
  OutputGrammar g = phrases_grammar(1);
  g.phrases = {{40, 41, 42}};
  return g;
}

// The CPU backend, recording every decode call's rows; with `device` it
// samples behind decode_sampled / prefill_sampled as a device sampler would:
// its own Pcg32 per slot (seeded with `seed`), its own history per slot (the
// prompt and every fed row), sample_token per row. Each row's uniform is
// checked against its own draw, so the engine's draws are tested for count
// and order.
class RecordingBackend final : public Backend {
 public:
  RecordingBackend(bool device, size_t kv_bytes) : cpu_(options(kv_bytes)), device_(device) {}
  uint64_t seed = 0;                        // the next slot's (one request at a time)
  int step_rows = 1 << 20;                  // max_step_rows()
  int uniform_mismatches = 0;
  int forced_mask_errors = 0;               // a row before another of its slot without a one-id mask of that id
  int model_logprob_rows = 0, sampled_rows = 0;
  std::vector<std::vector<DecodeRow>> calls;
  // Every prefill and decode call in order: +n a prefill of n tokens, -n a decode of n rows.
  std::vector<int> log;
  std::vector<int> prefill_logit_rows;      // each prefill's logit_rows, in order
  int max_step_rows() const override { return step_rows; }

  const char* name() const override { return device_ ? "cpu-as-device" : "cpu-recording"; }
  Status prepare(const ModelConfig& c, const ModelWeights& w) override { return cpu_.prepare(c, w); }
  int vocab_size() const override { return cpu_.vocab_size(); }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override {
    return cpu_.encode_image(image);
  }
  AdmissionCheck check_admission(int tokens) const override { return cpu_.check_admission(tokens); }
  Result<SlotId> acquire_slot(int capacity) override {
    auto slot = cpu_.acquire_slot(capacity);
    if (slot.ok()) state_[slot.value()] = {TokenHistory(vocab_size()), Pcg32(seed)};
    return slot;
  }
  void release(SlotId slot) override {
    state_.erase(slot);
    cpu_.release(slot);
  }
  int slot_length(SlotId slot) const override { return cpu_.slot_length(slot); }
  Status prefill(const PrefillInput& in, float* logits) override {
    log.push_back(in.n);
    prefill_logit_rows.push_back(in.logit_rows);
    return cpu_.prefill(in, logits);
  }
  Status decode(const std::vector<DecodeRow>& rows, float* logits) override {
    calls.push_back(rows);
    log.push_back(-int(rows.size()));
    return cpu_.decode(rows, logits);
  }
  bool samples_on_device() const override { return device_; }
  Status prefill_sampled(const PrefillInput& in, const RowSampling& rs, SampledToken* out) override {
    std::vector<float> logits(static_cast<size_t>(vocab_size()));
    REX_RETURN_IF_ERROR(cpu_.prefill(in, logits.data()));
    SlotState& st = state_[in.slot];
    for (int i = 0; i < in.n; ++i) st.history.add(in.token_ids[i]);
    *out = sample(st, logits.data(), rs);
    return Status::Ok();
  }
  Status decode_sampled(const std::vector<DecodeRow>& rows, const std::vector<RowSampling>& sampling,
                        std::vector<SampledToken>* out) override {
    const int vocab = vocab_size();
    std::vector<float> logits(rows.size() * size_t(vocab));
    REX_RETURN_IF_ERROR(decode(rows, logits.data()));
    out->clear();
    for (size_t i = 0; i < rows.size(); ++i) {
      SlotState& st = state_[rows[i].slot];
      st.history.add(rows[i].token);
      const bool more = i + 1 < rows.size() && rows[i + 1].slot == rows[i].slot;
      if (more && (!sampling[i].mask || allowed_count(sampling[i].mask, vocab) != 1 ||
                   !sampling[i].mask->allows(rows[i + 1].token)))
        ++forced_mask_errors;
      out->push_back(sample(st, &logits[i * size_t(vocab)], sampling[i]));
    }
    return Status::Ok();
  }
  void set_tap(TensorTap tap) override { cpu_.set_tap(std::move(tap)); }
  BackendInfo info() const override { return cpu_.info(); }

 private:
  struct SlotState {
    TokenHistory history;
    Pcg32 rng;
  };
  static BackendOptions options(size_t kv_bytes) {
    BackendOptions o;
    o.threads = 2;
    o.kv_cache_bytes = kv_bytes;
    return o;
  }
  SampledToken sample(SlotState& st, float* logits, const RowSampling& rs) {
    if (!is_greedy(rs.params)) {
      Pcg32 probe = st.rng;
      if (probe.next_double() != rs.uniform) ++uniform_mismatches;
    }
    ++sampled_rows;
    model_logprob_rows += rs.model_logprob;
    return sample_token(logits, vocab_size(), rs.params, st.history, st.rng, rs.mask);
  }
  CpuBackend cpu_;
  bool device_;
  std::map<SlotId, SlotState> state_;
};

struct Fixture {
  std::shared_ptr<RandomModel> model;
  RecordingBackend* backend = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine;
  explicit Fixture(bool device, int max_active = 8, int step_rows = 1 << 20, int chunk_tokens = 2048) {
    model = std::shared_ptr<RandomModel>(make_random_model().release());
    // A KV budget, so the CPU backend enforces every slot's capacity.
    auto be = std::make_unique<RecordingBackend>(device, size_t(8) << 20);
    be->step_rows = step_rows;
    CHECK(be->prepare(model->config, model->weights).ok());
    backend = be.get();
    EngineOptions options;
    options.max_active_requests = max_active;
    options.prefill_chunk_tokens = chunk_tokens;
    auto e = Engine::create_with_backend(model->config, std::move(be), options, model);
    CHECK(e.ok());
    if (e.ok()) engine = std::move(e).value();
  }
  Result<GenerationResult> run(GenerationRequest r) {
    backend->seed = r.sampling.seed;
    return engine->generate_blocking(std::move(r));
  }
};

GenerationRequest request(const OutputGrammar& g, bool sampled, uint64_t seed, int max_new, bool jump) {
  GenerationRequest r;
  r.prompt_ids = {5, int32_t(17 + seed % 50), 42, 7};  // greedy runs differ by prompt
  r.max_new_tokens = max_new;
  r.stop_token_ids = {kStop};
  r.sampling.repetition_penalty = 1.05f;
  if (sampled) {
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
  }
  r.sampling.seed = seed;
  r.grammar = g;
  r.jump_forward = jump;
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Runs each case with jump-forward off and on; the two must agree bit for
// bit. Returns {decode steps off, decode steps on, forced tokens on}.
struct Totals {
  long steps_off = 0, steps_on = 0, forced_on = 0, tokens = 0;
};
Totals compare_on_off(Fixture& f, const OutputGrammar& g, bool sampled, int seeds) {
  Totals t;
  for (int seed = 0; seed < seeds; ++seed) {
    const int max_new = 8 + (seed * 7) % 40;
    auto off = f.run(request(g, sampled, uint64_t(seed), max_new, false));
    auto on = f.run(request(g, sampled, uint64_t(seed), max_new, true));
    CHECK(off.ok() && on.ok());
    if (!off.ok() || !on.ok()) continue;
    const std::string what = std::string(sampled ? "sampled" : "greedy") + " seed " + std::to_string(seed);
    if (on->tokens != off->tokens) ::rex_test::fail(__FILE__, __LINE__, what + ": tokens differ");
    if (!same_bits(on->logprobs, off->logprobs)) ::rex_test::fail(__FILE__, __LINE__, what + ": logprobs differ");
    if (!same_bits(on->model_logprobs, off->model_logprobs))
      ::rex_test::fail(__FILE__, __LINE__, what + ": model_logprobs differ");
    CHECK(on->finish.reason == off->finish.reason);
    CHECK(on->finish.reason == FinishReason::kEos);
    CHECK_EQ(on->finish.generated_tokens, off->finish.generated_tokens);
    CHECK(int(on->tokens.size()) <= max_new);
    // Off: one step per token after the first. On: one per sampled token
    // after the first, plus one for a run that ends with a forced token.
    const int n = off->finish.generated_tokens;
    CHECK_EQ(off->finish.decode_steps, n - 1);
    CHECK_EQ(off->finish.forced_tokens, 0);
    const int sampled_after_first = n - 1 - on->finish.forced_tokens;
    CHECK(on->finish.decode_steps == sampled_after_first || on->finish.decode_steps == sampled_after_first + 1);
    t.steps_off += off->finish.decode_steps;
    t.steps_on += on->finish.decode_steps;
    t.forced_on += on->finish.forced_tokens;
    t.tokens += n;
  }
  return t;
}

void jump_forward_is_invisible(bool device) {
  Fixture f(device);
  for (bool sampled : {false, true}) {
    const Totals t = compare_on_off(f, phrases_grammar(4), sampled, sampled ? 16 : 10);
    CHECK(t.forced_on > 0);
    CHECK(t.steps_on < t.steps_off);
    CHECK(t.tokens > 40);                                 // the random model did write groups
    std::fprintf(stderr, "  %s %s: %ld tokens, decode steps %ld -> %ld, %ld forced\n", device ? "device" : "host",
                 sampled ? "sampled" : "greedy", t.tokens, t.steps_off, t.steps_on, t.forced_on);
  }
  CHECK_EQ(f.backend->uniform_mismatches, 0);
  CHECK_EQ(f.backend->forced_mask_errors, 0);
  if (device) CHECK(f.backend->sampled_rows > 0);
}

}  // namespace

REX_TEST(multi_row_decode_equals_one_row_per_step) {
  auto model = make_random_model();
  CpuBackend stepwise(2), batched(2);
  CHECK(stepwise.prepare(model->config, model->weights).ok());
  CHECK(batched.prepare(model->config, model->weights).ok());
  const int vocab = batched.vocab_size();
  const std::vector<int32_t> a = {3, 1, 4, 1, 5}, b = {2, 7, 1};
  const std::vector<int32_t> a_more = {9, 26, 53}, b_more = {58, 97, 93, 23};
  auto pa = mrope_positions(a, model->config.image_token_id, 0, 0);
  auto pb = mrope_positions(b, model->config.image_token_id, 0, 0);
  std::vector<float> scratch(static_cast<size_t>(vocab));
  SlotId sa[2], sb[2];
  CpuBackend* backends[2] = {&stepwise, &batched};
  for (int k = 0; k < 2; ++k) {
    sa[k] = backends[k]->acquire_slot(16).value();
    sb[k] = backends[k]->acquire_slot(16).value();
    CHECK(backends[k]->prefill({sa[k], a.data(), int(a.size()), pa->ids.data(), nullptr, -1}, scratch.data()).ok());
    CHECK(backends[k]->prefill({sb[k], b.data(), int(b.size()), pb->ids.data(), nullptr, -1}, scratch.data()).ok());
  }
  // One row per call on one backend ...
  std::vector<float> want;
  for (size_t j = 0; j < a_more.size(); ++j) {
    CHECK(stepwise.decode({{sa[0], a_more[j], int32_t(a.size() + j)}}, scratch.data()).ok());
    want.insert(want.end(), scratch.begin(), scratch.end());
  }
  for (size_t j = 0; j < b_more.size(); ++j) {
    CHECK(stepwise.decode({{sb[0], b_more[j], int32_t(b.size() + j)}}, scratch.data()).ok());
    want.insert(want.end(), scratch.begin(), scratch.end());
  }
  // ... and 3 + 4 rows in one call (runs of different lengths) on the other.
  std::vector<DecodeRow> rows;
  for (size_t j = 0; j < a_more.size(); ++j) rows.push_back({sa[1], a_more[j], int32_t(a.size() + j)});
  for (size_t j = 0; j < b_more.size(); ++j) rows.push_back({sb[1], b_more[j], int32_t(b.size() + j)});
  std::vector<float> got(rows.size() * size_t(vocab));
  CHECK(batched.decode(rows, got.data()).ok());
  CHECK(same_bits(got, want));
  CHECK_EQ(batched.slot_length(sa[1]), int(a.size() + a_more.size()));
  CHECK_EQ(batched.slot_length(sb[1]), int(b.size() + b_more.size()));
  // Runs of equal length (one forward) after that: still the same as row by row.
  want.clear();
  for (SlotId s : {sa[0], sb[0]}) {
    const int len = stepwise.slot_length(s);
    for (int j = 0; j < 2; ++j) {
      CHECK(stepwise.decode({{s, 60 + j, len + j}}, scratch.data()).ok());
      want.insert(want.end(), scratch.begin(), scratch.end());
    }
  }
  const int la = batched.slot_length(sa[1]), lb = batched.slot_length(sb[1]);
  got.assign(4 * size_t(vocab), 0.0f);
  CHECK(batched.decode({{sa[1], 60, la}, {sa[1], 61, la + 1}, {sb[1], 60, lb}, {sb[1], 61, lb + 1}}, got.data()).ok());
  CHECK(same_bits(got, want));
}

REX_TEST(bad_multi_row_inputs_are_rejected) {
  auto model = make_random_model();
  BackendOptions o;
  o.threads = 2;
  o.kv_cache_bytes = size_t(4) << 20;
  CpuBackend be(o);
  CHECK(be.prepare(model->config, model->weights).ok());
  const std::vector<int32_t> a = {3, 1, 4}, b = {2, 7};
  auto pa = mrope_positions(a, model->config.image_token_id, 0, 0);
  auto pb = mrope_positions(b, model->config.image_token_id, 0, 0);
  std::vector<float> logits(8 * size_t(be.vocab_size()));
  const SlotId sa = be.acquire_slot(6).value(), sb = be.acquire_slot(6).value();
  CHECK(be.prefill({sa, a.data(), 3, pa->ids.data(), nullptr, -1}, logits.data()).ok());
  CHECK(be.prefill({sb, b.data(), 2, pb->ids.data(), nullptr, -1}, logits.data()).ok());
  auto rejected = [&](const std::vector<DecodeRow>& rows, const char* needle) {
    Status st = be.decode(rows, logits.data());
    CHECK(st.code() == StatusCode::kInvalidArgument);
    if (needle) {
      CHECK_CONTAINS(st.message(), "expected");
      CHECK_CONTAINS(st.message(), "but got");
      CHECK_CONTAINS(st.message(), needle);
    }
    CHECK_EQ(be.slot_length(sa), 3);  // nothing was appended
    CHECK_EQ(be.slot_length(sb), 2);
  };
  rejected({{sa, 1, 3}, {sb, 2, 2}, {sa, 3, 4}}, "consecutive");  // one slot's rows apart
  rejected({{sa, 1, 3}, {sa, 2, 5}}, "position 4");               // a position skipped
  rejected({{sa, 1, 3}, {sa, 2, 2}}, "position 4");               // or repeated
  rejected({{sa, 1, 3}, {sa, 2, 4}, {sa, 3, 5}, {sa, 4, 6}}, "at most 3 more");  // capacity 6
  rejected({{sb, 1, 2}, {sb, 5000, 3}}, nullptr);                // a token outside the vocabulary
  CHECK(be.decode({{sa, 1, 3}, {sa, 2, 4}, {sa, 3, 5}, {sb, 4, 2}}, logits.data()).ok());  // exactly full
  CHECK_EQ(be.slot_length(sa), 6);
}

REX_TEST(jump_forward_is_invisible_on_the_host_path) { jump_forward_is_invisible(false); }

REX_TEST(jump_forward_is_invisible_on_the_device_sampling_path) { jump_forward_is_invisible(true); }

REX_TEST(device_and_host_sampling_give_the_same_output) {
  Fixture host(false), device(true);
  for (int seed = 0; seed < 6; ++seed) {
    for (bool jump : {false, true}) {
      auto h = host.run(request(phrases_grammar(4), true, uint64_t(seed), 40, jump));
      auto d = device.run(request(phrases_grammar(4), true, uint64_t(seed), 40, jump));
      CHECK(h.ok() && d.ok());
      if (!h.ok() || !d.ok()) continue;
      CHECK(h->tokens == d->tokens);
      CHECK(same_bits(h->logprobs, d->logprobs));
      CHECK(same_bits(h->model_logprobs, d->model_logprobs));
      CHECK_EQ(h->finish.decode_steps, d->finish.decode_steps);
    }
  }
  CHECK_EQ(device.backend->uniform_mismatches, 0);
}

REX_TEST(a_forced_stop_ends_the_request_unfed) {
  for (bool device : {false, true}) {
    Fixture f(device);
    int ended_forced = 0;
    for (int seed = 0; seed < 6; ++seed) {
      f.backend->calls.clear();
      auto res = f.run(request(single_box_grammar(), seed % 2 == 1, uint64_t(seed), 30, true));
      CHECK(res.ok());
      if (!res.ok()) continue;
      CHECK(res->finish.reason == FinishReason::kEos);
      CHECK(!res->tokens.empty() && res->tokens.back() == kStop);
      for (const auto& call : f.backend->calls)
        for (const DecodeRow& row : call) CHECK(row.token != kStop);  // the stop token is never fed
      // A box was written: REF_START, the phrase, REF_END, BOX_START, 4 coordinates, then BOX_END and
      // STOP, both forced: the last step scores them, and no step follows the stop.
      const size_t n = res->tokens.size();
      if (n >= 3 && res->tokens[n - 2] == kBoxEnd) {
        ++ended_forced;
        CHECK(res->finish.forced_tokens >= 7);  // 40 41 42 REF_END BOX_START, BOX_END STOP
        CHECK_EQ(res->finish.decode_steps, int(n) - 1 - res->finish.forced_tokens + 1);
      }
    }
    CHECK(ended_forced > 0);
  }
}

REX_TEST(a_forced_run_stops_at_max_new_tokens) {
  // The grammar's STOP is not a request stop id: once it is written, the
  // grammar allows only STOP again, so every later token is forced until
  // max_new_tokens, which must end the request (length) at exactly that count.
  for (bool device : {false, true}) {
    Fixture f(device);
    for (int max_new : {14, 17, 23}) {
      GenerationRequest off = request(single_box_grammar(), false, 0, max_new, false);
      off.stop_token_ids.clear();
      GenerationRequest on = off;
      on.jump_forward = true;
      auto a = f.run(std::move(off));
      auto b = f.run(std::move(on));
      CHECK(a.ok() && b.ok());
      if (!a.ok() || !b.ok()) continue;
      CHECK(a->tokens == b->tokens);
      CHECK(same_bits(a->model_logprobs, b->model_logprobs));
      CHECK(b->finish.reason == FinishReason::kLength);
      CHECK_EQ(int(b->tokens.size()), max_new);
      CHECK(b->finish.decode_steps < a->finish.decode_steps);
    }
  }
}

REX_TEST(scores_off_reaches_the_device_sampler) {
  Fixture f(true);
  GenerationRequest r = request(phrases_grammar(2), false, 0, 30, true);
  r.want_scores = false;
  auto res = f.run(std::move(r));
  CHECK(res.ok());
  CHECK(f.backend->sampled_rows > 0);
  CHECK_EQ(f.backend->model_logprob_rows, 0);
  auto with_scores = f.run(request(phrases_grammar(2), false, 0, 30, true));
  CHECK(with_scores.ok());
  CHECK_EQ(f.backend->model_logprob_rows * 2, f.backend->sampled_rows);  // the second run asked on every row
}

// A decode step of 4 rows and 4 requests at most: one request alone still
// jumps forward (the other rows are spare), and four at once share the rows
// (each owed one) without exceeding them, each with its tokens alone.
REX_TEST(the_row_budget_shares_a_small_step) {
  Fixture f(false, 4, 4);
  std::vector<std::vector<int32_t>> alone;
  long forced_alone = 0;
  for (int seed = 0; seed < 4; ++seed) {
    auto off = f.run(request(phrases_grammar(4), true, uint64_t(seed), 40, false));
    auto on = f.run(request(phrases_grammar(4), true, uint64_t(seed), 40, true));
    CHECK(off.ok() && on.ok());
    if (!off.ok() || !on.ok()) return;
    CHECK(on->tokens == off->tokens);
    forced_alone += on->finish.forced_tokens;
    alone.push_back(off->tokens);
  }
  CHECK(forced_alone > 0);
  f.backend->calls.clear();
  std::vector<std::vector<int32_t>> together(4);
  std::vector<long> forced(4, 0);
  std::vector<std::thread> threads;
  for (int seed = 0; seed < 4; ++seed)
    threads.emplace_back([&, seed] {
      auto r = f.engine->generate_blocking(request(phrases_grammar(4), true, uint64_t(seed), 40, true));
      if (r.ok()) {
        together[size_t(seed)] = r->tokens;
        forced[size_t(seed)] = r->finish.forced_tokens;
      }
    });
  for (auto& t : threads) t.join();
  size_t widest = 0;
  for (const auto& call : f.backend->calls) widest = std::max(widest, call.size());
  std::fprintf(stderr, "  4 at once over a 4-row step: %zu decode calls, widest %zu rows, %ld forced\n",
               f.backend->calls.size(), widest, forced[0] + forced[1] + forced[2] + forced[3]);
  CHECK(widest <= 4);
  for (int seed = 0; seed < 4; ++seed) CHECK(together[size_t(seed)] == alone[size_t(seed)]);
}

// Chunks of 8: a 60-token prompt goes in 8 prefills; while another request
// decodes, a decode step runs between each two of them; the tokens are those
// of the whole-prompt prefill.
REX_TEST(a_long_prompt_is_prefilled_in_chunks_between_decode_steps) {
  auto long_request = [] {
    GenerationRequest r = request(phrases_grammar(4), false, 3, 12, true);
    r.prompt_ids.clear();
    for (int i = 0; i < 60; ++i) r.prompt_ids.push_back(int32_t(1 + (i * 37) % 90));
    return r;
  };
  Fixture whole(false, 8, 1 << 20, 0);
  auto reference = whole.run(long_request());
  CHECK(reference.ok());
  CHECK(whole.backend->log.front() == 60);  // one prefill
  Fixture f(false, 8, 1 << 20, 8);
  auto alone = f.run(long_request());
  CHECK(alone.ok());
  if (!reference.ok() || !alone.ok()) return;
  CHECK(alone->tokens == reference->tokens);
  CHECK(same_bits(alone->logprobs, reference->logprobs));
  // Only the last chunk asks for logits (the others skip the LM head).
  const std::vector<int> rows = f.backend->prefill_logit_rows;
  CHECK_EQ(rows.size(), size_t(8));
  for (size_t i = 0; i < rows.size(); ++i) CHECK_EQ(rows[i], i + 1 == rows.size() ? 1 : 0);
  // Beside a running request: its decode steps come between the chunks.
  f.backend->log.clear();
  GenerationRequest runner = request(phrases_grammar(4), false, 1, 40, false);
  runner.stop_token_ids.clear();
  std::vector<int32_t> beside;
  std::thread first([&] {
    auto r = f.engine->generate_blocking(std::move(runner));
    CHECK(r.ok());
  });
  // Wait until the runner decodes, then submit the long prompt.
  for (int i = 0; i < 2000 && std::count_if(f.backend->log.begin(), f.backend->log.end(), [](int v) { return v < 0; }) < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto second = f.engine->generate_blocking(long_request());
  first.join();
  CHECK(second.ok());
  if (!second.ok()) return;
  CHECK(second->tokens == reference->tokens);
  // The long prompt's chunks (prefills of 8, then its last 4) each with a decode between.
  std::vector<size_t> chunk_at;
  CHECK_EQ(f.backend->log.front(), 4);  // the runner's own 4-token prompt
  for (size_t i = 1; i < f.backend->log.size(); ++i)
    if (f.backend->log[i] == 8 || f.backend->log[i] == 4) chunk_at.push_back(i);
  size_t interleaved = 0;
  for (size_t c = 1; c < chunk_at.size(); ++c)
    for (size_t i = chunk_at[c - 1] + 1; i < chunk_at[c]; ++i) interleaved += f.backend->log[i] < 0 ? 1 : 0;
  std::fprintf(stderr, "  60-token prompt in chunks of 8 beside a decoding request: %zu chunks, %zu decode steps between them\n",
               chunk_at.size(), interleaved);
  CHECK_EQ(chunk_at.size(), size_t(8));
  CHECK(interleaved >= chunk_at.size() - 1);
}
