// Vision batching in the engine, over a random in-memory model: requests
// admitted in the same scheduler step share one encoder call (raw RGB in one
// encode_rgb_batch, preprocessed pixels in one encode_image_batch), each
// giving the tokens it gives alone; an image that cannot be preprocessed
// fails only its own request; vision_batch_patches splits a step's images
// into several passes, batch_invariant keeps one image per pass; a
// prefix-cache hit skips the encoder; a bad option is refused. The step is
// made deterministic with a gate: a text request's prefill blocks the
// scheduler while the image requests are submitted, so all of them are
// taken in its next step.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "preprocess/preprocess.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

namespace {

// The CPU backend, recording the size of every vision call; with `gate`
// set, its next prefill waits until open() is called.
class GatedBackend final : public Backend {
 public:
  explicit GatedBackend(const BackendOptions& o) : cpu_(o) {}
  std::mutex mutex;
  std::condition_variable cv;
  bool gate = false, waiting = false;
  std::vector<int> rgb_calls, image_calls;  // images per call
  int single_calls = 0;

  void open() {
    std::lock_guard<std::mutex> lock(mutex);
    gate = false;
    cv.notify_all();
  }
  bool wait_blocked() {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return waiting; });
  }

  const char* name() const override { return "cpu-gated"; }
  Status prepare(const ModelConfig& c, const ModelWeights& w) override { return cpu_.prepare(c, w); }
  int vocab_size() const override { return cpu_.vocab_size(); }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override {
    ++single_calls;
    return cpu_.encode_image(image);
  }
  Result<EncodedImage> encode_rgb(const uint8_t* rgb, int w, int h, const PreprocessOptions& o) override {
    ++single_calls;
    return cpu_.encode_rgb(rgb, w, h, o);
  }
  std::vector<Result<EncodedImage>> encode_rgb_batch(const std::vector<RgbImageRef>& images) override {
    rgb_calls.push_back(int(images.size()));
    return cpu_.encode_rgb_batch(images);
  }
  std::vector<Result<std::unique_ptr<ImageEmbeddings>>> encode_image_batch(
      const std::vector<const PreprocessedImage*>& images) override {
    image_calls.push_back(int(images.size()));
    return cpu_.encode_image_batch(images);
  }
  AdmissionCheck check_admission(int tokens) const override { return cpu_.check_admission(tokens); }
  Result<SlotId> acquire_slot(int capacity) override { return cpu_.acquire_slot(capacity); }
  bool caches_prefixes() const override { return cpu_.caches_prefixes(); }
  AdmissionCheck check_admission_with_prefix(int tokens, const PrefixKey& key) const override {
    return cpu_.check_admission_with_prefix(tokens, key);
  }
  Result<SlotId> acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) override {
    return cpu_.acquire_slot_with_prefix(capacity, key, prefix_tokens);
  }
  Result<bool> cache_prefix(SlotId slot, const PrefixKey& key, int tokens) override {
    return cpu_.cache_prefix(slot, key, tokens);
  }
  void release(SlotId slot) override { cpu_.release(slot); }
  int slot_length(SlotId slot) const override { return cpu_.slot_length(slot); }
  Status prefill(const PrefillInput& in, float* logits) override {
    {
      std::unique_lock<std::mutex> lock(mutex);
      if (gate) {
        waiting = true;
        cv.notify_all();
        cv.wait(lock, [&] { return !gate; });
        waiting = false;
      }
    }
    return cpu_.prefill(in, logits);
  }
  Status decode(const std::vector<DecodeRow>& rows, float* logits) override { return cpu_.decode(rows, logits); }
  void set_tap(TensorTap tap) override { cpu_.set_tap(std::move(tap)); }
  BackendInfo info() const override { return cpu_.info(); }

 private:
  CpuBackend cpu_;
};

// Collects every request's events (requests submitted with Engine::submit).
struct Sink : EventSink {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<RequestId, GenerationResult> results;
  std::set<RequestId> done;
  void on_events(EngineEvents ev) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (auto& t : ev.tokens) {
        results[t.request].tokens.push_back(t.token);
        results[t.request].logprobs.push_back(t.logprob);
      }
      for (auto& f : ev.finished) {
        results[f.request].finish = f;
        done.insert(f.request);
      }
    }
    cv.notify_all();
  }
  bool wait_all(const std::vector<RequestId>& ids) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] {
      for (RequestId id : ids)
        if (!done.count(id)) return false;
      return true;
    });
  }
};

