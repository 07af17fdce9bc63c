// The Engine over a random in-memory model: the scheduler thread runs a
// request and streams events; greedy output equals a hand-driven backend
// loop; stop tokens and max_new_tokens finish with eos / length; several
// requests run at once; cancel works for running and queued requests; raw
// RGB goes through preprocessing; bad requests are rejected up front.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "engine/mrope_positions.h"
#include "rex/engine.h"
#include "sampling/rng.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

// Records events; lets a test wait for a condition on them.
struct RecordingSink : EventSink {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<RequestId, std::vector<TokenEvent>> tokens;
  std::map<RequestId, FinishEvent> finished;
  int calls = 0;
  void on_events(EngineEvents ev) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++calls;
      for (auto& t : ev.tokens) tokens[t.request].push_back(t);
      for (auto& f : ev.finished) finished[f.request] = f;
    }
    cv.notify_all();
  }
  template <typename Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(30), pred);
  }
};

struct Fixture {
  std::shared_ptr<RandomModel> model;
  std::unique_ptr<Engine> engine;
  std::shared_ptr<RecordingSink> sink = std::make_shared<RecordingSink>();
  explicit Fixture(int max_active = 8) {
    model = std::shared_ptr<RandomModel>(make_random_model().release());
    auto be = std::make_unique<CpuBackend>(2);
    Status st = be->prepare(model->config, model->weights);
    CHECK(st.ok());
    EngineOptions opt;
    opt.sink = sink;
    opt.max_active_requests = max_active;
    auto e = Engine::create_with_backend(model->config, std::move(be), opt, model);
    CHECK(e.ok());
    engine = std::move(e).value();
  }
};

static GenerationRequest image_request(const RandomModel& m, int max_new) {
  GenerationRequest r;
  r.prompt_ids = {5, 17, m.config.vision_start_token_id};
  for (int i = 0; i < 6; ++i) r.prompt_ids.push_back(m.config.image_token_id);
  r.prompt_ids.push_back(m.config.vision_end_token_id);
  r.prompt_ids.push_back(42);
  r.image = make_random_image(4, 6, 11);
  r.max_new_tokens = max_new;
  r.sampling.repetition_penalty = 1.05f;
  return r;
}

// The same greedy generation, driven by hand through a fresh backend.
static std::vector<int32_t> manual_greedy(const RandomModel& m, const GenerationRequest& r) {
  CpuBackend be(1);
  CHECK(be.prepare(m.config, m.weights).ok());
  auto emb = be.encode_image(*r.image);
  auto pos = mrope_positions(r.prompt_ids, m.config.image_token_id, 2, 3);
  auto slot = be.acquire_slot(0).value();
  std::vector<float> logits(1000);
  CHECK(be.prefill({slot, r.prompt_ids.data(), int(r.prompt_ids.size()), pos->ids.data(), emb.value().get(),
                    m.config.image_token_id}, logits.data()).ok());
  TokenHistory h(1000);
  h.add(r.prompt_ids);
  Pcg32 rng(0);
  std::vector<int32_t> out;
  int32_t p = pos->next_position;
  for (int i = 0; i < r.max_new_tokens; ++i) {
    if (i > 0) CHECK(be.decode({{slot, out.back(), p++}}, logits.data()).ok());
    out.push_back(sample_token(logits.data(), 1000, r.sampling, h, rng).id);
    h.add(out.back());
  }
  return out;
}

REX_TEST(generate_blocking_matches_manual_loop) {
  Fixture f;
  GenerationRequest r = image_request(*f.model, 6);
  auto expected = manual_greedy(*f.model, r);
  auto res = f.engine->generate_blocking(r);
  CHECK(res.ok());
  if (!res.ok()) return;
  CHECK(res->tokens == expected);
  CHECK_EQ(res->logprobs.size(), size_t(6));
  for (float lp : res->logprobs) CHECK(lp <= 0.0f);
  CHECK(res->finish.reason == FinishReason::kLength);
  CHECK(res->finish.status.ok());
  CHECK_EQ(res->finish.generated_tokens, 6);
  CHECK_EQ(res->finish.image_tokens, 6);
  CHECK_EQ(res->finish.prompt_tokens, 11);
  CHECK(res->finish.timings.vision_ms > 0 && res->finish.timings.prefill_ms > 0);

  // A stop token: the first greedy token stops at once, delivered then finished.
  GenerationRequest s = image_request(*f.model, 6);
  s.stop_token_ids = {expected[0]};
  auto stopped = f.engine->generate_blocking(s);
  CHECK(stopped.ok());
  if (stopped.ok()) {
    CHECK(stopped->tokens == std::vector<int32_t>({expected[0]}));
    CHECK(stopped->finish.reason == FinishReason::kEos);
  }
}

