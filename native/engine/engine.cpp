// The Engine and its scheduler thread (see rex/engine.h). Each loop iteration
// is one step: take cancellations and new requests under the lock, then, with
// the lock released, (1) finish cancelled requests, (2) admit new ones
// (preprocess, vision, prefill, first token), (3) decode one token for every
// running request in one batched backend call, (4) hand the step's events to
// the sink. Only this thread touches the backend.
#include "rex/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <thread>

#include "engine/backend.h"
#include "engine/mrope_positions.h"
#include "model/config.h"

namespace rex {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "error";
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Collects one request's events for generate_blocking / score_blocking.
struct Collector {
  std::mutex mutex;
  std::condition_variable cv;
  GenerationResult result;
  ScoreResult score;  // filled by the scheduler before the finish event (scoring)
  bool done = false;
};

// What a scoring sequence does instead of generating: its prompt_ids hold the
// prompt and the continuation; one prefill returns continuation + 1 rows.
struct ScoreJob {
  int continuation = 0;
  int top_k = 5;
  bool full_logits = false;
  std::shared_ptr<Collector> collector;
};

struct Sequence {
  RequestId id = 0;
  GenerationRequest request;
  SlotId slot = -1;
  TokenHistory history;
  Pcg32 rng;
  std::optional<GrammarState> grammar;  // constrained decoding (request.grammar)
  int32_t last_token = 0;
  int32_t next_position = 0;
  int generated = 0;
  Timings timings;
  int prompt_tokens = 0;
  int image_tokens = 0;
  std::optional<ScoreJob> score;
};

// KV tokens a sequence reserves when it starts: the whole generation budget.
int tokens_needed(const Sequence& s) {
  return int(s.request.prompt_ids.size()) + (s.score ? 0 : s.request.max_new_tokens);
}

// One position of a scoring result from its raw logits row.
ScorePosition score_position(const float* row, int vocab, int top_k, int32_t next_id, bool full) {
  ScorePosition p;
  double mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, double(row[i]));
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - mx);
  const double log_z = mx + std::log(sum);
  if (next_id >= 0) {
    p.has_logprob = true;
    p.logprob = float(double(row[next_id]) - log_z);
  }
  const int k = std::min(std::max(top_k, 0), vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab), 0);
  for (int i = 0; i < vocab; ++i) ids[size_t(i)] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  p.top_ids.assign(ids.begin(), ids.begin() + k);
  for (int32_t id : p.top_ids) p.top_logits.push_back(row[id]);
  if (full) p.logits.assign(row, row + vocab);
  return p;
}

// One token for `s` from its logits row: under its grammar when it has one
// (the mask also keeps the output closable in the tokens left), then the
// grammar moves past the token.
Result<SampledToken> sample_next(Sequence& s, float* row, int vocab) {
  if (!s.grammar) return sample_token(row, vocab, s.request.sampling, s.history, s.rng);
  const TokenMask& mask = s.grammar->allowed(s.request.max_new_tokens - s.generated);
  SampledToken tok = sample_token(row, vocab, s.request.sampling, s.history, s.rng, &mask);
  REX_RETURN_IF_ERROR(s.grammar->advance(tok.id));
  return tok;
}

}  // namespace

struct Engine::Impl {
  ModelConfig config;
  std::unique_ptr<Backend> backend;
  std::shared_ptr<void> keepalive;
  int max_active = 8;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::unique_ptr<Sequence>> pending;
  std::set<RequestId> cancelled;
  std::set<RequestId> live;  // queued or running
  std::map<RequestId, std::shared_ptr<Collector>> collectors;
  std::shared_ptr<EventSink> sink;
  BackendInfo info_snapshot;  // refreshed by the scheduler; read under `mutex`
  RequestId next_id = 1;
  bool stop = false;
  std::thread thread;

  // Scheduler-thread state.
  std::vector<std::unique_ptr<Sequence>> active;
  std::vector<float> logits;

  void run();
  void finish(Sequence& s, FinishReason reason, Status status, EngineEvents& ev);
  bool emit_token(Sequence& s, const SampledToken& tok, EngineEvents& ev);  // true if finished
  Status start(Sequence& s, EngineEvents& ev, bool* finished);
  void decode_step(EngineEvents& ev);
  void deliver(EngineEvents ev);
  void refresh_info();
  RequestId enqueue(std::unique_ptr<Sequence> s, std::shared_ptr<Collector> collector, Status* refused);
};

