// The one event pump: the engine's scheduler thread hands each step's events
// (every request's new tokens, and the requests that finished) to a single
// thread-safe function; the JS callback gets them on the main thread, and
// TypeScript fans them out to per-request iterators. The pump never blocks the
// scheduler: a full or closing queue drops nothing silently — the call is
// non-blocking and the queue is unbounded.
#pragma once

#include <napi.h>

#include <memory>

#include "rex/engine.h"

namespace rex_napi {

class EventPump : public rex::EventSink {
 public:
  // callback(events) with events = { tokens: {requestIds, tokens, logprobs, modelLogprobs, steps}, finished: [...] }
  static std::shared_ptr<EventPump> create(Napi::Env env, Napi::Function callback);
  ~EventPump() override;

  void on_events(rex::EngineEvents events) override;  // scheduler thread

  // Main thread only. A submitted request keeps the process alive until its
  // finish event has reached JS; an idle engine does not.
  void request_started(Napi::Env env);
  void release();

  // Shared with every queued call, so a call that lands after release() is safe.
  struct State {
    Napi::ThreadSafeFunction tsfn;
    int in_flight = 0;       // main thread only
    bool released = false;   // main thread only
  };

 private:
  EventPump() = default;
  std::shared_ptr<State> state_;
};

Napi::Object events_to_js(Napi::Env env, const rex::EngineEvents& events);

}  // namespace rex_napi
