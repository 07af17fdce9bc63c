// The text decoder on the GPU. One layer loop serves prefill (any number of
// rows of one sequence, in chunks) and batched decode (one row per
// sequence); they differ only in the attention kernel. Per layer:
// fused QKV GEMM -> M-RoPE fused with the KV-cache write -> attention ->
// o GEMM -> add+norm -> fused gate/up GEMM -> SwiGLU -> down GEMM -> add+norm
// (into the next layer's input norm, or the final norm). The residual stream
// is fp32. A decode step is captured once per batch-size bucket as a CUDA
// graph over fixed buffers; each step then uploads its small inputs (ids,
// positions, cache rows, lengths, block tables) in one copy and replays.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/attention_decode.cuh"
#include "cuda/attention_prefill.cuh"
#include "cuda/bf16.cuh"
#include "cuda/cuda_weights.h"
#include "cuda/decode_sampler.h"
#include "cuda/device_buffer.h"
#include "cuda/gemm.cuh"
#include "cuda/rope.cuh"
#include "cuda/step_profile.h"
#include "engine/backend.h"
#include "model/config.h"

namespace rex::cuda {

// The paged KV cache: per layer a K and a V plane of `tokens` rows.
struct KvArena {
  bf16* base = nullptr;
  int64_t tokens = 0;       // physical rows per plane (all blocks, the spare one included)
  int block_size = 64;
  int kv_dim = 0;           // kv_heads * head_dim
  KvPlane layer(int l) const {
    const int64_t plane = tokens * kv_dim;
    return {base + plane * (2 * l), base + plane * (2 * l + 1)};
  }
};

// One row of a decode batch (several rows of one sequence append several
// tokens: each has its own length).
struct DecodeSequence {
  int32_t token = 0;
  int32_t position = 0;
  int length = 0;                         // tokens in its cache before this row
  const std::vector<int32_t>* blocks = nullptr;
  int seen_mask = -1;                     // its slot's repetition-penalty bitmask (sampled steps)
};

// What a decode step produces.
enum class StepOutput {
  kLogits,            // fp32 logits of every row, copied to the host
  kSampledFull,       // sampled on the device from the full LM head
  kSampledRestricted, // sampled on the device from the allowed rows alone
};

class TextRunner {
 public:
  // spare_block: a block no sequence owns; padded rows of a graph bucket write there.
  Status init(const TextConfig& config, const DeviceWeights* weights, GemmRunner* gemm, cudaStream_t stream,
              KvArena arena, int spare_block, int max_batch, int max_blocks_per_sequence, int seen_masks);

  // The most rows one decode step takes (graph buckets go up to it).
  int max_rows() const { return max_batch_; }

  // One sequence's tokens of a prefill: n tokens at cache positions
  // past..past+n-1 of the sequence holding `blocks`. positions: host,
  // axis-major [3][n]. image: device embeddings (may be null); image_row[i]
  // >= 0 picks the image row for token i. seen_mask >= 0: the ids are marked
  // in that repetition-penalty bitmask. Its last logit_rows rows get logits.
  struct PrefillPart {
    const int32_t* ids = nullptr;
    int n = 0;
    const int32_t* positions = nullptr;
    int past = 0;
    const std::vector<int32_t>* blocks = nullptr;
    const bf16* image = nullptr;
    std::vector<int32_t> image_row;
    int logit_rows = 0;
    int seen_mask = -1;
  };
  // Appends every part's tokens to its sequence (no two parts of one
  // sequence), their rows concatenated and run in passes of up to
  // kPrefillChunk rows, so the GEMMs see several sequences' rows at once.
  // Writes the parts' logit rows (fp32), part after part, to logits_host, or
  // leaves them on the device when it is null (sample_prefill reads them).
  Status prefill(const std::vector<PrefillPart>& parts, float* logits_host, const TensorTap* tap);

  // One token for each sequence; logits_host: [batch, vocab].
  Status decode(const std::vector<DecodeSequence>& batch, float* logits_host, bool use_graphs, const TensorTap* tap);

  // One token per row, then a token chosen on the device for each row by
  // sampling[i]; only the SampledTokens come back.
  Status decode_sampled(const std::vector<DecodeSequence>& batch, const std::vector<RowSampling>& sampling,
                        bool use_graphs, std::vector<SampledToken>* out);

  // After prefill(): for each of its parts with one logit row, in order, the
  // token after its last row, sampled on the device from its logits by
  // sampling[j] (the slot's seen bitmask seen_masks[j] already marked).
  Status sample_prefill(const std::vector<RowSampling>& sampling, const std::vector<int>& seen_masks,
                        std::vector<SampledToken>* out);
  // Marks n host ids in a seen bitmask (a slot that starts from a cached prefix).
  Status mark_seen(int seen_mask, const int32_t* ids, int n);

