// JS request objects → core structs, on the main thread (sharp's "baton"
// pattern): types are checked here, values are validated by the core.
// Field names follow lib/addon-types.ts (NativeGenerationRequest).
#pragma once

#include <napi.h>

#include "rex/engine.h"

namespace rex_napi {

// Throws a TypeError ("… expected … but got …") for a malformed object.
rex::GenerationRequest generation_request_from_js(Napi::Env env, Napi::Value value);

// {promptIds, image?, continuationIds, topK?, fullLogits?} (NativeScoreRequest).
rex::ScoreRequest score_request_from_js(Napi::Env env, Napi::Value value);

// {data: Uint8Array (RGB), width, height, minPixels?, maxPixels?}; `field` names it in errors.
rex::RawImage raw_image_from_js(Napi::Env env, Napi::Value value, const std::string& field);

}  // namespace rex_napi