void Engine::Impl::refresh_info() {
  BackendInfo snapshot = backend->info();
  std::lock_guard<std::mutex> lock(mutex);
  info_snapshot = std::move(snapshot);
}

void Engine::Impl::finish(Sequence& s, FinishReason reason, Status status, EngineEvents& ev) {
  if (s.slot >= 0) backend->release(s.slot);
  s.slot = -1;
  FinishEvent f;
  f.request = s.id;
  f.reason = reason;
  f.status = std::move(status);
  f.timings = s.timings;
  f.prompt_tokens = s.prompt_tokens;
  f.image_tokens = s.image_tokens;
  f.generated_tokens = s.generated;
  ev.finished.push_back(std::move(f));
}

bool Engine::Impl::emit_token(Sequence& s, const SampledToken& tok, EngineEvents& ev) {
  const int32_t token = tok.id;
  ev.tokens.push_back({s.id, token, tok.logprob, s.generated, tok.model_logprob});
  ++s.generated;
  s.history.add(token);
  s.last_token = token;
  const auto& stops = s.request.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    finish(s, FinishReason::kEos, Status::Ok(), ev);
    return true;
  }
  if (s.generated >= s.request.max_new_tokens) {
    finish(s, FinishReason::kLength, Status::Ok(), ev);
    return true;
  }
  return false;
}

Status Engine::Impl::start(Sequence& s, EngineEvents& ev, bool* finished) {
  GenerationRequest& r = s.request;
  *finished = false;
  s.prompt_tokens = int(r.prompt_ids.size()) - (s.score ? s.score->continuation : 0);
  std::unique_ptr<ImageEmbeddings> embeddings;
  int merged_h = 0, merged_w = 0;
  if (r.raw_image) {
    // Preprocessing and vision in one backend call: a GPU backend does both on the device.
    auto enc = backend->encode_rgb(r.raw_image->rgb.data(), r.raw_image->width, r.raw_image->height,
                                   r.raw_image->options);
    if (!enc.ok()) return enc.status();
    embeddings = std::move(enc->embeddings);
    const int m = config.vision.spatial_merge_size;
    merged_h = enc->grid_h / m;
    merged_w = enc->grid_w / m;
    s.image_tokens = embeddings->tokens();
    s.timings.preprocess_ms = enc->preprocess_ms;
    s.timings.vision_ms = enc->vision_ms;
    r.raw_image.reset();
  } else if (r.image) {
    auto t0 = Clock::now();
    auto enc = backend->encode_image(*r.image);
    if (!enc.ok()) return enc.status();
    embeddings = std::move(enc).value();
    const int m = config.vision.spatial_merge_size;
    merged_h = r.image->grid_h / m;
    merged_w = r.image->grid_w / m;
    s.image_tokens = embeddings->tokens();
    s.timings.vision_ms = ms_since(t0);
    r.image.reset();  // the pixels are no longer needed
  }
  auto pos = mrope_positions(r.prompt_ids, config.image_token_id, merged_h, merged_w);
  if (!pos.ok()) return pos.status();

  auto t0 = Clock::now();
  auto slot = backend->acquire_slot(tokens_needed(s));
  if (!slot.ok()) return slot.status();
  s.slot = slot.value();
  PrefillInput in;
  in.slot = s.slot;
  in.token_ids = r.prompt_ids.data();
  in.n = int(r.prompt_ids.size());
  in.positions = pos->ids.data();
  in.image = embeddings.get();
  in.image_token_id = config.image_token_id;
  in.logit_rows = s.score ? s.score->continuation + 1 : 1;
  const int vocab = backend->vocab_size();
  logits.resize(size_t(in.logit_rows) * size_t(vocab));
  REX_RETURN_IF_ERROR(backend->prefill(in, logits.data()));
  s.timings.prefill_ms = ms_since(t0);
  if (s.score) {
    ScoreResult result;
    const int first_next = s.prompt_tokens;  // continuation[0] sits here in prompt_ids
    for (int i = 0; i < in.logit_rows; ++i) {
      const int32_t next = i < s.score->continuation ? r.prompt_ids[size_t(first_next + i)] : -1;
      result.positions.push_back(score_position(&logits[size_t(i) * vocab], vocab, s.score->top_k, next,
                                                s.score->full_logits));
    }
    result.prompt_tokens = s.prompt_tokens;
    result.image_tokens = s.image_tokens;
    result.timings = s.timings;
    {
      std::lock_guard<std::mutex> lock(s.score->collector->mutex);
      s.score->collector->score = std::move(result);
    }
    finish(s, FinishReason::kEos, Status::Ok(), ev);
    *finished = true;
    return Status::Ok();
  }

  s.history = TokenHistory(vocab);
  s.history.add(r.prompt_ids);
  s.rng.reseed(r.sampling.seed);
  s.next_position = pos->next_position;
  if (r.grammar) {
    auto grammar = GrammarState::create(*r.grammar, vocab);
    if (!grammar.ok()) return grammar.status();
    s.grammar.emplace(std::move(grammar).value());
  }
  auto tok = sample_next(s, logits.data(), vocab);
  if (!tok.ok()) return tok.status();
  *finished = emit_token(s, tok.value(), ev);
  return Status::Ok();
}