  // The repetition-penalty bitmasks (one per slot; the sampler's tables).
  DecodeSampler& sampler() { return sampler_; }

  // Decode-step projections through the GEMV (default) or cuBLASLt.
  void set_use_gemv(bool on) { use_gemv_ = on; }
  // Decode attention merges its splits inside its one launch, a cluster of
  // the splits' CTAs through distributed shared memory (DecodeMerge::kCluster,
  // the same bits), for steps whose attention grid (splits x kv heads x rows)
  // fits in max_ctas CTAs and whose splits fit one cluster. The backend gives
  // the SM count (one wave: session 10 on the H200, a batch-1 step 2.588 ->
  // 2.505 ms with the two below; at 256 CTAs, 8 rows of 16 splits, the
  // attention took 16.4 -> 19.2 us; NOTES.md 5.3); 0 turns it off
  // (REX_OMNI_DECODE_CLUSTER=0).
  void set_decode_cluster_ctas(int max_ctas) { decode_cluster_ctas_ = max_ctas; }
  // With the cluster merge: steps whose rows are distinct sequences run no
  // rotary launch; the attention rotates q and writes each row's new key and
  // value itself (DecodeRope, the same bits; REX_OMNI_DECODE_ROPE=0 turns it off).
  void set_decode_rope_in_attention(bool on) { decode_rope_in_attention_ = on; }
  // With the cluster merge: decode steps launch the attention with
  // programmatic dependent launch, its prologue overlapping the kernel
  // before (REX_OMNI_DECODE_PDL=0 turns it off).
  void set_decode_attention_overlap(bool on) { decode_attention_overlap_ = on; }
  // The most rows a step decodes on the GEMV; larger steps take cuBLASLt
  // (BackendOptions::batch_invariant keeps them all on the GEMV).
  void set_gemv_max_rows(int rows) { gemv_max_rows_ = rows; }
  // The decode attention's split counts on cuBLASLt steps, bucket (the
  // largest it covers) -> splits, in place of splits_for's; an A/B knob
  // (REX_OMNI_DECODE_SPLITS). Before init(): it sizes the workspace.
  void set_wide_step_splits(std::map<int, int> splits) { wide_step_splits_ = std::move(splits); }
  // Prefill passes whose attention tiles x q heads fall short of this many
  // CTAs split their keys (PrefillSplit); 0: never (REX_OMNI_PREFILL_SPLIT).
  void set_prefill_split_ctas(int ctas) { prefill_split_ctas_ = ctas; }
  // Profiles one decode step of 1, 8 and 64 rows each into this JSON file and
  // its siblings (step_profile.h); empty: off.
  void set_profile_path(std::string path) { profile_path_ = std::move(path); }
  // Profiles one prefill call into this JSON file: the second of at least
  // kProfilePrefillRows rows, and a shorter one continuing a sequence beside
  // it (".suffix"; step_profile.h); empty: off.
  void set_prefill_profile_path(std::string path) { prefill_profile_path_ = std::move(path); }
  static constexpr int kProfilePrefillRows = 512;

  size_t workspace_bytes() const;
  ~TextRunner();

 private:
  struct Buffers {
    DeviceBuffer<float> residual;
    DeviceBuffer<bf16> h, qkv, attn, o, gate_up, act, down;
    int rows = 0;
    Status ensure(const TextConfig& c, int rows);
    size_t bytes() const;
  };
  // Attention for layer l: reads q inside qkv (row stride qkv width), writes attn.
  using AttentionFn = std::function<Status(int layer, const bf16* qkv, bf16* out)>;
  // prefill() past its argument checks: the passes, each a layers() pass.
  Status prefill_passes(const std::vector<PrefillPart>& parts, int rows, int logit_rows, float* logits_host,
                        const TensorTap* tap);
  // rope_in_attention: no rotary launch; `attention` rotates q and writes the new keys (DecodeRope).
  Status layers(Buffers& b, int rows, const int32_t* positions_dev, const int32_t* dest_rows_dev,
                const AttentionFn& attention, const TensorTap* tap, bool rope_in_attention = false);
  // gemv_path: the projections on the row-invariant GEMV (else cuBLASLt), chosen per step by on_gemv().
  // rope_in_attention: the step's rows are distinct sequences and the attention does the rotary step.
  Status decode_body(int bucket, bool gemv_path, StepOutput output, const TensorTap* tap, bool rope_in_attention);
  Status decode_layers_gemv(int bucket, bool rope_in_attention);
  // The decode step's DecodeRope for layer li (its cache planes).
  DecodeRope step_rope(int layer) const;
  Status run_step(const std::vector<DecodeSequence>& batch, StepOutput output, bool use_graphs, const TensorTap* tap);
  Status profile_step(const std::vector<DecodeSequence>& batch, int bucket, bool gemv_path, StepOutput output,
                      bool rope_in_attention);
  int bucket_for(int batch) const;
  // The decode attention's split count for a step (cuda_text.cpp says why).
  int splits_for(int bucket, bool gemv_path) const;

