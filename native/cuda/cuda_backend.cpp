// See cuda_backend.h.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "common/bf16_host.h"
#include "engine/encode_batch.h"

namespace rex::cuda {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

constexpr int kBlockTokens = 64;
// Device memory kept free of the KV pool for activations: the prefill chunk,
// the vision tower at max_pixels, the decode buffers and cuBLASLt.
constexpr size_t kActivationReserve = size_t(1) << 30;
// The longest sequence a decode graph's block tables hold.
constexpr int kMaxSequenceTokens = 32768;
// The cuBLASLt candidates a cached question's MLP GEMMs take (200-256 rows):
// the fastest at M = 216 under timed tuning on the H200, CUDA 13 (session 10,
// cuda_gemm_test: gate_up 48.3 -> 32.1 us, down 27.4 -> 25.0 us; the
// heuristic's first candidates take the rest). A cuBLAS whose list lacks one
// keeps its first candidate for that shape (GemmRunner::set_pins).
constexpr const char* kDefaultGemmPins =
    "200-256,22016,2048=id_66_tile_492_stages_35_splitk_1_reduction_0_swizzle_0_custom_1_inner_0_cluster_3;"
    "200-256,2048,11008=id_66_tile_332_stages_35_splitk_4_reduction_2_swizzle_0_custom_1_inner_0_cluster_3";

// An on-by-default A/B knob set to "0".
bool turned_off(const char* variable) {
  const char* v = std::getenv(variable);
  return v != nullptr && std::string(v) == "0";
}

Status not_prepared() { return Status(StatusCode::kInternal, "cuda backend: prepare() was not called"); }

// Image embeddings resident on the device, in the vision tower's
// window-permuted order; window_index maps them back to raster order.
class CudaImageEmbeddings final : public ImageEmbeddings {
 public:
  CudaImageEmbeddings(VisionOutput out, int hidden, cudaStream_t stream)
      : out_(std::move(out)), hidden_(hidden), stream_(stream) {
    permuted_row_.assign(out_.window_index.size(), 0);
    for (size_t p = 0; p < out_.window_index.size(); ++p) permuted_row_[size_t(out_.window_index[p])] = int32_t(p);
  }
  ~CudaImageEmbeddings() override {
    if (out_.recycle) out_.recycle->give_back(std::move(out_.tokens));
  }
  CudaImageEmbeddings(const CudaImageEmbeddings&) = delete;
  CudaImageEmbeddings& operator=(const CudaImageEmbeddings&) = delete;
  int tokens() const override { return out_.count; }
  int hidden() const override { return hidden_; }
  Status copy_to_host(std::vector<float>* host) const override {
    std::vector<uint16_t> bits(size_t(out_.count) * hidden_);
    REX_CUDA_TRY(cudaMemcpyAsync(bits.data(), out_.tokens.get(), bits.size() * 2, cudaMemcpyDeviceToHost, stream_));
    REX_CUDA_TRY(cudaStreamSynchronize(stream_));
    host->assign(bits.size(), 0.0f);
    for (int t = 0; t < out_.count; ++t)
      for (int j = 0; j < hidden_; ++j)
        (*host)[size_t(t) * hidden_ + j] = bf16_bits_to_float(bits[size_t(permuted_row_[size_t(t)]) * hidden_ + j]);
    return Status::Ok();
  }
  const bf16* device_rows() const { return out_.tokens.get(); }
  // Row of the device buffer that holds raster token t.
  int32_t row_of(int t) const { return permuted_row_[size_t(t)]; }

 private:
  VisionOutput out_;
  int hidden_;
  cudaStream_t stream_;
  std::vector<int32_t> permuted_row_;
};

// Embeddings from another backend (or a host copy): uploaded in raster order.
class UploadedEmbeddings {
 public:
  Status from(const ImageEmbeddings& e, cudaStream_t stream) {
    std::vector<float> host;
    REX_RETURN_IF_ERROR(e.copy_to_host(&host));
    std::vector<uint16_t> bits(host.size());
    for (size_t i = 0; i < host.size(); ++i) bits[i] = float_to_bf16_bits(host[i]);
    REX_RETURN_IF_ERROR(rows.allocate(bits.size(), "uploaded image embeddings"));
    REX_CUDA_TRY(cudaMemcpyAsync(rows.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice, stream));
    return cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize (image upload)");
  }
  DeviceBuffer<bf16> rows;
};

}  // namespace

// REX_OMNI_NO_GRAPHS=1 runs decode steps eagerly (debugging); read once, not per step.
CudaBackend::CudaBackend(const BackendOptions& options)
    : options_(options), use_graphs_(std::getenv("REX_OMNI_NO_GRAPHS") == nullptr) {}

