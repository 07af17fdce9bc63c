// Per-environment state of the addon (no globals: each worker thread or
// context that loads the addon gets its own), stored with Env::SetInstanceData.
#pragma once

#include <napi.h>

namespace rex_napi {

struct AddonData {
  Napi::FunctionReference checkpoint_constructor;
  Napi::FunctionReference engine_constructor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace rex_napi
