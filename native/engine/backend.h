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
//  - logits come back to host memory, one row of vocab floats per sequence
//    (the last row of a prefill, or its last logit_rows rows for scoring);
//  - KV memory lives under a budget: check_admission says, before any work,
//    whether a request's tokens fit now, later (once others finish), or never;
//  - encode_rgb takes the decoded RGB bytes, so a GPU backend preprocesses on
//    the device; the default runs the CPU preprocessing, then encode_image;
//  - the *_batch encoders take several images at once, for backends that run
//    them through one vision pass (varlen attention over the images); each
//    image gets its own result, so a bad image fails only its own request.
// Every call happens on the engine's one scheduler thread; backends need not
// be thread-safe. Failures are Status, never exceptions or aborts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/prefix_key.h"
#include "model/config.h"
#include "model/weights.h"
#include "preprocess/preprocess.h"
#include "rex/status.h"
#include "sampling/sampling.h"

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
  // null when the tokens hold no image. Their count must match exactly,
  // unless image_part (below).
  const ImageEmbeddings* image = nullptr;
  int32_t image_token_id = -1;
  // A prompt prefilled in chunks: this call's image tokens take embeddings
  // [image_offset, image_offset + their count) of the image, which must
  // exist. Otherwise (image_part false) they take all of them, exactly.
  bool image_part = false;
  int image_offset = 0;
  // Logits for the last logit_rows tokens (0..n), row by row: teacher-forced
  // scoring asks for every continuation position at once; a prefill chunk
  // before the prompt's end asks for none (0: no LM head, logits_out unused).
  int logit_rows = 1;
};

// Checks a prefill's image against its `image_tokens` image tokens: the
// embeddings' width, and their count (exact, or with image_part the range
// [image_offset, image_offset + image_tokens) inside it). kInvalidArgument otherwise.
Status check_prefill_image(const PrefillInput& input, int image_tokens, int hidden);

// A vision encoding of raw RGB bytes, with where its time went.
struct EncodedImage {
  std::unique_ptr<ImageEmbeddings> embeddings;
  int grid_h = 0, grid_w = 0;     // patch grid (the merged grid is grid / merge)
  double preprocess_ms = 0, vision_ms = 0;
};

// One raw image of a batch (encode_rgb_batch): interleaved RGB bytes,
// width*height*3 of them, and how to preprocess them (the caller keeps all
// of it alive for the call).
struct RgbImageRef {
  const uint8_t* rgb = nullptr;
  int width = 0, height = 0;
  const PreprocessOptions* options = nullptr;
};

// Whether a request's KV cache fits the backend's budget.
enum class Admission {
  kNow,    // its tokens fit in what is free now
  kLater,  // they fit the budget, but not beside what is running: wait in the queue
  kNever,  // they exceed the whole budget: reject (kOutOfMemory)
};
struct AdmissionCheck {
  Admission verdict = Admission::kNow;
  std::string detail;  // for kLater/kNever: what it needs and what is free
};

struct BackendMemory {
  size_t weights_bytes = 0;
  size_t kv_cache_bytes = 0;       // the KV pool's size (its budget)
  size_t kv_cache_used_bytes = 0;  // blocks held by live slots
  size_t workspace_bytes = 0;      // activations, GEMM workspace, graphs' buffers
  size_t device_used_bytes = 0;    // whole device, as the driver reports it (0 on the CPU)
  size_t device_total_bytes = 0;
  size_t peak_bytes = 0;           // most this backend held at once
};

struct BackendInfo {
  std::string backend;             // "cpu" or "cuda"
  PrefixCacheStats prefix_cache;   // zeros without one
  size_t prefix_cache_bytes = 0;   // the cache's share of the KV budget (0: none)
  size_t prefix_cache_held_bytes = 0;  // what its entries hold now
  std::string device_name;         // GPU name; empty on the CPU
  std::string compute_capability;  // "9.0"
  int driver_version = 0;          // CUDA driver API version, e.g. 13000
  int runtime_version = 0;
  int threads = 0;                 // CPU threads (cpu backend)
  BackendMemory memory;
};

// One row of a decode batch: a text token at one position (same on all
// three M-RoPE axes). Several rows may name the same slot when they are
// consecutive in the batch and at consecutive positions: they append that
// many tokens to it in one step (jump-forward: a sampled token plus the
// tokens the grammar forces after it), each row attending to the cache up to
// and including its own token.
struct DecodeRow {
  SlotId slot = -1;
  int32_t token = 0;
  int32_t position = 0;
};