  TextConfig config_;
  const DeviceWeights* w_ = nullptr;
  GemmRunner* gemm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  KvArena arena_;
  int spare_block_ = 0;
  int max_batch_ = 1;
  int max_blocks_ = 1;
  DeviceBuffer<float> inv_freq_;

  // Prefill (grows with the chunk size).
  Buffers pre_;
  DeviceBuffer<int32_t> pre_ids_, pre_positions_, pre_dest_, pre_image_row_, pre_blocks_;
  // A prefill pass's one-row parts at its end (decode rows riding the pass):
  // their block tables [rows, max_blocks_], then their lengths, for the decode kernel.
  DeviceBuffer<int32_t> pre_decode_;
  DeviceBuffer<float> pre_logits_;
  DeviceBuffer<bf16> pre_head_rows_;                   // a pass's LM head rows, gathered
  PrefillPlan pre_plan_;                               // a pass's varlen attention tiles

  // Decode (fixed at init: graphs point into these).
  Buffers dec_;
  DeviceBuffer<int32_t> step_;            // ids | positions (3 axes) | dest rows | lengths | seen masks | block tables
  int32_t* step_host_ = nullptr;          // pinned mirror of step_
  DeviceBuffer<float> dec_logits_, dec_head_logits_, attn_workspace_;
  float* logits_pinned_ = nullptr;
  std::map<std::tuple<int, bool, StepOutput, bool>, cudaGraphExec_t> graphs_;  // (bucket, gemv_path, output, rope_in_attention)
  DecodeSampler sampler_;
  bool use_gemv_ = true;
  int gemv_max_rows_ = 8;
  std::map<int, int> wide_step_splits_;
  int prefill_split_ctas_ = 0;
  int decode_cluster_ctas_ = 0;
  bool decode_rope_in_attention_ = false;
  bool decode_attention_overlap_ = false;
  // How a decode attention of `rows` rows at `splits` splits merges them (set_decode_cluster_ctas).
  DecodeMerge decode_merge(int splits, int rows) const {
    const int64_t ctas = int64_t(splits) * config_.num_kv_heads * rows;
    return splits <= kMaxClusterSplits && ctas <= decode_cluster_ctas_ ? DecodeMerge::kCluster
                                                                         : DecodeMerge::kCombineLaunch;
  }
  // A decode step's cluster attention launched overlapped (set_decode_attention_overlap).
  bool decode_overlap(int splits, int rows) const {
    return decode_attention_overlap_ && decode_merge(splits, rows) == DecodeMerge::kCluster;
  }
  // A step's projections take the GEMV up to gemv_max_rows_ rows, and at any
  // size when all its rows are one sequence's (a lone request's jump-forward
  // rows then give step-by-step decoding's bits).
  bool on_gemv(const std::vector<DecodeSequence>& batch, int bucket) const;
  static bool one_sequence(const std::vector<DecodeSequence>& batch);
  // No two rows of the batch are one sequence's (the rotary step may then run in the attention).
  static bool distinct_sequences(const std::vector<DecodeSequence>& batch);
  std::string profile_path_;
  std::map<int, int> profiled_steps_;  // decode steps seen per bucket (the 32nd of 1, 8 and 64 is profiled)
  std::string prefill_profile_path_;
  int profiled_prefills_ = 0;       // prefill calls of at least kProfilePrefillRows rows seen (the 2nd is profiled)
  int profiled_suffixes_ = 0;       // shorter calls continuing one sequence seen (the 2nd is profiled)
  StepProfile* profile_ = nullptr;  // set during the profiled step or prefill
  // The profiled call's attention, per layer: the cache rows it reads once
  // (bytes), and the keys its rows see, summed over the rows (FLOPs).
  int64_t profile_kv_tokens_ = 0;
  int64_t profile_attention_keys_ = 0;
  void mark(const char* kind, double bytes, double flops = 0) {
    if (profile_) profile_->next(kind, bytes, flops);
  }
  int32_t* step_ids() const { return step_.get(); }
  int32_t* step_positions() const { return step_.get() + max_batch_; }
  int32_t* step_dest() const { return step_.get() + 4 * max_batch_; }
  int32_t* step_lengths() const { return step_.get() + 5 * max_batch_; }
  int32_t* step_seen() const { return step_.get() + 6 * max_batch_; }
  int32_t* step_tables() const { return step_.get() + 7 * max_batch_; }
};

}  // namespace rex::cuda