struct Fixture {
  std::shared_ptr<RandomModel> model;
  GatedBackend* backend = nullptr;
  std::shared_ptr<Sink> sink = std::make_shared<Sink>();
  std::unique_ptr<Engine> engine;
  explicit Fixture(EngineOptions eo = {}, size_t kv_bytes = 0) {
    model = std::shared_ptr<RandomModel>(make_random_model().release());
    BackendOptions bo;
    bo.threads = 2;
    bo.kv_cache_bytes = kv_bytes;
    auto be = std::make_unique<GatedBackend>(bo);
    CHECK(be->prepare(model->config, model->weights).ok());
    backend = be.get();
    eo.sink = sink;
    auto e = Engine::create_with_backend(model->config, std::move(be), eo, model);
    CHECK(e.ok());
    if (e.ok()) engine = std::move(e).value();
  }
};

std::vector<uint8_t> pattern(int w, int h, int salt) {
  std::vector<uint8_t> rgb(size_t(w) * h * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t((i * 37 + size_t(salt) * 101 + i / 7) % 251);
  return rgb;
}

// A greedy request about a raw w x h image (its prompt's pads as many as the
// image's merged tokens; an image smart_resize refuses gets 4).
GenerationRequest rgb_request(const RandomModel& m, int w, int h, int salt) {
  RawImage raw;
  raw.width = w;
  raw.height = h;
  raw.rgb = pattern(w, h, salt);
  raw.options.min_pixels = 4 * 28 * 28;
  raw.options.max_pixels = 48 * 28 * 28;
  auto target = smart_resize(h, w, 28, raw.options.min_pixels, raw.options.max_pixels);
  const int pads = target.ok() ? (target->height / 28) * (target->width / 28) : 4;
  GenerationRequest r;
  r.prompt_ids = {5, 17, m.config.vision_start_token_id};
  for (int i = 0; i < pads; ++i) r.prompt_ids.push_back(m.config.image_token_id);
  r.prompt_ids.push_back(m.config.vision_end_token_id);
  r.prompt_ids.push_back(int32_t(40 + salt));
  r.raw_image = std::move(raw);
  r.max_new_tokens = 6;
  r.sampling.repetition_penalty = 1.05f;
  return r;
}

GenerationRequest pixels_request(const RandomModel& m, int gh, int gw, int salt) {
  GenerationRequest r;
  r.prompt_ids = {5, 17, m.config.vision_start_token_id};
  for (int i = 0; i < gh * gw / 4; ++i) r.prompt_ids.push_back(m.config.image_token_id);
  r.prompt_ids.push_back(m.config.vision_end_token_id);
  r.prompt_ids.push_back(int32_t(60 + salt));
  r.image = make_random_image(gh, gw, uint64_t(salt));
  r.max_new_tokens = 6;
  return r;
}

GenerationRequest text_request(int max_new) {
  GenerationRequest r;
  r.prompt_ids = {3, 4, 5, 6};
  r.max_new_tokens = max_new;
  return r;
}

// Runs `requests` so that all of them are admitted in one step (queued
// while a gated text request's prefill holds the scheduler); returns their
// results in order.
std::vector<GenerationResult> run_together(Fixture& f, const std::vector<GenerationRequest>& requests) {
  {
    std::lock_guard<std::mutex> lock(f.backend->mutex);
    f.backend->gate = true;
  }
  auto blocker = f.engine->submit(text_request(2));
  CHECK(blocker.ok());
  CHECK(f.backend->wait_blocked());
  std::vector<RequestId> ids;
  for (const GenerationRequest& r : requests) {
    auto id = f.engine->submit(r);
    CHECK(id.ok());
    if (id.ok()) ids.push_back(id.value());
  }
  f.backend->open();
  if (blocker.ok()) ids.push_back(blocker.value());
  CHECK(f.sink->wait_all(ids));
  std::vector<GenerationResult> results;
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  for (size_t i = 0; i < requests.size() && i < ids.size(); ++i) results.push_back(f.sink->results[ids[i]]);
  results.resize(requests.size());
  return results;
}

GenerationResult run_alone(const GenerationRequest& r) {
  Fixture f;
  auto id = f.engine->submit(r);
  CHECK(id.ok());
  if (!id.ok() || !f.sink->wait_all({id.value()})) return {};
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  return f.sink->results[id.value()];
}

}  // namespace