void Engine::Impl::decode_step(EngineEvents& ev) {
  if (active.empty()) return;
  auto t0 = Clock::now();
  std::vector<DecodeRow> rows;
  for (auto& s : active) rows.push_back({s->slot, s->last_token, s->next_position});
  const int vocab = backend->vocab_size();
  logits.resize(rows.size() * size_t(vocab));
  Status st = backend->decode(rows, logits.data());
  const double ms = ms_since(t0);
  std::vector<std::unique_ptr<Sequence>> still;
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence& s = *active[i];
    s.timings.decode_ms += ms;
    if (!st.ok()) {
      finish(s, FinishReason::kError, st, ev);
      continue;
    }
    s.next_position = next_decode_position(s.next_position);
    auto tok = sample_next(s, &logits[i * size_t(vocab)], vocab);
    if (!tok.ok()) {
      finish(s, FinishReason::kError, tok.status(), ev);
      continue;
    }
    if (!emit_token(s, tok.value(), ev)) still.push_back(std::move(active[i]));
  }
  active.swap(still);
}

void Engine::Impl::deliver(EngineEvents ev) {
  if (ev.tokens.empty() && ev.finished.empty()) return;
  std::shared_ptr<EventSink> target;
  EngineEvents for_sink;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& f : ev.finished) live.erase(f.request);
    for (auto& t : ev.tokens) {
      auto it = collectors.find(t.request);
      if (it == collectors.end()) { for_sink.tokens.push_back(t); continue; }
      std::lock_guard<std::mutex> cl(it->second->mutex);
      it->second->result.tokens.push_back(t.token);
      it->second->result.logprobs.push_back(t.logprob);
      it->second->result.model_logprobs.push_back(t.model_logprob);
    }
    for (auto& f : ev.finished) {
      auto it = collectors.find(f.request);
      if (it == collectors.end()) { for_sink.finished.push_back(f); continue; }
      {
        std::lock_guard<std::mutex> cl(it->second->mutex);
        it->second->result.finish = f;
        it->second->done = true;
      }
      it->second->cv.notify_all();
      collectors.erase(it);
    }
    target = sink;
  }
  if (target && (!for_sink.tokens.empty() || !for_sink.finished.empty())) target->on_events(std::move(for_sink));
}

