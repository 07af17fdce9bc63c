#include "debug_workers.h"

#include <cstring>
#include <map>
#include <mutex>

#include "engine/model_loader.h"
#include "engine/reference_forward.h"
#include "errors.h"
#include "js_arrays.h"
#include "promise_worker.h"
#include "preprocess/preprocess.h"
#include "request_from_js.h"

#ifdef REX_WITH_CUDA_BACKEND
#include "cuda/cuda_backend.h"
#endif

namespace rex_napi {
namespace {

Napi::Float32Array to_float32_array(Napi::Env env, const std::vector<float>& values) {
  Napi::Float32Array array = Napi::Float32Array::New(env, values.size());
  if (!values.empty()) std::memcpy(array.Data(), values.data(), values.size() * sizeof(float));
  return array;
}

// The CPU path, or with on_device the CUDA backend's preprocessing kernels
// (their parity check against the CPU path runs through here).
class PreprocessWorker : public PromiseWorker {
 public:
  PreprocessWorker(Napi::Env env, rex::RawImage image, bool on_device)
      : PromiseWorker(env, "rex-omni:preprocess"), image_(std::move(image)), on_device_(on_device) {}

 protected:
  void Execute() override {
    rex::Result<rex::PreprocessedImage> result =
        rex::Status(rex::StatusCode::kInvalidArgument, "expected backend \"cpu\" but got \"cuda\" (this build of the addon has no CUDA backend)");
    if (!on_device_) {
      result = rex::preprocess_image(image_.rgb.data(), image_.width, image_.height, image_.options);
    } else {
#ifdef REX_WITH_CUDA_BACKEND
      rex::cuda::CudaBackend device{rex::BackendOptions{}};
      result = device.preprocess_for_test(image_.rgb.data(), image_.width, image_.height, image_.options);
#endif
    }
    if (!result.ok()) return fail(result.status());
    out_ = std::move(result).value();
  }
  Napi::Value resolve_value(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("resizedWidth", out_.resized_width);
    o.Set("resizedHeight", out_.resized_height);
    o.Set("gridT", out_.grid_t);
    o.Set("gridH", out_.grid_h);
    o.Set("gridW", out_.grid_w);
    o.Set("resizedRgb", Napi::Buffer<uint8_t>::Copy(env, out_.resized_rgb.data(), out_.resized_rgb.size()));
    o.Set("pixelValues", to_float32_array(env, out_.pixel_values));
    return o;
  }

 private:
  rex::RawImage image_;
  bool on_device_;
  rex::PreprocessedImage out_;
};

struct TappedTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class ReferenceForwardWorker : public PromiseWorker {
 public:
  ReferenceForwardWorker(Napi::Env env, std::string dir, rex::GenerationRequest request, bool tap, std::string backend)
      : PromiseWorker(env, "rex-omni:referenceForward"),
        dir_(std::move(dir)),
        request_(std::move(request)),
        tap_(tap),
        backend_(std::move(backend)) {}

 protected:
  void Execute() override {
    rex::BackendOptions options;
    options.name = backend_;
    auto loaded = rex::load_backend(dir_, options);
    if (!loaded.ok()) return fail(loaded.status());
    rex::Backend& backend = *loaded.value().backend;
    if (tap_) {
      backend.set_tap([this](const std::string& name, const float* data, const std::vector<int64_t>& shape) {
        size_t n = 1;
        for (int64_t d : shape) n *= static_cast<size_t>(d);
        std::lock_guard<std::mutex> lock(tap_mutex_);
        TappedTensor& t = tapped_[name];
        t.shape = shape;
        t.data.assign(data, data + n);
      });
    }
    std::optional<rex::PreprocessedImage> image;
    if (request_.raw_image) {
      const rex::RawImage& raw = *request_.raw_image;
      auto pre = rex::preprocess_image(raw.rgb.data(), raw.width, raw.height, raw.options);
      if (!pre.ok()) return fail(pre.status());
      image = std::move(pre).value();
    }
    auto forward = rex::run_reference_forward(backend, loaded.value().config, image ? &*image : nullptr, request_.prompt_ids);
    if (!forward.ok()) return fail(forward.status());
    forward_ = std::move(forward).value();
  }
  Napi::Value resolve_value(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("visionTokens", forward_.vision_tokens);
    o.Set("vision", to_float32_array(env, forward_.vision));
    o.Set("lastLogits", to_float32_array(env, forward_.last_logits));
    Napi::Object intermediates = Napi::Object::New(env);
    for (const auto& [name, tensor] : tapped_) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("shape", number_array(env, tensor.shape));
      t.Set("data", to_float32_array(env, tensor.data));
      intermediates.Set(name, t);
    }
    o.Set("intermediates", intermediates);
    return o;
  }

 private:
  std::string dir_;
  rex::GenerationRequest request_;
  bool tap_;
  std::string backend_;
  rex::ReferenceForward forward_;
  std::mutex tap_mutex_;
  std::map<std::string, TappedTensor> tapped_;
};

}  // namespace

Napi::Value preprocess_image(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool on_device = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value backend = info[1].As<Napi::Object>().Get("backend");
    if (backend.IsString()) {
      const std::string name = backend.As<Napi::String>().Utf8Value();
      if (name != "cpu" && name != "cuda")
        throw invalid_argument(env, "preprocessImage options.backend: expected \"cpu\" or \"cuda\" but got \"" + name + "\"");
      on_device = name == "cuda";
    }
  }
  return (new PreprocessWorker(env, raw_image_from_js(env, info[0], "image"), on_device))->queue();
}

Napi::Value smart_resize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 4; ++i)
    if (info.Length() <= i || !info[i].IsNumber())
      throw invalid_argument(env, "smartResize(height, width, minPixels, maxPixels): expected four numbers");
  auto target = rex::smart_resize(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), 28,
                                  info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  if (!target.ok()) throw status_to_error(env, target.status());
  Napi::Object o = Napi::Object::New(env);
  o.Set("height", target->height);
  o.Set("width", target->width);
  return o;
}

Napi::Value reference_forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString())
    throw invalid_argument(env, "referenceForward(dir, request): expected a directory path string");
  rex::GenerationRequest request = generation_request_from_js(env, info[1]);
  Napi::Object o = info[1].As<Napi::Object>();
  Napi::Value tap = o.Get("intermediates");
  Napi::Value backend = o.Get("backend");
  auto* worker = new ReferenceForwardWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(request),
                                            tap.IsBoolean() && tap.As<Napi::Boolean>().Value(),
                                            backend.IsString() ? backend.As<Napi::String>().Utf8Value() : "cpu");
  return worker->queue();
}

}  // namespace rex_napi
