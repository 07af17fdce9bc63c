// The Engine and its scheduler thread (see rex/engine.h). Each loop iteration
// is one step: take cancellations and new requests under the lock, then, with
// the lock released, (1) finish cancelled requests and those whose deadline
// passed (queued or running: kDeadline, slot released), (2) admit new ones
// (their slots, then one vision batch for their images), (3) one batched
// backend decode call for every running request (a sampled token each, after
// the tokens jump-forward forced), then the prefill chunks, (4) hand the
// step's events to the sink. Only this thread touches the backend.
//
// Token choice has two homes and one bookkeeping. A backend that samples on
// its device gets a RowSampling per row (params, the row's Pcg32 draw, the
// grammar's mask) and returns ids; otherwise the engine runs sample_token on
// the logits it gets back. Either way every row's result goes through the
// same code: a forced token is checked and emitted; a sampled token moves
// the grammar, is emitted, and then jump-forward runs.
//
// Jump-forward: after a sampled token, while the grammar allows exactly one
// id next, that id is forced (the grammar moves past it at once; at most
// kMaxJump of them). The next step feeds [last sampled token, forced...] as
// consecutive rows of the slot; row j scores forced[j] under a one-id mask
// (the very set the grammar allowed, so the same log-probabilities and the
// same one draw as a step of its own would give), and the row after the last
// forced token samples the next token. A forced token that ends the request (a
// stop id, or the last one max_new_tokens allows) is scored but never fed.
//
// The row budget: a backend decode step takes at most max_step_rows() rows.
// Every sequence that can be in the next step is owed one row (those
// running, and those queued that the active limit lets in); the rest are
// spare, and forced tokens take spare rows first come, first served (at most
// kMaxJump per sequence). So one request alone forces up to kMaxJump tokens
// per step, and a full batch still gets its rows; a request admitted after
// the budget was set takes what is left, and one with no row left waits in
// the queue for the next step.
//
// Vision batching: the requests admitted in one step that need the vision
// encoder (not prefix-cache hits) share one encoder pass, their images up to
// vision_batch_patches patches in all (batch_invariant: one image per pass).
// Each takes its slot at admission, so the next request's admission check
// sees it; the batch is encoded once the step's admissions are done (or
// before an image that would overflow it, or before an admission check that
// fails while started requests still hold slots), then every started request
// goes active in queue order. An image that fails fails only its request.
//
// Growing slots (EngineOptions::reserve_generation false, on a backend that
// grows them): a request reserves the KV it holds (prompt, output so far) and
// one row more; before each step a slot that its rows would overflow grows. When the budget cannot give it, the newest running requests are
// preempted, newest first: their slot is released and they go back to the
// head of the queue, oldest first, with their output, sampler, grammar and
// forced tokens. Resuming prefills the prompt and all output but the last
// token (that token is the next decode row, as before), so nothing is emitted
// twice; the oldest request always fits alone, since admission rejects one
// whose whole prompt + max_new_tokens exceeds the budget.
//
// The image prefix cache (prefix_cache.h), on a backend that keeps one: an
// image request's prompt splits after its <|vision_end|>, the prefix keyed by
// the image (its bytes and preprocessing settings, or its preprocessed
// pixels) and the prompt tokens up to there. A miss prefills the prefix, has
// the backend keep its KV, then prefills the rest; a hit skips the vision
// encoder and the prefix's prefill. Every image prompt is prefilled in those
// two parts, cache or none, so a request gives the same tokens either way.
#include "rex/engine.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "engine/backend.h"
#include "engine/mrope_positions.h"
#include "model/config.h"

namespace rex {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos: return "eos";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
    case FinishReason::kDeadline: return "deadline";
  }
  return "error";
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Collects one request's events for generate_blocking / score_blocking.
struct Collector {
  std::mutex mutex;
  std::condition_variable cv;
  GenerationResult result;
  ScoreResult score;  // filled by the scheduler before the finish event (scoring)
  bool done = false;
};

// What a scoring sequence does instead of generating: its prompt_ids hold the
// prompt and the continuation; one prefill returns continuation + 1 rows.
struct ScoreJob {
  int continuation = 0;
  int top_k = 5;
  bool full_logits = false;
  std::shared_ptr<Collector> collector;
};

// Forced tokens per step at most: a slot feeds up to kMaxJump + 1 rows.
constexpr int kMaxJump = 7;
// Growing slots: the tokens of room a slot grows by beyond what its next
// step needs (the pool rounds up to whole blocks).
constexpr int kGrowthTokens = 16;

struct Sequence {
  RequestId id = 0;
  GenerationRequest request;
  SlotId slot = -1;
  TokenHistory history;
  Pcg32 rng;
  std::optional<GrammarState> grammar;  // constrained decoding (request.grammar)
  int32_t last_token = 0;
  int32_t next_position = 0;
  int generated = 0;
  Timings timings;
  int prompt_tokens = 0;
  int image_tokens = 0;
  std::optional<ScoreJob> score;
  // Jump-forward: ids the grammar forced after the last sampled token, already
  // past the grammar, not yet emitted (the next step scores them).
  std::vector<int32_t> forced;
  // The grammar's mask for the next sampled token when jump-forward's last
  // check computed it (and nothing has moved the grammar since); else null.
  const TokenMask* next_mask = nullptr;
  int decode_steps = 0;
  int prefill_rides = 0;
  int forced_tokens = 0;
  // The image prefix (the prompt through <|vision_end|>): its length (0: the
  // request has none to cache) and key, and how many tokens came from the cache.
  bool prefix_known = false;
  int prefix_tokens = 0;
  PrefixKey prefix_key;
  int cached_tokens = 0;
  // Chunked prefill: while `prefilling`, the prompt's first `prefilled`
  // tokens are in the slot's KV; the rest goes in chunks between decode steps.
  bool prefilling = false;
  int prefilled = 0;
  MropePositions positions;
  std::unique_ptr<ImageEmbeddings> embeddings;
  // Growing slots: the KV the slot holds room for, every token emitted, and
  // whether the sequence was preempted (start() then resumes it).
  int capacity = 0;
  std::vector<int32_t> output;
  bool resumed = false;
  int preemptions = 0;
  std::vector<int32_t> resume_ids;  // prompt + output but the last token, while resuming
  // Started this step, its image waiting for the step's vision batch.
  bool awaiting_vision = false;
  // submit + request.deadline_ms; max(): none.
  Clock::time_point deadline = Clock::time_point::max();
};

bool expired(const Sequence& s, Clock::time_point now) { return s.deadline <= now; }

// The status a request whose deadline passed finishes with.
Status deadline_status(const Sequence& s, bool running) {
  return Status(StatusCode::kDeadlineExceeded,
                "request " + std::to_string(s.id) + ": expected to finish within " +
                    std::to_string(s.request.deadline_ms) + " ms of submit but got " + std::to_string(s.generated) +
                    " of " + std::to_string(s.request.max_new_tokens) + " tokens by then (" +
                    (running ? "running" : "still queued") + ")");
}

// KV tokens a sequence reserves when it starts: the whole generation budget.
int tokens_needed(const Sequence& s) {
  return int(s.request.prompt_ids.size()) + (s.score ? 0 : s.request.max_new_tokens);
}

// One position of a scoring result from its raw logits row.
ScorePosition score_position(const float* row, int vocab, int top_k, int32_t next_id, bool full) {
  ScorePosition p;
  double mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, double(row[i]));
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - mx);
  const double log_z = mx + std::log(sum);
  if (next_id >= 0) {
    p.has_logprob = true;
    p.logprob = float(double(row[next_id]) - log_z);
  }
  const int k = std::min(std::max(top_k, 0), vocab);
  std::vector<int32_t> ids(static_cast<size_t>(vocab), 0);
  for (int i = 0; i < vocab; ++i) ids[size_t(i)] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  p.top_ids.assign(ids.begin(), ids.begin() + k);
  for (int32_t id : p.top_ids) p.top_logits.push_back(row[id]);
  if (full) p.logits.assign(row, row + vocab);
  return p;
}

bool is_stop(const Sequence& s, int32_t id) {
  const auto& stops = s.request.stop_token_ids;
  return std::find(stops.begin(), stops.end(), id) != stops.end();
}

