// NativeCheckpoint: a JS handle on an opened, shape-checked checkpoint, and the
// async worker that opens one off the main thread.
#pragma once

#include <napi.h>

#include <memory>

#include "model/checkpoint.h"

namespace rex_napi {

class CheckpointWrap : public Napi::ObjectWrap<CheckpointWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<rex::Checkpoint> checkpoint);
  explicit CheckpointWrap(const Napi::CallbackInfo& info);

  std::shared_ptr<rex::Checkpoint> checkpoint() const { return checkpoint_; }

 private:
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value dir(const Napi::CallbackInfo& info);
  Napi::Value tensor_layout(const Napi::CallbackInfo& info);
  Napi::Value tensor_count(const Napi::CallbackInfo& info);
  Napi::Value total_bytes(const Napi::CallbackInfo& info);
  Napi::Value tensor_names(const Napi::CallbackInfo& info);
  Napi::Value tensor_info(const Napi::CallbackInfo& info);
  Napi::Value close(const Napi::CallbackInfo& info);
  const rex::Checkpoint& require_open(Napi::Env env) const;

  std::shared_ptr<rex::Checkpoint> checkpoint_;
};

// openCheckpoint(dir: string, options?: { verify?: boolean }): Promise<NativeCheckpoint>
Napi::Value open_checkpoint(const Napi::CallbackInfo& info);

}  // namespace rex_napi
