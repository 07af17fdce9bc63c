// The KV budget and teacher-forced scoring through the Engine, on the CPU
// backend with a budget (the same KvBlockPool rules the CUDA backend keeps):
// the pool's arithmetic and messages; a request that fits only after another
// finishes waits in the queue (FIFO) instead of failing; one that can never
// fit fails with kOutOfMemory naming what it needs; score_blocking gives the
// same raw log-probabilities and argmax as greedy generation; with growing
// slots (reserve_generation false) requests that together overflow the
// budget are preempted and resumed, newest first, each with the tokens it
// gives alone, greedy and seeded, and the budget ends empty.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "engine/kv_block_pool.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

REX_TEST(block_pool_counts_and_explains) {
  KvBlockPool pool(3, 64, 1000);
  CHECK_EQ(pool.blocks_for(1), 1);
  CHECK_EQ(pool.blocks_for(64), 1);
  CHECK_EQ(pool.blocks_for(65), 2);
  CHECK(pool.check(192).verdict == Admission::kNow);
  CHECK(pool.check(193).verdict == Admission::kNever);
  CHECK_CONTAINS(pool.check(193).detail, "more than the whole KV budget");
  auto a = pool.allocate(100);
  CHECK(a.ok());
  CHECK_EQ(a->size(), size_t(2));
  CHECK_EQ(pool.free_blocks(), 1);
  CHECK(pool.check(100).verdict == Admission::kLater);
  auto b = pool.allocate(100);
  CHECK(!b.ok());
  CHECK(b.status().code() == StatusCode::kOutOfMemory);
  pool.release(&a.value());
  CHECK(a->empty());
  CHECK_EQ(pool.free_blocks(), 3);
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

namespace {

// Records every event in arrival order.
struct OrderSink : EventSink {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<RequestId, int>> order;  // (request, step) of tokens; step -1 = finish
  std::map<RequestId, FinishEvent> finished;
  std::map<RequestId, std::vector<int32_t>> tokens;
  void on_events(EngineEvents ev) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (auto& t : ev.tokens) {
        order.push_back({t.request, t.step});
        tokens[t.request].push_back(t.token);
      }
      for (auto& f : ev.finished) {
        order.push_back({f.request, -1});
        finished[f.request] = f;
      }
    }
    cv.notify_all();
  }
  bool wait_finished(size_t n) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return finished.size() >= n; });
  }
  size_t index_of(RequestId id, int step) {
    for (size_t i = 0; i < order.size(); ++i)
      if (order[i].first == id && order[i].second == step) return i;
    return size_t(-1);
  }
};

struct BudgetFixture {
  std::shared_ptr<RandomModel> model = std::shared_ptr<RandomModel>(make_random_model().release());
  std::shared_ptr<OrderSink> sink = std::make_shared<OrderSink>();
  std::unique_ptr<Engine> engine;
  size_t per_block = 0;
  explicit BudgetFixture(int blocks, bool reserve_generation = true) {
    const TextConfig& t = model->config.text;
    per_block = size_t(t.num_layers) * 2 * t.num_kv_heads * t.head_dim() * sizeof(float) * 64;
    BackendOptions options;
    options.threads = 2;
    options.kv_cache_bytes = per_block * size_t(blocks);
    auto be = std::make_unique<CpuBackend>(options);
    CHECK(be->prepare(model->config, model->weights).ok());
    EngineOptions eo;
    eo.sink = sink;
    eo.reserve_generation = reserve_generation;
    auto e = Engine::create_with_backend(model->config, std::move(be), eo, model);
    CHECK(e.ok());
    engine = std::move(e).value();
  }
  GenerationRequest text_request(int max_new) const {
    GenerationRequest r;
    r.prompt_ids = {5, 17, 42, 7, 9, 11, 13, 15, 19, 21};
    r.max_new_tokens = max_new;
    return r;
  }
};

}  // namespace

REX_TEST(request_that_fits_later_waits_in_the_queue) {
  BudgetFixture f(3);  // 192 tokens
  auto a = f.engine->submit(f.text_request(90));   // 100 tokens: 2 blocks
  auto b = f.engine->submit(f.text_request(90));   // fits only after a
  auto c = f.engine->submit(f.text_request(20));   // 1 block: queued behind b (FIFO), not ahead of it
  CHECK(a.ok() && b.ok() && c.ok());
  CHECK(f.sink->wait_finished(3));
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  for (RequestId id : {a.value(), b.value(), c.value()}) {
    CHECK(f.sink->finished[id].reason == FinishReason::kLength);
    CHECK(f.sink->finished[id].status.ok());
  }
  CHECK_EQ(f.sink->finished[b.value()].generated_tokens, 90);
  // b's first token only after a finished; c not before b started.
  CHECK(f.sink->index_of(b.value(), 0) > f.sink->index_of(a.value(), -1));
  CHECK(f.sink->index_of(c.value(), 0) > f.sink->index_of(b.value(), 0));
  CHECK_EQ(f.engine->backend_info().memory.kv_cache_used_bytes, size_t(0));
  CHECK_EQ(f.engine->backend_info().memory.kv_cache_bytes, 3 * f.per_block);
}

REX_TEST(request_that_never_fits_is_rejected_with_out_of_memory) {
  BudgetFixture f(3);
  auto big = f.engine->submit(f.text_request(300));  // 310 tokens > 192
  auto small = f.engine->submit(f.text_request(5));
  CHECK(big.ok() && small.ok());
  CHECK(f.sink->wait_finished(2));
  std::lock_guard<std::mutex> lock(f.sink->mutex);
  const FinishEvent& fb = f.sink->finished[big.value()];
  CHECK(fb.reason == FinishReason::kError);
  CHECK(fb.status.code() == StatusCode::kOutOfMemory);
  CHECK_CONTAINS(fb.status.message(), "needs 310 tokens");
  CHECK_CONTAINS(fb.status.message(), "more than the whole KV budget");
  CHECK(f.sink->finished[small.value()].reason == FinishReason::kLength);  // the other request goes on
}