// Tokens the request may still emit beyond those emitted and those forced:
// the grammar's budget for the next token.
int tokens_left(const Sequence& s) {
  return s.request.max_new_tokens - s.generated - int(s.forced.size());
}

// Whether the last forced token ends the request: a stop id, or the last
// token max_new_tokens allows. It is scored, never fed, and nothing follows.
bool forced_ends(const Sequence& s) {
  return !s.forced.empty() && (is_stop(s, s.forced.back()) || tokens_left(s) <= 0);
}

// Rows a running sequence feeds in the next step: its last sampled token
// (unless a forced token ends it) and its forced tokens.
int rows_of(const Sequence& s) { return int(s.forced.size()) + (forced_ends(s) ? 0 : 1); }

// The mask of the next sampled token: the grammar's (which also keeps the
// output closable in the tokens left), or none.
const TokenMask* sampled_mask(Sequence& s) {
  if (!s.grammar) return nullptr;
  if (s.next_mask) return std::exchange(s.next_mask, nullptr);
  return &s.grammar->allowed(tokens_left(s));
}

TokenMask single_id_mask(int32_t id) {
  TokenMask m;
  m.allow_ids = {id};
  return m;
}

// How to choose the token after one row. A device sampler gets the row's
// draw here; on the host sample_token takes the same one draw itself. Rows
// are built in the order they are sampled, so the draws come in the order
// step-by-step decoding takes them.
RowSampling row_sampling(Sequence& s, const TokenMask* mask, bool draw) {
  RowSampling r;
  r.params = s.request.sampling;
  r.mask = mask;
  r.model_logprob = s.request.want_scores;
  if (draw && !is_greedy(r.params)) r.uniform = s.rng.next_double();
  return r;
}

// Jump-forward (see the top of this file): forces, past the grammar, each id
// the grammar allows alone next, within the token budget and max_jump (the
// spare rows of the next step, at most kMaxJump).
Status jump_forward(Sequence& s, int vocab, int max_jump) {
  s.next_mask = nullptr;
  if (!s.grammar || !s.request.jump_forward) return Status::Ok();
  while (int(s.forced.size()) < max_jump && tokens_left(s) > 0 && !forced_ends(s)) {
    const TokenMask& mask = s.grammar->allowed(tokens_left(s));
    if (allowed_count(&mask, vocab) != 1) {
      s.next_mask = &mask;  // the next step samples under it
      break;
    }
    const int32_t id = mask.first_allowed(vocab);
    REX_RETURN_IF_ERROR(s.grammar->advance(id));
    s.forced.push_back(id);
  }
  return Status::Ok();
}

}  // namespace

// The prompt's split after its first <|vision_end|> (0: no image prefix).
int image_prefix_length(const std::vector<int32_t>& ids, const ModelConfig& config) {
  if (config.vision_end_token_id < 0) return 0;
  bool image = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    image = image || ids[i] == config.image_token_id;
    if (ids[i] == config.vision_end_token_id) return image && i + 1 < ids.size() ? int(i + 1) : 0;
  }
  return 0;
}

uint64_t hash_preprocess_options(const PreprocessOptions& o, uint64_t h) {
  const int32_t ints[5] = {o.min_pixels, o.max_pixels, o.patch_size, o.temporal_patch_size, o.merge_size};
  h = hash_bytes(ints, sizeof ints, h);
  h = hash_bytes(o.mean, sizeof o.mean, h);
  return hash_bytes(o.std, sizeof o.std, h);
}

// The request's image prefix and its key, once (requests without an image,
// or scoring ones, have none). The key names what fixes the prefix's KV: the
// image as given (RGB bytes and size, or the preprocessed pixels), the
// preprocessing settings and grid, and the prompt's tokens through the prefix
// (computed only when `keyed`: a backend with a cache).
void find_image_prefix(Sequence& s, const ModelConfig& config, bool keyed) {
  if (s.prefix_known) return;
  s.prefix_known = true;
  const GenerationRequest& r = s.request;
  if (s.score || (!r.raw_image && !r.image)) return;
  const int split = image_prefix_length(r.prompt_ids, config);
  if (split == 0) return;
  if (!keyed) {  // no cache: the split alone
    s.prefix_tokens = split;
    return;
  }
  PrefixKey key;
  if (r.raw_image) {
    const RawImage& im = *r.raw_image;
    auto target = smart_resize(im.height, im.width, im.options.patch_size * im.options.merge_size,
                               im.options.min_pixels, im.options.max_pixels);
    if (!target.ok() || im.options.patch_size <= 0) return;  // start() reports the error
    const int32_t size[2] = {im.width, im.height};
    key.pixels_hash = hash_bytes(im.rgb.data(), im.rgb.size(), hash_bytes(size, sizeof size));
    key.grid_h = target->height / im.options.patch_size;
    key.grid_w = target->width / im.options.patch_size;
    key.settings_hash = hash_preprocess_options(im.options, hash_bytes("rgb", 3));
  } else {
    const PreprocessedImage& im = *r.image;
    key.pixels_hash = hash_bytes(im.pixel_values.data(), im.pixel_values.size() * sizeof(float));
    key.grid_h = im.grid_h;
    key.grid_w = im.grid_w;
    key.settings_hash = hash_bytes("preprocessed", 12);
  }
  key.prompt_prefix_hash = hash_bytes(r.prompt_ids.data(), size_t(split) * sizeof(int32_t));
  s.prefix_tokens = split;
  s.prefix_key = key;
}

// The M-RoPE ids of tokens [from, to), axis-major like pos.ids.
std::vector<int32_t> position_range(const MropePositions& pos, int from, int to) {
  const int n = pos.n, m = to - from;
  std::vector<int32_t> out(size_t(3) * size_t(m));
  for (int axis = 0; axis < 3; ++axis)
    std::copy(pos.ids.begin() + axis * n + from, pos.ids.begin() + axis * n + to, out.begin() + axis * m);
  return out;
}

// Patch rows a request's image takes in the vision encoder (0 when its size
// is unusable: the encoder then reports why).
int image_patches(const GenerationRequest& r) {
  if (r.image) return std::max(0, r.image->grid_h * r.image->grid_w);
  if (!r.raw_image) return 0;
  const PreprocessOptions& o = r.raw_image->options;
  if (o.patch_size <= 0 || o.merge_size <= 0) return 0;
  auto target = smart_resize(r.raw_image->height, r.raw_image->width, o.patch_size * o.merge_size, o.min_pixels,
                             o.max_pixels);
  if (!target.ok()) return 0;
  return (target->height / o.patch_size) * (target->width / o.patch_size);
}

// A scheduler call that must not throw: bad_alloc and other exceptions
// become the request's Status (`what`: "starting request 3").
template <typename F>
Status guarded(const std::string& what, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "out of memory while " + what);
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, what + " failed: " + e.what());
  }
}

struct Engine::Impl {
  ModelConfig config;
  std::unique_ptr<Backend> backend;
  std::shared_ptr<void> keepalive;
  int max_active = 8;
  int max_queued = 0;  // 0: unbounded
  // The rows of one backend decode step, and the spare ones forced tokens may
  // still take for the next step (the row budget, top of this file).
  int step_rows = 1;
  int spare_rows = 0;
  int chunk_tokens = 2048;  // EngineOptions::prefill_chunk_tokens (0: whole prompts)
  int prefill_decode_rows = 0;  // EngineOptions::prefill_decode_rows (0: decode rows never ride a prefill pass)
  bool growing = false;     // slots grow (!reserve_generation and the backend grows them)
  // Vision batching (EngineOptions::vision_batch_patches, batch_invariant:
  // one image per pass).
  int vision_batch_patches = 16384;
  bool batch_invariant = false;
  std::vector<std::unique_ptr<Sequence>> preempted;  // this step's, back to the queue's head after it

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::unique_ptr<Sequence>> pending;
  std::set<RequestId> cancelled;
  std::set<RequestId> live;  // queued or running
  std::map<RequestId, std::shared_ptr<Collector>> collectors;
  std::shared_ptr<EventSink> sink;
  BackendInfo info_snapshot;  // refreshed by the scheduler; read under `mutex`
  RequestId next_id = 1;
  bool stop = false;
  std::thread thread;

