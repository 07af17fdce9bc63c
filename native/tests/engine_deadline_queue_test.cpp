// Per-request deadlines and the bounded queue, through the Engine on the CPU
// backend with a KV budget (so the slot's release shows in used bytes):
//  - a queued request whose deadline passes finishes with kDeadline
//    (kDeadlineExceeded, 0 tokens) while the request ahead of it runs on;
//  - a running request whose deadline passes finishes with kDeadline after
//    some tokens, its KV released, and a request behind it then completes;
//  - max_queued_requests refuses a submit beyond it at once with
//    kResourceExhausted, disturbing nothing queued or running;
//  - bad values are refused with kInvalidArgument.
// No assertion depends on how fast a step is: the requests that must outlive
// a deadline are far longer than any deadline (30000 tokens) and end by cancel.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "rex/engine.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

namespace {

struct Sink : EventSink {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<RequestId, int> tokens;
  std::map<RequestId, FinishEvent> finished;
  void on_events(EngineEvents ev) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (auto& t : ev.tokens) ++tokens[t.request];
      for (auto& f : ev.finished) finished[f.request] = f;
    }
    cv.notify_all();
  }
  bool wait_finished(RequestId id) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(120), [&] { return finished.count(id) > 0; });
  }
  bool wait_token(RequestId id) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(120), [&] { return tokens[id] > 0; });
  }
  FinishEvent get(RequestId id) {
    std::lock_guard<std::mutex> lock(mutex);
    return finished[id];
  }
  bool has_finished(RequestId id) {
    std::lock_guard<std::mutex> lock(mutex);
    return finished.count(id) > 0;
  }
};

constexpr int kLong = 30000;  // never reached: these requests end by cancel or deadline

struct Fixture {
  std::shared_ptr<RandomModel> model = std::shared_ptr<RandomModel>(make_random_model().release());
  std::shared_ptr<Sink> sink = std::make_shared<Sink>();
  std::unique_ptr<Engine> engine;
  Fixture(int max_active, int max_queued) {
    const TextConfig& t = model->config.text;
    const size_t per_token = size_t(t.num_layers) * 2 * t.num_kv_heads * t.head_dim() * sizeof(float);
    BackendOptions options;
    options.threads = 2;
    options.kv_cache_bytes = per_token * 64 * 1100;  // room for two long requests
    auto be = std::make_unique<CpuBackend>(options);
    CHECK(be->prepare(model->config, model->weights).ok());
    EngineOptions eo;
    eo.sink = sink;
    eo.max_active_requests = max_active;
    eo.max_queued_requests = max_queued;
    auto e = Engine::create_with_backend(model->config, std::move(be), eo, model);
    CHECK(e.ok());
    engine = std::move(e).value();
  }
  static GenerationRequest request(int max_new, int64_t deadline_ms = 0) {
    GenerationRequest r;
    r.prompt_ids = {5, 17, 42, 7, 9, 11, 13, 15, 19, 21};
    r.max_new_tokens = max_new;
    r.deadline_ms = deadline_ms;
    return r;
  }
  size_t kv_used() const { return engine->backend_info().memory.kv_cache_used_bytes; }
};

}  // namespace

REX_TEST(queued_request_past_its_deadline_finishes_while_the_one_ahead_runs) {
  Fixture f(1, 0);
  auto running = f.engine->submit(Fixture::request(kLong));
  auto queued = f.engine->submit(Fixture::request(5, 30));  // waits behind `running`, which never ends by itself
  CHECK(running.ok() && queued.ok());
  CHECK(f.sink->wait_finished(queued.value()));
  const FinishEvent q = f.sink->get(queued.value());
  CHECK(q.reason == FinishReason::kDeadline);
  CHECK(q.status.code() == StatusCode::kDeadlineExceeded);
  CHECK_EQ(std::string(q.status.code_name()), std::string("ERR_REX_DEADLINE"));
  CHECK_CONTAINS(q.status.message(), "expected to finish within 30 ms of submit but got 0 of 5 tokens");
  CHECK_CONTAINS(q.status.message(), "still queued");
  CHECK_EQ(q.generated_tokens, 0);
  CHECK_EQ(std::string(finish_reason_name(q.reason)), std::string("deadline"));
  // The request ahead was not disturbed: still running.
  CHECK(!f.sink->has_finished(running.value()));
  // A request queued after the deadline fired completes once the slot frees.
  auto after = f.engine->submit(Fixture::request(4));
  CHECK(after.ok());
  f.engine->cancel(running.value());
  CHECK(f.sink->wait_finished(after.value()));
  CHECK(f.sink->get(running.value()).reason == FinishReason::kCancelled);
  const FinishEvent a = f.sink->get(after.value());
  CHECK(a.reason == FinishReason::kLength);
  CHECK_EQ(a.generated_tokens, 4);
  CHECK_EQ(f.kv_used(), size_t(0));
}

