// Canonical tensor names. Checkpoints come in two layouts:
//   flat   (transformers 4.x):      "visual.…", "model.layers.…", "model.embed_tokens.…"
//   nested (4.52.0–4.52.3, some 5.x): "model.visual.…", "model.language_model.…"
// The rest of the core uses the flat (4.x) names only.
#pragma once

#include <string>

namespace rex {

// "model.visual.X" → "visual.X"; "model.language_model.X" → "model.X"; all else unchanged.
std::string canonical_tensor_name(const std::string& stored_name);

// Whether `stored_name` is spelled in the nested layout.
bool is_nested_tensor_name(const std::string& stored_name);

}  // namespace rex