  // Scheduler-thread state.
  std::vector<std::unique_ptr<Sequence>> active;
  std::vector<float> logits;
  // The requests started in this step's admissions, in queue order, not yet
  // active: those awaiting_vision wait for the step's vision batch
  // (flush_starts), the patches of whose images are starting_patches.
  std::vector<std::unique_ptr<Sequence>> starting;
  int starting_patches = 0;
  size_t starting_images = 0;

  void run();
  void finish(Sequence& s, FinishReason reason, Status status, EngineEvents& ev);
  bool emit_token(Sequence& s, const SampledToken& tok, EngineEvents& ev);  // true if finished
  Status accept_sampled(Sequence& s, const SampledToken& tok, EngineEvents& ev);
  Status take_rows(Sequence& s, size_t begin, size_t end, const std::vector<RowSampling>& sampling,
                   const SampledToken* device, EngineEvents& ev);
  Status begin_start(Sequence& s, bool* needs_vision);
  Status finish_start(Sequence& s, EncodedImage* vision, EngineEvents& ev, bool* finished);
  void flush_starts(EngineEvents& ev);
  void admit(std::unique_ptr<Sequence> s, EngineEvents& ev);
  int chunk_end(const Sequence& s) const;
  int reserve_now(const Sequence& s) const;
  Status resume(Sequence& s, MropePositions prompt, std::unique_ptr<ImageEmbeddings> embeddings);
  Status make_room(size_t index);
  // One prefill chunk: s's tokens [from, to) (the last: the prompt's end, which chooses the first token).
  struct Chunk {
    Sequence* s = nullptr;
    int from = 0, to = 0;
    std::vector<int32_t> positions;
    int images_before = 0, images_in = 0;  // image tokens before the chunk, and in it
    bool last = false;
  };
  const std::vector<int32_t>& chunk_ids(const Sequence& s) const { return s.resumed ? s.resume_ids : s.request.prompt_ids; }
  Chunk next_chunk(Sequence& s) const;
  PrefillInput chunk_input(const Chunk& c) const;
  Status after_chunk(const Chunk& c, const SampledToken* first, double ms, EngineEvents& ev);
  Status prefill_chunks(const std::vector<Chunk>& chunks, EngineEvents& ev, const std::vector<Sequence*>& riders = {});
  std::vector<Sequence*> prefill_riders(int limit) const;
  void prefill_step(EngineEvents& ev);
  int owed_rows();
  int rows_taken() const;
  void decode_step(EngineEvents& ev);
  void deliver(EngineEvents ev);
  void refresh_info();
  RequestId enqueue(std::unique_ptr<Sequence> s, std::shared_ptr<Collector> collector, Status* refused);
};

void Engine::Impl::refresh_info() {
  BackendInfo snapshot = backend->info();
  std::lock_guard<std::mutex> lock(mutex);
  info_snapshot = std::move(snapshot);
}

void Engine::Impl::finish(Sequence& s, FinishReason reason, Status status, EngineEvents& ev) {
  if (s.slot >= 0) backend->release(s.slot);
  s.slot = -1;
  FinishEvent f;
  f.request = s.id;
  f.reason = reason;
  f.status = std::move(status);
  f.timings = s.timings;
  f.prompt_tokens = s.prompt_tokens;
  f.image_tokens = s.image_tokens;
  f.cached_tokens = s.cached_tokens;
  f.preemptions = s.preemptions;
  f.generated_tokens = s.generated;
  f.decode_steps = s.decode_steps;
  f.prefill_rides = s.prefill_rides;
  f.forced_tokens = s.forced_tokens;
  ev.finished.push_back(std::move(f));
}

bool Engine::Impl::emit_token(Sequence& s, const SampledToken& tok, EngineEvents& ev) {
  const int32_t token = tok.id;
  ev.tokens.push_back({s.id, token, tok.logprob, s.generated, tok.model_logprob});
  ++s.generated;
  s.output.push_back(token);
  s.history.add(token);
  s.last_token = token;
  if (is_stop(s, token)) {
    finish(s, FinishReason::kEos, Status::Ok(), ev);
    return true;
  }
  if (s.generated >= s.request.max_new_tokens) {
    finish(s, FinishReason::kLength, Status::Ok(), ev);
    return true;
  }
  return false;
}

// A sampled token: past the grammar (one it forbids fails the request),
// emitted, then jump-forward.
Status Engine::Impl::accept_sampled(Sequence& s, const SampledToken& tok, EngineEvents& ev) {
  if (s.grammar) REX_RETURN_IF_ERROR(s.grammar->advance(tok.id));
  if (emit_token(s, tok, ev)) return Status::Ok();
  REX_RETURN_IF_ERROR(jump_forward(s, backend->vocab_size(), std::min(kMaxJump, spare_rows)));
  spare_rows -= int(s.forced.size());
  return Status::Ok();
}

// The rows the active sequences take in the next step (a prefilling one:
// the row of its first token).
int Engine::Impl::rows_taken() const {
  int taken = 0;
  for (const auto& a : active) taken += rows_of(*a);
  for (const auto& a : starting) taken += rows_of(*a);  // admitted this step, active after it
  return taken;
}

// The rows owed for the next step: one per running sequence and per queued
// one the active limit would let in.
int Engine::Impl::owed_rows() {
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    queued = pending.size();
  }
  const int running = int(active.size());
  return running + int(std::min<size_t>(queued, size_t(std::max(0, max_active - running))));
}

// The results of s's rows [begin, end) of a decode step, in order: the
// forced tokens they scored, then (unless a forced token ended it) the
// sampled token. `device` holds a device sampler's results; null: sample
// here from the step's logits.
Status Engine::Impl::take_rows(Sequence& s, size_t begin, size_t end, const std::vector<RowSampling>& sampling,
                               const SampledToken* device, EngineEvents& ev) {
  const int vocab = backend->vocab_size();
  std::vector<int32_t> forced;
  forced.swap(s.forced);
  for (size_t r = begin; r < end; ++r) s.next_position = next_decode_position(s.next_position);
  for (size_t r = begin, j = 0; r < end; ++r, ++j) {
    const RowSampling& rs = sampling[r];
    const SampledToken tok = device ? device[r]
                                    : sample_token(&logits[r * size_t(vocab)], vocab, rs.params, s.history, s.rng, rs.mask);
    if (j == forced.size()) return accept_sampled(s, tok, ev);
    if (tok.id != forced[j])
      return Status(StatusCode::kInternal, "decode row " + std::to_string(r) + ": expected the forced token " +
                    std::to_string(forced[j]) + " but got " + std::to_string(tok.id));
    ++s.forced_tokens;
    if (emit_token(s, tok, ev)) return Status::Ok();
  }
  return Status::Ok();
}

// The first half of a start: the slot (with the prefix cache, a hit holds
// the prefix's KV and the image is not encoded at all). *needs_vision: the
// image still has to go through the encoder (the batch of this step, then
// finish_start).
Status Engine::Impl::begin_start(Sequence& s, bool* needs_vision) {
  GenerationRequest& r = s.request;
  *needs_vision = false;
  s.prompt_tokens = int(r.prompt_ids.size()) - (s.score ? s.score->continuation : 0);
  // s.prefix_*: run() found the image prefix before the admission check.
  if (s.prefix_tokens > 0 && backend->caches_prefixes()) {
    auto slot = backend->acquire_slot_with_prefix(reserve_now(s), s.prefix_key, &s.cached_tokens);
    if (!slot.ok()) return slot.status();
    s.slot = slot.value();
    if (s.cached_tokens != 0 && s.cached_tokens != s.prefix_tokens)
      return Status(StatusCode::kInternal, "the prefix cache returned " + std::to_string(s.cached_tokens) +
                                               " tokens for an image prefix of " + std::to_string(s.prefix_tokens));
  } else {
    auto slot = backend->acquire_slot(reserve_now(s));
    if (!slot.ok()) return slot.status();
    s.slot = slot.value();
  }
  *needs_vision = s.cached_tokens == 0 && (r.raw_image || r.image);
  return Status::Ok();
}