REX_TEST(running_request_past_its_deadline_releases_its_slot_and_others_go_on) {
  Fixture f(2, 0);
  auto other = f.engine->submit(Fixture::request(kLong));      // runs beside it, no deadline
  auto timed = f.engine->submit(Fixture::request(kLong, 1000));  // generous: it starts long before
  CHECK(other.ok() && timed.ok());
  CHECK(f.sink->wait_token(timed.value()));
  CHECK(f.sink->wait_finished(timed.value()));
  const FinishEvent t = f.sink->get(timed.value());
  CHECK(t.reason == FinishReason::kDeadline);
  CHECK(t.status.code() == StatusCode::kDeadlineExceeded);
  CHECK_CONTAINS(t.status.message(), "(running)");
  CHECK(t.generated_tokens >= 1 && t.generated_tokens < kLong);
  {
    std::lock_guard<std::mutex> lock(f.sink->mutex);
    CHECK_EQ(f.sink->tokens[timed.value()], t.generated_tokens);  // every token it made was delivered
  }
  CHECK(!f.sink->has_finished(other.value()));
  // Its slot is free: a third request is admitted beside `other` and completes.
  auto third = f.engine->submit(Fixture::request(6));
  CHECK(third.ok());
  CHECK(f.sink->wait_finished(third.value()));
  CHECK(f.sink->get(third.value()).reason == FinishReason::kLength);
  CHECK(!f.sink->has_finished(other.value()));
  CHECK(f.kv_used() > size_t(0));  // only `other` holds KV now
  f.engine->cancel(other.value());
  CHECK(f.sink->wait_finished(other.value()));
  CHECK(f.sink->get(other.value()).reason == FinishReason::kCancelled);
  CHECK_EQ(f.kv_used(), size_t(0));
}

REX_TEST(deadline_through_generate_blocking) {
  Fixture f(1, 0);
  auto r = f.engine->generate_blocking(Fixture::request(kLong, 50));
  CHECK(r.ok());
  CHECK(r->finish.reason == FinishReason::kDeadline);
  CHECK_EQ(int(r->tokens.size()), r->finish.generated_tokens);
  CHECK_EQ(f.kv_used(), size_t(0));
  // Without a deadline the same engine completes normally.
  auto ok = f.engine->generate_blocking(Fixture::request(3));
  CHECK(ok.ok());
  CHECK(ok->finish.reason == FinishReason::kLength);
}

REX_TEST(queue_limit_refuses_at_once_and_disturbs_nothing) {
  Fixture f(1, 2);
  auto running = f.engine->submit(Fixture::request(kLong));
  CHECK(running.ok());
  CHECK(f.sink->wait_token(running.value()));  // admitted: the queue is empty again
  auto q1 = f.engine->submit(Fixture::request(3));
  auto q2 = f.engine->submit(Fixture::request(4));
  CHECK(q1.ok() && q2.ok());
  auto refused = f.engine->submit(Fixture::request(5));
  CHECK(!refused.ok());
  CHECK(refused.status().code() == StatusCode::kResourceExhausted);
  CHECK_EQ(std::string(refused.status().code_name()), std::string("ERR_REX_QUEUE_FULL"));
  CHECK_CONTAINS(refused.status().message(), "expected at most 2 queued requests but got 3");
  // generate_blocking is refused the same way (and returns at once).
  auto blocking = f.engine->generate_blocking(Fixture::request(2));
  CHECK(!blocking.ok());
  CHECK(blocking.status().code() == StatusCode::kResourceExhausted);
  CHECK(!f.sink->has_finished(running.value()));
  f.engine->cancel(running.value());
  CHECK(f.sink->wait_finished(q2.value()));
  CHECK(f.sink->get(q1.value()).reason == FinishReason::kLength);
  CHECK_EQ(f.sink->get(q1.value()).generated_tokens, 3);
  CHECK(f.sink->get(q2.value()).reason == FinishReason::kLength);
  CHECK_EQ(f.sink->get(q2.value()).generated_tokens, 4);
  // Room again: submits are accepted.
  auto later = f.engine->generate_blocking(Fixture::request(2));
  CHECK(later.ok());
  CHECK(later->finish.reason == FinishReason::kLength);
  CHECK_EQ(f.kv_used(), size_t(0));
}

REX_TEST(bad_deadline_and_queue_limit_are_refused) {
  Fixture f(1, 0);
  auto bad = f.engine->submit(Fixture::request(3, -1));
  CHECK(!bad.ok());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(bad.status().message(), "expected deadline_ms >= 0 (0: none) but got -1");
  auto model = std::shared_ptr<RandomModel>(make_random_model().release());
  BackendOptions options;
  options.threads = 1;
  auto be = std::make_unique<CpuBackend>(options);
  CHECK(be->prepare(model->config, model->weights).ok());
  EngineOptions eo;
  eo.max_queued_requests = -3;
  auto e = Engine::create_with_backend(model->config, std::move(be), eo, model);
  CHECK(!e.ok());
  CHECK(e.status().code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(e.status().message(), "expected max_queued_requests >= 0 (0: unbounded) but got -3");
}
