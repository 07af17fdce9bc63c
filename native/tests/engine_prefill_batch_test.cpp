// Batched prefill over a random in-memory model:
//  - the CPU backend's prefill_batch (several slots' chunks in one forward
//    pass, mixed lengths, pasts and logit rows) leaves each slot exactly as
//    prefill() on each input in turn: the same logits and, one decode step
//    later, the same logits again, bit for bit;
//  - it is all or nothing: a batch with one bad input fails and changes no
//    slot; two inputs of one slot are refused;
//  - through the Engine, requests that arrive together are prefilled in
//    rounds of one chunk per request (some calls hold several requests),
//    and each gives, greedy and seeded, the tokens it gives alone;
//  - a round that fails is retried one chunk at a time, so only the request
//    whose input the backend refuses fails, and the others give their
//    tokens as alone; an error after the call succeeded (its first tokens)
//    ends the round's requests and prefills nothing twice;
//  - with prefill_decode_rows, requests running while others prefill decode
//    inside the prefill calls (one-row inputs after the chunks) and give
//    their tokens as alone, greedy and seeded, also when a round is refused
//    and retried without them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "engine/mrope_positions.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

namespace {

constexpr int32_t kStop = 900;
constexpr int32_t kPoison = 77;  // a prompt starting with it is refused by PoisonableBackend

BackendOptions budget_options() {
  BackendOptions o;
  o.threads = 2;
  o.kv_cache_bytes = size_t(8) << 20;
  return o;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Text-only positions for tokens past..past+n-1 (the three axes equal).
std::vector<int32_t> text_positions(int past, int n) {
  std::vector<int32_t> p(size_t(3) * n);
  for (int a = 0; a < 3; ++a)
    for (int i = 0; i < n; ++i) p[size_t(a) * n + i] = past + i;
  return p;
}

std::vector<int32_t> prompt(int n, int salt) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ids[size_t(i)] = int32_t(1 + (i * 37 + salt * 11) % 90);
  return ids;
}

struct Part {
  std::vector<int32_t> ids, positions;
  int logit_rows = 0;
};

PrefillInput input_of(SlotId slot, const Part& p) {
  PrefillInput in;
  in.slot = slot;
  in.token_ids = p.ids.data();
  in.n = int(p.ids.size());
  in.positions = p.positions.data();
  in.logit_rows = p.logit_rows;
  return in;
}

}  // namespace

REX_TEST(prefill_batch_equals_prefills_in_turn) {
  auto model = make_random_model();
  CpuBackend be(budget_options());
  CHECK(be.prepare(model->config, model->weights).ok());
  const int vocab = be.vocab_size();
  // Four sequences: lengths 1, 9, 23 and 40; two already hold a first chunk
  // (past 5 and 17), and logit rows 1, 0, 1, 3.
  const int lengths[] = {1, 9, 23, 40}, pasts[] = {0, 5, 0, 17}, rows[] = {1, 0, 1, 3};
  std::vector<SlotId> alone, together;
  std::vector<Part> first(4), second(4);
  for (int i = 0; i < 4; ++i) {
    for (auto* slots : {&alone, &together}) {
      auto slot = be.acquire_slot(128);
      CHECK(slot.ok());
      if (!slot.ok()) return;
      slots->push_back(slot.value());
    }
    first[size_t(i)] = {prompt(pasts[i], i + 10), text_positions(0, pasts[i]), 0};
    second[size_t(i)] = {prompt(lengths[i], i), text_positions(pasts[i], lengths[i]), rows[i]};
    if (pasts[i] > 0) {
      CHECK(be.prefill(input_of(alone.back(), first[size_t(i)]), nullptr).ok());
      CHECK(be.prefill(input_of(together.back(), first[size_t(i)]), nullptr).ok());
    }
  }
  const int total_rows = 1 + 0 + 1 + 3;
  std::vector<float> in_turn(size_t(total_rows) * vocab), batched(size_t(total_rows) * vocab, -1.0f);
  for (int i = 0, at = 0; i < 4; ++i) {
    CHECK(be.prefill(input_of(alone[size_t(i)], second[size_t(i)]), rows[i] ? &in_turn[size_t(at) * vocab] : nullptr).ok());
    at += rows[i];
  }
  std::vector<PrefillInput> inputs;
  for (int i = 0; i < 4; ++i) inputs.push_back(input_of(together[size_t(i)], second[size_t(i)]));
  CHECK(be.prefill_batch(inputs, batched.data()).ok());
  CHECK(same_bits(in_turn.data(), batched.data(), in_turn.size()));
  for (int i = 0; i < 4; ++i) CHECK_EQ(be.slot_length(together[size_t(i)]), pasts[i] + lengths[i]);
  // The caches are the same too: one decode row each gives the same logits.
  std::vector<DecodeRow> decode_alone, decode_together;
  for (int i = 0; i < 4; ++i) {
    const int32_t position = pasts[i] + lengths[i];
    decode_alone.push_back({alone[size_t(i)], 33, position});
    decode_together.push_back({together[size_t(i)], 33, position});
  }
  std::vector<float> next_alone(size_t(4) * vocab), next_together(size_t(4) * vocab);
  CHECK(be.decode(decode_alone, next_alone.data()).ok());
  CHECK(be.decode(decode_together, next_together.data()).ok());
  CHECK(same_bits(next_alone.data(), next_together.data(), next_alone.size()));
}