REX_TEST(score_matches_greedy_generation) {
  BudgetFixture f(8);
  GenerationRequest g = f.text_request(12);
  g.sampling.repetition_penalty = 1.0f;  // greedy = argmax of the raw logits
  auto gen = f.engine->generate_blocking(g);
  CHECK(gen.ok());
  CHECK_EQ(gen->tokens.size(), size_t(12));
  ScoreRequest s;
  s.prompt_ids = g.prompt_ids;
  s.continuation_ids = gen->tokens;
  s.top_k = 3;
  s.full_logits = true;
  auto scored = f.engine->score_blocking(s);
  CHECK(scored.ok());
  CHECK_EQ(scored->positions.size(), gen->tokens.size() + 1);
  CHECK_EQ(scored->prompt_tokens, int(g.prompt_ids.size()));
  for (size_t i = 0; i < gen->tokens.size(); ++i) {
    const ScorePosition& p = scored->positions[i];
    CHECK_EQ(p.top_ids.size(), size_t(3));
    CHECK_EQ(p.top_ids[0], gen->tokens[i]);
    CHECK(p.top_logits[0] >= p.top_logits[1] && p.top_logits[1] >= p.top_logits[2]);
    CHECK(p.has_logprob);
    CHECK_NEAR(p.logprob, gen->model_logprobs[i], 1e-4);
    CHECK_EQ(p.logits.size(), size_t(f.model->config.text.vocab_size));
    CHECK_EQ(p.logits[size_t(p.top_ids[0])], p.top_logits[0]);
  }
  CHECK(!scored->positions.back().has_logprob);
  // Bad input is refused before it is queued.
  ScoreRequest bad = s;
  bad.continuation_ids = {5, 1000000};
  auto r = f.engine->score_blocking(bad);
  CHECK(!r.ok());
  CHECK_CONTAINS(r.status().message(), "expected continuation_ids[1] in [0, ");
  bad = s;
  bad.top_k = -1;
  CHECK(!f.engine->score_blocking(bad).ok());
  // A scoring request that can never fit the budget fails like any other.
  ScoreRequest huge = s;
  huge.continuation_ids.assign(600, 7);
  auto oom = f.engine->score_blocking(huge);
  CHECK(!oom.ok());
  CHECK(oom.status().code() == StatusCode::kOutOfMemory);
}

// Three requests of 100 tokens each (10 prompt + 90 new) over a budget of
// 192: reserving upfront they would run one at a time; growing, all start,
// and the newest are preempted as the slots grow. Each ends with the tokens
// it gives alone, greedy and seeded, and nothing is left held.
REX_TEST(growing_slots_preempt_the_newest_and_resume_them_exactly) {
  for (bool sampled : {false, true}) {
    auto make = [&](int i) {
      GenerationRequest r;
      r.prompt_ids = {5, int32_t(17 + 7 * i), 42, 7, 9, int32_t(11 + i), 13, 15, 19, 21};
      r.max_new_tokens = 90;
      if (sampled) {
        r.sampling.temperature = 0.8f;
        r.sampling.top_p = 0.95f;
        r.sampling.seed = uint64_t(100 + i);
      }
      r.sampling.repetition_penalty = 1.05f;
      return r;
    };
    std::vector<std::vector<int32_t>> alone;
    {
      BudgetFixture ref(3);
      for (int i = 0; i < 3; ++i) {
        auto r = ref.engine->generate_blocking(make(i));
        CHECK(r.ok());
        alone.push_back(r.ok() ? r->tokens : std::vector<int32_t>{});
      }
    }
    BudgetFixture f(3, /*reserve_generation=*/false);
    std::vector<RequestId> ids;
    for (int i = 0; i < 3; ++i) {
      auto id = f.engine->submit(make(i));
      CHECK(id.ok());
      ids.push_back(id.ok() ? id.value() : 0);
    }
    CHECK(f.sink->wait_finished(3));
    std::lock_guard<std::mutex> lock(f.sink->mutex);
    int preemptions = 0;
    for (int i = 0; i < 3; ++i) {
      const FinishEvent& fe = f.sink->finished[ids[size_t(i)]];
      CHECK(fe.reason == FinishReason::kLength);
      CHECK(fe.status.ok());
      CHECK(f.sink->tokens[ids[size_t(i)]] == alone[size_t(i)]);
      preemptions += fe.preemptions;
    }
    std::fprintf(stderr, "  %s: 3 x 100 tokens over 192: %d preemptions\n", sampled ? "seeded" : "greedy", preemptions);
    CHECK(preemptions > 0);
    CHECK_EQ(f.sink->finished[ids[0]].preemptions, 0);  // the oldest is never preempted
    // All three were running before the first finished (none waited for another's end).
    CHECK(f.sink->index_of(ids[2], 0) < f.sink->index_of(ids[0], -1));
    CHECK_EQ(f.engine->backend_info().memory.kv_cache_used_bytes, size_t(0));
  }
  // What can never fit is still refused at admission.
  BudgetFixture g(3, false);
  auto big = g.engine->submit(g.text_request(300));
  CHECK(big.ok());
  CHECK(g.sink->wait_finished(1));
  std::lock_guard<std::mutex> lock(g.sink->mutex);
  CHECK(g.sink->finished[big.value()].status.code() == StatusCode::kOutOfMemory);
}
