// A libuv worker whose outcome settles a promise. Subclasses do their work in
// Execute() (off the JS thread), record a failed Status with fail(), and build
// the resolved value on the JS thread in resolve_value(). A failure rejects
// with an Error carrying the Status code (errors.h).
#pragma once

#include <napi.h>

#include "errors.h"
#include "rex/status.h"

namespace rex_napi {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* resource_name)
      : Napi::AsyncWorker(env, resource_name), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queues the worker (which then owns itself) and returns its promise.
  Napi::Promise queue() {
    Napi::Promise promise = deferred_.Promise();
    Queue();
    return promise;
  }

 protected:
  void fail(rex::Status status) { status_ = std::move(status); }
  bool failed() const { return !status_.ok(); }
  virtual Napi::Value resolve_value(Napi::Env env) = 0;
  // Runs on the JS thread before a rejection (release what the worker held).
  virtual void on_rejected() {}

  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) {
      on_rejected();
      deferred_.Reject(status_to_error(env, status_).Value());
      return;
    }
    deferred_.Resolve(resolve_value(env));
  }
  void OnError(const Napi::Error& error) override {
    on_rejected();
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  rex::Status status_;
};

}  // namespace rex_napi