REX_TEST(prefill_batch_is_all_or_nothing) {
  auto model = make_random_model();
  CpuBackend be(budget_options());
  CHECK(be.prepare(model->config, model->weights).ok());
  auto a = be.acquire_slot(64), b = be.acquire_slot(64);
  CHECK(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return;
  const Part good{prompt(6, 1), text_positions(0, 6), 1};
  Part bad{prompt(4, 2), text_positions(0, 4), 5};  // 5 logit rows of 4 tokens
  std::vector<float> logits(size_t(6) * be.vocab_size());
  Status st = be.prefill_batch({input_of(a.value(), good), input_of(b.value(), bad)}, logits.data());
  CHECK(!st.ok());
  CHECK_CONTAINS(st.message(), "expected 0..4 logit rows but got 5");
  CHECK_EQ(be.slot_length(a.value()), 0);
  CHECK_EQ(be.slot_length(b.value()), 0);
  st = be.prefill_batch({input_of(a.value(), good), input_of(a.value(), good)}, logits.data());
  CHECK(!st.ok());
  CHECK_CONTAINS(st.message(), "expected one input per slot");
  CHECK_EQ(be.slot_length(a.value()), 0);
  // Logit rows with no buffer for them.
  st = be.prefill_batch({input_of(a.value(), good)}, nullptr);
  CHECK(!st.ok());
  CHECK_CONTAINS(st.message(), "expected a logits buffer");
  CHECK(be.prefill_batch({input_of(a.value(), good)}, logits.data()).ok());
  CHECK_EQ(be.slot_length(a.value()), 6);
}

namespace {

// The CPU backend behind the engine, batching prefills, recording each
// prefill call's inputs (slot, tokens) in order; it refuses any call with an
// input whose first token is kPoison (as a backend refuses an input it
// cannot take), and its first prefill call waits for open() so that the
// requests submitted meanwhile queue up and start together.
class PoisonableBackend final : public Backend {
 public:
  PoisonableBackend() : cpu_(budget_options()) {}
  std::mutex mutex;
  std::vector<std::vector<std::pair<SlotId, int>>> calls;
  std::vector<bool> call_ok;

  void hold() { held_ = true; }
  void open() {
    {
      std::lock_guard<std::mutex> lock(gate_mutex_);
      held_ = false;
    }
    gate_.notify_all();
  }
  bool waiting() const { return waiting_; }
  // "Samples on the device" and returns one first token too few: an error
  // after the prefill itself succeeded (the slots hold the chunks).
  std::atomic<bool> short_samples{false};

  const char* name() const override { return "cpu-poisonable"; }
  Status prepare(const ModelConfig& c, const ModelWeights& w) override { return cpu_.prepare(c, w); }
  int vocab_size() const override { return cpu_.vocab_size(); }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override {
    return cpu_.encode_image(image);
  }
  AdmissionCheck check_admission(int tokens) const override { return cpu_.check_admission(tokens); }
  Result<SlotId> acquire_slot(int capacity) override { return cpu_.acquire_slot(capacity); }
  void release(SlotId slot) override { cpu_.release(slot); }
  int slot_length(SlotId slot) const override { return cpu_.slot_length(slot); }
  bool batches_prefills() const override { return true; }
  Status prefill(const PrefillInput& in, float* logits) override { return prefill_batch({in}, logits); }
  Status prefill_batch(const std::vector<PrefillInput>& inputs, float* logits) override {
    wait_at_gate();
    std::vector<std::pair<SlotId, int>> call;
    bool poisoned = false;
    for (const PrefillInput& in : inputs) {
      call.emplace_back(in.slot, in.n);
      poisoned |= in.n > 0 && in.token_ids[0] == kPoison;
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      calls.push_back(call);
      call_ok.push_back(!poisoned);
    }
    if (poisoned) return Status(StatusCode::kInvalidArgument, "prefill: expected no poisoned prompt but got one");
    return cpu_.prefill_batch(inputs, logits);
  }
  bool samples_on_device() const override { return short_samples; }
  Status prefill_batch_sampled(const std::vector<PrefillInput>& inputs, const std::vector<RowSampling>& sampling,
                               std::vector<SampledToken>* out) override {
    std::vector<float> logits(sampling.size() * size_t(vocab_size()));
    REX_RETURN_IF_ERROR(prefill_batch(inputs, logits.data()));
    out->assign(sampling.size() - 1, SampledToken{});
    return Status::Ok();
  }
  Status prefill_sampled(const PrefillInput& in, const RowSampling& rs, SampledToken* out) override {
    std::vector<SampledToken> one;
    REX_RETURN_IF_ERROR(prefill_batch_sampled({in}, {rs}, &one));
    if (one.empty()) return Status::Ok();  // the engine sees no token: *out untouched
    *out = one[0];
    return Status::Ok();
  }
  // Milliseconds each decode step takes longer: running requests outlast a later one's chunked prefill.
  std::atomic<int> decode_sleep_ms{0};
  Status decode(const std::vector<DecodeRow>& rows, float* logits) override {
    if (decode_sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(int(decode_sleep_ms)));
    return cpu_.decode(rows, logits);
  }
  void set_tap(TensorTap tap) override { cpu_.set_tap(std::move(tap)); }
  BackendInfo info() const override { return cpu_.info(); }

 private:
  void wait_at_gate() {
    std::unique_lock<std::mutex> lock(gate_mutex_);
    waiting_ = held_;
    gate_.wait(lock, [&] { return !held_; });
    waiting_ = false;
  }
  CpuBackend cpu_;
  std::mutex gate_mutex_;
  std::condition_variable gate_;
  bool held_ = false;
  std::atomic<bool> waiting_{false};
};

struct Fixture {
  std::shared_ptr<RandomModel> model;
  PoisonableBackend* backend = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine;
  explicit Fixture(int chunk_tokens, int prefill_decode_rows = 0) {
    model = std::shared_ptr<RandomModel>(make_random_model().release());
    auto be = std::make_unique<PoisonableBackend>();
    CHECK(be->prepare(model->config, model->weights).ok());
    backend = be.get();
    EngineOptions options;
    options.max_active_requests = 8;
    options.prefill_chunk_tokens = chunk_tokens;
    options.prefill_decode_rows = prefill_decode_rows;
    auto e = Engine::create_with_backend(model->config, std::move(be), options, model);
    CHECK(e.ok());
    if (e.ok()) engine = std::move(e).value();
  }
};

GenerationRequest request(int index, bool sampled) {
  // Short prompts beside one of 40 tokens (two chunks of 32): whatever order
  // the requests queue in, some round holds three or more of them.
  static const int lengths[] = {3, 5, 7, 9, 6, 40};
  GenerationRequest r;
  r.prompt_ids = prompt(lengths[index % 6], index);
  r.max_new_tokens = 6 + index % 3;
  r.stop_token_ids = {kStop};
  r.sampling.repetition_penalty = 1.05f;
  if (sampled) {
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
  }
  r.sampling.seed = uint64_t(100 + index);
  return r;
}

// Each request's tokens run alone, in turn (the skipped one, refused on purpose: none).
std::vector<std::vector<int32_t>> alone_tokens(Fixture& f, const std::vector<GenerationRequest>& requests,
                                               size_t skip = size_t(-1)) {
  std::vector<std::vector<int32_t>> alone;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i == skip) {
      alone.emplace_back();
      continue;
    }
    auto one = f.engine->generate_blocking(requests[i]);
    CHECK(one.ok());
    alone.push_back(one.ok() ? one->tokens : std::vector<int32_t>{});
  }
  return alone;
}

