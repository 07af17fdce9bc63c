// The core's public engine API. One Engine owns a checkpoint, a compute
// backend and ONE scheduler thread that makes every backend call. Requests are
// plain structs; submit() queues one and returns at once. The scheduler admits
// queued requests between steps (prefill), then advances every in-flight
// request by one token per step (a batched decode), so requests join and
// leave between steps — continuous batching, already at batch 1.
// Results stream out through an EventSink: one call per scheduler step with
// every request's new tokens and the requests that finished. Nothing here
// throws, aborts or exits; failures are Status values or finish events.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "rex/status.h"
#include "sampling/grammar.h"
#include "sampling/sampling.h"

namespace rex {

class Backend;
struct ModelConfig;
struct BackendInfo;

using RequestId = uint64_t;

// Same signature as the backend's tap (engine/backend.h): named fp32 intermediates.
using TensorTap = std::function<void(const std::string& name, const float* data,
                                     const std::vector<int64_t>& shape)>;

// Interleaved 8-bit RGB, preprocessed on the engine thread.
struct RawImage {
  std::vector<uint8_t> rgb;  // width * height * 3
  int width = 0;
  int height = 0;
  PreprocessOptions options;
};

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;              // image pads already expanded
  std::optional<PreprocessedImage> image;       // either this ...
  std::optional<RawImage> raw_image;            // ... or this (or neither: text only)
  int max_new_tokens = 256;
  std::vector<int32_t> stop_token_ids;          // e.g. <|im_end|>
  SamplingParams sampling;
  // Constrained decoding (sampling/grammar.h): when set, every step samples
  // only ids the grammar allows, and only ids after which the output can still
  // close within max_new_tokens. Validated at submit. Absent: plain decoding.
  std::optional<OutputGrammar> grammar;
  // Jump-forward: where the grammar allows exactly one id next (a phrase's
  // later tokens, REF_END BOX_START after a phrase), that id is appended
  // without a decode step of its own; the next step feeds it with the sampled
  // token and scores it. The output (tokens, both log-probabilities, seeded
  // draws) is the same as without it; only the number of steps differs.
  bool jump_forward = true;
  // The raw model's log-probability of each token (TokenEvent::model_logprob,
  // what confidence scores are built from). false: not needed, so a device
  // sampler may skip the full LM head (model_logprob may then be NaN).
  bool want_scores = true;
  // Deadline in milliseconds from submit (0: none). The scheduler checks it
  // between steps: a request still queued or running when it passes finishes
  // with FinishReason::kDeadline (status kDeadlineExceeded), its slot and KV
  // released; the others go on. Validated at submit (>= 0).
  int64_t deadline_ms = 0;
};

enum class FinishReason { kEos, kLength, kCancelled, kError, kDeadline };
// "eos", "length", "cancelled", "error", "deadline"
const char* finish_reason_name(FinishReason reason);

struct TokenEvent {
  RequestId request = 0;
  int32_t token = 0;
  float logprob = 0.0f;  // see sampling.h for exactly what is reported
  int step = 0;          // 0 for the token that prefill produced
  float model_logprob = 0.0f;  // the raw model's log-probability of the token (sampling.h)
};

struct Timings {
  double preprocess_ms = 0, vision_ms = 0, prefill_ms = 0, decode_ms = 0;
};

struct FinishEvent {
  RequestId request = 0;
  FinishReason reason = FinishReason::kError;
  Status status;          // ok unless reason is kError or kDeadline (kDeadlineExceeded)
  Timings timings;
  int prompt_tokens = 0;
  int image_tokens = 0;
  int generated_tokens = 0;  // includes a stop token, which is also delivered as a TokenEvent
  int decode_steps = 0;      // decode forward passes that advanced this request (prefill not counted)
  int prefill_rides = 0;     // of those, rows it decoded inside another request's prefill pass (prefill_decode_rows)
  int forced_tokens = 0;     // generated tokens that jump-forward appended (no step of their own)
  int cached_tokens = 0;     // prompt tokens whose KV came from the image prefix cache (no vision, no prefill)
  int preemptions = 0;       // times the request gave its KV back and resumed (reserve_generation false)
};

// Everything one scheduler step produced.
struct EngineEvents {
  std::vector<TokenEvent> tokens;
  std::vector<FinishEvent> finished;
};

// Called on the scheduler thread. Implementations must not block (the N-API
// binding hands the batch to a thread-safe function and returns).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void on_events(EngineEvents events) = 0;
};

