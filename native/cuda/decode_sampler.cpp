// See decode_sampler.h.
#include "cuda/decode_sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/cuda_check.h"
#include "sampling/token_mask.h"

namespace rex::cuda {

namespace {

// The sorted, disjoint union of several range lists.
std::vector<IdRange> union_of(const std::vector<std::vector<IdRange>>& lists) {
  std::vector<IdRange> all;
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  return merge_ranges(std::move(all));
}

int64_t id_count(const std::vector<IdRange>& ranges) {
  int64_t n = 0;
  for (const IdRange& r : ranges) n += r.end - r.begin;
  return n;
}

}  // namespace

DecodeSampler::~DecodeSampler() {
  if (rows_host_) cudaFreeHost(rows_host_);
  if (segments_host_) cudaFreeHost(segments_host_);
  if (head_rows_host_) cudaFreeHost(head_rows_host_);
  if (results_host_) cudaFreeHost(results_host_);
}

Status DecodeSampler::init(int vocab, int max_rows, int masks, cudaStream_t stream) {
  vocab_ = vocab;
  max_rows_ = max_rows;
  masks_ = masks;
  words_ = (vocab + 31) / 32;
  stream_ = stream;
  REX_RETURN_IF_ERROR(seen_.allocate(size_t(masks + 1) * words_, "the repetition penalty's seen bitmasks"));
  REX_CUDA_TRY(cudaMemsetAsync(seen_.get(), 0, seen_.bytes(), stream));
  REX_RETURN_IF_ERROR(rows_dev_.allocate(size_t(max_rows), "the sampler rows"));
  REX_RETURN_IF_ERROR(segments_dev_.allocate(size_t(kMaxSegments), "the sampler segments"));
  REX_RETURN_IF_ERROR(head_rows_dev_.allocate(size_t(kRestrictedRows), "the restricted head's rows"));
  REX_RETURN_IF_ERROR(results_dev_.allocate(size_t(max_rows), "the sampler results"));
  REX_RETURN_IF_ERROR(workspace_.allocate(std::max<size_t>(1, sampler_workspace_bytes(max_rows, vocab)), "the sampler workspace"));
  REX_CUDA_TRY(cudaMallocHost(&rows_host_, sizeof(SamplerRow) * size_t(max_rows)));
  REX_CUDA_TRY(cudaMallocHost(&segments_host_, sizeof(SamplerSegment) * size_t(kMaxSegments)));
  REX_CUDA_TRY(cudaMallocHost(&head_rows_host_, sizeof(int32_t) * size_t(kRestrictedRows)));
  REX_CUDA_TRY(cudaMallocHost(&results_host_, sizeof(SamplerResult) * size_t(max_rows)));
  std::fill_n(head_rows_host_, kRestrictedRows, 0);
  REX_CUDA_TRY(cudaMemcpyAsync(head_rows_dev_.get(), head_rows_host_, sizeof(int32_t) * kRestrictedRows,
                               cudaMemcpyHostToDevice, stream));
  return Status::Ok();
}

Status DecodeSampler::clear_mask(int mask) {
  if (mask < 0 || mask > masks_) return Status(StatusCode::kInternal, "seen bitmask " + std::to_string(mask) + " out of range");
  REX_CUDA_TRY(cudaMemsetAsync(seen_.get() + size_t(mask) * words_, 0, size_t(words_) * sizeof(uint32_t), stream_));
  return Status::Ok();
}

Status DecodeSampler::mark(int mask, const int32_t* ids_device, int n) {
  if (n <= 0) return Status::Ok();
  return mark_seen(seen_.get() + size_t(mask) * words_, words_, nullptr, ids_device, n, stream_);
}

Status DecodeSampler::mark_rows(const int32_t* ids_device, const int32_t* masks_device, int n) {
  return mark_seen(seen_.get(), words_, masks_device, ids_device, n, stream_);
}

Status DecodeSampler::plan(const std::vector<RowSampling>& rows, const std::vector<int>& mask_of_row, int bucket,
                           const float* full_logits, const float* restricted_logits, bool* restricted) {
  const int n = int(rows.size());
  if (n > bucket || bucket > max_rows_ || int(mask_of_row.size()) != n)
    return Status(StatusCode::kInternal, "decode sampler: " + std::to_string(n) + " rows for a bucket of " +
                  std::to_string(bucket) + " (at most " + std::to_string(max_rows_) + ")");
  std::vector<std::vector<IdRange>> allowed(static_cast<size_t>(n));
  bool wants_model_logprob = false;
  for (int r = 0; r < n; ++r) {
    allowed[size_t(r)] = allowed_ranges(rows[size_t(r)].mask, vocab_);
    if (allowed[size_t(r)].empty())
      return Status(StatusCode::kInternal, "decode sampler: row " + std::to_string(r) + " allows no token");
    wants_model_logprob |= rows[size_t(r)].model_logprob;
  }
  const std::vector<IdRange> head = union_of(allowed);
  *restricted = !wants_model_logprob && id_count(head) <= kRestrictedRows;
  std::vector<int32_t> head_offset(head.size(), 0);
  if (*restricted) {
    int32_t at = 0;
    for (size_t i = 0; i < head.size(); ++i) {
      head_offset[i] = at;
      for (int32_t id = head[i].begin; id < head[i].end; ++id) head_rows_host_[at++] = id;
    }
    std::fill(head_rows_host_ + at, head_rows_host_ + kRestrictedRows, head.back().end - 1);
  }
  int segments = 0;
  for (int r = 0; r < bucket; ++r) {
    SamplerRow& row = rows_host_[r];
    row = SamplerRow{};
    row.vocab = vocab_;
    row.full_row = *restricted ? 0 : 1;
    row.logits = *restricted ? restricted_logits + size_t(r) * kRestrictedRows : full_logits + size_t(r) * vocab_;
    row.first_segment = segments;
    if (r >= n) {  // padding: greedy over id 0, no penalty
      segments_host_[segments++] = SamplerSegment{0, 1, 0};
      row.segments = 1;
      continue;
    }
    const RowSampling& s = rows[size_t(r)];
    row.seen = seen_.get() + size_t(mask_of_row[size_t(r)]) * words_;
    row.temperature = s.params.temperature;
    row.top_k = s.params.top_k;
    row.top_p = s.params.top_p;
    row.repetition_penalty = s.params.repetition_penalty;
    row.uniform = s.uniform;
    if (segments + int(allowed[size_t(r)].size()) > kMaxSegments)
      return Status(StatusCode::kInvalidArgument, "decode sampler: the step's masks need more than " +
                    std::to_string(kMaxSegments) + " id ranges");
    for (const IdRange& a : allowed[size_t(r)]) {
      int32_t offset = a.begin;
      if (*restricted) {
        const auto it = std::upper_bound(head.begin(), head.end(), a.begin,
                                         [](int32_t id, const IdRange& h) { return id < h.begin; });
        const size_t i = size_t(it - head.begin()) - 1;
        offset = head_offset[i] + (a.begin - head[i].begin);
      }
      segments_host_[segments++] = SamplerSegment{a.begin, a.end, offset};
    }
    row.segments = int32_t(allowed[size_t(r)].size());
  }
  REX_CUDA_TRY(cudaMemcpyAsync(rows_dev_.get(), rows_host_, sizeof(SamplerRow) * size_t(bucket), cudaMemcpyHostToDevice, stream_));
  REX_CUDA_TRY(cudaMemcpyAsync(segments_dev_.get(), segments_host_, sizeof(SamplerSegment) * size_t(segments),
                               cudaMemcpyHostToDevice, stream_));
  if (*restricted)
    REX_CUDA_TRY(cudaMemcpyAsync(head_rows_dev_.get(), head_rows_host_, sizeof(int32_t) * kRestrictedRows,
                                 cudaMemcpyHostToDevice, stream_));
  return Status::Ok();
}

Status DecodeSampler::sample(int bucket) {
  return sample_rows(rows_dev_.get(), bucket, segments_dev_.get(), vocab_, workspace_.get(), results_dev_.get(), stream_);
}

Status DecodeSampler::queue_download(int n) {
  REX_CUDA_TRY(cudaMemcpyAsync(results_host_, results_dev_.get(), sizeof(SamplerResult) * size_t(n), cudaMemcpyDeviceToHost,
                               stream_));
  return Status::Ok();
}

Status DecodeSampler::read(int n, std::vector<SampledToken>* out) {
  out->resize(size_t(n));
  for (int r = 0; r < n; ++r) {
    const SamplerResult& res = results_host_[r];
    if (res.id < 0 || res.id >= vocab_)
      return Status(StatusCode::kInternal, "the GPU sampler gave row " + std::to_string(r) + " the id " + std::to_string(res.id));
    (*out)[size_t(r)] = SampledToken{res.id, res.logprob, res.model_logprob};
  }
  return Status::Ok();
}

}  // namespace rex::cuda
