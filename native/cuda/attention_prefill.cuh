// Causal grouped-query attention for prefill (flash-style, tiles of keys with
// an online softmax): n new query rows of one sequence against its paged KV
// cache, which already holds the new keys. Query i sits at absolute position
// past + i and sees keys 0 .. past + i. Query head h reads kv head
// h / (q_heads / kv_heads). Softmax in fp32, scale 1/sqrt(head_dim).
// Varlen: several sequences' rows concatenated in one q (a batch of prefill
// chunks), each segment with its own rows, past and block table into the
// shared paged cache; each segment's output is, bit for bit, what the
// one-sequence call gives on that segment alone.
// CPU twin: native/cpu/attention_prefill.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda/device_buffer.h"
#include "cuda/paged_kv.cuh"
#include "rex/status.h"

namespace rex::cuda {

// q: rows of q_stride elements, q of row i at q + i*q_stride ([q_heads*head_dim],
// rotated) — so the q part of the fused qkv rows can be read in place.
// block_table (device): the sequence's blocks. out: [n, q_heads*head_dim] bf16.
// head_dim: 128 (64 also accepted).
// The varlen kernel with the one segment {0, n, past, 0}; its tiles are
// worked out in the kernel, not read from a plan, so this call uploads
// nothing and stays capturable in a CUDA graph.
Status attention_prefill_bf16(const bf16* q, int q_stride, int n, int past, int q_heads, PagedKv cache,
                              const int32_t* block_table, bf16* out, cudaStream_t stream);

// ---------------------------------------------------------------- varlen

// One sequence's rows of a varlen prefill: q/out rows [row_start, row_start + n)
// sit at absolute positions past .. past + n - 1 of the sequence, whose
// blocks are block_tables[table_offset ...].
struct PrefillSegment {
  int32_t row_start = 0;
  int32_t n = 0;  // >= 1
  int32_t past = 0;
  int32_t table_offset = 0;
};

// Query rows per tile (one CTA's rows).
constexpr int kPrefillTileRows = 64;

// One CTA's work: up to kPrefillTileRows consecutive rows of one segment,
// everything the kernel needs in one 16-byte load.
struct alignas(16) PrefillTile {
  int32_t row0;          // q/out row of the tile's first row
  int32_t rows;          // 1 .. kPrefillTileRows
  int32_t pos0;          // absolute position of row0 (its segment's past + offset in the segment)
  int32_t table_offset;  // the segment's first entry in block_tables
};
static_assert(sizeof(PrefillTile) == 16, "one 16-byte load per CTA");

// The tile list of segments, host side and without any CUDA call: every
// segment cut into tiles of kPrefillTileRows rows (the last one shorter),
// ordered by keys seen (pos0 + rows) descending, ties in segment order, so
// the longest CTAs start first — for one segment exactly the order the
// one-sequence call runs. Checks the segments against `rows` q/out rows and
// a block table of `table_entries` entries of `block_size` tokens: each
// segment n >= 1, past >= 0, in row order without overlap, inside the rows,
// its ceil((past + n) / block_size) blocks inside the table. Bad segments
// give kInvalidArgument ("expected ... but got ...") and leave *tiles empty.
Status plan_prefill_tiles(const PrefillSegment* segments, int num_segments, int rows, int block_size,
                          int table_entries, std::vector<PrefillTile>* tiles);

// A varlen call's tiles, built on the host once per batch and uploaded in
// one copy into a device buffer the plan owns (it grows, never shrinks: a
// steady batch shape allocates nothing after the first build, and reserve()
// fixes the address up front). The same plan serves every layer's call.
// build() copies on `stream`: run the attention calls on that stream (or
// order them after it). A rebuild on the same stream is ordered after the
// calls already queued there that read the old list; from another stream,
// wait for them first. Not thread-safe.
class PrefillPlan {
 public:
  Status build(const PrefillSegment* segments, int num_segments, int rows, int block_size, int table_entries,
               cudaStream_t stream);
  // Device room for max_tiles tiles now, so later builds of at most that many
  // keep the buffer's address (a captured graph can keep pointing at it).
  Status reserve(int max_tiles);

  bool built() const { return built_; }
  int num_tiles() const { return static_cast<int>(tiles_.size()); }
  int block_size() const { return block_size_; }
  const PrefillTile* device_tiles() const { return device_.get(); }

 private:
  std::vector<PrefillTile> tiles_;
  DeviceBuffer<PrefillTile> device_;
  int block_size_ = 0;
  bool built_ = false;
};

// Varlen prefill attention over a built plan: q rows at q_stride as above,
// the `rows` the plan was built for; block_tables (device): the segments'
// tables, at their table_offsets; cache.block_size must be the plan's. out:
// [rows, q_heads*head_dim] bf16; rows in no segment are not written. One launch,
// the grid's y axis walking the plan's tiles.
Status attention_prefill_varlen_bf16(const bf16* q, int q_stride, const PrefillPlan& plan, int q_heads,
                                     PagedKv cache, const int32_t* block_tables, bf16* out, cudaStream_t stream);

}  // namespace rex::cuda