namespace {
// Decode rows per sequence at most: the sampled token and the jump-forward
// tokens the grammar forces after it.
constexpr int kRowsPerSequence = 8;
// The GEMV takes up to 64 rows; larger steps go through cuBLASLt.
constexpr int kGemvRows = 64;
// Past this many rows a step is faster on cuBLASLt than on the GEMV (which
// reads the weights once per 8 rows): on the H200 the graphed step at 1 / 2 /
// 4 / 8 rows took 2.57 / 2.79 / 3.31 / 4.24 ms on the GEMV and 2.75 / 2.78 /
// 2.82 / 2.89 ms on cuBLASLt (NOTES.md §8). A step of one sequence (a lone
// request's jump-forward rows) stays on the GEMV whatever its rows.
constexpr int kGemvFastRows = 2;

// REX_OMNI_DECODE_SPLITS's value: "N" (every bucket) or "B:N,B:N,..." (each
// bucket up to B takes N); entries that do not parse are skipped, splits
// clamped to 1..64.
std::map<int, int> parse_bucket_splits(const std::string& text) {
  std::map<int, int> splits;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, end - at);
    const size_t colon = item.find(':');
    const int bucket = colon == std::string::npos ? INT_MAX : std::atoi(item.substr(0, colon).c_str());
    const int count = std::atoi(item.substr(colon == std::string::npos ? 0 : colon + 1).c_str());
    if (bucket > 0 && count > 0) splits[bucket] = std::min(count, 64);
    at = end + 1;
  }
  return splits;
}
}  // namespace

