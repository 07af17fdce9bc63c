#include "engine_wrap.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "addon_data.h"
#include "backend_info.h"
#include "config_to_js.h"
#include "errors.h"
#include "promise_worker.h"
#include "request_from_js.h"

namespace rex_napi {

Napi::Function EngineWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {
                         InstanceMethod<&EngineWrap::submit>("submit"),
                         InstanceMethod<&EngineWrap::cancel>("cancel"),
                         InstanceMethod<&EngineWrap::close>("close"),
                         InstanceMethod<&EngineWrap::score>("score"),
                         InstanceMethod<&EngineWrap::info>("info"),
                         InstanceAccessor<&EngineWrap::config>("config"),
                     });
}

Napi::Object EngineWrap::wrap(Napi::Env env, std::unique_ptr<rex::Engine> engine, std::shared_ptr<EventPump> pump) {
  Napi::Object object = addon_data(env).engine_constructor.New({});
  EngineWrap* self = Unwrap(object);
  self->engine_ = std::move(engine);
  self->pump_ = std::move(pump);
  return object;
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {}

// Garbage-collected without close(): stop the scheduler here (this joins its
// thread, so close() is the better way), then let the pump go.
EngineWrap::~EngineWrap() {
  engine_.reset();
  if (pump_) pump_->release();
}

rex::Engine& EngineWrap::require_open(Napi::Env env) {
  if (!engine_) {
    Napi::Error error = Napi::Error::New(env, "the engine is closed");
    error.Set("code", Napi::String::New(env, "ERR_REX_CLOSED"));
    throw error;
  }
  return *engine_;
}

Napi::Value EngineWrap::submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rex::Engine& engine = require_open(env);
  rex::GenerationRequest request = generation_request_from_js(env, info[0]);
  rex::Result<rex::RequestId> id = engine.submit(std::move(request));
  if (!id.ok()) throw status_to_error(env, id.status());
  pump_->request_started(env);
  return Napi::Number::New(env, static_cast<double>(id.value()));
}

Napi::Value EngineWrap::cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw invalid_argument(env, "cancel(requestId): expected a number");
  if (engine_) engine_->cancel(static_cast<rex::RequestId>(info[0].As<Napi::Number>().Int64Value()));
  return env.Undefined();
}

Napi::Value EngineWrap::config(const Napi::CallbackInfo& info) {
  return config_to_js(info.Env(), require_open(info.Env()).config());
}

namespace {

// Destroying an engine cancels what is in flight and joins its scheduler
// thread, which may be mid-step: done on a worker thread, not the JS thread.
class CloseEngineWorker : public PromiseWorker {
 public:
  CloseEngineWorker(Napi::Env env, std::shared_ptr<rex::Engine> engine, std::shared_ptr<EventPump> pump)
      : PromiseWorker(env, "rex-omni:closeEngine"), engine_(std::move(engine)), pump_(std::move(pump)) {}

 protected:
  void Execute() override {
    if (engine_) engine_->shutdown();  // also ends score calls that still hold the engine
    engine_.reset();
  }
  Napi::Value resolve_value(Napi::Env env) override {
    if (pump_) pump_->release();
    return env.Undefined();
  }

 private:
  std::shared_ptr<rex::Engine> engine_;
  std::shared_ptr<EventPump> pump_;
};

// Teacher-forced scoring: queued in the engine like any request; this worker
// thread waits for it.
class ScoreWorker : public PromiseWorker {
 public:
  ScoreWorker(Napi::Env env, std::shared_ptr<rex::Engine> engine, rex::ScoreRequest request)
      : PromiseWorker(env, "rex-omni:score"), engine_(std::move(engine)), request_(std::move(request)) {}

