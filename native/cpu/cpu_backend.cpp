// See cpu_backend.h.
#include "cpu/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "engine/encode_batch.h"
#include "engine/mrope_positions.h"

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
CpuBackend::CpuBackend(const BackendOptions& options)
    : pool_(options.threads), kv_budget_bytes_(options.kv_cache_bytes), prefix_cache_bytes_(options.prefix_cache_bytes) {
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
    const int blocks = int(kv_budget_bytes_ / (per_token * kBlock));
    const size_t cache_bytes = prefix_cache_bytes_ < 0 ? kv_budget_bytes_ / 4 : size_t(prefix_cache_bytes_);
    kv_ = std::make_unique<KvBudget>(blocks, kBlock, per_token, int(cache_bytes / (per_token * kBlock)));
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
  if (!kv_) return {};
  return kv_->check(tokens, nullptr);
}

BackendInfo CpuBackend::info() const {
  BackendInfo i;
  i.backend = "cpu";
  i.threads = pool_.size();
  i.memory.weights_bytes = weights_bytes_;
  i.memory.kv_cache_bytes = kv_ ? size_t(kv_->pool().total_blocks()) * kv_->pool().bytes_per_block() : 0;
  i.memory.kv_cache_used_bytes = kv_ ? kv_->pool().used_bytes() : 0;
  if (kv_ && kv_->caches_prefixes()) {
    i.prefix_cache = kv_->cache_stats();
    i.prefix_cache_bytes = size_t(kv_->cache_blocks()) * kv_->pool().bytes_per_block();
    i.prefix_cache_held_bytes = size_t(i.prefix_cache.blocks_held) * kv_->pool().bytes_per_block();
  }
  return i;
}

Result<std::unique_ptr<ImageEmbeddings>> CpuBackend::encode_image(const PreprocessedImage& image) {
  auto out = encode_image_batch({&image});
  return std::move(out[0]);
}

Status CpuBackend::check_image(const PreprocessedImage& image) const {
  const VisionConfig& v = config_.vision;
  const size_t row = size_t(v.in_channels) * v.temporal_patch_size * v.patch_size * v.patch_size;
  if (image.grid_t != 1)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected grid_t 1 but got " +
                  std::to_string(image.grid_t));
  REX_RETURN_IF_ERROR(vision_.grid_error(image.grid_h, image.grid_w));
  const size_t rows = size_t(image.grid_h) * image.grid_w;
  if (image.pixel_values.size() != rows * row)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected " + std::to_string(rows) + " x " +
                  std::to_string(row) + " pixel values but got " + std::to_string(image.pixel_values.size()));
  return Status::Ok();
}

std::vector<Result<std::unique_ptr<ImageEmbeddings>>> CpuBackend::encode_image_batch(
    const std::vector<const PreprocessedImage*>& images) {
  std::vector<Result<std::unique_ptr<ImageEmbeddings>>> out;
  out.reserve(images.size());
  // The images that can be encoded go through one pass; the others fail alone.
  std::vector<VisionImage> batch;
  std::vector<size_t> where;
  for (size_t i = 0; i < images.size(); ++i) {
    Status ok = prepared_ ? check_image(*images[i]) : not_prepared();
    out.push_back(ok.ok() ? Result<std::unique_ptr<ImageEmbeddings>>(std::unique_ptr<ImageEmbeddings>())
                          : Result<std::unique_ptr<ImageEmbeddings>>(std::move(ok)));
    if (!out.back().ok()) continue;
    batch.push_back(VisionImage{images[i]->pixel_values.data(), PatchGrid{images[i]->grid_h, images[i]->grid_w}});
    where.push_back(i);
  }
  if (batch.empty()) return out;
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  auto encoded = vision_.forward_batch(pool_, batch, tap);
  const VisionConfig& v = config_.vision;
  const int merge2 = v.spatial_merge_size * v.spatial_merge_size;
  for (size_t j = 0; j < where.size(); ++j) {
    if (!encoded.ok()) {
      out[where[j]] = encoded.status();
      continue;
    }
    const int tokens = batch[j].grid.h * batch[j].grid.w / merge2;
    out[where[j]] = std::unique_ptr<ImageEmbeddings>(
        new CpuImageEmbeddings(std::move(encoded.value()[j]), tokens, v.out_hidden_size));
  }
  return out;
}