// Runs `requests` at once: the first holds the backend's gate until the
// others are queued behind it; returns each one's result in order.
std::vector<Result<GenerationResult>> run_together(Fixture& f, const std::vector<GenerationRequest>& requests) {
  std::vector<Result<GenerationResult>> results(requests.size(), Status(StatusCode::kInternal, "not run"));
  f.backend->hold();
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = f.engine->generate_blocking(requests[0]); });
  for (int i = 0; i < 2000 && !f.backend->waiting(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (size_t i = 1; i < requests.size(); ++i)
    threads.emplace_back([&, i] { results[i] = f.engine->generate_blocking(requests[i]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the others reach the queue
  f.backend->open();
  for (auto& t : threads) t.join();
  return results;
}

void together_as_alone(bool sampled) {
  Fixture f(/*chunk_tokens=*/32);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(request(i, sampled));
  const std::vector<std::vector<int32_t>> alone = alone_tokens(f, requests);
  f.backend->calls.clear();
  auto results = run_together(f, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    CHECK(results[i].ok());
    if (results[i].ok() && results[i]->tokens != alone[i])
      ::rex_test::fail(__FILE__, __LINE__, std::string(sampled ? "seeded" : "greedy") + " request " + std::to_string(i) +
                                               ": batched tokens differ from alone");
  }
  size_t widest = 0;
  for (const auto& call : f.backend->calls) {
    widest = std::max(widest, call.size());
    std::vector<SlotId> slots;
    int tokens = 0;
    for (const auto& [slot, n] : call) {
      slots.push_back(slot);
      tokens += n;
      CHECK(n <= 32);  // one chunk per slot, chunks of at most prefill_chunk_tokens
    }
    std::sort(slots.begin(), slots.end());
    CHECK(std::adjacent_find(slots.begin(), slots.end()) == slots.end());
    CHECK(tokens > 0);
  }
  CHECK(widest >= 3);  // the queued requests' chunks went in together
  std::fprintf(stderr, "  %s: %zu prefill calls for 6 requests at once, up to %zu requests per call\n",
               sampled ? "seeded" : "greedy", f.backend->calls.size(), widest);
}

// Three requests with long answers start; 30 ms later three 40-token prompts
// arrive and prefill in chunks of 8 while the first ones decode (each decode
// step slowed by 2 ms), so the running requests ride the prefill calls.
// poison: the second late prompt is refused, so its rounds fail and are
// retried one chunk at a time, without riders.
void rides_as_alone(bool sampled, bool poison) {
  Fixture f(/*chunk_tokens=*/8, /*prefill_decode_rows=*/4);
  std::vector<GenerationRequest> requests;
  for (int i : {0, 1, 2}) {
    requests.push_back(request(i, sampled));
    requests.back().max_new_tokens = 60;
  }
  for (int i : {5, 11, 17}) requests.push_back(request(i, sampled));  // 40-token prompts
  const size_t poisoned = 4;
  if (poison) requests[poisoned].prompt_ids[0] = kPoison;
  const std::vector<std::vector<int32_t>> alone = alone_tokens(f, requests, poison ? poisoned : size_t(-1));
  f.backend->calls.clear();
  f.backend->call_ok.clear();
  f.backend->decode_sleep_ms = 2;
  std::vector<Result<GenerationResult>> results(requests.size(), Status(StatusCode::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 3; ++i) threads.emplace_back([&, i] { results[i] = f.engine->generate_blocking(requests[i]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  for (size_t i = 3; i < requests.size(); ++i)
    threads.emplace_back([&, i] { results[i] = f.engine->generate_blocking(requests[i]); });
  for (auto& t : threads) t.join();
  f.backend->decode_sleep_ms = 0;
  const std::string label = std::string(sampled ? "seeded" : "greedy") + (poison ? ", a refused prompt" : "");
  int rides = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    CHECK(results[i].ok());
    if (!results[i].ok()) continue;
    if (poison && i == poisoned) {
      CHECK(results[i]->finish.reason == FinishReason::kError);
      continue;
    }
    CHECK(results[i]->finish.reason != FinishReason::kError);
    if (results[i]->tokens != alone[i])
      ::rex_test::fail(__FILE__, __LINE__, label + ": request " + std::to_string(i) + " differs from alone");
    rides += results[i]->finish.prefill_rides;
    CHECK(results[i]->finish.prefill_rides <= results[i]->finish.decode_steps);
  }
  // Riders: one-row inputs, after every chunk of their call.
  size_t calls_with_riders = 0, refused_with_riders = 0;
  for (size_t c = 0; c < f.backend->calls.size(); ++c) {
    bool rider_seen = false, chunk_after_rider = false;
    for (const auto& [slot, n] : f.backend->calls[c]) {
      chunk_after_rider |= rider_seen && n > 1;
      rider_seen |= n == 1;
    }
    CHECK(!chunk_after_rider);
    calls_with_riders += rider_seen;
    refused_with_riders += rider_seen && !f.backend->call_ok[c];
  }
  if (poison) CHECK(refused_with_riders > 0);  // riders were in a refused call, and still decode as alone
  std::fprintf(stderr, "  %s: %d rows rode %zu of %zu prefill calls\n", label.c_str(), rides, calls_with_riders,
               f.backend->calls.size());
  CHECK(rides > 0);
  CHECK(calls_with_riders > 0);
}

}  // namespace

REX_TEST(running_requests_ride_prefill_calls_and_give_their_tokens_alone_greedy) { rides_as_alone(false, false); }
REX_TEST(running_requests_ride_prefill_calls_and_give_their_tokens_alone_seeded) { rides_as_alone(true, false); }
REX_TEST(riders_of_a_refused_round_give_their_tokens_alone) { rides_as_alone(true, true); }

REX_TEST(requests_prefilled_together_give_their_tokens_alone_greedy) { together_as_alone(false); }
REX_TEST(requests_prefilled_together_give_their_tokens_alone_seeded) { together_as_alone(true); }

REX_TEST(a_failed_round_is_retried_alone_and_fails_only_its_request) {
  Fixture f(/*chunk_tokens=*/2048);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(request(i, true));
  requests[2].prompt_ids[0] = kPoison;
  const std::vector<std::vector<int32_t>> alone = alone_tokens(f, requests, 2);
  f.backend->calls.clear();
  f.backend->call_ok.clear();
  auto results = run_together(f, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    CHECK(results[i].ok());
    if (!results[i].ok()) continue;
    if (i == 2) {
      CHECK(results[i]->finish.reason == FinishReason::kError);
      CHECK_CONTAINS(results[i]->finish.status.message(), "expected no poisoned prompt");
      continue;
    }
    CHECK(results[i]->finish.reason != FinishReason::kError);
    CHECK(results[i]->tokens == alone[i]);
  }
  // A refused call of several inputs, then the same chunks one by one.
  bool refused_batch = false;
  for (size_t c = 0; c < f.backend->calls.size(); ++c)
    refused_batch |= !f.backend->call_ok[c] && f.backend->calls[c].size() > 1;
  CHECK(refused_batch);
  // The engine goes on: a later request runs as alone.
  auto later = f.engine->generate_blocking(requests[0]);
  CHECK(later.ok());
  if (later.ok()) CHECK(later->tokens == alone[0]);
}

REX_TEST(an_error_after_a_batched_prefill_ends_its_requests_without_a_retry) {
  Fixture f(/*chunk_tokens=*/2048);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(request(i, false));
  f.backend->short_samples = true;
  f.backend->calls.clear();
  auto results = run_together(f, requests);
  f.backend->short_samples = false;
  // A round of several requests came back one first token short: each of its
  // requests ends with the error, and none of its chunks is prefilled again.
  // (The first request, alone behind the gate, gets its one token and then
  // fails in decode: this backend samples nothing else on its "device".)
  size_t failed = 0;
  for (const auto& r : results) {
    CHECK(r.ok());
    if (r.ok() && r->finish.reason == FinishReason::kError &&
        r->finish.status.message().find("first tokens") != std::string::npos)
      ++failed;
  }
  CHECK(failed >= 2);
  // Every prompt prefilled exactly once.
  size_t prompt_tokens = 0, prefilled = 0;
  for (const auto& r : requests) prompt_tokens += r.prompt_ids.size();
  for (const auto& call : f.backend->calls)
    for (const auto& [slot, n] : call) prefilled += size_t(n);
  CHECK_EQ(prefilled, prompt_tokens);
  // The engine goes on.
  auto later = f.engine->generate_blocking(requests[1]);
  CHECK(later.ok());
  if (later.ok()) CHECK(later->finish.reason != FinishReason::kError);
}
