// The CPU reference backend: fp32 math on widened weights, a small thread
// pool, KV caches as growable vectors per slot. Plain and readable: it is the
// oracle every CUDA kernel is compared with.
#pragma once

#include <map>
#include <memory>

#include "cpu/text.h"
#include "cpu/thread_pool.h"
#include "cpu/vision.h"
#include "engine/backend.h"

namespace rex::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  const char* name() const override { return "cpu"; }
  Status prepare(const ModelConfig& config, const ModelWeights& weights) override;
  int vocab_size() const override { return config_.text.vocab_size; }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override;
  Result<SlotId> acquire_slot(int capacity_hint) override;
  void release(SlotId slot) override;
  int slot_length(SlotId slot) const override;
  Status prefill(const PrefillInput& input, float* logits_out) override;
  Status decode(const std::vector<DecodeRow>& rows, float* logits_out) override;
  void set_tap(TensorTap tap) override { tap_ = std::move(tap); }

  int threads() const { return pool_.size(); }

 private:
  ThreadPool pool_;
  bool prepared_ = false;
  ModelConfig config_;
  VisionEncoder vision_;
  TextDecoder text_;
  std::map<SlotId, KvCache> slots_;
  SlotId next_slot_ = 0;
  TensorTap tap_;
};

}  // namespace rex::cpu