CudaBackend::~CudaBackend() {
  if (stream_) {
    cudaSetDevice(options_.device);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

Status CudaBackend::use_device() const { return cuda_status(cudaSetDevice(options_.device), "cudaSetDevice"); }

Status CudaBackend::size_kv_pool(size_t* blocks) {
  const TextConfig& t = config_.text;
  const size_t per_token = size_t(t.num_layers) * 2 * size_t(t.num_kv_heads) * t.head_dim() * sizeof(uint16_t);
  const size_t per_block = per_token * kBlockTokens;
  size_t free_bytes = 0, total_bytes = 0;
  REX_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t usable = free_bytes > kActivationReserve ? free_bytes - kActivationReserve : 0;
  size_t budget = 0;
  if (options_.kv_cache_bytes > 0) {
    budget = options_.kv_cache_bytes;
  } else if (options_.gpu_memory_fraction > 0) {
    if (options_.gpu_memory_fraction > 1)
      return Status(StatusCode::kInvalidArgument, "expected gpuMemoryFraction in (0, 1] but got " +
                    std::to_string(options_.gpu_memory_fraction));
    const size_t cap = size_t(options_.gpu_memory_fraction * double(total_bytes));
    const size_t in_use = total_bytes - free_bytes + kActivationReserve;
    budget = cap > in_use ? cap - in_use : 0;
  } else {
    budget = std::min(usable / 10 * 9, size_t(std::max(1, options_.max_active_requests)) *
                                            size_t(std::max(1, options_.default_tokens_per_request)) * per_token);
  }
  *blocks = budget / per_block;
  if (*blocks == 0)
    return Status(StatusCode::kOutOfMemory, "cuda backend: the KV-cache budget of " + std::to_string(budget >> 20) +
                  " MiB holds no block of " + std::to_string(kBlockTokens) + " tokens (" + std::to_string(per_block >> 10) +
                  " KiB); " + std::to_string(free_bytes >> 20) + " MiB of the device is free");
  if (*blocks * per_block > usable)
    return Status(StatusCode::kOutOfMemory, "cuda backend: a KV cache of " + std::to_string((*blocks * per_block) >> 20) +
                  " MiB does not fit: " + std::to_string(free_bytes >> 20) + " MiB of the device is free after the weights, " +
                  std::to_string(kActivationReserve >> 20) + " MiB of it kept for activations");
  return Status::Ok();
}

Status CudaBackend::prepare(const ModelConfig& config, const ModelWeights& weights) {
  config_ = config;
  if (config.vision.out_hidden_size != config.text.hidden_size)
    return Status(StatusCode::kInvalidArgument, "vision out_hidden_size " + std::to_string(config.vision.out_hidden_size) +
                  " != text hidden_size " + std::to_string(config.text.hidden_size));
  REX_RETURN_IF_ERROR(use_device());
  cudaDeviceProp props{};
  REX_CUDA_TRY(cudaGetDeviceProperties(&props, options_.device));
  device_info_.backend = "cuda";
  device_info_.device_name = props.name;
  device_info_.compute_capability = std::to_string(props.major) + "." + std::to_string(props.minor);
  cudaDriverGetVersion(&device_info_.driver_version);
  cudaRuntimeGetVersion(&device_info_.runtime_version);
  REX_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  REX_RETURN_IF_ERROR(gemm_.init());
  // REX_OMNI_GEMM_TUNE=1: time cuBLASLt's candidates per shape (GemmRunner::set_tuning), an A/B knob
  // (off: timing-dependent choices, NOTES.md §5.2).
  gemm_.set_tuning(std::getenv("REX_OMNI_GEMM_TUNE") != nullptr);
  // Shapes that take a given heuristic candidate: kDefaultGemmPins, or
  // REX_OMNI_GEMM_PIN="M0-M1,N,K=CONFIG;..." in their place ("" for none).
  {
    const char* pin = std::getenv("REX_OMNI_GEMM_PIN");
    std::vector<GemmRunner::Pin> pins;
    const Status parsed = GemmRunner::parse_pins(pin ? pin : kDefaultGemmPins, &pins);
    if (!parsed.ok()) return Status(StatusCode::kInvalidArgument, "REX_OMNI_GEMM_PIN: " + parsed.message());
    gemm_.set_pins(std::move(pins));
  }
  REX_RETURN_IF_ERROR(upload_weights(config, weights, &weights_));

  size_t blocks = 0;
  REX_RETURN_IF_ERROR(size_kv_pool(&blocks));
  const TextConfig& t = config.text;
  const int kv_dim = t.num_kv_heads * t.head_dim();
  const int64_t rows = int64_t(blocks + 1) * kBlockTokens;  // + the spare block for padded decode rows
  REX_RETURN_IF_ERROR(kv_arena_.allocate(size_t(rows) * kv_dim * 2 * size_t(t.num_layers), "the KV cache"));
  const size_t per_token = size_t(t.num_layers) * 2 * size_t(kv_dim) * sizeof(uint16_t);
  const size_t cache_bytes = options_.prefix_cache_bytes < 0 ? size_t(blocks) * kBlockTokens * per_token / 4
                                                            : size_t(options_.prefix_cache_bytes);
  kv_ = std::make_unique<KvBudget>(int(blocks), kBlockTokens, per_token, int(cache_bytes / (per_token * kBlockTokens)));
  max_sequence_tokens_ = int(std::min<int64_t>(int64_t(blocks) * kBlockTokens, kMaxSequenceTokens));
  if (t.max_position_embeddings > 0) max_sequence_tokens_ = std::min(max_sequence_tokens_, t.max_position_embeddings);
  KvArena arena{kv_arena_.get(), rows, kBlockTokens, kv_dim};
  vision_.init(config.vision, &weights_, &gemm_, stream_);
  const int sequences = std::max(1, options_.max_active_requests);
  const int step_rows = std::max(sequences, std::min(kGemvRows, sequences * kRowsPerSequence));
  // REX_OMNI_DECODE_SPLITS: an A/B knob for the decode attention's splits on
  // cuBLASLt steps (scripts/device-check.sh splits): "N" for every bucket, or
  // "16:8,64:4" (buckets up to 16 take 8, larger ones 4).
  if (const char* splits = std::getenv("REX_OMNI_DECODE_SPLITS")) text_.set_wide_step_splits(parse_bucket_splits(splits));
  REX_RETURN_IF_ERROR(text_.init(t, &weights_, &gemm_, stream_, arena, int(blocks), step_rows,
                                 (max_sequence_tokens_ + kBlockTokens - 1) / kBlockTokens, sequences));
  text_.set_use_gemv(std::getenv("REX_OMNI_NO_GEMV") == nullptr);
  int sms = 0;
  REX_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, options_.device));
  // Decode attention in one launch (session 10 on the H200, NOTES.md 5.3):
  // the splits merged in a cluster for steps whose attention grid fits one
  // wave of the SMs, with the rotary step inside it and its launch
  // overlapped. REX_OMNI_DECODE_CLUSTER=0 turns all three off;
  // REX_OMNI_DECODE_ROPE=0 and REX_OMNI_DECODE_PDL=0 one each (A/B knobs).
  const bool cluster = !turned_off("REX_OMNI_DECODE_CLUSTER");
  text_.set_decode_cluster_ctas(cluster ? sms : 0);
  text_.set_decode_rope_in_attention(cluster && !turned_off("REX_OMNI_DECODE_ROPE"));
  text_.set_decode_attention_overlap(cluster && !turned_off("REX_OMNI_DECODE_PDL"));
  // REX_OMNI_PREFILL_BATCH=0: prefills one request at a time (an A/B knob, device-check concurrency-ab).
  batch_prefills_ = !options_.batch_invariant && !turned_off("REX_OMNI_PREFILL_BATCH");
  // REX_OMNI_GEMV_FAST_ROWS: an A/B knob for the threshold (decode_step_bench).
  const char* fast_rows = std::getenv("REX_OMNI_GEMV_FAST_ROWS");
  const int gemv_fast_rows = fast_rows ? std::clamp(std::atoi(fast_rows), 0, kGemvRows) : kGemvFastRows;
  text_.set_gemv_max_rows(options_.batch_invariant ? kGemvRows : gemv_fast_rows);
  // Prefill passes of too few CTAs split their attention keys: two waves of
  // the prefill kernel, 2 CTAs an SM (session 9: the cached question's
  // attention 43.0 -> 28.0 us a layer, its first token 7.2 -> 6.9 ms; NOTES.md
  // §5.2). REX_OMNI_PREFILL_SPLIT=0 turns it off, =N sets the CTA threshold.
  {
    const char* split = std::getenv("REX_OMNI_PREFILL_SPLIT");
    const int n = split ? std::atoi(split) : 1;
    text_.set_prefill_split_ctas(n == 1 ? 4 * sms : std::clamp(n, 0, 65535));
  }
  if (const char* profile = std::getenv("REX_OMNI_PROFILE_STEP")) text_.set_profile_path(profile);
  // One prefill call and one vision pass, kernel by kernel (step_profile.h).
  if (const char* profile = std::getenv("REX_OMNI_PROFILE_PREFILL"); profile && *profile) {
    text_.set_prefill_profile_path(profile);
    vision_.set_profile_path(profile_sibling(profile, ".vision"));
  }
  free_masks_.clear();
  for (int m = sequences - 1; m >= 0; --m) free_masks_.push_back(m);
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  prepared_ = true;
  return Status::Ok();
}

Result<std::vector<std::unique_ptr<ImageEmbeddings>>> CudaBackend::encode_device_batch(
    const bf16* pixels, const std::vector<cpu::PatchGrid>& grids) {
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  auto out = vision_.forward_batch(pixels, grids, tap);
  if (!out.ok()) return out.status();
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  std::vector<std::unique_ptr<ImageEmbeddings>> embeddings;
  for (VisionOutput& o : out.value())
    embeddings.emplace_back(new CudaImageEmbeddings(std::move(o), config_.vision.out_hidden_size, stream_));
  return embeddings;
}

