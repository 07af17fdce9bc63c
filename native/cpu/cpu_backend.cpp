// See cpu_backend.h.
#include "cpu/cpu_backend.h"

namespace rex::cpu {

namespace {

class CpuImageEmbeddings final : public ImageEmbeddings {
 public:
  CpuImageEmbeddings(std::vector<float> data, int tokens, int hidden)
      : data_(std::move(data)), tokens_(tokens), hidden_(hidden) {}
  int tokens() const override { return tokens_; }
  int hidden() const override { return hidden_; }
  Status copy_to_host(std::vector<float>* out) const override {
    *out = data_;
    return Status::Ok();
  }
  const std::vector<float>& data() const { return data_; }

 private:
  std::vector<float> data_;
  int tokens_, hidden_;
};

Status not_prepared() { return Status(StatusCode::kInternal, "cpu backend: prepare() was not called"); }

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}
CpuBackend::CpuBackend(const BackendOptions& options) : pool_(options.threads), kv_budget_bytes_(options.kv_cache_bytes) {
  const ActivationPrecision p = options.emulate_bf16 ? ActivationPrecision::kBf16 : ActivationPrecision::kFp32;
  vision_.set_activation_precision(p);
  text_.set_activation_precision(p);
}

Status CpuBackend::prepare(const ModelConfig& config, const ModelWeights& weights) {
  config_ = config;
  REX_RETURN_IF_ERROR(vision_.load(config.vision, weights.vision));
  REX_RETURN_IF_ERROR(text_.load(config.text, weights.text));
  if (config.vision.out_hidden_size != config.text.hidden_size)
    return Status(StatusCode::kInvalidArgument, "vision out_hidden_size " +
                  std::to_string(config.vision.out_hidden_size) + " != text hidden_size " +
                  std::to_string(config.text.hidden_size));
  if (kv_budget_bytes_ > 0) {
    const TextConfig& t = config.text;
    const size_t per_token = size_t(t.num_layers) * 2 * t.num_kv_heads * t.head_dim() * sizeof(float);
    constexpr int kBlock = 64;
    kv_pool_ = KvBlockPool(int(kv_budget_bytes_ / (per_token * kBlock)), kBlock, per_token);
  }
  weights_bytes_ = 0;
  for (const TensorView* tv : {weights.text.embed_tokens, weights.text.lm_head})
    if (tv) weights_bytes_ += size_t(tv->numel()) * sizeof(float);
  for (const auto& l : weights.text.layers)
    for (const TensorView* tv : {l.q_w, l.k_w, l.v_w, l.o_w, l.gate_w, l.up_w, l.down_w})
      if (tv) weights_bytes_ += size_t(tv->numel()) * sizeof(float);
  prepared_ = true;
  return Status::Ok();
}

AdmissionCheck CpuBackend::check_admission(int tokens) const {
  if (kv_budget_bytes_ == 0) return {};
  return kv_pool_.check(tokens);
}

BackendInfo CpuBackend::info() const {
  BackendInfo i;
  i.backend = "cpu";
  i.threads = pool_.size();
  i.memory.weights_bytes = weights_bytes_;
  i.memory.kv_cache_bytes = kv_budget_bytes_ ? size_t(kv_pool_.total_blocks()) * kv_pool_.bytes_per_block() : 0;
  i.memory.kv_cache_used_bytes = kv_budget_bytes_ ? kv_pool_.used_bytes() : 0;
  return i;
}

Result<std::unique_ptr<ImageEmbeddings>> CpuBackend::encode_image(const PreprocessedImage& image) {
  if (!prepared_) return not_prepared();
  const VisionConfig& v = config_.vision;
  const size_t row = size_t(v.in_channels) * v.temporal_patch_size * v.patch_size * v.patch_size;
  const size_t rows = size_t(image.grid_h) * image.grid_w;
  if (image.grid_t != 1)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected grid_t 1 but got " +
                  std::to_string(image.grid_t));
  if (image.pixel_values.size() != rows * row)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected " + std::to_string(rows) + " x " +
                  std::to_string(row) + " pixel values but got " + std::to_string(image.pixel_values.size()));
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  auto out = vision_.forward(pool_, image.pixel_values.data(), image.grid_h, image.grid_w, tap);
  if (!out.ok()) return out.status();
  const int merge2 = v.spatial_merge_size * v.spatial_merge_size;
  return std::unique_ptr<ImageEmbeddings>(
      new CpuImageEmbeddings(std::move(out).value(), int(rows) / merge2, v.out_hidden_size));
}

