// backendInfo(): which backend this addon build carries, and for the CUDA
// build, whether a device answers (the loader falls back to CPU when not).
#pragma once

#include <napi.h>

namespace rex_napi {

Napi::Value backend_info(const Napi::CallbackInfo& info);

}  // namespace rex_napi