// The rest of a start, once its image is encoded (`vision`; null when it
// needs none: no image, or a prefix-cache hit): positions, then a scoring
// request's one prefill, or a generating one's state for the chunked prefill.
Status Engine::Impl::finish_start(Sequence& s, EncodedImage* vision, EngineEvents& ev, bool* finished) {
  GenerationRequest& r = s.request;
  *finished = false;
  std::unique_ptr<ImageEmbeddings> embeddings;
  int merged_h = 0, merged_w = 0;
  const int m = config.vision.spatial_merge_size;
  if (s.cached_tokens > 0) {
    merged_h = s.prefix_key.grid_h / m;
    merged_w = s.prefix_key.grid_w / m;
    s.image_tokens = int(std::count(r.prompt_ids.begin(), r.prompt_ids.end(), config.image_token_id));
  } else if (vision) {
    embeddings = std::move(vision->embeddings);
    if (!embeddings) return Status(StatusCode::kInternal, "the vision encoder returned no embeddings");
    merged_h = vision->grid_h / m;
    merged_w = vision->grid_w / m;
    s.image_tokens = embeddings->tokens();
    s.timings.preprocess_ms = vision->preprocess_ms;
    s.timings.vision_ms = vision->vision_ms;
  }
  if (!growing) {  // the image is no longer needed (growing: kept, a preempted request encodes it again)
    r.raw_image.reset();
    r.image.reset();
  }
  auto pos = mrope_positions(r.prompt_ids, config.image_token_id, merged_h, merged_w);
  if (!pos.ok()) return pos.status();

  auto t0 = Clock::now();
  s.capacity = reserve_now(s);
  const int vocab = backend->vocab_size();
  if (s.score) {
    // Scoring: the whole prompt in one prefill, logits for the continuation.
    PrefillInput in;
    in.slot = s.slot;
    in.token_ids = r.prompt_ids.data();
    in.n = int(r.prompt_ids.size());
    in.positions = pos->ids.data();
    in.image = embeddings.get();
    in.image_token_id = config.image_token_id;
    in.logit_rows = s.score->continuation + 1;
    logits.resize(size_t(in.logit_rows) * size_t(vocab));
    REX_RETURN_IF_ERROR(backend->prefill(in, logits.data()));
    s.timings.prefill_ms = ms_since(t0);
    ScoreResult result;
    const int first_next = s.prompt_tokens;  // continuation[0] sits here in prompt_ids
    for (int i = 0; i < in.logit_rows; ++i) {
      const int32_t next = i < s.score->continuation ? r.prompt_ids[size_t(first_next + i)] : -1;
      result.positions.push_back(score_position(&logits[size_t(i) * vocab], vocab, s.score->top_k, next,
                                                s.score->full_logits));
    }
    result.prompt_tokens = s.prompt_tokens;
    result.image_tokens = s.image_tokens;
    result.timings = s.timings;
    {
      std::lock_guard<std::mutex> lock(s.score->collector->mutex);
      s.score->collector->score = std::move(result);
    }
    finish(s, FinishReason::kEos, Status::Ok(), ev);
    *finished = true;
    return Status::Ok();
  }

  if (s.resumed) return resume(s, std::move(pos).value(), std::move(embeddings));
  s.history = TokenHistory(vocab);
  s.history.add(r.prompt_ids);
  s.rng.reseed(r.sampling.seed);
  s.next_position = pos->next_position;
  if (r.grammar) {
    auto grammar = GrammarState::create(*r.grammar, vocab);
    if (!grammar.ok()) return grammar.status();
    s.grammar.emplace(std::move(grammar).value());
  }
  // The prefill itself goes in chunks (prefill_chunk), the first of them in
  // this same scheduler step.
  s.positions = std::move(pos).value();
  s.embeddings = std::move(embeddings);
  s.prefilled = s.cached_tokens;
  s.prefilling = true;
  return Status::Ok();
}

// Starts an admitted request: its slot now; then, unless its image needs the
// encoder, the rest of the start at once. One whose image does joins this
// step's vision batch, which is encoded first when the image would take it
// past vision_batch_patches (or, batch_invariant, holds an image already:
// one image per pass, so a request's bits never depend on the others).
void Engine::Impl::admit(std::unique_ptr<Sequence> sp, EngineEvents& ev) {
  Sequence& s = *sp;
  const std::string what = "starting request " + std::to_string(s.id);
  bool needs_vision = false;
  Status st = guarded(what, [&] { return begin_start(s, &needs_vision); });
  if (!st.ok()) {
    finish(s, FinishReason::kError, st, ev);
    return;
  }
  if (needs_vision) {
    const int patches = image_patches(s.request);
    if (starting_images > 0 && (batch_invariant || starting_patches + patches > vision_batch_patches))
      flush_starts(ev);
    s.awaiting_vision = true;
    starting_patches += patches;
    ++starting_images;
    starting.push_back(std::move(sp));
    return;
  }
  bool finished = false;
  st = guarded(what, [&] { return finish_start(s, nullptr, ev, &finished); });
  if (!st.ok()) finish(s, FinishReason::kError, st, ev);
  else if (!finished) starting.push_back(std::move(sp));
}

// The step's vision batch: every waiting image through the encoder at once
// (one backend call for the raw images, one for preprocessed ones), each
// result to its own request (an image that fails, fails only its request),
// then every started request joins `active`, in queue order.
void Engine::Impl::flush_starts(EngineEvents& ev) {
  std::vector<RgbImageRef> rgb;
  std::vector<const PreprocessedImage*> pre;
  std::vector<size_t> rgb_at, pre_at;
  for (size_t i = 0; i < starting.size(); ++i) {
    const GenerationRequest& r = starting[i]->request;
    if (!starting[i]->awaiting_vision) continue;
    if (r.raw_image) {
      rgb.push_back(RgbImageRef{r.raw_image->rgb.data(), r.raw_image->width, r.raw_image->height, &r.raw_image->options});
      rgb_at.push_back(i);
    } else {
      pre.push_back(&*r.image);
      pre_at.push_back(i);
    }
  }
  std::vector<EncodedImage> encoded(starting.size());
  std::vector<Status> failed(starting.size());
  // One guarded backend batch call (`call` names it) of n images into out,
  // which must then hold one result per image.
  auto encode_batch = [&](const char* call, size_t n, auto& out, auto&& run) {
    return guarded("encoding " + std::to_string(n) + " images", [&] {
      out = run();
      if (out.size() != n)
        return Status(StatusCode::kInternal, std::string("backend ") + backend->name() + " " + call + ": expected " +
                      std::to_string(n) + " results but got " + std::to_string(out.size()));
      return Status::Ok();
    });
  };
  if (!rgb.empty()) {
    std::vector<Result<EncodedImage>> out;
    const Status st = encode_batch("encode_rgb_batch", rgb.size(), out, [&] { return backend->encode_rgb_batch(rgb); });
    for (size_t j = 0; j < rgb_at.size(); ++j) {
      const size_t i = rgb_at[j];
      if (!st.ok() || !out[j].ok()) {
        failed[i] = st.ok() ? out[j].status() : st;
        continue;
      }
      encoded[i] = std::move(out[j]).value();
    }
  }
  if (!pre.empty()) {
    std::vector<Result<std::unique_ptr<ImageEmbeddings>>> out;
    const auto t0 = Clock::now();
    const Status st = encode_batch("encode_image_batch", pre.size(), out, [&] { return backend->encode_image_batch(pre); });
    const double ms = ms_since(t0);
    for (size_t j = 0; j < pre_at.size(); ++j) {
      const size_t i = pre_at[j];
      if (!st.ok() || !out[j].ok()) {
        failed[i] = st.ok() ? out[j].status() : st;
        continue;
      }
      encoded[i] = EncodedImage{std::move(out[j]).value(), pre[j]->grid_h, pre[j]->grid_w, 0.0, ms};
    }
  }
  std::vector<std::unique_ptr<Sequence>> started;
  started.swap(starting);
  starting_patches = 0;
  starting_images = 0;
  for (size_t i = 0; i < started.size(); ++i) {
    Sequence& s = *started[i];
    if (s.awaiting_vision) {
      s.awaiting_vision = false;
      bool finished = false;
      Status st = failed[i];
      if (st.ok())
        st = guarded("starting request " + std::to_string(s.id), [&] { return finish_start(s, &encoded[i], ev, &finished); });
      if (!st.ok()) {
        finish(s, FinishReason::kError, st, ev);
        continue;
      }
      if (finished) continue;
    }
    active.push_back(std::move(started[i]));
  }
}