std::vector<Result<EncodedImage>> CpuBackend::encode_rgb_batch(const std::vector<RgbImageRef>& images) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  // Preprocessing per image (its own time), then one vision pass for all that preprocessed.
  std::vector<Result<EncodedImage>> out;
  out.reserve(images.size());
  std::vector<PreprocessedImage> pre;
  std::vector<size_t> where;
  pre.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const RgbImageRef& im = images[i];
    auto t0 = Clock::now();
    auto p = im.options ? preprocess_image(im.rgb, im.width, im.height, *im.options)
                        : Result<PreprocessedImage>(Status(StatusCode::kInvalidArgument,
                                                           "encode_rgb_batch: expected preprocessing options but got none"));
    keep_preprocessed(std::move(p), i, out, pre, where, ms(t0, Clock::now()));
  }
  std::vector<const PreprocessedImage*> refs;
  for (const PreprocessedImage& p : pre) refs.push_back(&p);
  auto t1 = Clock::now();
  auto encoded = encode_image_batch(refs);
  const double vision_ms = ms(t1, Clock::now());
  for (size_t j = 0; j < where.size(); ++j) {
    Result<EncodedImage>& r = out[where[j]];
    if (!encoded[j].ok()) {
      r = encoded[j].status();
      continue;
    }
    r->embeddings = std::move(encoded[j]).value();
    r->vision_ms = vision_ms;
  }
  return out;
}

Result<SlotId> CpuBackend::acquire_slot(int capacity) {
  if (!prepared_) return not_prepared();
  SlotReservation reservation;
  if (kv_) {
    auto r = kv_->reserve(capacity, nullptr);
    if (!r.ok()) return r.status();
    reservation = std::move(r).value();
  }
  auto slot = add_slot(capacity, std::move(reservation));
  if (kv_) drop_uncached_prefixes();  // reserving may have evicted
  return slot;
}

AdmissionCheck CpuBackend::check_admission_with_prefix(int tokens, const PrefixKey& key) const {
  if (!kv_) return {};
  return kv_->check(tokens, &key);
}

Result<SlotId> CpuBackend::acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) {
  *prefix_tokens = 0;
  if (!prepared_) return not_prepared();
  if (!kv_) return acquire_slot(capacity);
  auto r = kv_->reserve(capacity, &key);
  if (!r.ok()) return r.status();
  const int cached = r->prefix_tokens;
  auto slot = add_slot(capacity, std::move(r).value());
  if (!slot.ok() || cached == 0) {
    drop_uncached_prefixes();
    return slot;
  }
  // The prefix's rows (the copy-on-write of its last block is a no-op here:
  // every slot's rows are its own).
  auto rows = prefix_kv_.find(key);
  if (rows == prefix_kv_.end() || rows->second.length != cached) {
    release(slot.value());
    return Status(StatusCode::kInternal, "cpu backend: the prefix cache holds blocks for a prefix whose rows are missing");
  }
  KvCache& cache = slots_[slot.value()].cache;
  for (size_t l = 0; l < cache.k.size(); ++l) {
    cache.k[l] = rows->second.k[l];
    cache.v[l] = rows->second.v[l];
  }
  cache.length = cached;
  *prefix_tokens = cached;
  drop_uncached_prefixes();  // after the copy: reserving may have evicted this very entry
  return slot;
}

Result<bool> CpuBackend::cache_prefix(SlotId slot, const PrefixKey& key, int tokens) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "cache_prefix: unknown slot " + std::to_string(slot));
  if (!kv_) return false;
  const KvCache& cache = it->second.cache;
  if (tokens > cache.length)
    return Status(StatusCode::kInvalidArgument, "cache_prefix: expected at most the slot's " +
                                                    std::to_string(cache.length) + " tokens but got " + std::to_string(tokens));
  auto kept = kv_->keep(key, it->second.blocks, tokens);
  if (!kept.ok() || !kept.value()) return kept;
  if (!prefix_kv_.count(key)) {
    const size_t row = size_t(config_.text.num_kv_heads) * config_.text.head_dim();
    KvCache rows;
    rows.length = tokens;
    for (size_t l = 0; l < cache.k.size(); ++l) {
      rows.k.emplace_back(cache.k[l].begin(), cache.k[l].begin() + std::ptrdiff_t(size_t(tokens) * row));
      rows.v.emplace_back(cache.v[l].begin(), cache.v[l].begin() + std::ptrdiff_t(size_t(tokens) * row));
    }
    prefix_kv_.emplace(key, std::move(rows));
  }
  drop_uncached_prefixes();
  return true;
}

