// One vision pass plus one prefill, returning what the golden files hold
// (test/golden/FORMAT.md): the vision output [tokens, hidden] in merged raster
// order and the logits of the last prompt position. Backend-agnostic, so the
// same golden test runs the CPU and the CUDA backend. Set a tap on the backend
// first to also collect the named intermediates.
#pragma once

#include <vector>

#include "engine/backend.h"
#include "engine/mrope_positions.h"

namespace rex {

struct ReferenceForward {
  std::vector<float> vision;       // [vision_tokens, hidden]; empty without an image
  int vision_tokens = 0;
  std::vector<float> last_logits;  // [vocab]
  MropePositions positions;
};

// input_ids: the whole prompt with image pads expanded. image may be null.
Result<ReferenceForward> run_reference_forward(Backend& backend, const ModelConfig& config,
                                               const PreprocessedImage* image,
                                               const std::vector<int32_t>& input_ids);

}  // namespace rex