// KV a request reserves when it starts: all it may need, or (growing) what it
// holds and the row of its next step.
int Engine::Impl::reserve_now(const Sequence& s) const {
  if (!growing || s.score) return tokens_needed(s);
  return std::min(tokens_needed(s), int(s.request.prompt_ids.size() + s.output.size()) + 1);
}

// A preempted sequence back in a slot: it prefills its prompt and all its
// output but the last token (the next decode row), in chunks like a prompt,
// and decodes on with its sampler, grammar and forced tokens as they were.
Status Engine::Impl::resume(Sequence& s, MropePositions prompt, std::unique_ptr<ImageEmbeddings> embeddings) {
  const GenerationRequest& r = s.request;
  const int extra = int(s.output.size()) - 1;
  s.resume_ids = r.prompt_ids;
  s.resume_ids.insert(s.resume_ids.end(), s.output.begin(), s.output.end() - 1);
  MropePositions all;
  all.n = prompt.n + extra;
  all.ids.resize(size_t(3) * size_t(all.n));
  for (int axis = 0; axis < 3; ++axis) {
    std::copy_n(prompt.ids.begin() + axis * prompt.n, prompt.n, all.ids.begin() + axis * all.n);
    for (int i = 0; i < extra; ++i) all.ids[size_t(axis * all.n + prompt.n + i)] = prompt.next_position + i;
  }
  all.next_position = prompt.next_position + extra;
  s.positions = std::move(all);
  s.embeddings = std::move(embeddings);
  s.prefilled = s.cached_tokens;
  s.prefilling = true;
  return Status::Ok();
}

// Before a decode step (growing slots): grows active[index]'s slot to hold
// its rows, preempting the newest other running sequences, or itself, when
// the budget cannot give the room.
Status Engine::Impl::make_room(size_t index) {
  Sequence& s = *active[index];
  const int need = backend->slot_length(s.slot) + rows_of(s);
  if (need <= s.capacity) return Status::Ok();
  const int target = std::max(need, std::min(tokens_needed(s), need + kGrowthTokens));
  for (;;) {
    const Status grown = backend->grow_slot(s.slot, target);
    if (grown.ok()) {
      s.capacity = target;
      return Status::Ok();
    }
    if (grown.code() != StatusCode::kOutOfMemory) return grown;
    // The newest running sequence after this one, else this one.
    size_t victim = index;
    for (size_t j = active.size(); j-- > index + 1;)
      if (active[j] && !active[j]->prefilling) {
        victim = j;
        break;
      }
    Sequence& v = *active[victim];
    backend->release(v.slot);
    v.slot = -1;
    v.capacity = 0;
    v.cached_tokens = 0;
    v.resumed = true;
    ++v.preemptions;
    preempted.push_back(std::move(active[victim]));
    if (victim == index) return Status::Ok();
  }
}

// The end of the prefill chunk that starts at s.prefilled. The boundaries are
// the prompt's own, never the load's, so a request gives the same tokens alone
// or beside others: every prefill_chunk_tokens tokens, and the end of the
// image prefix (cache or none, so the tokens do not depend on the cache).
int Engine::Impl::chunk_end(const Sequence& s) const {
  const int limit = s.prefix_tokens > 0 && s.prefilled < s.prefix_tokens ? s.prefix_tokens : s.positions.n;
  return chunk_tokens > 0 ? std::min(limit, s.prefilled + chunk_tokens) : limit;
}

// The next prefill chunk of s: its tokens [from, to), with their positions
// and where its image's embeddings stand.
Engine::Impl::Chunk Engine::Impl::next_chunk(Sequence& s) const {
  Chunk c;
  c.s = &s;
  c.from = s.prefilled;
  c.to = chunk_end(s);
  c.positions = position_range(s.positions, c.from, c.to);
  const std::vector<int32_t>& ids = chunk_ids(s);
  c.images_before = int(std::count(ids.begin(), ids.begin() + c.from, config.image_token_id));
  c.images_in = int(std::count(ids.begin() + c.from, ids.begin() + c.to, config.image_token_id));
  // The prompt's last chunk chooses the first token; a resumed sequence's
  // KV is whole again at its end and it decodes from its last token.
  c.last = c.to == s.positions.n && !s.resumed;
  return c;
}

PrefillInput Engine::Impl::chunk_input(const Chunk& c) const {
  const Sequence& s = *c.s;
  PrefillInput in;
  in.slot = s.slot;
  in.token_ids = chunk_ids(s).data() + c.from;
  in.n = c.to - c.from;
  in.positions = c.positions.data();
  in.image_token_id = config.image_token_id;
  if (c.images_in > 0) {
    in.image = s.embeddings.get();
    in.image_part = true;
    in.image_offset = c.images_before;
  }
  in.logit_rows = c.last ? 1 : 0;  // nobody reads an earlier chunk's logits: no LM head, no copy to the host
  return in;
}

// What a prefilled chunk leaves: the one that completes the image prefix
// keeps it in the backend's prefix cache; the last one takes its first token
// (first; then s decodes from the next step).
Status Engine::Impl::after_chunk(const Chunk& c, const SampledToken* first, double ms, EngineEvents& ev) {
  Sequence& s = *c.s;
  s.timings.prefill_ms += ms;
  s.prefilled = c.to;
  if (c.last) {
    s.prefilling = false;
    s.embeddings.reset();
    return accept_sampled(s, *first, ev);
  }
  if (c.to == s.prefix_tokens && s.cached_tokens == 0 && backend->caches_prefixes()) {
    auto kept = backend->cache_prefix(s.slot, s.prefix_key, s.prefix_tokens);
    if (!kept.ok()) return kept.status();
  }
  if (s.embeddings && c.images_before + c.images_in == s.embeddings->tokens()) s.embeddings.reset();
  if (c.to == s.positions.n) {  // a resumed sequence's KV is whole again: it decodes from its last token
    s.prefilling = false;
    s.resumed = false;
    s.resume_ids.clear();
  }
  return Status::Ok();
}