 protected:
  void Execute() override {
    auto result = engine_->score_blocking(std::move(request_));
    engine_.reset();
    if (!result.ok()) return fail(result.status());
    result_ = std::move(result).value();
  }
  Napi::Value resolve_value(Napi::Env env) override {
    Napi::Array positions = Napi::Array::New(env, result_.positions.size());
    for (size_t i = 0; i < result_.positions.size(); ++i) {
      const rex::ScorePosition& p = result_.positions[i];
      Napi::Object o = Napi::Object::New(env);
      Napi::Int32Array ids = Napi::Int32Array::New(env, p.top_ids.size());
      if (!p.top_ids.empty()) std::memcpy(ids.Data(), p.top_ids.data(), p.top_ids.size() * sizeof(int32_t));
      Napi::Float32Array logits = Napi::Float32Array::New(env, p.top_logits.size());
      if (!p.top_logits.empty()) std::memcpy(logits.Data(), p.top_logits.data(), p.top_logits.size() * sizeof(float));
      o.Set("topIds", ids);
      o.Set("topLogits", logits);
      o.Set("logprob", p.has_logprob ? Napi::Value(Napi::Number::New(env, p.logprob)) : env.Null());
      if (!p.logits.empty()) {
        Napi::Float32Array row = Napi::Float32Array::New(env, p.logits.size());
        std::memcpy(row.Data(), p.logits.data(), p.logits.size() * sizeof(float));
        o.Set("logits", row);
      }
      positions.Set(uint32_t(i), o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("positions", positions);
    out.Set("promptTokens", result_.prompt_tokens);
    out.Set("imageTokens", result_.image_tokens);
    return out;
  }

 private:
  std::shared_ptr<rex::Engine> engine_;
  rex::ScoreRequest request_;
  rex::ScoreResult result_;
};

class CreateEngineWorker : public PromiseWorker {
 public:
  CreateEngineWorker(Napi::Env env, std::string dir, rex::EngineOptions options, std::shared_ptr<EventPump> pump)
      : PromiseWorker(env, "rex-omni:createEngine"), dir_(std::move(dir)), options_(std::move(options)), pump_(std::move(pump)) {}

 protected:
  void Execute() override {
    options_.sink = pump_;
    rex::Result<std::unique_ptr<rex::Engine>> created = rex::Engine::create(dir_, options_);
    if (!created.ok()) return fail(created.status());
    engine_ = std::move(created).value();
  }
  Napi::Value resolve_value(Napi::Env env) override { return EngineWrap::wrap(env, std::move(engine_), pump_); }
  void on_rejected() override { pump_->release(); }

 private:
  std::string dir_;
  rex::EngineOptions options_;
  std::shared_ptr<EventPump> pump_;
  std::unique_ptr<rex::Engine> engine_;
};

// One createEngine option: given with its kind (a string, a boolean, a
// number), it replaces the default; anything else leaves the default. A
// size_t is a byte count: negative numbers read as 0.
template <class T>
void read_option(const Napi::Object& o, const char* name, T* out) {
  Napi::Value v = o.Get(name);
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.IsString()) *out = v.As<Napi::String>().Utf8Value();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (v.IsBoolean()) *out = v.As<Napi::Boolean>().Value();
  } else if constexpr (std::is_same_v<T, int>) {
    if (v.IsNumber()) *out = v.As<Napi::Number>().Int32Value();
  } else if constexpr (std::is_same_v<T, size_t>) {
    if (v.IsNumber()) *out = static_cast<size_t>(std::max(0.0, v.As<Napi::Number>().DoubleValue()));
  } else {  // double, int64_t
    if (v.IsNumber()) *out = static_cast<T>(v.As<Napi::Number>().DoubleValue());
  }
}

rex::EngineOptions engine_options_from_js(Napi::Env env, Napi::Value value) {
  rex::EngineOptions options;
  if (value.IsUndefined()) return options;
  if (!value.IsObject()) throw invalid_argument(env, "createEngine options: expected an object");
  Napi::Object o = value.As<Napi::Object>();
  read_option(o, "backend", &options.backend);
  read_option(o, "threads", &options.threads);
  read_option(o, "maxActiveRequests", &options.max_active_requests);
  read_option(o, "maxQueuedRequests", &options.max_queued_requests);
  read_option(o, "kvCacheBytes", &options.kv_cache_bytes);
  read_option(o, "gpuMemoryFraction", &options.gpu_memory_fraction);
  read_option(o, "emulateBf16", &options.emulate_bf16);
  read_option(o, "reserveGeneration", &options.reserve_generation);
  read_option(o, "prefillChunkTokens", &options.prefill_chunk_tokens);
  read_option(o, "prefillDecodeRows", &options.prefill_decode_rows);
  read_option(o, "visionBatchPatches", &options.vision_batch_patches);
  read_option(o, "prefixCacheBytes", &options.prefix_cache_bytes);
  read_option(o, "batchInvariant", &options.batch_invariant);
  read_option(o, "device", &options.device);
  return options;
}

}  // namespace

Napi::Value EngineWrap::close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return (new CloseEngineWorker(env, std::move(engine_), pump_))->queue();
}

Napi::Value EngineWrap::score(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  require_open(env);
  rex::ScoreRequest request = score_request_from_js(env, info[0]);
  return (new ScoreWorker(env, engine_, std::move(request)))->queue();
}

Napi::Value EngineWrap::info(const Napi::CallbackInfo& info) {
  return backend_info_to_js(info.Env(), require_open(info.Env()).backend_info());
}

Napi::Value create_engine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[2].IsFunction())
    throw invalid_argument(env, "createEngine(dir, options, onEvents): expected a string, an object and a function");
  rex::EngineOptions options = engine_options_from_js(env, info[1]);
  std::shared_ptr<EventPump> pump = EventPump::create(env, info[2].As<Napi::Function>());
  return (new CreateEngineWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(options), pump))->queue();
}

}  // namespace rex_napi