struct EngineOptions {
  std::string backend = "cpu";
  int threads = 0;                     // backend threads; 0 = all hardware threads
  int max_active_requests = 8;         // in-flight sequences per step
  // Requests waiting for admission at most (0: unbounded). A submit beyond it
  // is refused at once with kResourceExhausted; nothing queued is disturbed.
  int max_queued_requests = 0;
  int device = 0;                      // CUDA device index
  size_t kv_cache_bytes = 0;           // KV budget (engine/backend.h BackendOptions says how it is chosen)
  double gpu_memory_fraction = 0;
  bool emulate_bf16 = false;           // CPU backend: bf16 activations (BackendOptions)
  bool batch_invariant = false;        // CUDA backend: a row's bits never depend on the batch (BackendOptions)
  int64_t prefix_cache_bytes = -1;     // the image prefix cache's share of the KV budget; < 0 default, 0 off (BackendOptions)
  // Prompts are prefilled in chunks of this many tokens between decode steps,
  // so a long prompt delays the running requests by one chunk at a time
  // (0: each prompt at once). The chunks are the prompt's own, whatever the load.
  int prefill_chunk_tokens = 2048;
  // While prompts are prefilled, up to this many running requests (those
  // with no jump-forward tokens pending) decode their next token inside each
  // prefill pass, as one-row pieces of it, instead of waiting for the pass
  // to end; the rows count against prefill_chunk_tokens. 0: off. A backend
  // that does not batch prefills (batch_invariant CUDA) ignores it, and so do
  // growing slots (reserve_generation false).
  int prefill_decode_rows = 0;
  // The images of requests admitted in the same step go through the vision
  // encoder in one pass, up to this many patches in all (an image larger than
  // it goes alone; 0: one image per pass). Under batch_invariant one image
  // per pass either way, so a request's bits never depend on the others.
  int vision_batch_patches = 16384;
  // true: a request reserves KV for its prompt and all of max_new_tokens when
  // it starts, and is never preempted. false (a backend that grows slots):
  // it reserves what it holds, its slot grows as it decodes, and when the
  // budget runs out the newest running requests are preempted: their KV is
  // released and they go back to the head of the queue, to resume by
  // prefilling their prompt and output so far, with their sampling state
  // (on the CPU backend, the same tokens as uninterrupted). Backends that do
  // not grow slots reserve upfront either way.
  bool reserve_generation = true;
  std::shared_ptr<EventSink> sink;     // may also be set later with set_event_sink
  TensorTap debug_tap;                 // named intermediates; empty = off (no cost)
};

// Teacher-forced scoring: the model reads prompt + continuation in one
// prefill, and reports its distribution at the prompt's last token and at
// every continuation token.
struct ScoreRequest {
  std::vector<int32_t> prompt_ids;             // image pads already expanded
  std::optional<PreprocessedImage> image;
  std::optional<RawImage> raw_image;
  std::vector<int32_t> continuation_ids;       // may be empty
  int top_k = 5;                               // 0..vocab
  bool full_logits = false;                    // also return each raw logits row
};

struct ScorePosition {
  std::vector<int32_t> top_ids;   // by descending logit (ties: lower id first)
  std::vector<float> top_logits;  // raw logits of top_ids
  bool has_logprob = false;       // false for the last position (nothing follows)
  float logprob = 0;              // log_softmax(raw logits)[continuation_ids[i]]
  std::vector<float> logits;      // [vocab] when full_logits
};

struct ScoreResult {
  // continuation_ids.size() + 1 entries: entry i is the distribution after
  // prompt + continuation[0..i).
  std::vector<ScorePosition> positions;
  int prompt_tokens = 0;
  int image_tokens = 0;
  Timings timings;
};

struct GenerationResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<float> model_logprobs;
  FinishEvent finish;
};

class Engine {
 public:
  // Opens the checkpoint, binds the weights, builds and prepares the backend,
  // starts the scheduler thread.
  static Result<std::unique_ptr<Engine>> create(const std::string& checkpoint_dir,
                                                const EngineOptions& options);
  // Over an already prepared backend (tests, in-memory models). `keepalive`
  // holds whatever the backend's weights point into.
  static Result<std::unique_ptr<Engine>> create_with_backend(const ModelConfig& config,
                                                             std::unique_ptr<Backend> backend,
                                                             const EngineOptions& options,
                                                             std::shared_ptr<void> keepalive = nullptr);
  // Cancels whatever is in flight (finish events with kCancelled), joins the thread.
  ~Engine();
  // The same, before destruction (idempotent): waiting score_blocking and
  // generate_blocking calls return cancelled; later submits are refused.
  void shutdown();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues. kInvalidArgument names what was expected and what
  // was given; kResourceExhausted: max_queued_requests are already waiting.
  Result<RequestId> submit(GenerationRequest request);
  // Cancels a queued or running request (finish event kCancelled, between
  // steps). Unknown or finished ids are ignored.
  void cancel(RequestId id);
  // Submits and waits for the finish; events for this request go to the
  // result, not to the sink. For tests and tools, never on the JS thread.
  Result<GenerationResult> generate_blocking(GenerationRequest request);

  // Runs a scoring request through the scheduler (queued like any other, so
  // it shares the KV budget) and waits for it. Never on the JS thread.
  Result<ScoreResult> score_blocking(ScoreRequest request);

  void set_event_sink(std::shared_ptr<EventSink> sink);
  const ModelConfig& config() const;
  // The backend's description and memory, as of the last scheduler step.
  BackendInfo backend_info() const;

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rex
