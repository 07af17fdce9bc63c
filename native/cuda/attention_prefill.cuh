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

// Keys per key tile (a CTA's step through the keys).
constexpr int kPrefillKeyTile = 64;

// One CTA's work (per q head): up to kPrefillTileRows consecutive rows of one
// segment against the key tiles [key_begin, key_end) — all the keys its rows
// see, or, when the plan splits the tile's keys, one share of them.
struct alignas(16) PrefillTile {
  int32_t row0;          // q/out row of the tile's first row
  int32_t rows;          // 1 .. kPrefillTileRows
  int32_t pos0;          // absolute position of row0 (its segment's past + offset in the segment)
  int32_t table_offset;  // the segment's first entry in block_tables
  int32_t key_begin;     // first key tile (keys key_begin * kPrefillKeyTile ..)
  int32_t key_end;       // past the last; ceil((pos0 + rows) / kPrefillKeyTile) when the keys are not split
  int32_t partial;       // -1: writes its rows of out; else its slot among the plan's partials
  int32_t unused = 0;
};
static_assert(sizeof(PrefillTile) == 32, "two 16-byte loads per CTA");

// A tile whose keys were split: its rows, and the partials (consecutive
// slots) the combine kernel merges into them.
struct alignas(16) PrefillCombine {
  int32_t row0;
  int32_t rows;
  int32_t first_partial;
  int32_t partials;  // >= 2
};

// Key splitting, for passes with too few CTAs to fill the GPU: a cached
// image's question is ~216 rows after ~990 cached keys, 4 tiles x 16 heads
// = 64 CTAs on 132 SMs, each walking ~19 key tiles in sequence. When the
// pass's tiles x q_heads fall short of target_ctas, each tile's keys are cut
// into up to ceil(target_ctas / (tiles x q_heads)) shares of at least
// kMinKeyTiles key tiles; each share writes an fp32 partial (O, max, sum) and
// a combine launch merges them (a split tile's bits then differ from an
// unsplit one's by rounding). The split depends on the pass's tiles alone.
struct PrefillSplit {
  static constexpr int kMinKeyTiles = 2;
  int q_heads = 0;      // the calls' q heads; 0: never split
  int head_dim = 0;     // sizes the partials
  int target_ctas = 0;  // 0: never split
  bool enabled() const { return q_heads > 0 && head_dim > 0 && target_ctas > 0; }
  // Whether a pass of `tiles` tiles splits its keys.
  bool applies(int64_t tiles) const { return enabled() && tiles * q_heads < target_ctas; }
};

// The tiles of a segment of n rows (one CTA per kPrefillTileRows rows).
inline int prefill_tiles(int n) { return (n + kPrefillTileRows - 1) / kPrefillTileRows; }

// The tile list of segments, host side and without any CUDA call: every
// segment cut into tiles of kPrefillTileRows rows (the last one shorter),
// ordered by keys seen (pos0 + rows) descending, ties in segment order, so
// the longest CTAs start first — for one segment exactly the order the
// one-sequence call runs. Checks the segments against `rows` q/out rows and
// a block table of `table_entries` entries of `block_size` tokens: each
// segment n >= 1, past >= 0, in row order without overlap, inside the rows,
// its ceil((past + n) / block_size) blocks inside the table. Bad segments
// give kInvalidArgument ("expected ... but got ...") and leave *tiles empty.
// With `split` enabled and too few tiles (PrefillSplit), long tiles are cut
// into shares (every share a PrefillTile with its own partial slot, in the
// same longest-first order by key tiles walked) and *combines lists the
// split tiles; otherwise every tile walks all its keys and *combines (when
// given) is left empty.
Status plan_prefill_tiles(const PrefillSegment* segments, int num_segments, int rows, int block_size,
                          int table_entries, std::vector<PrefillTile>* tiles, const PrefillSplit& split = {},
                          std::vector<PrefillCombine>* combines = nullptr);

// fp32 floats of workspace for `partials` slots of a split plan.
size_t prefill_partial_floats(int partials, int q_heads, int head_dim);

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
  // `split`: PrefillSplit (its q_heads and head_dim must then be the calls').
  // A split plan's partials live in a workspace the plan owns (grown here).
  Status build(const PrefillSegment* segments, int num_segments, int rows, int block_size, int table_entries,
               cudaStream_t stream, const PrefillSplit& split = {});
  // Device room for max_tiles tiles now, so later builds of at most that many
  // keep the buffer's address (a captured graph can keep pointing at it).
  Status reserve(int max_tiles);

  bool built() const { return built_; }
  int num_tiles() const { return static_cast<int>(tiles_.size()); }
  int num_combines() const { return static_cast<int>(combines_.size()); }
  int num_partials() const { return partials_; }
  int block_size() const { return block_size_; }
  const PrefillSplit& split() const { return split_; }
  const PrefillTile* device_tiles() const { return device_.get(); }
  const PrefillCombine* device_combines() const { return device_combines_.get(); }
  float* partials() const { return workspace_.get(); }

 private:
  std::vector<PrefillTile> tiles_;
  std::vector<PrefillCombine> combines_;
  DeviceBuffer<PrefillTile> device_;
  DeviceBuffer<PrefillCombine> device_combines_;
  DeviceBuffer<float> workspace_;
  PrefillSplit split_;
  int partials_ = 0;
  int block_size_ = 0;
  bool built_ = false;
};

// Varlen prefill attention over a built plan: q rows at q_stride as above,
// the `rows` the plan was built for; block_tables (device): the segments'
// tables, at their table_offsets; cache.block_size must be the plan's. out:
// [rows, q_heads*head_dim] bf16; rows in no segment are not written. One launch,
// the grid's y axis walking the plan's tiles, and for a split plan a second
// that merges the partials.
Status attention_prefill_varlen_bf16(const bf16* q, int q_stride, const PrefillPlan& plan, int q_heads,
                                     PagedKv cache, const int32_t* block_tables, bf16* out, cudaStream_t stream);

}  // namespace rex::cuda