// How to choose the token after one row, for a backend that samples on its
// device (sampling.h has the rules; the backend applies exactly them).
struct RowSampling {
  SamplingParams params;            // temperature, top_k, top_p, repetition_penalty (seed unused)
  double uniform = 0.0;             // the row's draw from the request's Pcg32 when it does not decode greedily
  const TokenMask* mask = nullptr;  // null: any id
  // The raw model's log-probability (scores) is wanted: it needs the softmax
  // normaliser over the whole vocabulary, so the full LM head. When no row
  // of a step wants it, a backend may compute only the rows the masks allow
  // (model_logprob is then NaN).
  bool model_logprob = true;
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

  // Preprocessing + vision from interleaved RGB (width*height*3 bytes). The
  // default preprocesses on the host (preprocess_image) and calls encode_image.
  virtual Result<EncodedImage> encode_rgb(const uint8_t* rgb, int width, int height,
                                          const PreprocessOptions& options);

  // Several images at once: one result per image, in order, each as its
  // single-image call would give it (a batching backend runs one vision pass;
  // its numbers may then differ from alone within the backend's rounding,
  // and are the same bits on the CPU). An image that cannot be preprocessed
  // or encoded fails alone. The defaults loop over the single-image calls.
  virtual std::vector<Result<EncodedImage>> encode_rgb_batch(const std::vector<RgbImageRef>& images) {
    std::vector<Result<EncodedImage>> out;
    out.reserve(images.size());
    for (const RgbImageRef& im : images)
      out.push_back(im.options ? encode_rgb(im.rgb, im.width, im.height, *im.options)
                               : Result<EncodedImage>(Status(StatusCode::kInvalidArgument,
                                                             "encode_rgb_batch: expected preprocessing options but got none")));
    return out;
  }
  virtual std::vector<Result<std::unique_ptr<ImageEmbeddings>>> encode_image_batch(
      const std::vector<const PreprocessedImage*>& images) {
    std::vector<Result<std::unique_ptr<ImageEmbeddings>>> out;
    out.reserve(images.size());
    for (const PreprocessedImage* im : images) out.push_back(encode_image(*im));
    return out;
  }

  // Whether `tokens` tokens of KV cache (prompt + generation budget) fit.
  virtual AdmissionCheck check_admission(int tokens) const = 0;

  // A fresh, empty sequence slot with KV room for capacity tokens (prompt +
  // generation), reserved now; kOutOfMemory when the budget can't take it.
  virtual Result<SlotId> acquire_slot(int capacity) = 0;
  virtual void release(SlotId slot) = 0;
  virtual int slot_length(SlotId slot) const = 0;  // tokens in its KV cache; -1 if unknown slot

  // Appends input.n tokens to the slot; writes the logits of the last
  // input.logit_rows of them to logits_out[logit_rows * vocab_size()].
  // Appending beyond the slot's capacity is kInvalidArgument.
  virtual Status prefill(const PrefillInput& input, float* logits_out) = 0;

  // Appends one token per row to its slot (a slot's rows consecutive, see
  // DecodeRow); writes logits to logits_out[rows.size() * vocab_size()], row by row.
  virtual Status decode(const std::vector<DecodeRow>& rows, float* logits_out) = 0;

  // Sampling on the device: logits stay there and only each row's
  // SampledToken comes back. The repetition penalty's history is the slot's
  // own tokens (the prompt and every decoded row's token), kept by the
  // backend. Backends that cannot (the default) return false, and the engine
  // samples on the host from decode()'s and prefill()'s logits.
  virtual bool samples_on_device() const { return false; }
  // As decode(), then one SampledToken per row, chosen by sampling[i].
  virtual Status decode_sampled(const std::vector<DecodeRow>& rows, const std::vector<RowSampling>& sampling,
                                std::vector<SampledToken>* out);
  // As prefill() (logit_rows must be 1), then the token after the last one.
  virtual Status prefill_sampled(const PrefillInput& input, const RowSampling& sampling, SampledToken* out);
  // Several slots' prefill chunks in one forward pass, their rows
  // concatenated, so that each GEMM sees them all at once. Backends that can
  // (batches_prefills) do what prefill() on each input in turn does, with
  // inputs[i]'s logit rows after those of inputs[0..i) in logits_out (null
  // when no input asks for any), and all or nothing: on an error no slot has
  // changed. No two inputs may share a slot. The engine batches only when the
  // backend says so (a batch-invariant CUDA backend does not: a GEMM's sums
  // depend on its rows there).
  virtual bool batches_prefills() const { return false; }
  virtual Status prefill_batch(const std::vector<PrefillInput>& inputs, float* logits_out);
  // As prefill_batch(), sampling on the device: one SampledToken per input
  // whose logit_rows is 1 (the others ask for 0), in order, by sampling[j].
  virtual Status prefill_batch_sampled(const std::vector<PrefillInput>& inputs, const std::vector<RowSampling>& sampling,
                                       std::vector<SampledToken>* out);
  // The most rows one decode call takes (sequences plus their jump-forward rows).
  virtual int max_step_rows() const { return 1 << 20; }

