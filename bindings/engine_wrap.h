// NativeEngine: a JS handle on a core Engine (its own scheduler thread), the
// async worker that creates one, and the one that closes it.
#pragma once

#include <napi.h>

#include <memory>

#include "event_pump.h"
#include "rex/engine.h"

namespace rex_napi {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, std::unique_ptr<rex::Engine> engine, std::shared_ptr<EventPump> pump);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

 private:
  Napi::Value submit(const Napi::CallbackInfo& info);
  Napi::Value cancel(const Napi::CallbackInfo& info);
  Napi::Value close(const Napi::CallbackInfo& info);
  Napi::Value score(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value config(const Napi::CallbackInfo& info);
  rex::Engine& require_open(Napi::Env env);

  // Shared with in-flight score workers, so close() cannot free it under them.
  std::shared_ptr<rex::Engine> engine_;
  std::shared_ptr<EventPump> pump_;
};

// createEngine(dir, options, onEvents): Promise<NativeEngine>
Napi::Value create_engine(const Napi::CallbackInfo& info);

}  // namespace rex_napi