Status CudaBackend::check_image(const PreprocessedImage& image) const {
  const VisionConfig& v = config_.vision;
  const size_t row = size_t(v.in_channels) * v.temporal_patch_size * v.patch_size * v.patch_size;
  const size_t rows = size_t(image.grid_h) * image.grid_w;
  if (image.grid_t != 1)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected grid_t 1 but got " + std::to_string(image.grid_t));
  REX_RETURN_IF_ERROR(vision_.grid_error(image.grid_h, image.grid_w));
  if (image.pixel_values.size() != rows * row)
    return Status(StatusCode::kInvalidArgument, "encode_image: expected " + std::to_string(rows) + " x " + std::to_string(row) +
                  " pixel values but got " + std::to_string(image.pixel_values.size()));
  return Status::Ok();
}

Result<std::unique_ptr<ImageEmbeddings>> CudaBackend::encode_image(const PreprocessedImage& image) {
  auto out = encode_image_batch({&image});
  return std::move(out[0]);
}

std::vector<Result<std::unique_ptr<ImageEmbeddings>>> CudaBackend::encode_image_batch(
    const std::vector<const PreprocessedImage*>& images) {
  std::vector<Result<std::unique_ptr<ImageEmbeddings>>> out;
  Status ready = prepared_ ? use_device() : not_prepared();
  // Host pixels of every usable image, as bf16, one after another; the others fail alone.
  std::vector<uint16_t> bits;
  std::vector<cpu::PatchGrid> grids;
  std::vector<size_t> where;
  for (size_t i = 0; i < images.size(); ++i) {
    Status ok = ready.ok() ? check_image(*images[i]) : ready;
    if (!ok.ok()) {
      out.push_back(std::move(ok));
      continue;
    }
    out.push_back(std::unique_ptr<ImageEmbeddings>());
    const std::vector<float>& pv = images[i]->pixel_values;
    const size_t at = bits.size();
    bits.resize(at + pv.size());
    for (size_t j = 0; j < pv.size(); ++j) bits[at + j] = float_to_bf16_bits(pv[j]);
    grids.push_back(cpu::PatchGrid{images[i]->grid_h, images[i]->grid_w});
    where.push_back(i);
  }
  if (where.empty()) return out;
  Status st = pixels_.ensure(bits.size(), "the images' pixel values");
  if (st.ok())
    st = cuda_status(cudaMemcpyAsync(pixels_.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice, stream_),
                     "cudaMemcpyAsync of the images' pixel values");
  auto encoded = st.ok() ? encode_device_batch(pixels_.get(), grids)
                         : Result<std::vector<std::unique_ptr<ImageEmbeddings>>>(std::move(st));
  for (size_t j = 0; j < where.size(); ++j) {
    if (encoded.ok()) out[where[j]] = std::move(encoded.value()[j]);
    else out[where[j]] = encoded.status();
  }
  return out;
}

Result<EncodedImage> CudaBackend::encode_rgb(const uint8_t* rgb, int width, int height, const PreprocessOptions& options) {
  auto out = encode_rgb_batch({RgbImageRef{rgb, width, height, &options}});
  return std::move(out[0]);
}