  // The image prefix cache (engine/prefix_cache.h): a backend that keeps one
  // holds the KV of finished image prefixes (the prompt up to and including
  // <|vision_end|>) inside its KV budget and lends them to new slots. The
  // defaults: no cache.
  virtual bool caches_prefixes() const { return false; }
  // As check_admission, for a request whose prefix may be cached under key.
  virtual AdmissionCheck check_admission_with_prefix(int tokens, const PrefixKey& key) const {
    (void)key;
    return check_admission(tokens);
  }
  // As acquire_slot, but the slot starts with the prefix cached under key
  // when there is one: *prefix_tokens is its length (0: a miss, an empty slot).
  virtual Result<SlotId> acquire_slot_with_prefix(int capacity, const PrefixKey& key, int* prefix_tokens) {
    (void)key;
    *prefix_tokens = 0;
    return acquire_slot(capacity);
  }
  // Caches the slot's first `tokens` tokens under key (the slot runs on);
  // false when they are not cached (no cache, or larger than its share).
  virtual Result<bool> cache_prefix(SlotId slot, const PrefixKey& key, int tokens) {
    (void)slot, (void)key, (void)tokens;
    return false;
  }
  virtual PrefixCacheStats prefix_cache_stats() const { return {}; }

  // Slots that grow: a backend that can add KV blocks to a live slot lets the
  // engine reserve only what a request holds now and grow its slot as it
  // decodes (EngineOptions::reserve_generation false). The default: a slot
  // holds the capacity acquire_slot gave it, for good.
  virtual bool grows_slots() const { return false; }
  // Grows the slot to hold at least `capacity` tokens; kOutOfMemory, changing
  // nothing, when the budget cannot give them now.
  virtual Status grow_slot(SlotId slot, int capacity) {
    (void)slot, (void)capacity;
    return Status(StatusCode::kInternal, std::string(name()) + " backend: slots do not grow");
  }

  // Debug intermediates; an empty function turns the tap off.
  virtual void set_tap(TensorTap tap) = 0;

  // The backend, its device and its memory (scheduler thread only).
  virtual BackendInfo info() const = 0;
};

struct BackendOptions {
  std::string name = "cpu";
  int threads = 0;  // 0: all hardware threads
  int device = 0;   // CUDA device index
  // The KV-cache budget. kv_cache_bytes > 0 sets it outright; else
  // gpu_memory_fraction > 0 caps the whole process's use of the device at that
  // fraction of its memory and gives the KV cache what remains after weights
  // and workspaces; else the default: room for max_active_requests sequences
  // of default_tokens_per_request tokens, capped by 90% of what is free
  // (the CPU backend has no budget unless kv_cache_bytes is set).
  size_t kv_cache_bytes = 0;
  double gpu_memory_fraction = 0;
  int max_active_requests = 8;     // also the largest decode batch (graph buckets)
  // CPU backend: round every GEMM's activations to bf16 as the CUDA backend
  // holds them (cpu/gemm.h), to see on a CPU what bf16 does to a checkpoint.
  bool emulate_bf16 = false;
  // CUDA backend: decode every step on the row-invariant GEMV, so a request
  // gives the same bits alone or in any batch. Off: steps of more than 2 rows
  // of two or more sequences take cuBLASLt, whose sums depend on the number
  // of rows (faster for many requests at once). The CPU backend is
  // row-invariant either way.
  bool batch_invariant = false;
  // The image prefix cache's share of the KV budget, in bytes: < 0 the
  // default (a quarter of the budget), 0 none. The CPU backend keeps one only
  // under a KV budget (kv_cache_bytes).
  int64_t prefix_cache_bytes = -1;
  int default_tokens_per_request = 8192;
};

// Builds the named backend ("cpu"; "cuda" when the CUDA library registered
// itself). kInvalidArgument for an unknown or unavailable name.
Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options);

// How a backend library makes itself known to make_backend (the CUDA addon
// registers "cuda" when it loads). Registering a name again replaces it.
using BackendFactory = Result<std::unique_ptr<Backend>> (*)(const BackendOptions& options);
void register_backend(const std::string& name, BackendFactory factory);

}  // namespace rex