// Prefills chunks (one backend call; several only on a backend that batches
// prefills, one chunk per slot), then takes each one's results in order.
// Riders (running sequences, none of them a chunk's) decode their next token
// in the same call: a one-row input each, after the chunks, its token taken
// as a decode step's (take_rows).
Status Engine::Impl::prefill_chunks(const std::vector<Chunk>& chunks, EngineEvents& ev,
                                    const std::vector<Sequence*>& riders) {
  auto t0 = Clock::now();
  std::vector<PrefillInput> inputs;
  for (const Chunk& c : chunks) inputs.push_back(chunk_input(c));
  const bool on_device = backend->samples_on_device();
  std::vector<RowSampling> sampling;
  // What choosing a token consumes (a draw, a pending mask), as it was: a
  // failed call, retried alone, leaves them unchanged.
  std::vector<std::pair<Pcg32, const TokenMask*>> before;
  std::vector<Sequence*> choosers;  // whose token each sampling row chooses: last chunks', then riders'
  for (const Chunk& c : chunks)
    if (c.last) choosers.push_back(c.s);
  const size_t chunk_rows = choosers.size();
  choosers.insert(choosers.end(), riders.begin(), riders.end());
  for (Sequence* s : choosers) {
    before.emplace_back(s->rng, s->next_mask);
    sampling.push_back(row_sampling(*s, sampled_mask(*s), on_device));
  }
  std::vector<std::array<int32_t, 3>> rider_positions(riders.size());  // a text row: t = h = w
  for (size_t k = 0; k < riders.size(); ++k) {
    const Sequence& r = *riders[k];
    rider_positions[k].fill(r.next_position);
    PrefillInput in;
    in.slot = r.slot;
    in.token_ids = &r.last_token;
    in.n = 1;
    in.positions = rider_positions[k].data();
    in.image_token_id = -1;  // a decoded token is text, whatever its id (as a decode step takes it)
    in.logit_rows = 1;
    inputs.push_back(in);
  }
  auto restore = [&] {
    for (size_t j = 0; j < choosers.size(); ++j) std::tie(choosers[j]->rng, choosers[j]->next_mask) = before[j];
  };
  const int vocab = backend->vocab_size();
  std::vector<SampledToken> first;
  Status call;
  if (on_device && !sampling.empty()) {
    call = inputs.size() == 1 ? backend->prefill_sampled(inputs[0], sampling[0], &first.emplace_back())
                              : backend->prefill_batch_sampled(inputs, sampling, &first);
  } else {
    logits.resize(sampling.size() * size_t(vocab));
    float* out = sampling.empty() ? nullptr : logits.data();
    call = inputs.size() == 1 ? backend->prefill(inputs[0], out) : backend->prefill_batch(inputs, out);
  }
  if (!call.ok()) {
    restore();
    return call;
  }
  // From here the slots hold the chunks (and the riders' rows): an error
  // ends their requests (a retry would prefill them twice).
  const Status sampled = guarded("sampling the first tokens", [&] {
    if (!on_device || sampling.empty()) {
      for (size_t j = 0; j < chunk_rows; ++j) {
        Sequence& s = *choosers[j];
        first.push_back(sample_token(&logits[j * size_t(vocab)], vocab, sampling[j].params, s.history, s.rng, sampling[j].mask));
      }
    }
    const size_t expected = on_device && !sampling.empty() ? sampling.size() : chunk_rows;
    if (first.size() != expected)
      return Status(StatusCode::kInternal, "prefill: expected " + std::to_string(expected) + " first tokens but got " +
                    std::to_string(first.size()));
    return Status::Ok();
  });
  if (!sampled.ok()) {
    for (const Chunk& c : chunks) finish(*c.s, FinishReason::kError, sampled, ev);
    for (Sequence* r : riders) finish(*r, FinishReason::kError, sampled, ev);
    return Status::Ok();
  }
  const double ms = ms_since(t0);  // each chunk's request waited for the whole call
  for (size_t i = 0, j = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    const std::string what = "prefilling request " + std::to_string(c.s->id);
    const Status st = guarded(what, [&] { return after_chunk(c, c.last ? &first[j] : nullptr, ms, ev); });
    j += c.last;
    if (!st.ok()) finish(*c.s, FinishReason::kError, st, ev);
  }
  // The riders' rows, as a decode step takes them (sampling and logits rows
  // chunk_rows + k; a host sampler draws here).
  for (size_t k = 0; k < riders.size(); ++k) {
    Sequence& s = *riders[k];
    s.timings.decode_ms += ms;
    ++s.decode_steps;
    ++s.prefill_rides;
    const size_t row = chunk_rows + k;
    const Status st = guarded("decoding request " + std::to_string(s.id), [&] {
      return take_rows(s, row, row + 1, sampling, on_device ? first.data() : nullptr, ev);
    });
    if (!st.ok()) finish(s, FinishReason::kError, st, ev);
  }
  return Status::Ok();
}

// The running sequences that decode inside this prefill pass, oldest first,
// at most limit: not prefilling, with a slot, no jump-forward tokens pending
// (their rows score those tokens; a decode step takes them).
std::vector<Sequence*> Engine::Impl::prefill_riders(int limit) const {
  std::vector<Sequence*> riders;
  for (const auto& sp : active) {
    if (int(riders.size()) >= limit) break;
    if (sp && !sp->prefilling && sp->slot >= 0 && sp->forced.empty()) riders.push_back(sp.get());
  }
  return riders;
}

// The prefill chunks of one step: while any sequence decodes, chunks up to
// prefill_chunk_tokens in all (oldest sequence first), so a long prompt never
// holds the others' next token back for more than one chunk; with nothing
// decoding, every prefill runs to its end. A backend that batches prefills
// takes them in rounds of one chunk per sequence, each round one call; if a
// round fails, its chunks run alone, so a failure is its own request's.
void Engine::Impl::prefill_step(EngineEvents& ev) {
  const bool decoding = std::any_of(active.begin(), active.end(), [](const auto& s) { return !s->prefilling; });
  int budget = chunk_tokens > 0 ? chunk_tokens : 1 << 30;
  // A sequence whose prefill ends here decodes in the next step: its row is
  // owed already (one per prefilling sequence); its forced tokens take spare rows.
  spare_rows = std::max(0, step_rows - rows_taken() - (owed_rows() - int(active.size())));
  // One chunk alone; returns its tokens.
  auto alone = [&](const Chunk& c) {
    const Status st = guarded("prefilling request " + std::to_string(c.s->id), [&] { return prefill_chunks({c}, ev); });
    if (!st.ok()) finish(*c.s, FinishReason::kError, st, ev);
    return c.to - c.from;
  };
  if (!backend->batches_prefills()) {
    for (auto& sp : active) {
      while (sp->prefilling && sp->slot >= 0 && (!decoding || budget > 0)) budget -= alone(next_chunk(*sp));
      if (decoding && budget <= 0) break;
    }
  } else {
    const bool rides = decoding && prefill_decode_rows > 0 && !growing;
    while (!decoding || budget > 0) {
      // The running sequences decode in the pass (their rows in the budget).
      const std::vector<Sequence*> riders = rides ? prefill_riders(std::min(prefill_decode_rows, budget)) : std::vector<Sequence*>{};
      budget -= int(riders.size());
      std::vector<Chunk> round;
      for (auto& sp : active) {
        if (!sp->prefilling || sp->slot < 0) continue;
        if (decoding && budget <= 0) break;
        round.push_back(next_chunk(*sp));
        budget -= round.back().to - round.back().from;
      }
      if (round.empty()) break;
      const Status st = guarded("a batch of " + std::to_string(round.size()) + " prefills",
                                [&] { return prefill_chunks(round, ev, riders); });
      if (st.ok()) continue;
      if (round.size() == 1) {
        finish(*round[0].s, FinishReason::kError, st, ev);
        continue;
      }
      for (const Chunk& c : round)  // counted in the budget already; a failed call changed nothing
        if (c.s->slot >= 0) alone(c);
    }
  }
  active.erase(std::remove_if(active.begin(), active.end(), [](auto& s) { return s->slot < 0; }), active.end());
}

void Engine::Impl::decode_step(EngineEvents& ev) {
  if (active.empty()) return;
  if (growing) {
    // Room for every running sequence's rows, oldest first (preempting the newest).
    for (size_t i = 0; i < active.size(); ++i) {
      if (!active[i] || active[i]->prefilling) continue;
      const Status room = make_room(i);
      if (!room.ok() && active[i]) finish(*active[i], FinishReason::kError, room, ev);
    }
    active.erase(std::remove_if(active.begin(), active.end(), [](auto& s) { return !s || s->slot < 0; }), active.end());
    if (active.empty()) return;
  }
  auto t0 = Clock::now();
  const int vocab = backend->vocab_size();
  const bool on_device = backend->samples_on_device();
  // Each sequence's rows: its last sampled token, then the forced tokens it
  // feeds. Row j scores forced[j]; the row after them samples the next token.
  std::vector<DecodeRow> rows;
  std::vector<RowSampling> sampling;
  std::deque<TokenMask> forced_masks;  // stable addresses for sampling[].mask
  std::vector<size_t> first_row;
  for (auto& sp : active) {
    Sequence& s = *sp;
    first_row.push_back(rows.size());
    const size_t n = s.prefilling ? 0 : size_t(rows_of(s));  // a prefilling sequence has no row yet
    int32_t position = s.next_position;
    for (size_t j = 0; j < n; ++j) {
      rows.push_back({s.slot, j == 0 ? s.last_token : s.forced[j - 1], position});
      position = next_decode_position(position);
      const TokenMask* mask = nullptr;
      if (j < s.forced.size()) {
        forced_masks.push_back(single_id_mask(s.forced[j]));
        mask = &forced_masks.back();
      } else {
        mask = sampled_mask(s);
      }
      sampling.push_back(row_sampling(s, mask, on_device));
    }
  }
  first_row.push_back(rows.size());
  if (rows.empty()) return;  // everything is still prefilling
  std::vector<SampledToken> picked;
  Status st;
  if (on_device) {
    st = backend->decode_sampled(rows, sampling, &picked);
    if (st.ok() && picked.size() != rows.size())
      st = Status(StatusCode::kInternal, std::string("backend ") + backend->name() + " decode_sampled: expected " +
                  std::to_string(rows.size()) + " tokens but got " + std::to_string(picked.size()));
  } else {
    logits.resize(rows.size() * size_t(vocab));
    st = backend->decode(rows, logits.data());
  }
  const double ms = ms_since(t0);
  // The next step's spare rows, taken by forced tokens as the rows are read.
  spare_rows = std::max(0, step_rows - owed_rows());
  std::vector<std::unique_ptr<Sequence>> still;
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence& s = *active[i];
    if (s.prefilling) {
      still.push_back(std::move(active[i]));
      continue;
    }
    s.timings.decode_ms += ms;
    ++s.decode_steps;
    Status taken = st;
    if (taken.ok())
      taken = take_rows(s, first_row[i], first_row[i + 1], sampling, on_device ? picked.data() : nullptr, ev);
    if (!taken.ok()) finish(s, FinishReason::kError, taken, ev);
    if (s.slot >= 0) still.push_back(std::move(active[i]));
  }
  active.swap(still);
}