// The rows of prefixes the cache evicted.
void CpuBackend::drop_uncached_prefixes() {
  for (auto it = prefix_kv_.begin(); it != prefix_kv_.end();)
    it = kv_->cached(it->first) ? std::next(it) : prefix_kv_.erase(it);
}

Result<SlotId> CpuBackend::add_slot(int capacity, SlotReservation reservation) {
  Slot slot;
  slot.blocks = std::move(reservation.blocks);
  slot.capacity = capacity;
  const SlotId id = next_slot_++;
  text_.init_cache(&slot.cache, capacity);
  slots_[id] = std::move(slot);
  return id;
}

Status CpuBackend::grow_slot(SlotId slot, int capacity) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "grow_slot: unknown slot " + std::to_string(slot));
  if (!kv_) return Status(StatusCode::kInternal, "cpu backend: slots grow only under a KV budget");
  if (capacity <= it->second.capacity) return Status::Ok();
  REX_RETURN_IF_ERROR(kv_->grow(&it->second.blocks, capacity));
  it->second.capacity = capacity;
  drop_uncached_prefixes();  // growing may have evicted
  return Status::Ok();
}

void CpuBackend::release(SlotId slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return;
  if (kv_) kv_->release(&it->second.blocks);
  slots_.erase(it);
}

int CpuBackend::slot_length(SlotId slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? -1 : it->second.cache.length;
}

// One prefill's input rows (its embeddings, the image's scattered in),
// appended to x, and its segment, checked; nothing else changes yet.
Status CpuBackend::prefill_rows(const PrefillInput& in, std::vector<float>* x, TextSegment* seg) {
  if (!prepared_) return not_prepared();
  auto it = slots_.find(in.slot);
  if (it == slots_.end())
    return Status(StatusCode::kInvalidArgument, "prefill: unknown slot " + std::to_string(in.slot));
  if (in.n <= 0 || !in.token_ids || !in.positions)
    return Status(StatusCode::kInvalidArgument, "prefill: expected at least one token with positions");
  const int hidden = config_.text.hidden_size;
  const size_t at = x->size();
  x->resize(at + size_t(in.n) * hidden);
  float* rows = x->data() + at;
  REX_RETURN_IF_ERROR(text_.embed(in.token_ids, in.n, rows));

  int image_tokens = 0;
  for (int i = 0; i < in.n; ++i) image_tokens += in.token_ids[i] == in.image_token_id;
  if (in.image) {
    REX_RETURN_IF_ERROR(check_prefill_image(in, image_tokens, hidden));
    // This backend's own images are read where they lie; others come to the host.
    const auto* resident = dynamic_cast<const CpuImageEmbeddings*>(in.image);
    std::vector<float> host;
    if (!resident) REX_RETURN_IF_ERROR(in.image->copy_to_host(&host));
    const float* image = resident ? resident->data().data() : host.data();
    for (int i = 0, j = in.image_part ? in.image_offset : 0; i < in.n; ++i)
      if (in.token_ids[i] == in.image_token_id)
        std::copy_n(image + size_t(j++) * hidden, hidden, rows + size_t(i) * hidden);
  } else if (image_tokens > 0 && in.image_token_id >= 0) {
    return Status(StatusCode::kInvalidArgument, "prefill: the prompt has " + std::to_string(image_tokens) +
                  " image tokens but no image");
  }
  if (kv_budget_bytes_ > 0 && it->second.cache.length + in.n > it->second.capacity)
    return Status(StatusCode::kInvalidArgument, "prefill: slot " + std::to_string(in.slot) + " holds " +
                  std::to_string(it->second.capacity) + " tokens; expected at most " +
                  std::to_string(it->second.capacity - it->second.cache.length) + " more but got " + std::to_string(in.n));
  if (in.logit_rows < 0 || in.logit_rows > in.n)
    return Status(StatusCode::kInvalidArgument, "prefill: expected 0.." + std::to_string(in.n) + " logit rows but got " +
                  std::to_string(in.logit_rows));
  *seg = TextSegment{&it->second.cache, in.n, in.positions, in.logit_rows};
  return Status::Ok();
}