void Engine::Impl::run() {
  for (;;) {
    std::vector<std::unique_ptr<Sequence>> admitted, dropped;
    std::set<RequestId> to_cancel;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stop || !pending.empty() || !active.empty(); });
      stopping = stop;
      to_cancel.swap(cancelled);
      // Cancelled requests still waiting in the queue leave it now, whatever the capacity.
      for (auto it = pending.begin(); it != pending.end();) {
        if (to_cancel.count((*it)->id)) {
          admitted.push_back(std::move(*it));
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
      while (!pending.empty() && (stopping || int(active.size() + admitted.size()) < max_active)) {
        admitted.push_back(std::move(pending.front()));
        pending.pop_front();
      }
    }
    EngineEvents ev;
    auto is_cancelled = [&](const Sequence& s) { return stopping || to_cancel.count(s.id) > 0; };
    // 1. Cancellations (running and newly taken).
    for (auto& s : active)
      if (is_cancelled(*s)) finish(*s, FinishReason::kCancelled, Status::Ok(), ev);
    active.erase(std::remove_if(active.begin(), active.end(), [&](auto& s) { return s->slot < 0; }),
                 active.end());
    // 2. Admissions, in queue order, under the KV budget: a request that fits
    // only once others finish goes back to the head of the queue with the
    // ones behind it (FIFO, nothing overtakes it); one that can never fit,
    // or fits later while nothing runs that could free memory, is rejected.
    const bool changed = !admitted.empty() || !ev.finished.empty();
    for (size_t ai = 0; ai < admitted.size(); ++ai) {
      auto& s = admitted[ai];
      if (!s) continue;
      if (is_cancelled(*s)) {
        finish(*s, FinishReason::kCancelled, Status::Ok(), ev);
        continue;
      }
      const AdmissionCheck fit = backend->check_admission(tokens_needed(*s));
      if (fit.verdict == Admission::kLater && !active.empty()) {
        std::lock_guard<std::mutex> lock(mutex);
        for (size_t j = admitted.size(); j-- > ai;)
          if (admitted[j]) pending.push_front(std::move(admitted[j]));
        break;
      }
      if (fit.verdict != Admission::kNow) {
        finish(*s, FinishReason::kError, Status(StatusCode::kOutOfMemory, fit.detail), ev);
        continue;
      }
      bool finished = false;
      Status st;
      try {
        st = start(*s, ev, &finished);
      } catch (const std::bad_alloc&) {
        st = Status(StatusCode::kOutOfMemory, "out of memory while starting request " + std::to_string(s->id));
      } catch (const std::exception& e) {
        st = Status(StatusCode::kInternal, std::string("request start failed: ") + e.what());
      }
      if (!st.ok()) finish(*s, FinishReason::kError, st, ev);
      else if (!finished) active.push_back(std::move(s));
    }
    // 3. One decode step for everything running.
    if (!stopping) {
      try {
        decode_step(ev);
      } catch (const std::exception& e) {
        Status st(StatusCode::kInternal, std::string("decode step failed: ") + e.what());
        for (auto& s : active) finish(*s, FinishReason::kError, st, ev);
        active.clear();
      }
    }
    // 4. Events.
    if (changed || !ev.finished.empty()) refresh_info();
    deliver(std::move(ev));
    if (stopping) {
      std::lock_guard<std::mutex> lock(mutex);
      if (pending.empty() && active.empty()) return;
    }
  }
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<Engine>> Engine::create_with_backend(const ModelConfig& config,
                                                            std::unique_ptr<Backend> backend,
                                                            const EngineOptions& options,
                                                            std::shared_ptr<void> keepalive) {
  if (!backend) return Status(StatusCode::kInvalidArgument, "expected a backend but got none");
  if (options.max_active_requests < 1)
    return Status(StatusCode::kInvalidArgument, "expected max_active_requests >= 1 but got " +
                  std::to_string(options.max_active_requests));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->backend = std::move(backend);
  impl->keepalive = std::move(keepalive);
  impl->max_active = options.max_active_requests;
  impl->sink = options.sink;
  if (options.debug_tap) impl->backend->set_tap(options.debug_tap);
  impl->info_snapshot = impl->backend->info();
  Impl* raw = impl.get();
  try {
    impl->thread = std::thread([raw] { raw->run(); });
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, std::string("could not start the scheduler thread: ") + e.what());
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

static Status validate(const GenerationRequest& r, const ModelConfig& c, int vocab) {
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, what); };
  if (r.prompt_ids.empty()) return bad("expected a non-empty prompt_ids but got an empty one");
  for (size_t i = 0; i < r.prompt_ids.size(); ++i)
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= vocab)
      return bad("expected prompt_ids[" + std::to_string(i) + "] in [0, " + std::to_string(vocab) + ") but got " +
                 std::to_string(r.prompt_ids[i]));
  if (r.image && r.raw_image) return bad("expected one of image and raw_image but got both");
  if (r.raw_image && (r.raw_image->width <= 0 || r.raw_image->height <= 0 ||
                      r.raw_image->rgb.size() != size_t(r.raw_image->width) * r.raw_image->height * 3))
    return bad("expected raw_image.rgb of width*height*3 bytes but got " + std::to_string(r.raw_image->rgb.size()) +
               " for " + std::to_string(r.raw_image->width) + "x" + std::to_string(r.raw_image->height));
  if (r.max_new_tokens < 1) return bad("expected max_new_tokens >= 1 but got " + std::to_string(r.max_new_tokens));
  const SamplingParams& p = r.sampling;
  if (!(p.temperature >= 0)) return bad("expected temperature >= 0 but got " + std::to_string(p.temperature));
  if (p.top_k < 0) return bad("expected top_k >= 0 but got " + std::to_string(p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad("expected top_p in (0, 1] but got " + std::to_string(p.top_p));
  if (!(p.repetition_penalty > 0))
    return bad("expected repetition_penalty > 0 but got " + std::to_string(p.repetition_penalty));
  if (r.grammar) REX_RETURN_IF_ERROR(validate_grammar(*r.grammar, vocab));
  (void)c;
  return Status::Ok();
}

RequestId Engine::Impl::enqueue(std::unique_ptr<Sequence> s, std::shared_ptr<Collector> collector, Status* refused) {
  RequestId id = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stop) {
      *refused = Status(StatusCode::kCancelled, "the engine is shutting down");
      return 0;
    }
    id = next_id++;
    s->id = id;
    live.insert(id);
    if (collector) collectors[id] = std::move(collector);
    pending.push_back(std::move(s));
  }
  wake.notify_all();
  return id;
}

