#include "checkpoint_wrap.h"

#include "addon_data.h"
#include "config_to_js.h"
#include "errors.h"
#include "js_arrays.h"
#include "model/verify_weights.h"
#include "model/weights.h"
#include "promise_worker.h"

namespace rex_napi {

Napi::Function CheckpointWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeCheckpoint",
                     {
                         InstanceAccessor<&CheckpointWrap::config>("config"),
                         InstanceAccessor<&CheckpointWrap::dir>("dir"),
                         InstanceAccessor<&CheckpointWrap::tensor_layout>("tensorLayout"),
                         InstanceAccessor<&CheckpointWrap::tensor_count>("tensorCount"),
                         InstanceAccessor<&CheckpointWrap::total_bytes>("totalBytes"),
                         InstanceMethod<&CheckpointWrap::tensor_names>("tensorNames"),
                         InstanceMethod<&CheckpointWrap::tensor_info>("tensorInfo"),
                         InstanceMethod<&CheckpointWrap::close>("close"),
                     });
}

Napi::Object CheckpointWrap::wrap(Napi::Env env, std::shared_ptr<rex::Checkpoint> checkpoint) {
  Napi::Object object = addon_data(env).checkpoint_constructor.New({});
  Unwrap(object)->checkpoint_ = std::move(checkpoint);
  return object;
}

CheckpointWrap::CheckpointWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CheckpointWrap>(info) {}

const rex::Checkpoint& CheckpointWrap::require_open(Napi::Env env) const {
  if (!checkpoint_) {
    Napi::Error error = Napi::Error::New(env, "the checkpoint is closed");
    error.Set("code", Napi::String::New(env, "ERR_REX_CLOSED"));
    throw error;
  }
  return *checkpoint_;
}

Napi::Value CheckpointWrap::config(const Napi::CallbackInfo& info) {
  return config_to_js(info.Env(), require_open(info.Env()).config());
}

Napi::Value CheckpointWrap::dir(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), require_open(info.Env()).dir());
}

Napi::Value CheckpointWrap::tensor_layout(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), require_open(info.Env()).tensor_layout());
}

Napi::Value CheckpointWrap::tensor_count(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(require_open(info.Env()).tensor_names().size()));
}

Napi::Value CheckpointWrap::total_bytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(require_open(info.Env()).total_bytes()));
}

Napi::Value CheckpointWrap::tensor_names(const Napi::CallbackInfo& info) {
  std::vector<std::string> names = require_open(info.Env()).tensor_names();
  Napi::Array array = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); ++i) array.Set(static_cast<uint32_t>(i), names[i]);
  return array;
}

Napi::Value CheckpointWrap::tensor_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    throw invalid_argument(env, "tensorInfo(name) expected a string but got " +
                                    std::string(info.Length() < 1 ? "nothing" : "another type"));
  const rex::TensorView* t = require_open(env).find(info[0].As<Napi::String>().Utf8Value());
  if (t == nullptr) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", t->name);
  o.Set("file", t->file);
  o.Set("dtype", rex::dtype_name(t->dtype));
  o.Set("shape", number_array(env, t->shape));
  o.Set("bytes", static_cast<double>(t->nbytes));
  return o;
}

Napi::Value CheckpointWrap::close(const Napi::CallbackInfo& info) {
  checkpoint_.reset();
  return info.Env().Undefined();
}

namespace {

// Opens, shape-checks and (optionally) scans a checkpoint on a libuv worker
// thread; the promise settles on the main thread.
class OpenCheckpointWorker : public PromiseWorker {
 public:
  OpenCheckpointWorker(Napi::Env env, std::string dir, bool verify)
      : PromiseWorker(env, "rex-omni:openCheckpoint"), dir_(std::move(dir)), verify_(verify) {}

 protected:
  void Execute() override {
    rex::Result<std::unique_ptr<rex::Checkpoint>> opened = rex::Checkpoint::open(dir_);
    if (!opened.ok()) return fail(opened.status());
    rex::Result<rex::ModelWeights> weights = rex::bind_model_weights(*opened.value());
    if (!weights.ok()) return fail(weights.status());
    if (verify_) {
      rex::Status verified = rex::verify_weights_finite(*opened.value());
      if (!verified.ok()) return fail(verified);
    }
    checkpoint_ = std::move(opened).value();
  }
  Napi::Value resolve_value(Napi::Env env) override { return CheckpointWrap::wrap(env, std::move(checkpoint_)); }

 private:
  std::string dir_;
  bool verify_;
  std::shared_ptr<rex::Checkpoint> checkpoint_;
};

}  // namespace

Napi::Value open_checkpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    throw invalid_argument(env, "openCheckpoint(dir) expected a directory path string");
  bool verify = false;
  if (info.Length() >= 2 && info[1].IsObject()) {
    Napi::Value v = info[1].As<Napi::Object>().Get("verify");
    verify = v.IsBoolean() && v.As<Napi::Boolean>().Value();
  }
  return (new OpenCheckpointWorker(env, info[0].As<Napi::String>().Utf8Value(), verify))->queue();
}

}  // namespace rex_napi