// Preprocessing on the device per image, each into its own patch rows, then
// (more than one image) copied one after another into pixels_ for one pass.
// The patch rows live in pooled buffers (pre_pool_, one per image of a batch,
// grow only): a fresh DevicePreprocessed per request would cudaMalloc ~11 MB
// for a 1000x750 image and cudaFree it after the pass, and cudaFree waits for
// all the device's work, decode steps in flight included.
std::vector<Result<EncodedImage>> CudaBackend::encode_rgb_batch(const std::vector<RgbImageRef>& images) {
  std::vector<Result<EncodedImage>> out;
  Status ready = prepared_ ? use_device() : not_prepared();
  const VisionConfig& v = config_.vision;
  const int row = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
  auto t0 = Clock::now();
  if (pre_pool_.size() < images.size()) pre_pool_.resize(images.size());
  struct Pooled {  // an image's patch rows in pre_pool_
    const DevicePreprocessed* p;
    int grid_h, grid_w;
  };
  std::vector<Pooled> pre;
  std::vector<cpu::PatchGrid> grids;
  std::vector<size_t> where;
  for (size_t i = 0; i < images.size(); ++i) {
    const RgbImageRef& im = images[i];
    Status ok = ready;
    if (ok.ok() && !im.options)
      ok = Status(StatusCode::kInvalidArgument, "encode_rgb_batch: expected preprocessing options but got none");
    DevicePreprocessed& pooled = pre_pool_[i];
    if (ok.ok()) ok = preprocessor_.run_into(pooled, im.rgb, im.width, im.height, *im.options, false, stream_);
    Result<Pooled> p = ok.ok() ? Result<Pooled>(Pooled{&pooled, pooled.grid_h, pooled.grid_w}) : Result<Pooled>(ok);
    if (p.ok() && (pooled.grid_t != 1 || pooled.row_size != row))
      p = Status(StatusCode::kInvalidArgument, "encode_rgb: expected grid_t 1 and rows of " + std::to_string(row) +
                 " values but the preprocessor gave grid_t " + std::to_string(pooled.grid_t) + " and rows of " +
                 std::to_string(pooled.row_size));
    if (p.ok()) {
      Status grid = vision_.grid_error(p->grid_h, p->grid_w);
      if (!grid.ok()) p = std::move(grid);
    }
    if (keep_preprocessed(std::move(p), i, out, pre, where))
      grids.push_back(cpu::PatchGrid{pre.back().grid_h, pre.back().grid_w});
  }
  if (where.empty()) return out;
  Status st = Status::Ok();
  const bf16* pixels = pre[0].p->pixels_bf16.get();
  if (pre.size() > 1) {
    size_t total = 0;
    for (const Pooled& p : pre) total += p.p->values();
    st = pixels_.ensure(total, "the images' pixel values");
    size_t at = 0;
    for (size_t j = 0; st.ok() && j < pre.size(); ++j) {
      const DevicePreprocessed& p = *pre[j].p;
      st = cuda_status(cudaMemcpyAsync(pixels_.get() + at, p.pixels_bf16.get(), p.values() * sizeof(bf16),
                                       cudaMemcpyDeviceToDevice, stream_),
                       "cudaMemcpyAsync of an image's patch rows into the batch");
      at += p.values();
    }
    pixels = pixels_.get();
  }
  if (st.ok()) st = cuda_status(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (preprocessing)");
  const double preprocess_ms = ms_since(t0);
  auto t1 = Clock::now();
  auto encoded = st.ok() ? encode_device_batch(pixels, grids)
                         : Result<std::vector<std::unique_ptr<ImageEmbeddings>>>(std::move(st));
  const double vision_ms = ms_since(t1);
  for (size_t j = 0; j < where.size(); ++j) {
    Result<EncodedImage>& r = out[where[j]];
    if (!encoded.ok()) {
      r = encoded.status();
      continue;
    }
    r->embeddings = std::move(encoded.value()[j]);
    r->preprocess_ms = preprocess_ms;
    r->vision_ms = vision_ms;
  }
  return out;
}

Result<PreprocessedImage> CudaBackend::preprocess_for_test(const uint8_t* rgb, int width, int height,
                                                           const PreprocessOptions& options) {
  REX_RETURN_IF_ERROR(use_device());
  if (!stream_) REX_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  auto pre = preprocessor_.run(rgb, width, height, options, true, stream_);
  if (!pre.ok()) return pre.status();
  PreprocessedImage out;
  out.resized_width = pre->resized_width;
  out.resized_height = pre->resized_height;
  out.grid_h = pre->grid_h;
  out.grid_w = pre->grid_w;
  out.resized_rgb.resize(pre->resized_rgb.size());
  out.pixel_values.resize(pre->pixels_f32.size());
  REX_CUDA_TRY(cudaMemcpyAsync(out.resized_rgb.data(), pre->resized_rgb.get(), out.resized_rgb.size(), cudaMemcpyDeviceToHost, stream_));
  REX_CUDA_TRY(cudaMemcpyAsync(out.pixel_values.data(), pre->pixels_f32.get(), out.pixel_values.size() * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_));
  REX_CUDA_TRY(cudaStreamSynchronize(stream_));
  return out;
}

AdmissionCheck CudaBackend::check_admission(int tokens) const { return check_admission_for(tokens, nullptr); }

AdmissionCheck CudaBackend::check_admission_with_prefix(int tokens, const PrefixKey& key) const {
  return check_admission_for(tokens, &key);
}

AdmissionCheck CudaBackend::check_admission_for(int tokens, const PrefixKey* key) const {
  if (!kv_) return AdmissionCheck{Admission::kNever, "cuda backend: prepare() was not called"};
  if (tokens > max_sequence_tokens_) {
    AdmissionCheck c;
    c.verdict = Admission::kNever;
    c.detail = "the request needs " + std::to_string(tokens) + " tokens of KV cache, more than the " +
               std::to_string(max_sequence_tokens_) + " one sequence can hold; lower maxNewTokens or the image size";
    return c;
  }
  return kv_->check(tokens, key);
}

Result<SlotId> CudaBackend::acquire_slot(int capacity) {
  int prefix_tokens = 0;
  return new_slot(capacity, nullptr, &prefix_tokens);
}

Result<SlotId> CudaBackend::acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) {
  return new_slot(capacity, &key, prefix_tokens);
}