Status CpuBackend::prefill(const PrefillInput& in, float* logits_out) { return prefill_batch({in}, logits_out); }

// Every input's rows, checked first (all or nothing), then one forward pass.
Status CpuBackend::prefill_batch(const std::vector<PrefillInput>& inputs, float* logits_out) {
  std::vector<float> x;
  size_t tokens = 0;
  for (const PrefillInput& in : inputs) tokens += size_t(std::max(in.n, 0));
  x.reserve(tokens * size_t(config_.text.hidden_size));
  std::vector<TextSegment> segments(inputs.size());
  std::set<SlotId> slots;
  int logit_rows = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!slots.insert(inputs[i].slot).second)
      return Status(StatusCode::kInvalidArgument, "prefill: expected one input per slot but got slot " +
                    std::to_string(inputs[i].slot) + " twice");
    REX_RETURN_IF_ERROR(prefill_rows(inputs[i], &x, &segments[i]));
    logit_rows += inputs[i].logit_rows;
  }
  if (logit_rows > 0 && !logits_out)
    return Status(StatusCode::kInvalidArgument, "prefill: expected a logits buffer for " + std::to_string(logit_rows) +
                  " rows but got none");
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  return text_.forward(pool_, std::move(x), segments, logits_out, tap);
}

// Rows come in runs: consecutive rows of one slot at consecutive positions,
// one TextSegment each, all in one forward call with logits for every row
// (each run's rows land at its first row: the segments are in row order).
Status CpuBackend::decode(const std::vector<DecodeRow>& rows, float* logits_out) {
  if (!prepared_) return not_prepared();
  if (rows.empty()) return Status::Ok();
  struct Run {
    size_t first = 0;
    int n = 0;
    Slot* slot = nullptr;
    std::vector<int32_t> positions;  // axis-major [t(n), h(n), w(n)]
  };
  std::vector<Run> runs;
  for (size_t i = 0; i < rows.size(); ++i) {
    const SlotId id = rows[i].slot;
    auto it = slots_.find(id);
    if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "decode: unknown slot " + std::to_string(id));
    if (!runs.empty() && rows[runs.back().first].slot == id) {
      const int32_t expected = next_decode_position(rows[i - 1].position);
      if (rows[i].position != expected)
        return Status(StatusCode::kInvalidArgument, "decode: expected row " + std::to_string(i) + " (slot " +
                      std::to_string(id) + ") at position " + std::to_string(expected) + " but got " +
                      std::to_string(rows[i].position));
      ++runs.back().n;
      continue;
    }
    for (const Run& r : runs)
      if (rows[r.first].slot == id)
        return Status(StatusCode::kInvalidArgument, "decode: expected the rows of slot " + std::to_string(id) +
                      " to be consecutive but got row " + std::to_string(i) + " after rows of another slot");
    runs.push_back({i, 1, &it->second, {}});
  }
  const int hidden = config_.text.hidden_size;
  for (Run& r : runs) {
    const KvCache& cache = r.slot->cache;
    if (kv_budget_bytes_ > 0 && cache.length + r.n > r.slot->capacity)
      return Status(StatusCode::kInvalidArgument, "decode: slot " + std::to_string(rows[r.first].slot) + " holds " +
                    std::to_string(r.slot->capacity) + " tokens; expected at most " +
                    std::to_string(r.slot->capacity - cache.length) + " more but got " + std::to_string(r.n));
    r.positions.resize(size_t(r.n) * 3);
    for (int a = 0; a < 3; ++a)
      for (int j = 0; j < r.n; ++j) r.positions[size_t(a * r.n + j)] = rows[r.first + size_t(j)].position;
  }
  // Every row's embedding first: a bad token fails the call before any cache grows.
  std::vector<float> embedded(rows.size() * size_t(hidden));
  for (size_t i = 0; i < rows.size(); ++i) REX_RETURN_IF_ERROR(text_.embed(&rows[i].token, 1, &embedded[i * hidden]));
  std::vector<TextSegment> segments;
  segments.reserve(runs.size());
  for (Run& r : runs) segments.push_back({&r.slot->cache, r.n, r.positions.data(), r.n});
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  return text_.forward(pool_, std::move(embedded), segments, logits_out, tap);
}

}  // namespace rex::cpu
