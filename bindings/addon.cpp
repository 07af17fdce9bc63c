// The addon's entry point: registers the classes and functions that
// lib/addon-types.ts describes. The binding is a thin pump; all logic is in the core.
#include <napi.h>

#include "addon_data.h"
#include "backend_info.h"
#include "checkpoint_wrap.h"
#include "debug_workers.h"
#include "engine_wrap.h"

#ifdef REX_WITH_CUDA_BACKEND
#include "cuda/cuda_backend.h"
#endif

namespace rex_napi {

Napi::Object init(Napi::Env env, Napi::Object exports) {
#ifdef REX_WITH_CUDA_BACKEND
  rex::cuda::register_cuda_backend();  // createEngine(dir, {backend: "cuda"}) finds it through make_backend
#endif
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);

  Napi::Function checkpoint_class = CheckpointWrap::define(env);
  data->checkpoint_constructor = Napi::Persistent(checkpoint_class);
  exports.Set("NativeCheckpoint", checkpoint_class);
  exports.Set("openCheckpoint", Napi::Function::New(env, open_checkpoint, "openCheckpoint"));
  exports.Set("backendInfo", Napi::Function::New(env, backend_info, "backendInfo"));

  Napi::Function engine_class = EngineWrap::define(env);
  data->engine_constructor = Napi::Persistent(engine_class);
  exports.Set("NativeEngine", engine_class);
  exports.Set("createEngine", Napi::Function::New(env, create_engine, "createEngine"));
  exports.Set("preprocessImage", Napi::Function::New(env, preprocess_image, "preprocessImage"));
  exports.Set("smartResize", Napi::Function::New(env, smart_resize, "smartResize"));
  exports.Set("referenceForward", Napi::Function::New(env, reference_forward, "referenceForward"));
  return exports;
}

}  // namespace rex_napi

// NODE_API_MODULE pastes the name into an identifier: it must be unqualified.
static Napi::Object init_rex_omni(Napi::Env env, Napi::Object exports) { return rex_napi::init(env, exports); }
NODE_API_MODULE(rex_omni, init_rex_omni)
