// Token choice on the GPU: the rules of native/sampling/sampling.h (its CPU
// twin, sample_token), applied to logits that never leave the device. The
// host reads back only each row's SampledToken (id, logprob, model_logprob).
//
// Candidates. A row's logits are described by segments: sorted, disjoint id
// ranges [id_begin, id_end), each with the offset of its first logit in the
// row's buffer. Two layouts use the same description:
//  - the full LM head: logits indexed by id (offset = id_begin), the
//    segments being the ids the grammar allows (one segment [0, vocab) when
//    unconstrained): ids outside every segment are masked out;
//  - a restricted head (only the allowed rows computed): the segments'
//    logits packed one after the other (offsets 0, len0, len0 + len1, ...).
// So the grammar mask is the segment list itself (deny ids split a range),
// and the sampler reads only the candidates.
//
// Per row, as sample_token does it: the repetition penalty on every candidate
// whose bit is set in the slot's `seen` bitmask (prompt + generated ids: the
// backend keeps it on the device); greedy = the largest penalised candidate,
// lowest id on ties; otherwise temperature, top-k (ties at the k-th value
// kept), top-p (TopPLogitsWarper's rule), then the first id, ascending, whose
// cumulative probability exceeds uniform * total. `uniform` is drawn by the
// host from the request's Pcg32 (one draw per non-greedy row, as the CPU
// sampler draws), so seeded output does not depend on the batch.
// Sums are deterministic (fixed order, or integer-valued), so the same inputs
// give the same token on every run, alone or in any batch.
//
// model_logprob needs the raw row's normaliser over the whole vocabulary:
// only the full layout has it (full_row = 1); a
// restricted row reports NaN.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "rex/status.h"

namespace rex::cuda {

struct SamplerSegment {
  int32_t id_begin = 0;
  int32_t id_end = 0;        // one past the last id
  int32_t logit_offset = 0;  // where logits[id_begin] sits in the row's buffer
};

// One row's plain-data description (device memory, an array of them).
struct SamplerRow {
  const float* logits = nullptr;   // the row's buffer (device)
  const uint32_t* seen = nullptr;  // bit (id % 32) of word (id / 32): id seen; null = no penalty
  int32_t first_segment = 0;       // into the segment table
  int32_t segments = 0;            // >= 1
  int32_t vocab = 0;               // full layout: the row's length (for model_logprob)
  int32_t full_row = 0;            // 1: logits indexed by id over [0, vocab), model_logprob computed
  float temperature = 0.0f;        // <= 0 or top_k == 1: greedy
  int32_t top_k = 0;
  float top_p = 1.0f;
  float repetition_penalty = 1.0f;
  double uniform = 0.0;            // in [0, 1): the draw (non-greedy rows)
};

struct SamplerResult {
  int32_t id = -1;
  float logprob = 0.0f;        // over the processed, masked candidates (sampling.h)
  float model_logprob = 0.0f;  // over the raw full row; NaN when !full_row
};

// Bytes of scratch sample_rows needs for `rows` rows of at most
// `max_candidates` candidates each (device memory the caller owns): per row,
// 12 bytes per candidate (the processed logits and two index lists; only
// sampled rows touch theirs), plus 4128 bytes after all rows' arrays for the
// greedy rows' chunk partials (128 x 32 bytes and a 32-byte header); 1.83 MB
// per row at 151936. 0 when either is <= 0. A launch of fewer rows than the
// workspace was sized for fits (the partials follow the launch's rows).
size_t sampler_workspace_bytes(int rows, int max_candidates);

// Two launches: greedy rows' first pass split over up to 128 blocks per row,
// then one block per row; results[i] for rows[i], workspace slot i. rows,
// segments, results and workspace (16-byte aligned, sampler_workspace_bytes
// (row_count, max_candidates) of it) are device pointers. Nothing is read
// back or allocated: graph-capturable. Host-checked (kInvalidArgument):
// 0 <= row_count <= 16777215 (0: nothing is launched), 1 <= max_candidates <= 262143
// (the fixed-point masses' range), non-null pointers, the alignment. Per row,
// on the device:
//  - a row with more candidates than max_candidates: id -1, both log-probs NaN;
//  - no candidate at all (empty segments) or none finite: sample_token's
//    fallback, the lowest candidate id (0 when there is none), logprob NaN;
//  - logits are finite or -inf (NaN or +inf: unspecified); segments sorted,
//    disjoint, inside [0, vocab); `seen` covers every candidate id;
//  - uniform >= 1 or NaN: the last kept id; < 0: the first.
// Masses are exact sums of round(exp(x - max) * 2^46): a draw or top-p cut
// can differ from the CPU twin's double sums only when it lies within
// n * 2^-47 of the total mass of a boundary (1.1e-9 at 151936 candidates).
Status sample_rows(const SamplerRow* rows, int row_count, const SamplerSegment* segments, int max_candidates,
                   void* workspace, SamplerResult* results, cudaStream_t stream);

// For i < n: sets bit ids[i] of bitmask mask_index[i], the bitmasks laid
// one after another, words_per_mask words each (device arrays; atomicOr).
// Entries with mask_index < 0 or an id outside [0, 32 * words_per_mask) are
// skipped. n == 0: nothing is launched.
// mask_index may be null: every id then goes to the first bitmask, and
// words_per_mask may be 0 (then only negative ids are skipped).
Status mark_seen(uint32_t* seen_masks, int words_per_mask, const int32_t* mask_index, const int32_t* ids, int n,
                 cudaStream_t stream);

}  // namespace rex::cuda
