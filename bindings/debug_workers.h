// Verification entry points: the core's preprocessing and one reference
// forward pass (vision output, last-position logits, named intermediates),
// exposed so TypeScript can compare them with transformers' golden files.
// Each runs on a libuv worker thread.
#pragma once

#include <napi.h>

namespace rex_napi {

// preprocessImage({data, width, height, minPixels?, maxPixels?}):
//   Promise<{resizedWidth, resizedHeight, gridT, gridH, gridW, resizedRgb: Uint8Array, pixelValues: Float32Array}>
Napi::Value preprocess_image(const Napi::CallbackInfo& info);

// smartResize(height, width, minPixels, maxPixels): {height, width} — the
// core's smart_resize, so TypeScript can count image-pad tokens without a
// second implementation. Synchronous: it is a few float operations.
Napi::Value smart_resize(const Napi::CallbackInfo& info);

// referenceForward(dir, {promptIds, image?, intermediates?: boolean, backend?: string}):
//   Promise<{visionTokens, vision: Float32Array, lastLogits: Float32Array,
//            intermediates: {[name]: {shape: number[], data: Float32Array}}}>
// Loads its own backend from `dir` (it is a verification tool, not a serving path).
Napi::Value reference_forward(const Napi::CallbackInfo& info);

}  // namespace rex_napi