// A slot of `capacity` tokens; with a key, starting from the cached prefix
// when there is one (*prefix_tokens: its length, 0 on a miss).
Result<SlotId> CudaBackend::new_slot(int capacity, const PrefixKey* key, int* prefix_tokens) {
  *prefix_tokens = 0;
  if (!prepared_) return not_prepared();
  if (free_masks_.empty()) return Status(StatusCode::kOutOfMemory, "cuda backend: all " + std::to_string(std::max(1, options_.max_active_requests)) +
                                        " sequence slots are in use (maxActiveRequests)");
  capacity = std::max(capacity, 1);
  // The sequence limit is this backend's; the KV budget's own check is reserve()'s.
  if (capacity > max_sequence_tokens_) return Status(StatusCode::kOutOfMemory, check_admission_for(capacity, key).detail);
  auto reservation = kv_->reserve(capacity, key);
  if (!reservation.ok()) return reservation.status();
  const int cached = reservation->prefix_tokens;
  const CowCopy copy = reservation->copy;
  auto id = add_slot(std::move(reservation).value());
  if (!id.ok() || cached == 0) {
    drop_uncached_prefixes();  // reserving may have evicted
    return id;
  }
  Slot& slot = slots_[id.value()];
  auto ids = prefix_ids_.find(*key);
  if (ids == prefix_ids_.end() || int(ids->second.size()) != cached) {
    release(id.value());
    return Status(StatusCode::kInternal, "cuda backend: the prefix cache holds blocks for a prefix whose tokens are missing");
  }
  // The partial last block: the slot appends into its own copy. Every plane
  // (K and V of every layer) holds the block's rows at the same offset.
  if (copy.needs_copy()) {
    const TextConfig& t = config_.text;
    const size_t kv_dim = size_t(t.num_kv_heads) * t.head_dim(), block = size_t(kBlockTokens) * kv_dim;
    const size_t plane = kv_arena_.size() / (2 * size_t(t.num_layers));
    REX_CUDA_TRY(cudaMemcpy2DAsync(kv_arena_.get() + size_t(copy.to) * block, plane * sizeof(bf16),
                                   kv_arena_.get() + size_t(copy.from) * block, plane * sizeof(bf16), block * sizeof(bf16),
                                   2 * size_t(t.num_layers), cudaMemcpyDeviceToDevice, stream_));
  }
  REX_RETURN_IF_ERROR(text_.mark_seen(slot.seen_mask, ids->second.data(), cached));
  slot.length = cached;
  slot.ids = ids->second;
  *prefix_tokens = cached;
  drop_uncached_prefixes();  // after the copy: reserving may have evicted this very entry
  return id;
}

Result<bool> CudaBackend::cache_prefix(SlotId slot, const PrefixKey& key, int tokens) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "cache_prefix: unknown slot " + std::to_string(slot));
  const Slot& s = it->second;
  if (tokens > s.length || tokens > int(s.ids.size()))
    return Status(StatusCode::kInvalidArgument, "cache_prefix: expected at most the slot's " + std::to_string(s.length) +
                                                    " prefilled tokens but got " + std::to_string(tokens));
  auto kept = kv_->keep(key, s.blocks, tokens);
  if (!kept.ok() || !kept.value()) return kept;
  prefix_ids_.emplace(key, std::vector<int32_t>(s.ids.begin(), s.ids.begin() + tokens));
  drop_uncached_prefixes();
  return true;
}

// A slot's block table is a per-step input of the decode graphs (up to the
// longest sequence's blocks), so growing it is bookkeeping only.
Status CudaBackend::grow_slot(SlotId id, int capacity) {
  auto it = slots_.find(id);
  if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "grow_slot: unknown slot " + std::to_string(id));
  Slot& slot = it->second;
  if (capacity <= slot.capacity) return Status::Ok();
  if (capacity > max_sequence_tokens_)
    return Status(StatusCode::kInvalidArgument, "grow_slot: expected at most " + std::to_string(max_sequence_tokens_) +
                                                    " tokens in one sequence but got " + std::to_string(capacity));
  REX_RETURN_IF_ERROR(kv_->grow(&slot.blocks, capacity));
  slot.capacity = int(slot.blocks.size()) * kBlockTokens;
  drop_uncached_prefixes();  // growing may have evicted
  return Status::Ok();
}

void CudaBackend::drop_uncached_prefixes() {
  for (auto it = prefix_ids_.begin(); it != prefix_ids_.end();)
    it = kv_->cached(it->first) ? std::next(it) : prefix_ids_.erase(it);
}

Result<SlotId> CudaBackend::add_slot(SlotReservation reservation) {
  Slot slot;
  slot.blocks = std::move(reservation.blocks);
  slot.capacity = int(slot.blocks.size()) * kBlockTokens;
  slot.seen_mask = free_masks_.back();
  free_masks_.pop_back();
  const Status cleared = text_.sampler().clear_mask(slot.seen_mask);
  if (!cleared.ok()) {
    free_masks_.push_back(slot.seen_mask);
    kv_->release(&slot.blocks);
    return cleared;
  }
  const SlotId id = next_slot_++;
  slots_[id] = std::move(slot);
  return id;
}

void CudaBackend::release(SlotId slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return;
  kv_->release(&it->second.blocks);
  if (it->second.seen_mask >= 0) free_masks_.push_back(it->second.seen_mask);
  slots_.erase(it);
}

int CudaBackend::slot_length(SlotId slot) const {
  auto it = slots_.find(slot);
  return it == slots_.end() ? -1 : it->second.length;
}

Status CudaBackend::prefill(const PrefillInput& in, float* logits_out) { return prefill_batch({in}, logits_out); }

Status CudaBackend::prefill_sampled(const PrefillInput& in, const RowSampling& sampling, SampledToken* out) {
  std::vector<SampledToken> one;
  REX_RETURN_IF_ERROR(prefill_batch_sampled({in}, {sampling}, &one));
  *out = one[0];
  return Status::Ok();
}

Status CudaBackend::prefill_batch(const std::vector<PrefillInput>& inputs, float* logits_out) {
  int logit_rows = 0;
  for (const PrefillInput& in : inputs) logit_rows += in.logit_rows;
  if (!logits_out && logit_rows > 0)
    return Status(StatusCode::kInvalidArgument, "prefill: expected a logits buffer for " + std::to_string(logit_rows) +
                                                    " rows but got none");
  std::vector<Slot*> slots;
  REX_RETURN_IF_ERROR(prefill_run(inputs, logits_out, &slots));
  prefill_commit(inputs, slots);
  return Status::Ok();
}

