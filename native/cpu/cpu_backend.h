// The CPU reference backend: fp32 math on widened weights, a small thread
// pool, KV caches as growable vectors per slot. Plain and readable: it is the
// oracle every CUDA kernel is compared with. With a KV budget
// (BackendOptions::kv_cache_bytes) slots take blocks from a KvBlockPool, the
// same bookkeeping the CUDA backend uses, and a slot cannot outgrow what it
// reserved; without one, slots grow as needed. decode() takes several rows
// of one slot (consecutive, at consecutive positions) as one segment of the
// text forward, with logits for every row. It does not sample on its
// device: the engine samples from those logits. Under a budget it also keeps
// the image prefix cache (KvBudget): the bookkeeping is the GPU's, and the
// cached KV is a copy of the prefix's rows, copied again into each slot that
// reuses it. Images admitted together go through one vision pass
// (encode_*_batch), each image's embeddings the bits it gets alone.
#pragma once

#include <map>
#include <memory>
#include <unordered_map>

#include "cpu/text.h"
#include "cpu/thread_pool.h"
#include "cpu/vision.h"
#include "engine/backend.h"
#include "engine/budgeted_backend.h"

namespace rex::cpu {

class CpuBackend final : public BudgetedBackend {
 public:
  explicit CpuBackend(int threads);
  explicit CpuBackend(const BackendOptions& options);
  const char* name() const override { return "cpu"; }
  Status prepare(const ModelConfig& config, const ModelWeights& weights) override;
  int vocab_size() const override { return config_.text.vocab_size; }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override;
  // One vision pass for every image (VisionEncoder::forward_batch): each
  // image's embeddings are the bits it gets alone.
  std::vector<Result<std::unique_ptr<ImageEmbeddings>>> encode_image_batch(
      const std::vector<const PreprocessedImage*>& images) override;
  std::vector<Result<EncodedImage>> encode_rgb_batch(const std::vector<RgbImageRef>& images) override;
  AdmissionCheck check_admission(int tokens) const override;
  Result<SlotId> acquire_slot(int capacity) override;
  AdmissionCheck check_admission_with_prefix(int tokens, const PrefixKey& key) const override;
  Result<SlotId> acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) override;
  Result<bool> cache_prefix(SlotId slot, const PrefixKey& key, int tokens) override;
  Status grow_slot(SlotId slot, int capacity) override;
  void release(SlotId slot) override;
  int slot_length(SlotId slot) const override;
  Status prefill(const PrefillInput& input, float* logits_out) override;
  bool batches_prefills() const override { return true; }
  Status prefill_batch(const std::vector<PrefillInput>& inputs, float* logits_out) override;
  Status decode(const std::vector<DecodeRow>& rows, float* logits_out) override;
  void set_tap(TensorTap tap) override { tap_ = std::move(tap); }
  BackendInfo info() const override;

  int threads() const { return pool_.size(); }

 private:
  ThreadPool pool_;
  bool prepared_ = false;
  ModelConfig config_;
  VisionEncoder vision_;
  TextDecoder text_;
  struct Slot {
    KvCache cache;
    int capacity = 0;               // enforced only under a budget
    std::vector<int32_t> blocks;    // reserved from pool_ (budget only)
  };
  Status check_image(const PreprocessedImage& image) const;
  Status prefill_rows(const PrefillInput& input, std::vector<float>* x, TextSegment* segment);
  Result<SlotId> add_slot(int capacity, SlotReservation reservation);
  void drop_uncached_prefixes();

  std::map<SlotId, Slot> slots_;
  size_t kv_budget_bytes_ = 0;      // 0: no budget
  int64_t prefix_cache_bytes_ = -1; // BackendOptions::prefix_cache_bytes
  std::unordered_map<PrefixKey, KvCache, PrefixKeyHash> prefix_kv_;  // the cached prefixes' rows
  size_t weights_bytes_ = 0;
  SlotId next_slot_ = 0;
  TensorTap tap_;
};

}  // namespace rex::cpu
