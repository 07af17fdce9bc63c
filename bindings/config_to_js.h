// The checkpoint's ModelConfig as a plain JS object (camelCase fields).
#pragma once

#include <napi.h>

#include "model/config.h"

namespace rex_napi {

Napi::Object config_to_js(Napi::Env env, const rex::ModelConfig& config);

}  // namespace rex_napi