Status CudaBackend::prefill_batch_sampled(const std::vector<PrefillInput>& inputs, const std::vector<RowSampling>& sampling,
                                          std::vector<SampledToken>* out) {
  size_t logit_rows = 0;
  for (const PrefillInput& in : inputs) {
    if (in.logit_rows != 0 && in.logit_rows != 1)
      return Status(StatusCode::kInvalidArgument, "prefill_sampled: expected 0 or 1 logit rows but got " +
                                                      std::to_string(in.logit_rows));
    logit_rows += size_t(in.logit_rows);
  }
  if (logit_rows != sampling.size())
    return Status(StatusCode::kInvalidArgument, "prefill_sampled: expected a sampling per logit row (" +
                                                    std::to_string(logit_rows) + ") but got " + std::to_string(sampling.size()));
  std::vector<Slot*> slots;
  REX_RETURN_IF_ERROR(prefill_run(inputs, nullptr, &slots));
  std::vector<int> masks;  // the seen bitmask of each input that asks for its next token
  for (size_t k = 0; k < inputs.size(); ++k)
    if (inputs[k].logit_rows == 1) masks.push_back(slots[k]->seen_mask);
  out->clear();
  if (!masks.empty()) REX_RETURN_IF_ERROR(text_.sample_prefill(sampling, masks, out));
  prefill_commit(inputs, slots);  // only now: a failed sampling leaves every slot as it was
  return Status::Ok();
}

// Every input checked first, then one prefill of all their rows; *slots:
// their slots, in order, for prefill_commit once all else succeeded (till
// then no slot has changed: its new KV rows lie past its length).
Status CudaBackend::prefill_run(const std::vector<PrefillInput>& inputs, float* logits_out, std::vector<Slot*>* slots) {
  slots->clear();
  if (!prepared_) return not_prepared();
  REX_RETURN_IF_ERROR(use_device());
  if (inputs.empty()) return Status(StatusCode::kInvalidArgument, "prefill: expected 1 or more inputs but got none");
  const int vocab = config_.text.vocab_size, hidden = config_.text.hidden_size;
  std::vector<TextRunner::PrefillPart> parts(inputs.size());
  std::vector<UploadedEmbeddings> uploaded(inputs.size());
  bool any_uploaded = false;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const PrefillInput& in = inputs[k];
    auto it = slots_.find(in.slot);
    if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "prefill: unknown slot " + std::to_string(in.slot));
    if (std::find(slots->begin(), slots->end(), &it->second) != slots->end())
      return Status(StatusCode::kInvalidArgument, "prefill: expected one input per slot but got slot " +
                                                      std::to_string(in.slot) + " twice");
    if (in.n <= 0 || !in.token_ids || !in.positions)
      return Status(StatusCode::kInvalidArgument, "prefill: expected at least one token with positions");
    Slot& slot = it->second;
    if (slot.length + in.n > slot.capacity)
      return Status(StatusCode::kInvalidArgument, "prefill: slot " + std::to_string(in.slot) + " holds " +
                    std::to_string(slot.capacity) + " tokens; expected at most " +
                    std::to_string(slot.capacity - slot.length) + " more but got " + std::to_string(in.n));
    for (int i = 0; i < in.n; ++i)
      if (in.token_ids[i] < 0 || in.token_ids[i] >= vocab)
        return Status(StatusCode::kInvalidArgument, "token id " + std::to_string(in.token_ids[i]) + " at index " +
                      std::to_string(i) + " is outside the vocabulary (" + std::to_string(vocab) + ")");
    TextRunner::PrefillPart& part = parts[k];
    int image_tokens = 0;
    for (int i = 0; i < in.n; ++i) image_tokens += in.token_ids[i] == in.image_token_id;
    if (in.image) {
      REX_RETURN_IF_ERROR(check_prefill_image(in, image_tokens, hidden));
      const auto* resident = dynamic_cast<const CudaImageEmbeddings*>(in.image);
      if (!resident) REX_RETURN_IF_ERROR(uploaded[k].from(*in.image, stream_));
      any_uploaded |= !resident;
      part.image = resident ? resident->device_rows() : uploaded[k].rows.get();
      part.image_row.assign(size_t(in.n), -1);
      for (int i = 0, j = in.image_part ? in.image_offset : 0; i < in.n; ++i)
        if (in.token_ids[i] == in.image_token_id) {
          part.image_row[size_t(i)] = resident ? resident->row_of(j) : j;
          ++j;
        }
    } else if (image_tokens > 0 && in.image_token_id >= 0) {
      return Status(StatusCode::kInvalidArgument, "prefill: the prompt has " + std::to_string(image_tokens) +
                                                      " image tokens but no image");
    }
    part.ids = in.token_ids;
    part.n = in.n;
    part.positions = in.positions;
    part.past = slot.length;
    part.blocks = &slot.blocks;
    part.logit_rows = in.logit_rows;
    part.seen_mask = slot.seen_mask;
    slots->push_back(&slot);
  }
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  Status st = text_.prefill(parts, logits_out, tap);
  // The sampled path returns before its stream is synchronised: the uploaded rows must outlive their reads.
  if (any_uploaded) REX_RETURN_IF_ERROR(cuda_status(cudaStreamSynchronize(stream_), "cuda prefill"));
  return st;
}

