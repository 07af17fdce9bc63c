#include "event_pump.h"

namespace rex_napi {

namespace {

Napi::Object finish_to_js(Napi::Env env, const rex::FinishEvent& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("requestId", static_cast<double>(f.request));
  o.Set("reason", rex::finish_reason_name(f.reason));
  if (!f.status.ok()) {
    Napi::Object error = Napi::Object::New(env);
    error.Set("message", f.status.message());
    error.Set("code", f.status.code_name());
    o.Set("error", error);
  }
  Napi::Object timings = Napi::Object::New(env);
  timings.Set("preprocessMs", f.timings.preprocess_ms);
  timings.Set("visionMs", f.timings.vision_ms);
  timings.Set("prefillMs", f.timings.prefill_ms);
  timings.Set("decodeMs", f.timings.decode_ms);
  o.Set("timings", timings);
  o.Set("promptTokens", f.prompt_tokens);
  o.Set("imageTokens", f.image_tokens);
  o.Set("generatedTokens", f.generated_tokens);
  o.Set("decodeSteps", f.decode_steps);
  o.Set("prefillRides", f.prefill_rides);
  o.Set("forcedTokens", f.forced_tokens);
  o.Set("cachedTokens", f.cached_tokens);
  o.Set("preemptions", f.preemptions);
  return o;
}

}  // namespace

Napi::Object events_to_js(Napi::Env env, const rex::EngineEvents& events) {
  const size_t n = events.tokens.size();
  Napi::Float64Array request_ids = Napi::Float64Array::New(env, n);
  Napi::Int32Array tokens = Napi::Int32Array::New(env, n);
  Napi::Float32Array logprobs = Napi::Float32Array::New(env, n);
  Napi::Float32Array model_logprobs = Napi::Float32Array::New(env, n);
  Napi::Int32Array steps = Napi::Int32Array::New(env, n);
  for (size_t i = 0; i < n; ++i) {
    const rex::TokenEvent& t = events.tokens[i];
    request_ids[i] = static_cast<double>(t.request);
    tokens[i] = t.token;
    logprobs[i] = t.logprob;
    model_logprobs[i] = t.model_logprob;
    steps[i] = t.step;
  }
  Napi::Object token_columns = Napi::Object::New(env);
  token_columns.Set("requestIds", request_ids);
  token_columns.Set("tokens", tokens);
  token_columns.Set("logprobs", logprobs);
  token_columns.Set("modelLogprobs", model_logprobs);
  token_columns.Set("steps", steps);

  Napi::Array finished = Napi::Array::New(env, events.finished.size());
  for (size_t i = 0; i < events.finished.size(); ++i)
    finished.Set(static_cast<uint32_t>(i), finish_to_js(env, events.finished[i]));

  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", token_columns);
  out.Set("finished", finished);
  return out;
}

std::shared_ptr<EventPump> EventPump::create(Napi::Env env, Napi::Function callback) {
  std::shared_ptr<EventPump> pump(new EventPump());
  pump->state_ = std::make_shared<State>();
  pump->state_->tsfn = Napi::ThreadSafeFunction::New(env, callback, "rex-omni:events", 0 /* unbounded */, 1);
  pump->state_->tsfn.Unref(env);  // idle engines do not keep the process alive
  return pump;
}

EventPump::~EventPump() = default;

void EventPump::on_events(rex::EngineEvents events) {
  if (events.tokens.empty() && events.finished.empty()) return;
  auto* payload = new rex::EngineEvents(std::move(events));
  std::shared_ptr<State> state = state_;
  napi_status status = state->tsfn.NonBlockingCall(
      payload, [state](Napi::Env env, Napi::Function callback, rex::EngineEvents* data) {
        std::unique_ptr<rex::EngineEvents> owned(data);
        if (env == nullptr) return;  // the pump is closing
        // Drop the keep-alive first: a callback that throws must not pin the process.
        for (size_t i = 0; i < owned->finished.size(); ++i) {
          if (state->in_flight > 0 && --state->in_flight == 0 && !state->released) state->tsfn.Unref(env);
        }
        if (!callback.IsEmpty()) callback.Call({events_to_js(env, *owned)});
      });
  if (status != napi_ok) delete payload;  // closing: nobody is listening any more
}

void EventPump::request_started(Napi::Env env) {
  if (state_->in_flight++ == 0 && !state_->released) state_->tsfn.Ref(env);
}

void EventPump::release() {
  if (state_->released) return;
  state_->released = true;
  state_->tsfn.Release();
}

}  // namespace rex_napi