void Engine::Impl::deliver(EngineEvents ev) {
  if (ev.tokens.empty() && ev.finished.empty()) return;
  std::shared_ptr<EventSink> target;
  EngineEvents for_sink;
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& f : ev.finished) live.erase(f.request);
    for (auto& t : ev.tokens) {
      auto it = collectors.find(t.request);
      if (it == collectors.end()) { for_sink.tokens.push_back(t); continue; }
      std::lock_guard<std::mutex> cl(it->second->mutex);
      it->second->result.tokens.push_back(t.token);
      it->second->result.logprobs.push_back(t.logprob);
      it->second->result.model_logprobs.push_back(t.model_logprob);
    }
    for (auto& f : ev.finished) {
      auto it = collectors.find(f.request);
      if (it == collectors.end()) { for_sink.finished.push_back(f); continue; }
      {
        std::lock_guard<std::mutex> cl(it->second->mutex);
        it->second->result.finish = f;
        it->second->done = true;
      }
      it->second->cv.notify_all();
      collectors.erase(it);
    }
    target = sink;
  }
  if (target && (!for_sink.tokens.empty() || !for_sink.finished.empty())) target->on_events(std::move(for_sink));
}

void Engine::Impl::run() {
  for (;;) {
    std::vector<std::unique_ptr<Sequence>> admitted, dropped;
    std::vector<std::unique_ptr<Sequence>> overdue;  // queued past their deadline
    std::set<RequestId> to_cancel;
    bool stopping = false;
    Clock::time_point now;
    {
      std::unique_lock<std::mutex> lock(mutex);
      // Never asleep while anything is queued or running, so a queued
      // request's deadline is seen within one step of passing.
      wake.wait(lock, [&] { return stop || !pending.empty() || !active.empty(); });
      stopping = stop;
      to_cancel.swap(cancelled);
      now = Clock::now();
      // Cancelled requests still waiting in the queue leave it now, whatever
      // the capacity; so do those whose deadline passed.
      for (auto it = pending.begin(); it != pending.end();) {
        if (to_cancel.count((*it)->id)) {
          admitted.push_back(std::move(*it));
          it = pending.erase(it);
        } else if (!stopping && expired(**it, now)) {
          overdue.push_back(std::move(*it));
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
      while (!pending.empty() && (stopping || int(active.size() + admitted.size()) < max_active)) {
        admitted.push_back(std::move(pending.front()));
        pending.pop_front();
      }
    }
    EngineEvents ev;
    auto is_cancelled = [&](const Sequence& s) { return stopping || to_cancel.count(s.id) > 0; };
    // 1. Cancellations (running and newly taken), then deadlines (running and queued).
    for (auto& s : active)
      if (is_cancelled(*s)) finish(*s, FinishReason::kCancelled, Status::Ok(), ev);
      else if (expired(*s, now)) finish(*s, FinishReason::kDeadline, deadline_status(*s, true), ev);
    for (auto& s : overdue) finish(*s, FinishReason::kDeadline, deadline_status(*s, false), ev);
    active.erase(std::remove_if(active.begin(), active.end(), [&](auto& s) { return s->slot < 0; }),
                 active.end());
    // 2. Admissions, in queue order, under the KV budget: a request that fits
    // only once others finish goes back to the head of the queue with the
    // ones behind it (FIFO, nothing overtakes it); one that can never fit,
    // or fits later while nothing runs that could free memory, is rejected.
    const bool changed = !admitted.empty() || !ev.finished.empty();
    for (size_t ai = 0; ai < admitted.size(); ++ai) {
      auto& s = admitted[ai];
      if (!s) continue;
      if (is_cancelled(*s)) {
        finish(*s, FinishReason::kCancelled, Status::Ok(), ev);
        continue;
      }
      if (expired(*s, Clock::now())) {
        finish(*s, FinishReason::kDeadline, deadline_status(*s, false), ev);
        continue;
      }
      find_image_prefix(*s, config, backend->caches_prefixes());
      auto check = [&] {
        // Its row in the next step: a request with no row left beside the
        // running ones waits for the next step (its forced tokens come with
        // its first token, at the end of its prefill).
        const bool no_row = rows_taken() + 1 > step_rows;
        // Growing slots: what it holds now must fit now; all it may need, ever.
        const AdmissionCheck whole = growing ? backend->check_admission(tokens_needed(*s)) : AdmissionCheck{};
        const int now_tokens = reserve_now(*s);
        return whole.verdict == Admission::kNever ? whole
               : no_row ? AdmissionCheck{Admission::kLater, "no decode row"}
               : s->prefix_tokens > 0 && backend->caches_prefixes()
                   ? backend->check_admission_with_prefix(now_tokens, s->prefix_key)
                   : backend->check_admission(now_tokens);
      };
      AdmissionCheck fit = check();
      // Those started before it in this step hold their slots until the
      // vision batch completes their starts (a scoring one then releases
      // its slot at once): complete them, then ask again.
      if (fit.verdict != Admission::kNow && !starting.empty()) {
        flush_starts(ev);
        fit = check();
      }
      if (fit.verdict == Admission::kLater && !active.empty()) {
        std::lock_guard<std::mutex> lock(mutex);
        for (size_t j = admitted.size(); j-- > ai;)
          if (admitted[j]) pending.push_front(std::move(admitted[j]));
        break;
      }
      if (fit.verdict != Admission::kNow) {
        finish(*s, FinishReason::kError, Status(StatusCode::kOutOfMemory, fit.detail), ev);
        continue;
      }
      admit(std::move(s), ev);
    }
    flush_starts(ev);  // this step's vision batch; every started request is active after it
    // 3. One decode step for everything running, then the prefill chunks.
    if (!stopping) {
      try {
        decode_step(ev);
      } catch (const std::exception& e) {
        Status st(StatusCode::kInternal, std::string("decode step failed: ") + e.what());
        for (auto& s : active) finish(*s, FinishReason::kError, st, ev);
        active.clear();
      }
      prefill_step(ev);
    }
    // Preempted requests go back to the head of the queue, oldest first.
    if (!preempted.empty()) {
      std::lock_guard<std::mutex> lock(mutex);
      std::sort(preempted.begin(), preempted.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
      for (size_t j = preempted.size(); j-- > 0;) pending.push_front(std::move(preempted[j]));
      preempted.clear();
    }
    // 4. Events.
    if (changed || !ev.finished.empty()) refresh_info();
    deliver(std::move(ev));
    if (stopping) {
      std::lock_guard<std::mutex> lock(mutex);
      if (pending.empty() && active.empty()) return;
    }
  }
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<Engine>> Engine::create_with_backend(const ModelConfig& config,
                                                            std::unique_ptr<Backend> backend,
                                                            const EngineOptions& options,
                                                            std::shared_ptr<void> keepalive) {
  if (!backend) return Status(StatusCode::kInvalidArgument, "expected a backend but got none");
  if (options.max_active_requests < 1)
    return Status(StatusCode::kInvalidArgument, "expected max_active_requests >= 1 but got " +
                  std::to_string(options.max_active_requests));
  if (options.prefill_decode_rows < 0)
    return Status(StatusCode::kInvalidArgument,
                  "expected prefill_decode_rows >= 0 (0: off) but got " + std::to_string(options.prefill_decode_rows));
  if (options.prefill_chunk_tokens < 0)
    return Status(StatusCode::kInvalidArgument, "expected prefill_chunk_tokens >= 0 (0: whole prompts) but got " +
                  std::to_string(options.prefill_chunk_tokens));
  if (options.vision_batch_patches < 0)
    return Status(StatusCode::kInvalidArgument, "expected vision_batch_patches >= 0 (0: one image per pass) but got " +
                  std::to_string(options.vision_batch_patches));
  if (options.max_queued_requests < 0)
    return Status(StatusCode::kInvalidArgument, "expected max_queued_requests >= 0 (0: unbounded) but got " +
                  std::to_string(options.max_queued_requests));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->backend = std::move(backend);
  impl->keepalive = std::move(keepalive);
  impl->max_active = options.max_active_requests;
  impl->max_queued = options.max_queued_requests;
  impl->step_rows = std::max(1, impl->backend->max_step_rows());
  impl->chunk_tokens = options.prefill_chunk_tokens;
  impl->prefill_decode_rows = options.prefill_decode_rows;
  impl->vision_batch_patches = options.vision_batch_patches;
  impl->batch_invariant = options.batch_invariant;
  impl->growing = !options.reserve_generation && impl->backend->grows_slots();
  impl->sink = options.sink;
  if (options.debug_tap) impl->backend->set_tap(options.debug_tap);
  impl->info_snapshot = impl->backend->info();
  Impl* raw = impl.get();
  try {
    impl->thread = std::thread([raw] { raw->run(); });
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, std::string("could not start the scheduler thread: ") + e.what());
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

static Status validate(const GenerationRequest& r, const ModelConfig& c, int vocab) {
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, what); };
  if (r.prompt_ids.empty()) return bad("expected a non-empty prompt_ids but got an empty one");
  for (size_t i = 0; i < r.prompt_ids.size(); ++i)
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= vocab)
      return bad("expected prompt_ids[" + std::to_string(i) + "] in [0, " + std::to_string(vocab) + ") but got " +
                 std::to_string(r.prompt_ids[i]));
  if (r.image && r.raw_image) return bad("expected one of image and raw_image but got both");
  if (r.raw_image && (r.raw_image->width <= 0 || r.raw_image->height <= 0 ||
                      r.raw_image->rgb.size() != size_t(r.raw_image->width) * r.raw_image->height * 3))
    return bad("expected raw_image.rgb of width*height*3 bytes but got " + std::to_string(r.raw_image->rgb.size()) +
               " for " + std::to_string(r.raw_image->width) + "x" + std::to_string(r.raw_image->height));
  if (r.deadline_ms < 0)
    return bad("expected deadline_ms >= 0 (0: none) but got " + std::to_string(r.deadline_ms));
  if (r.max_new_tokens < 1) return bad("expected max_new_tokens >= 1 but got " + std::to_string(r.max_new_tokens));
  const SamplingParams& p = r.sampling;
  if (!(p.temperature >= 0)) return bad("expected temperature >= 0 but got " + std::to_string(p.temperature));
  if (p.top_k < 0) return bad("expected top_k >= 0 but got " + std::to_string(p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad("expected top_p in (0, 1] but got " + std::to_string(p.top_p));
  if (!(p.repetition_penalty > 0))
    return bad("expected repetition_penalty > 0 but got " + std::to_string(p.repetition_penalty));
  if (r.grammar) REX_RETURN_IF_ERROR(validate_grammar(*r.grammar, vocab));
  (void)c;
  return Status::Ok();
}

RequestId Engine::Impl::enqueue(std::unique_ptr<Sequence> s, std::shared_ptr<Collector> collector, Status* refused) {
  RequestId id = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (stop) {
      *refused = Status(StatusCode::kCancelled, "the engine is shutting down");
      return 0;
    }
    if (max_queued > 0 && int(pending.size()) >= max_queued) {
      *refused = Status(StatusCode::kResourceExhausted,
                        "expected at most " + std::to_string(max_queued) + " queued requests but got " +
                            std::to_string(pending.size() + 1) + " (max_queued_requests)");
      return 0;
    }
    if (s->request.deadline_ms > 0)
      s->deadline = Clock::now() + std::chrono::milliseconds(std::min<int64_t>(s->request.deadline_ms, int64_t(1) << 40));
    id = next_id++;
    s->id = id;
    live.insert(id);
    if (collector) collectors[id] = std::move(collector);
    pending.push_back(std::move(s));
  }
  wake.notify_all();
  return id;
}

Result<RequestId> Engine::submit(GenerationRequest request) {
  REX_RETURN_IF_ERROR(validate(request, impl_->config, impl_->backend->vocab_size()));
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  Status refused;
  RequestId id = impl_->enqueue(std::move(s), nullptr, &refused);
  if (!refused.ok()) return refused;
  return id;
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    if (!impl_->live.count(id)) return;
    impl_->cancelled.insert(id);
  }
  impl_->wake.notify_all();
}

Result<GenerationResult> Engine::generate_blocking(GenerationRequest request) {
  REX_RETURN_IF_ERROR(validate(request, impl_->config, impl_->backend->vocab_size()));
  auto collector = std::make_shared<Collector>();
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  Status refused;
  impl_->enqueue(std::move(s), collector, &refused);
  if (!refused.ok()) return refused;
  std::unique_lock<std::mutex> lock(collector->mutex);
  collector->cv.wait(lock, [&] { return collector->done; });
  return std::move(collector->result);
}

Result<ScoreResult> Engine::score_blocking(ScoreRequest request) {
  const int vocab = impl_->backend->vocab_size();
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, what); };
  if (request.top_k < 0 || request.top_k > vocab)
    return bad("expected top_k in [0, " + std::to_string(vocab) + "] but got " + std::to_string(request.top_k));
  for (size_t i = 0; i < request.continuation_ids.size(); ++i)
    if (request.continuation_ids[i] < 0 || request.continuation_ids[i] >= vocab)
      return bad("expected continuation_ids[" + std::to_string(i) + "] in [0, " + std::to_string(vocab) +
                 ") but got " + std::to_string(request.continuation_ids[i]));
  GenerationRequest g;
  g.prompt_ids = std::move(request.prompt_ids);
  g.image = std::move(request.image);
  g.raw_image = std::move(request.raw_image);
  g.max_new_tokens = 1;
  REX_RETURN_IF_ERROR(validate(g, impl_->config, vocab));
  const int continuation = int(request.continuation_ids.size());
  g.prompt_ids.insert(g.prompt_ids.end(), request.continuation_ids.begin(), request.continuation_ids.end());
  auto collector = std::make_shared<Collector>();
  auto s = std::make_unique<Sequence>();
  s->request = std::move(g);
  s->score = ScoreJob{continuation, request.top_k, request.full_logits, collector};
  Status refused;
  impl_->enqueue(std::move(s), collector, &refused);
  if (!refused.ok()) return refused;
  std::unique_lock<std::mutex> lock(collector->mutex);
  collector->cv.wait(lock, [&] { return collector->done; });
  const FinishEvent& f = collector->result.finish;
  if (f.reason == FinishReason::kError || f.reason == FinishReason::kDeadline) return f.status;
  if (f.reason == FinishReason::kCancelled) return Status(StatusCode::kCancelled, "the scoring request was cancelled");
  return std::move(collector->score);
}

BackendInfo Engine::backend_info() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->info_snapshot;
}

void Engine::set_event_sink(std::shared_ptr<EventSink> sink) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->sink = std::move(sink);
}

const ModelConfig& Engine::config() const { return impl_->config; }

}  // namespace rex