void CudaBackend::prefill_commit(const std::vector<PrefillInput>& inputs, const std::vector<Slot*>& slots) {
  for (size_t k = 0; k < inputs.size(); ++k) {
    slots[k]->length += inputs[k].n;
    slots[k]->ids.insert(slots[k]->ids.end(), inputs[k].token_ids, inputs[k].token_ids + inputs[k].n);  // a prefix may be kept
  }
}

Status CudaBackend::decode_batch(const std::vector<DecodeRow>& rows, std::vector<DecodeSequence>* batch,
                                 std::vector<Slot*>* stepped) {
  if (!prepared_) return not_prepared();
  REX_RETURN_IF_ERROR(use_device());
  batch->clear();
  stepped->clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    auto it = slots_.find(rows[i].slot);
    if (it == slots_.end()) return Status(StatusCode::kInvalidArgument, "decode: unknown slot " + std::to_string(rows[i].slot));
    Slot& slot = it->second;
    const bool continues = i > 0 && rows[i - 1].slot == rows[i].slot;
    if (!continues)
      for (size_t j = 0; j + 1 < i; ++j)
        if (rows[j].slot == rows[i].slot)
          return Status(StatusCode::kInvalidArgument, "decode: expected the rows of slot " + std::to_string(rows[i].slot) +
                        " to be consecutive but got row " + std::to_string(j) + " and row " + std::to_string(i));
    if (continues && rows[i].position != rows[i - 1].position + 1)
      return Status(StatusCode::kInvalidArgument, "decode: expected position " + std::to_string(rows[i - 1].position + 1) +
                    " for row " + std::to_string(i) + " of slot " + std::to_string(rows[i].slot) + " but got " +
                    std::to_string(rows[i].position));
    if (rows[i].token < 0 || rows[i].token >= config_.text.vocab_size)
      return Status(StatusCode::kInvalidArgument, "decode: token id " + std::to_string(rows[i].token) + " is outside the vocabulary");
    const int length = continues ? batch->back().length + 1 : slot.length;
    if (length + 1 > slot.capacity)
      return Status(StatusCode::kInvalidArgument, "decode: slot " + std::to_string(rows[i].slot) + " is full at its capacity of " +
                    std::to_string(slot.capacity) + " tokens");
    batch->push_back({rows[i].token, rows[i].position, length, &slot.blocks, slot.seen_mask});
    stepped->push_back(&slot);
  }
  if (int(batch->size()) > text_.max_rows())
    return Status(StatusCode::kInvalidArgument, "decode: expected at most " + std::to_string(text_.max_rows()) +
                  " rows in one step but got " + std::to_string(batch->size()));
  return Status::Ok();
}

Status CudaBackend::decode(const std::vector<DecodeRow>& rows, float* logits_out) {
  if (rows.empty()) return Status::Ok();
  std::vector<DecodeSequence> batch;
  std::vector<Slot*> stepped;
  REX_RETURN_IF_ERROR(decode_batch(rows, &batch, &stepped));
  const TensorTap* tap = tap_ ? &tap_ : nullptr;
  REX_RETURN_IF_ERROR(text_.decode(batch, logits_out, use_graphs_, tap));
  for (Slot* s : stepped) ++s->length;
  return Status::Ok();
}

Status CudaBackend::decode_sampled(const std::vector<DecodeRow>& rows, const std::vector<RowSampling>& sampling,
                                   std::vector<SampledToken>* out) {
  if (rows.empty()) return Status::Ok();
  if (sampling.size() != rows.size())
    return Status(StatusCode::kInvalidArgument, "decode_sampled: expected one sampling per row (" + std::to_string(rows.size()) +
                  ") but got " + std::to_string(sampling.size()));
  std::vector<DecodeSequence> batch;
  std::vector<Slot*> stepped;
  REX_RETURN_IF_ERROR(decode_batch(rows, &batch, &stepped));
  REX_RETURN_IF_ERROR(text_.decode_sampled(batch, sampling, use_graphs_, out));
  for (Slot* s : stepped) ++s->length;
  return Status::Ok();
}

BackendInfo CudaBackend::info() const {
  BackendInfo i = device_info_;
  i.backend = "cuda";
  i.memory.weights_bytes = weights_.bytes;
  if (kv_) {
    i.memory.kv_cache_bytes = size_t(kv_->pool().total_blocks()) * kv_->pool().bytes_per_block();
    i.memory.kv_cache_used_bytes = kv_->pool().used_bytes();
    i.prefix_cache = kv_->cache_stats();
    i.prefix_cache_bytes = size_t(kv_->cache_blocks()) * kv_->pool().bytes_per_block();
    i.prefix_cache_held_bytes = size_t(i.prefix_cache.blocks_held) * kv_->pool().bytes_per_block();
  }
  i.memory.workspace_bytes = vision_.workspace_bytes() + text_.workspace_bytes();
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(options_.device) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    i.memory.device_used_bytes = total_bytes - free_bytes;
    i.memory.device_total_bytes = total_bytes;
  } else {
    cudaGetLastError();
  }
  i.memory.peak_bytes = g_device_bytes_peak.load();
  return i;
}

void register_cuda_backend() {
  register_backend("cuda", [](const BackendOptions& options) -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(new CudaBackend(options));
  });
}

}  // namespace rex::cuda