Result<RequestId> Engine::submit(GenerationRequest request) {
  REX_RETURN_IF_ERROR(validate(request, impl_->config, impl_->backend->vocab_size()));
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  Status refused;
  RequestId id = impl_->enqueue(std::move(s), nullptr, &refused);
  if (!refused.ok()) return refused;
  return id;
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (!impl_->live.count(id)) return;
    impl_->cancelled.insert(id);
  }
  impl_->wake.notify_all();
}

Result<GenerationResult> Engine::generate_blocking(GenerationRequest request) {
  REX_RETURN_IF_ERROR(validate(request, impl_->config, impl_->backend->vocab_size()));
  auto collector = std::make_shared<Collector>();
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  Status refused;
  impl_->enqueue(std::move(s), collector, &refused);
  if (!refused.ok()) return refused;
  std::unique_lock<std::mutex> lock(collector->mutex);
  collector->cv.wait(lock, [&] { return collector->done; });
  return std::move(collector->result);
}

Result<ScoreResult> Engine::score_blocking(ScoreRequest request) {
  const int vocab = impl_->backend->vocab_size();
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, what); };
  if (request.top_k < 0 || request.top_k > vocab)
    return bad("expected top_k in [0, " + std::to_string(vocab) + "] but got " + std::to_string(request.top_k));
  for (size_t i = 0; i < request.continuation_ids.size(); ++i)
    if (request.continuation_ids[i] < 0 || request.continuation_ids[i] >= vocab)
      return bad("expected continuation_ids[" + std::to_string(i) + "] in [0, " + std::to_string(vocab) +
                 ") but got " + std::to_string(request.continuation_ids[i]));
  GenerationRequest g;
  g.prompt_ids = std::move(request.prompt_ids);
  g.image = std::move(request.image);
  g.raw_image = std::move(request.raw_image);
  g.max_new_tokens = 1;
  REX_RETURN_IF_ERROR(validate(g, impl_->config, vocab));
  const int continuation = int(request.continuation_ids.size());
  g.prompt_ids.insert(g.prompt_ids.end(), request.continuation_ids.begin(), request.continuation_ids.end());
  auto collector = std::make_shared<Collector>();
  auto s = std::make_unique<Sequence>();
  s->request = std::move(g);
  s->score = ScoreJob{continuation, request.top_k, request.full_logits, collector};
  Status refused;
  impl_->enqueue(std::move(s), collector, &refused);
  if (!refused.ok()) return refused;
  std::unique_lock<std::mutex> lock(collector->mutex);
  collector->cv.wait(lock, [&] { return collector->done; });
  const FinishEvent& f = collector->result.finish;
  if (f.reason == FinishReason::kError) return f.status;
  if (f.reason == FinishReason::kCancelled) return Status(StatusCode::kCancelled, "the scoring request was cancelled");
  return std::move(collector->score);
}

BackendInfo Engine::backend_info() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->info_snapshot;
}

void Engine::set_event_sink(std::shared_ptr<EventSink> sink) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sink = std::move(sink);
}

const ModelConfig& Engine::config() const { return impl_->config; }

}  // namespace rex