REX_TEST(images_admitted_together_share_one_pass_and_give_their_tokens_alone) {
  Fixture f;
  const RandomModel& m = *f.model;
  std::vector<GenerationRequest> reqs = {rgb_request(m, 120, 90, 1), rgb_request(m, 64, 200, 2),
                                         pixels_request(m, 8, 12, 3), rgb_request(m, 57, 57, 4),
                                         pixels_request(m, 6, 4, 5)};
  auto together = run_together(f, reqs);
  CHECK(f.backend->rgb_calls == std::vector<int>({3}));
  CHECK(f.backend->image_calls == std::vector<int>({2}));
  CHECK_EQ(f.backend->single_calls, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenerationResult alone = run_alone(reqs[i]);
    if (!together[i].finish.status.ok()) std::fprintf(stderr, "  %s\n", together[i].finish.status.message().c_str());
    CHECK(together[i].finish.reason == FinishReason::kLength);
    CHECK(together[i].tokens == alone.tokens);
    CHECK(together[i].logprobs == alone.logprobs);
    CHECK_EQ(together[i].finish.image_tokens, alone.finish.image_tokens);
    CHECK(together[i].finish.timings.vision_ms > 0);
  }
}

REX_TEST(an_image_that_cannot_be_preprocessed_fails_alone) {
  Fixture f;
  const RandomModel& m = *f.model;
  // 300x1: an aspect ratio over 200, which smart_resize refuses.
  std::vector<GenerationRequest> reqs = {rgb_request(m, 120, 90, 1), rgb_request(m, 300, 1, 2),
                                         rgb_request(m, 57, 57, 4)};
  auto together = run_together(f, reqs);
  CHECK(f.backend->rgb_calls == std::vector<int>({3}));
  CHECK(together[1].finish.reason == FinishReason::kError);
  CHECK(together[1].finish.status.code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(together[1].finish.status.message(), "aspect ratio");
  for (size_t i : {size_t(0), size_t(2)}) {
    CHECK(together[i].finish.reason == FinishReason::kLength);
    CHECK(together[i].tokens == run_alone(reqs[i]).tokens);
  }
}

REX_TEST(the_patch_budget_splits_a_step_into_passes_and_batch_invariant_keeps_one_image) {
  {
    EngineOptions eo;
    eo.vision_batch_patches = 100;
    Fixture f(eo);
    const RandomModel& m = *f.model;
    // 8x12 + 6x4 = 120 patches: over 100, so two passes; then 6x4 + 6x4 = 48 fits one.
    std::vector<GenerationRequest> reqs = {pixels_request(m, 8, 12, 1), pixels_request(m, 6, 4, 2),
                                           pixels_request(m, 6, 4, 3)};
    auto together = run_together(f, reqs);
    CHECK(f.backend->image_calls == std::vector<int>({1, 2}));
    for (size_t i = 0; i < reqs.size(); ++i) CHECK(together[i].tokens == run_alone(reqs[i]).tokens);
  }
  {
    EngineOptions eo;
    eo.batch_invariant = true;
    Fixture f(eo);
    const RandomModel& m = *f.model;
    std::vector<GenerationRequest> reqs = {rgb_request(m, 120, 90, 1), rgb_request(m, 64, 200, 2),
                                           rgb_request(m, 57, 57, 3)};
    auto together = run_together(f, reqs);
    CHECK(f.backend->rgb_calls == std::vector<int>({1, 1, 1}));
    for (size_t i = 0; i < reqs.size(); ++i) CHECK(together[i].tokens == run_alone(reqs[i]).tokens);
  }
}

REX_TEST(a_prefix_cache_hit_skips_the_encoder) {
  Fixture f(EngineOptions{}, size_t(8) << 20);
  const RandomModel& m = *f.model;
  const GenerationRequest a = rgb_request(m, 120, 90, 1), b = rgb_request(m, 57, 57, 2);
  auto first = run_together(f, {a});
  CHECK(first[0].finish.reason == FinishReason::kLength);
  CHECK(f.backend->rgb_calls == std::vector<int>({1}));
  f.backend->rgb_calls.clear();
  auto together = run_together(f, {a, b});
  CHECK(f.backend->rgb_calls == std::vector<int>({1}));  // b alone: a's prefix came from the cache
  CHECK(together[0].finish.cached_tokens > 0);
  CHECK_EQ(together[1].finish.cached_tokens, 0);
  CHECK(together[0].tokens == first[0].tokens);
  CHECK(together[1].tokens == run_alone(b).tokens);
}

REX_TEST(a_bad_vision_batch_option_is_refused) {
  auto model = make_random_model();
  auto be = std::make_unique<CpuBackend>(1);
  CHECK(be->prepare(model->config, model->weights).ok());
  EngineOptions eo;
  eo.vision_batch_patches = -1;
  auto e = Engine::create_with_backend(model->config, std::move(be), eo, nullptr);
  CHECK(!e.ok());
  if (!e.ok()) CHECK_CONTAINS(e.status().message(), "expected vision_batch_patches >= 0 (0: one image per pass) but got -1");
}