REX_TEST(events_stream_to_sink_for_concurrent_requests) {
  Fixture f;
  GenerationRequest a = image_request(*f.model, 5);
  GenerationRequest b = image_request(*f.model, 3);
  b.sampling.temperature = 0.9f;
  b.sampling.seed = 17;
  b.image.reset();
  b.prompt_ids = {1, 2, 3};
  auto ia = f.engine->submit(a), ib = f.engine->submit(b);
  CHECK(ia.ok() && ib.ok());
  CHECK(ia.value() != ib.value());
  CHECK(f.sink->wait([&] { return f.sink->finished.size() == 2; }));
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  auto& ta = f.sink->tokens[ia.value()];
  auto& tb = f.sink->tokens[ib.value()];
  CHECK_EQ(ta.size(), size_t(5));
  CHECK_EQ(tb.size(), size_t(3));
  for (size_t i = 0; i < ta.size(); ++i) CHECK_EQ(ta[i].step, int(i));
  CHECK(f.sink->finished[ia.value()].reason == FinishReason::kLength);
  CHECK(f.sink->finished[ib.value()].reason == FinishReason::kLength);
  std::vector<int32_t> got;
  for (auto& t : ta) got.push_back(t.token);
  CHECK(got == manual_greedy(*f.model, a));
}

REX_TEST(cancel_running_and_queued) {
  Fixture f(1);  // one in flight: the second request waits in the queue
  GenerationRequest r = image_request(*f.model, 100000);
  auto running = f.engine->submit(r);
  auto queued = f.engine->submit(r);
  CHECK(running.ok() && queued.ok());
  CHECK(f.sink->wait([&] { return f.sink->tokens[running.value()].size() >= 2; }));
  f.engine->cancel(queued.value());
  f.engine->cancel(running.value());
  CHECK(f.sink->wait([&] { return f.sink->finished.size() == 2; }));
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  CHECK(f.sink->finished[running.value()].reason == FinishReason::kCancelled);
  CHECK(f.sink->finished[queued.value()].reason == FinishReason::kCancelled);
  CHECK_EQ(f.sink->tokens.count(queued.value()), size_t(0));
  CHECK(f.sink->finished[running.value()].generated_tokens >= 2);
  f.engine->cancel(12345);  // unknown ids are ignored
}

REX_TEST(destroying_the_engine_cancels_in_flight) {
  auto f = std::make_unique<Fixture>();
  auto sink = f->sink;
  auto id = f->engine->submit(image_request(*f->model, 100000));
  CHECK(id.ok());
  CHECK(sink->wait([&] { return !sink->tokens[id.value()].empty(); }));
  f->engine.reset();
  std::lock_guard<std::mutex> lock(sink->mutex);
  CHECK(sink->finished.count(id.value()) == 1);
  if (sink->finished.count(id.value())) CHECK(sink->finished[id.value()].reason == FinishReason::kCancelled);
}

REX_TEST(raw_rgb_is_preprocessed_on_the_engine_thread) {
  Fixture f;
  GenerationRequest r = image_request(*f.model, 2);
  r.image.reset();
  RawImage raw;
  raw.width = 56;
  raw.height = 84;  // smart_resize min_pixels scales it up: check via image_tokens
  raw.rgb.resize(size_t(raw.width) * raw.height * 3);
  for (size_t i = 0; i < raw.rgb.size(); ++i) raw.rgb[i] = uint8_t(i * 31 % 251);
  raw.options.min_pixels = 4 * 28 * 28;
  r.raw_image = raw;  // 56x84 -> grid 4x6 -> 6 merged tokens, matching the prompt's 6 pads
  auto res = f.engine->generate_blocking(r);
  CHECK(res.ok());
  if (!res.ok()) return;
  if (!res->finish.status.ok()) std::fprintf(stderr, "  %s\n", res->finish.status.message().c_str());
  CHECK(res->finish.reason == FinishReason::kLength);
  CHECK_EQ(res->finish.image_tokens, 6);
}

REX_TEST(bad_requests_are_rejected) {
  Fixture f;
  GenerationRequest r = image_request(*f.model, 0);
  auto a = f.engine->submit(r);
  CHECK(!a.ok());
  if (!a.ok()) {
    CHECK(a.status().code() == StatusCode::kInvalidArgument);
    CHECK_CONTAINS(a.status().message(), "expected max_new_tokens >= 1 but got 0");
  }
  r.max_new_tokens = 2;
  r.prompt_ids.push_back(1000);
  auto b = f.engine->submit(r);
  CHECK(!b.ok());
  if (!b.ok()) CHECK_CONTAINS(b.status().message(), "but got 1000");
  r.prompt_ids.pop_back();
  r.sampling.top_p = 0.0f;
  CHECK(!f.engine->submit(r).ok());
  // A prompt whose image-pad count does not match the image finishes with an error event.
  GenerationRequest m = image_request(*f.model, 2);
  m.prompt_ids.push_back(f.model->config.image_token_id);
  auto res = f.engine->generate_blocking(m);
  CHECK(res.ok());
  if (res.ok()) {
    CHECK(res->finish.reason == FinishReason::kError);
    CHECK(res->finish.status.code() == StatusCode::kInvalidArgument);
  }
}
