// The backend interface: what the engine's scheduler asks of a compute
// backend (CPU now, CUDA later). It is shaped for continuous batching and CUDA
// graphs from the start:
//  - sequences live in backend-owned slots, each with its own KV cache, so the
//    scheduler can join and retire requests between steps (a paged cache under
//    a memory budget fits behind acquire_slot/release without API changes);
//  - prefill appends any number of tokens to a slot (chunked prefill later);
//  - decode advances a *batch* of slots by one token each, in one call (one
//    graph launch later), with fixed-size plain-data rows;
//  - image embeddings stay on the backend (device memory later) behind an
//    opaque handle until the prefill that consumes them;
//  - logits come back to host memory, one row of vocab floats per sequence.
// Every call happens on the engine's one scheduler thread; backends need not
// be thread-safe. Failures are Status, never exceptions or aborts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "preprocess/preprocess.h"
#include "rex/status.h"

namespace rex {

using SlotId = int32_t;

// Debug tap: called with a named intermediate (row-major fp32, shape given).
// Names: vision.patch_embed, vision.block.N (window-permuted order),
// vision.merger (before the reverse permutation), text.embed (after image
// scatter, i.e. what layer 0 reads), text.layer.N, text.final_norm — each for
// every token of the call ([tokens, hidden]). Off (empty) = no cost.
using TensorTap = std::function<void(const std::string& name, const float* data,
                                     const std::vector<int64_t>& shape)>;

// A vision encoder output, resident wherever the backend keeps it.
class ImageEmbeddings {
 public:
  virtual ~ImageEmbeddings() = default;
  virtual int tokens() const = 0;   // merged tokens, raster order of the merged grid
  virtual int hidden() const = 0;   // = text hidden size
  // Row-major [tokens, hidden] fp32 on the host.
  virtual Status copy_to_host(std::vector<float>* out) const = 0;
};

struct PrefillInput {
  SlotId slot = -1;
  const int32_t* token_ids = nullptr;   // n tokens appended to the slot
  int n = 0;
  // Axis-major M-RoPE ids [t(0..n-1), h(0..n-1), w(0..n-1)] (3*n values).
  const int32_t* positions = nullptr;
  // Embeddings scattered, in order, at the tokens equal to image_token_id;
  // null when the tokens hold no image. Their count must match exactly.
  const ImageEmbeddings* image = nullptr;
  int32_t image_token_id = -1;
};

// One row of a decode batch: a text token at one position (same on all
// three M-RoPE axes).
struct DecodeRow {
  SlotId slot = -1;
  int32_t token = 0;
  int32_t position = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Converts/uploads the weights. Called once, before anything else. The
  // weights' storage must outlive the call (a backend may keep views or copies).
  virtual Status prepare(const ModelConfig& config, const ModelWeights& weights) = 0;

  virtual int vocab_size() const = 0;

  // Vision encoder: preprocessed patches -> [grid_h*grid_w/4, text_hidden].
  virtual Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) = 0;

  // A fresh, empty sequence slot. capacity_hint: expected total tokens
  // (prompt + generation); kOutOfMemory when the KV budget can't take it.
  virtual Result<SlotId> acquire_slot(int capacity_hint) = 0;
  virtual void release(SlotId slot) = 0;
  virtual int slot_length(SlotId slot) const = 0;  // tokens in its KV cache; -1 if unknown slot

  // Appends input.n tokens to the slot; writes the logits of the LAST one to
  // logits_out[vocab_size()].
  virtual Status prefill(const PrefillInput& input, float* logits_out) = 0;

  // Appends one token to each row's slot (slots distinct); writes logits to
  // logits_out[rows.size() * vocab_size()], row by row.
  virtual Status decode(const std::vector<DecodeRow>& rows, float* logits_out) = 0;

  // Debug intermediates; an empty function turns the tap off.
  virtual void set_tap(TensorTap tap) = 0;
};

struct BackendOptions {
  std::string name = "cpu";
  int threads = 0;  // 0: all hardware threads
};

// Builds the named backend ("cpu"; "cuda" when compiled in). kInvalidArgument
// for an unknown or unavailable name.
Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options);

}  // namespace rex
