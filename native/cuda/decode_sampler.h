// The host side of sampling on the GPU (sampler.cuh) for one decode step or
// one prefill: it turns each row's RowSampling (backend.h) into the sampler's
// plain-data rows and segments, decides which LM head the step needs, and
// keeps the per-slot "seen" bitmasks of the repetition penalty on the device.
//
// The LM head. A step computes the full head (every vocabulary row) when any
// row wants the raw model log-probability (scores need the softmax
// normaliser) or when the rows' allowed ids together exceed kRestrictedRows;
// otherwise only the union of the allowed ids, packed in id order: the
// coordinate head of a box's coordinate steps (1000 rows of 151936), or the
// two ids after a box. Both heads run the same GEMV at the same split, so an
// allowed id's logit has the same bits either way and the sampled token is
// the one the full head gives.
//
// Every table lives in pinned host memory with a device twin at a fixed
// address, so a step captured in a CUDA graph reads what plan() wrote.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/sampler.cuh"
#include "engine/backend.h"

namespace rex::cuda {

class DecodeSampler {
 public:
  // 68 tiles of 16 rows: the 1000 coordinates and up to 88 other ids.
  static constexpr int kRestrictedRows = 1088;
  static constexpr int kMaxSegments = 65536;

  ~DecodeSampler();
  // max_rows: rows of one step; masks: slots with a seen bitmask (one more,
  // the last, is the padding rows' scratch mask).
  Status init(int vocab, int max_rows, int masks, cudaStream_t stream);

  // Seen bitmasks: cleared when a slot starts, then marked with its prompt
  // (ids on the device) and, inside each step, with every row's input token.
  Status clear_mask(int mask);
  Status mark(int mask, const int32_t* ids_device, int n);
  // Inside a step: row i's input token ids[i] into bitmask masks[i] (device arrays).
  Status mark_rows(const int32_t* ids_device, const int32_t* masks_device, int n);
  int padding_mask() const { return masks_; }
  uint32_t* masks_device() const { return seen_.get(); }
  int words_per_mask() const { return words_; }

  // Fills the tables for rows[0..n) and pads them to `bucket` rows; logits
  // are read from full_logits (row stride vocab) or restricted_logits (row
  // stride kRestrictedRows). mask_of_row: each row's seen bitmask. Sets
  // *restricted to the head the step needs. Then uploads the tables.
  Status plan(const std::vector<RowSampling>& rows, const std::vector<int>& mask_of_row, int bucket,
              const float* full_logits, const float* restricted_logits, bool* restricted);

  // The restricted head's weight rows (device, kRestrictedRows ids).
  const int32_t* head_rows() const { return head_rows_dev_.get(); }

  // Launches the sampler over `bucket` rows (graph-capturable).
  Status sample(int bucket);
  // After the stream synchronised: rows[0..n)'s results.
  Status read(int n, std::vector<SampledToken>* out);
  // Queues the results' copy to the pinned mirror (before the synchronise).
  Status queue_download(int n);

 private:
  int vocab_ = 0, max_rows_ = 0, masks_ = 0, words_ = 0;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<uint32_t> seen_;
  DeviceBuffer<SamplerRow> rows_dev_;
  DeviceBuffer<SamplerSegment> segments_dev_;
  DeviceBuffer<int32_t> head_rows_dev_;
  DeviceBuffer<SamplerResult> results_dev_;
  DeviceBuffer<unsigned char> workspace_;
  SamplerRow* rows_host_ = nullptr;
  SamplerSegment* segments_host_ = nullptr;
  int32_t* head_rows_host_ = nullptr;
  SamplerResult* results_host_ = nullptr;
  std::vector<IdRange> scratch_;
};

}  // namespace rex::cuda
