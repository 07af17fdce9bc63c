// The CUDA backend: the whole request on one GPU in bf16 (fp32 accumulation,
// fp32 residual stream, norms, softmax and rotary angles). It owns the
// device memory (weights in one arena, the paged KV pool under its budget,
// activation buffers), one stream, the cuBLASLt runner and the decode graphs;
// the kernels live in one file pair per op family beside it. Every CUDA and
// cuBLAS failure comes back as a Status naming the call or kernel.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_text.h"
#include "cuda/cuda_vision.h"
#include "cuda/cuda_weights.h"
#include "cuda/gemm.cuh"
#include "cuda/preprocess.cuh"
#include "engine/backend.h"
#include <unordered_map>

#include "engine/budgeted_backend.h"

namespace rex::cuda {

class CudaBackend final : public BudgetedBackend {
 public:
  explicit CudaBackend(const BackendOptions& options);
  ~CudaBackend() override;
  const char* name() const override { return "cuda"; }
  Status prepare(const ModelConfig& config, const ModelWeights& weights) override;
  int vocab_size() const override { return config_.text.vocab_size; }
  Result<std::unique_ptr<ImageEmbeddings>> encode_image(const PreprocessedImage& image) override;
  Result<EncodedImage> encode_rgb(const uint8_t* rgb, int width, int height, const PreprocessOptions& options) override;
  // One vision pass for every image (VisionRunner::forward_batch); raw
  // images are preprocessed on the device one by one first. Each image that
  // cannot be preprocessed fails alone; the batch's times go to each image.
  std::vector<Result<EncodedImage>> encode_rgb_batch(const std::vector<RgbImageRef>& images) override;
  std::vector<Result<std::unique_ptr<ImageEmbeddings>>> encode_image_batch(
      const std::vector<const PreprocessedImage*>& images) override;
  AdmissionCheck check_admission(int tokens) const override;
  Result<SlotId> acquire_slot(int capacity) override;
  AdmissionCheck check_admission_with_prefix(int tokens, const PrefixKey& key) const override;
  Result<SlotId> acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) override;
  Result<bool> cache_prefix(SlotId slot, const PrefixKey& key, int tokens) override;
  Status grow_slot(SlotId slot, int capacity) override;
  void release(SlotId slot) override;
  int slot_length(SlotId slot) const override;
  Status prefill(const PrefillInput& input, float* logits_out) override;
  Status decode(const std::vector<DecodeRow>& rows, float* logits_out) override;
  bool samples_on_device() const override { return true; }
  Status decode_sampled(const std::vector<DecodeRow>& rows, const std::vector<RowSampling>& sampling,
                        std::vector<SampledToken>* out) override;
  Status prefill_sampled(const PrefillInput& input, const RowSampling& sampling, SampledToken* out) override;
  // Prefills batched across requests: not under batch_invariant (a GEMM's
  // sums depend on its rows), nor with REX_OMNI_PREFILL_BATCH=0 (NOTES.md §9).
  bool batches_prefills() const override { return batch_prefills_; }
  Status prefill_batch(const std::vector<PrefillInput>& inputs, float* logits_out) override;
  Status prefill_batch_sampled(const std::vector<PrefillInput>& inputs, const std::vector<RowSampling>& sampling,
                               std::vector<SampledToken>* out) override;
  int max_step_rows() const override { return text_.max_rows(); }
  void set_tap(TensorTap tap) override { tap_ = std::move(tap); }
  BackendInfo info() const override;

  // GPU preprocessing alone, for parity checks against the CPU path.
  Result<PreprocessedImage> preprocess_for_test(const uint8_t* rgb, int width, int height, const PreprocessOptions& options);

 private:
  Status use_device() const;
  Status size_kv_pool(size_t* blocks);
  Status check_image(const PreprocessedImage& image) const;
  // pixels: the images' patch rows one after another, on the device.
  Result<std::vector<std::unique_ptr<ImageEmbeddings>>> encode_device_batch(const bf16* pixels,
                                                                            const std::vector<cpu::PatchGrid>& grids);

  struct Slot {
    std::vector<int32_t> blocks;
    int length = 0;
    int capacity = 0;
    int seen_mask = -1;  // its repetition-penalty bitmask on the device
    std::vector<int32_t> ids;  // the tokens it holds, while a prefix may still be kept (prefill only)
  };
  // The decode rows as the text runner takes them (rows of one slot consecutive).
  Status decode_batch(const std::vector<DecodeRow>& rows, std::vector<DecodeSequence>* batch, std::vector<Slot*>* stepped);
  Status prefill_run(const std::vector<PrefillInput>& inputs, float* logits_out, std::vector<Slot*>* slots);
  static void prefill_commit(const std::vector<PrefillInput>& inputs, const std::vector<Slot*>& slots);
  AdmissionCheck check_admission_for(int tokens, const PrefixKey* key) const;
  Result<SlotId> new_slot(int capacity, const PrefixKey* key, int* prefix_tokens);
  Result<SlotId> add_slot(SlotReservation reservation);
  void drop_uncached_prefixes();

  BackendOptions options_;
  bool use_graphs_ = true;
  bool batch_prefills_ = false;
  bool prepared_ = false;
  ModelConfig config_;
  cudaStream_t stream_ = nullptr;
  GemmRunner gemm_;
  DeviceWeights weights_;
  VisionRunner vision_;
  TextRunner text_;
  DevicePreprocessor preprocessor_;
  std::vector<DevicePreprocessed> pre_pool_;  // encode_rgb_batch's patch rows, one per image of a batch (grow only)
  DeviceBuffer<bf16> kv_arena_;
  DeviceBuffer<bf16> pixels_;  // a batch's pixels one image after another (and host-preprocessed ones), as bf16
  // The cached prefixes' token ids: a slot that reuses one marks them in its
  // repetition-penalty bitmask (the prompt counts as seen).
  std::unordered_map<PrefixKey, std::vector<int32_t>, PrefixKeyHash> prefix_ids_;
  int max_sequence_tokens_ = 0;
  std::map<SlotId, Slot> slots_;
  SlotId next_slot_ = 0;
  std::vector<int> free_masks_;  // seen bitmasks no slot holds
  TensorTap tap_;
  BackendInfo device_info_;
};

// Makes "cuda" known to make_backend (engine/backend.h). Idempotent.
void register_cuda_backend();

}  // namespace rex::cuda
