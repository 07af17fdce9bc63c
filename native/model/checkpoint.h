// A checkpoint directory: config.json plus safetensors weights, memory-mapped.
// Weights come as one model.safetensors or as shards listed in
// model.safetensors.index.json. Tensor names are normalised to the
// transformers 4.x layout ("visual.…", "model.layers.…", "model.embed_tokens…",
// "lm_head.weight"); the newer layout ("model.visual.…", "model.language_model.…")
// is accepted and renamed on open.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tensor.h"
#include "rex/status.h"

namespace rex {

class Checkpoint {
 public:
  // Errors name the file and, where one is involved, the tensor:
  //   kNotFound (no dir / config.json / weights), kIoError, kCorruptFile (truncated,
  //   offsets outside the file), kBadHeader (header or index not JSON),
  //   kUnsupportedDtype, kUnsupportedArchitecture.
  static Result<std::unique_ptr<Checkpoint>> open(const std::string& dir);
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::string& dir() const;
  const ModelConfig& config() const;
  const std::string& tensor_layout() const;   // "flat" (visual., model.) or "nested" (model.visual., model.language_model.)
  std::vector<std::string> tensor_names() const;  // canonical names, sorted
  const TensorView* find(const std::string& canonical_name) const;  // nullptr if absent
  size_t total_bytes() const;                  // sum of tensor bytes
  const std::vector<std::string>& weight_files() const;  // base names of the mapped files, in load order

  // The tensor, checked against the expected shape. Errors: kMissingTensor,
  // kShapeMismatch — both naming tensor and file.
  Result<const TensorView*> require(const std::string& canonical_name,
                                    const std::vector<int64_t>& expected_shape) const;

  struct Impl;
 private:
  explicit Checkpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rex