Result<SlotId> CpuBackend::acquire_slot(int capacity) {
  if (!prepared_) return not_prepared();
  Slot slot;
  if (kv_budget_bytes_ > 0) {
    auto blocks = kv_pool_.allocate(capacity);
    if (!blocks.ok()) return blocks.status();
    slot.blocks = std::move(blocks).value();
  }
  slot.capacity = capacity;
  const SlotId id = next_slot_++;
  text_.init_cache(&slot.cache, capacity);
  slots_[id] = std::move(slot);
  return id;
}

void CpuBackend::release(SlotId slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return;
  kv_pool_.release(&it->second.blocks);
  slots_.erase(it);
}

int CpuBackend::slot_length(SlotId slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? -1 : it->second.cache.length;
}

Status CpuBackend::prefill(const PrefillInput& in, float* logits_out) {
  if (!prepared_) return not_prepared();
  auto it = slots_.find(in.slot);
  if (it == slots_.end())
    return Status(StatusCode::kInvalidArgument, "prefill: unknown slot " + std::to_string(in.slot));
  if (in.n <= 0 || !in.token_ids || !in.positions)
    return Status(StatusCode::kInvalidArgument, "prefill: expected at least one token with positions");
  const int hidden = config_.text.hidden_size;
  std::vector<float> x(size_t(in.n) * hidden);
  REX_RETURN_IF_ERROR(text_.embed(in.token_ids, in.n, x.data()));

  int image_tokens = 0;
  for (int i = 0; i < in.n; ++i) image_tokens += in.token_ids[i] == in.image_token_id;
  if (in.image) {
    if (in.image->tokens() != image_tokens || in.image->hidden() != hidden)
      return Status(StatusCode::kInvalidArgument, "prefill: the prompt has " + std::to_string(image_tokens) +
                    " image tokens but the image gives " + std::to_string(in.image->tokens()) +
                    " embeddings of width " + std::to_string(in.image->hidden()));
    std::vector<float> host;
    REX_RETURN_IF_ERROR(in.image->copy_to_host(&host));
    for (int i = 0, j = 0; i < in.n; ++i)
      if (in.token_ids[i] == in.image_token_id)
        std::copy_n(&host[size_t(j++) * hidden], hidden, &x[size_t(i) * hidden]);
  } else if (image_tokens > 0 && in.image_token_id >= 0) {
    return Status(StatusCode::kInvalidArgument, "prefill: the prompt has " + std::to_string(image_tokens) +
                  " image tokens but no image");
  }
  if (kv_budget_bytes_ > 0 && it->second.cache.length + in.n > it->second.capacity)
    return Status(StatusCode::kInvalidArgument, "prefill: slot " + std::to_string(in.slot) + " holds " +
                  std::to_string(it->second.capacity) + " tokens; expected at most " +
                  std::to_string(it->second.capacity - it->second.cache.length) + " more but got " + std::to_string(in.n));
  TextSegment seg{&it->second.cache, in.n, in.positions};
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  return text_.forward(pool_, std::move(x), {seg}, logits_out, tap, in.logit_rows);
}

Status CpuBackend::decode(const std::vector<DecodeRow>& rows, float* logits_out) {
  if (!prepared_) return not_prepared();
  if (rows.empty()) return Status::Ok();
  const int hidden = config_.text.hidden_size;
  std::vector<float> x(rows.size() * size_t(hidden));
  std::vector<int32_t> positions(rows.size() * 3);
  std::vector<TextSegment> segments;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto it = slots_.find(rows[i].slot);
    if (it == slots_.end())
      return Status(StatusCode::kInvalidArgument, "decode: unknown slot " + std::to_string(rows[i].slot));
    for (size_t j = 0; j < i; ++j)
      if (rows[j].slot == rows[i].slot)
        return Status(StatusCode::kInvalidArgument, "decode: slot " + std::to_string(rows[i].slot) + " twice in one batch");
    if (kv_budget_bytes_ > 0 && it->second.cache.length + 1 > it->second.capacity)
      return Status(StatusCode::kInvalidArgument, "decode: slot " + std::to_string(rows[i].slot) +
                    " is full at its capacity of " + std::to_string(it->second.capacity) + " tokens");
    REX_RETURN_IF_ERROR(text_.embed(&rows[i].token, 1, &x[i * hidden]));
    for (int a = 0; a < 3; ++a) positions[i * 3 + size_t(a)] = rows[i].position;
    segments.push_back({&it->second.cache, 1, &positions[i * 3]});
  }
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  return text_.forward(pool_, std::move(x), segments, logits_out, tap);
}

}  // namespace rex::cpu
