// backendInfo(): which backend this addon build carries, and for the CUDA
// build, whether a device answers (the loader falls back to CPU when not).
#pragma once

#include <napi.h>

#include "engine/backend.h"

namespace rex_napi {

Napi::Value backend_info(const Napi::CallbackInfo& info);

// An engine's backend, device and memory (NativeEngineInfo).
Napi::Object backend_info_to_js(Napi::Env env, const rex::BackendInfo& info);

}  // namespace rex_napi
