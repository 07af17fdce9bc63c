// Prefill attention (causal GQA against the paged KV cache),
// FlashAttention-2 style on mma.sync m16n8k16 bf16 tensor cores.
//
// Why this shape:
//  - A real prompt is ~1200 new rows x 16 heads x 128 dims: ~6 GFLOP per
//    layer after the causal half is skipped, matrix-bound, so tensor cores
//    with the online softmax in registers (attention_mma.cuh), as in the
//    vision kernel; keys stream through shared memory in tiles of 64.
//  - A CTA owns 64 query rows of one q head (4 warps x 16 rows) and walks
//    the key tiles 0 .. the tile holding its last row's diagonal, so fully
//    masked tiles are never loaded. Inside the diagonal tiles a warp whose 16
//    rows see none of a tile's keys skips that tile's MMAs, and only tiles
//    that cross a row's diagonal pay for the mask.
//  - Grid: x = q head (fastest: the 8 heads of a kv group run side by side and
//    share that group's K/V tiles in L2), y = query tile, issued from the
//    last (longest) tile down so the long CTAs start first and the short ones
//    fill the tail.
//  - Varlen (several sequences' prefill chunks in one pass, their rows
//    concatenated so the layer's GEMMs see more rows): y walks a tile list,
//    one 16-byte PrefillTile per CTA (first row, rows, position of the first
//    row, block-table offset), built on the host once per batch
//    (PrefillPlan) and sorted by keys seen, longest first. Tiles of
//    different segments differ in length and count, so y cannot be split
//    arithmetically; with the list, a CTA's work is exactly the one-sequence
//    kernel's for that tile (same keys, same order, same masks), so each
//    segment's output is the one-sequence call's bit for bit. The
//    one-sequence entry is the same kernel with no list: it works out tile
//    gridDim.y - 1 - blockIdx.y of its one segment in place, so it uploads
//    nothing per call.
//  - K/V rows are gathered from the paged cache with 16-byte cp.async, one
//    block-table lookup per row (block_size a power of two: shift and mask);
//    q rows are read in place at q_stride (the fused qkv GEMM output).
//  - 52 KB of shared memory (Q, K and V tiles of 64 x 136 bf16) for head_dim
//    128, so the limit is raised once with cudaFuncSetAttribute.
//  - Split keys (a plan built with PrefillSplit): a pass of few tiles (a
//    cached image's question: 4 tiles x 16 heads = 64 CTAs for 132 SMs, each
//    walking ~19 key tiles) leaves most of the GPU idle for the length of its
//    longest walk. The plan then cuts long tiles' keys into shares, a CTA
//    each: it writes fp32 partials (unnormalised O, max, sum) and a combine
//    launch (a warp per row, 4 dims a lane) merges each tile's shares, as
//    the decode kernel's combine does. The shares keep the one-tile CTA's
//    code path: only the first key tile and the epilogue differ.
#include "cuda/attention_prefill.cuh"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "cuda/attention_mma.cuh"
#include "cuda/cuda_check.h"

namespace rex::cuda {
namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kRows = kWarps * 16, kKeyTile = kPrefillKeyTile;
static_assert(kRows == kPrefillTileRows, "a PrefillTile is one CTA's rows");
constexpr int kMaxGridY = 65535;

// head_dim 64 fits 3 CTAs per SM without spills; 128 needs ~210 registers (2 per SM).
template <int HD>
constexpr int prefill_min_blocks() {
  return HD == 128 ? 2 : 3;
}

// CTA (head blockIdx.x, tile blockIdx.y). tiles: the plan's list (varlen), or
// null for one segment of n rows after past cached tokens, rows 0 .. n-1 of
// q/out and blocks block_tables[0 ...], whose tile gridDim.y - 1 - blockIdx.y
// (longest first) is worked out here. Everything below is relative to the
// tile: row r of it is q/out row row0 + r at position pos0 + r.
template <int HD>
__global__ void __launch_bounds__(kThreads, prefill_min_blocks<HD>())
    attention_prefill_kernel(const bf16* __restrict__ q, int q_stride, const PrefillTile* __restrict__ tiles, int n,
                             int past, int group, PagedKv cache, int block_shift,
                             const int32_t* __restrict__ block_tables, float scale_log2, bf16* __restrict__ out,
                             int out_stride, float* __restrict__ part_o, float2* __restrict__ part_ml) {
  using Warp = attn::WarpFlash<HD, kKeyTile>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  PrefillTile tile;
  if (tiles != nullptr) {
    tile = tiles[blockIdx.y];
  } else {
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kRows;
    const int rows = min(kRows, n - q0);
    tile = PrefillTile{q0, rows, past + q0, 0, 0, (past + q0 + rows + kKeyTile - 1) / kKeyTile, -1};
  }
  const int rows = tile.rows, pos0 = tile.pos0;
  const int table_offset = tile.table_offset;  // an index, not a pointer: one register fewer

  const int head = blockIdx.x;
  const int kv_head = head / group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // Keys this CTA can see: 0 .. pos0 + (its last row), exclusive end.
  const int kv_end = pos0 + rows;
  const int64_t kv_row = int64_t(cache.kv_heads) * HD;
  const bf16* q_base = q + int64_t(tile.row0) * q_stride + int64_t(head) * HD;
  const bf16* k_base = cache.k + int64_t(kv_head) * HD;
  const bf16* v_base = cache.v + int64_t(kv_head) * HD;
  auto q_offset = [q_stride](int t) { return int64_t(t) * q_stride; };
  auto kv_offset = [block_tables, table_offset, block_shift, kv_row](int t) {
    const int64_t block = block_tables[table_offset + (t >> block_shift)];
    return ((block << block_shift) + (t & ((1 << block_shift) - 1))) * kv_row;
  };
  const attn::FlashPass<HD, kKeyTile, kRows, kThreads> pass(smem_raw, tid);
  const int j_first = tile.key_begin, j_end = tile.key_end;
  pass.prologue(q_base, 0, rows, q_offset, k_base, v_base, kv_end, kv_offset, j_first);

  // This thread's two rows and the warp's first row (tile rows).
  const int g = lane / 4;
  const int warp_row0 = warp * 16;
  const int r0 = warp_row0 + g, r1 = r0 + 8;

  Warp w;
  w.init();
  for (int j = j_first; j < j_end; ++j) {
    const int k0 = j * kKeyTile;
    pass.begin_tile(w, j, k0, warp, lane, v_base, kv_end, kv_offset, j_first);

    // Warp-uniform: does any row of this warp see any key of this tile?
    const bool active = warp_row0 < rows && k0 <= pos0 + warp_row0 + 15;
    float s[Warp::kSTiles][4];
    if (active) {
      w.scores(s, pass.sk, lane);
      // Key k0 + c is visible to row r iff k0 + c <= pos0 + r (and k0 + c < kv_end).
      if (k0 + kKeyTile - 1 > pos0 + warp_row0 || k0 + kKeyTile > kv_end)
        w.mask(s, kv_end - k0, pos0 + r0 - k0, pos0 + r1 - k0, lane);
      w.softmax(s, scale_log2);
    }

    pass.end_tile(j, j_end, k0, k_base, kv_end, kv_offset);
    if (active) w.accumulate(s, pass.sv, lane);
  }

  w.reduce_sums();
  if (tile.partial < 0) {
    bf16* o_base = out + int64_t(tile.row0) * out_stride + int64_t(head) * HD;
    w.store(o_base + int64_t(r0) * out_stride, o_base + int64_t(r1) * out_stride, r0 < rows, r1 < rows, lane);
    return;
  }
  // A share of split keys: its partial rows (slot-major, then head, then row).
  const int64_t slot_row = (int64_t(tile.partial) * gridDim.x + head) * kRows;
  float* o_rows = part_o + slot_row * HD;
  float2* ml_rows = part_ml + slot_row;
  w.store_partial(o_rows + int64_t(r0) * HD, o_rows + int64_t(r1) * HD, ml_rows + r0, ml_rows + r1, r0 < rows,
                  r1 < rows, lane);
}

// Merges a split tile's partials (CTA = q head x combine entry x kWarps
// rows): a warp per row, lane i owning dims 4i .. 4i + 3; the shares are
// weighted by exp2(m_s - M) (M their largest max), a share that saw no key of
// a row ({-inf, 0}) skipped. One row a warp, not a loop over the tile's 64:
// each row is a chain of dependent L2 reads over the shares, so rows walked
// one after another by 4 warps made the combine latency-bound (session 8:
// the split pass measured slower than the unsplit one, below in NOTES §5.4).
template <int HD>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_combine_kernel(const PrefillCombine* __restrict__ combines, const float* __restrict__ part_o,
                                     const float2* __restrict__ part_ml, bf16* __restrict__ out, int out_stride) {
  const PrefillCombine c = combines[blockIdx.y];
  const int head = blockIdx.x, heads = gridDim.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r = blockIdx.z * kWarps + warp;
  if (r >= c.rows || lane * 4 >= HD) return;
  auto at = [&](int p) { return (int64_t(c.first_partial + p) * heads + head) * kRows + r; };
  const attn::MergedPartials merged = attn::merge_partials(
      c.partials, [&](int p) { return part_ml[at(p)].x; }, [&](int p) { return part_ml[at(p)].y; },
      [&](int p) { return *reinterpret_cast<const float4*>(part_o + at(p) * HD + lane * 4); });
  *reinterpret_cast<uint2*>(out + int64_t(c.row0 + r) * out_stride + int64_t(head) * HD + lane * 4) =
      merged.normalised_bf16();
}

template <int HD>
constexpr int prefill_smem_bytes() {
  return attn::flash_smem_bytes<HD, kRows, kKeyTile>();
}

// Raises the dynamic shared-memory limit once per process; the one call's
// result is kept and returned every time.
template <int HD>
Status prepare_prefill_kernel() {
  static const cudaError_t err = cudaFuncSetAttribute(
      attention_prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, prefill_smem_bytes<HD>());
  return cuda_status(err, "cudaFuncSetAttribute(attention_prefill_kernel)");
}

// What a launch works through: the plan's tiles (and, split, its combines
// and partials), or (tiles null) the one segment (n, past).
struct LaunchWork {
  const PrefillTile* tiles = nullptr;
  int num_tiles = 0, n = 0, past = 0;
  const PrefillCombine* combines = nullptr;
  int num_combines = 0, num_partials = 0;
  float* partials = nullptr;
};

// The launches of both entry points: num_tiles CTAs per q head, then, when
// the plan split keys, the combine.
template <int HD>
Status launch_prefill(const bf16* q, int q_stride, const LaunchWork& work, int q_heads, const PagedKv& cache,
                      int block_shift, const int32_t* block_tables, bf16* out, cudaStream_t stream) {
  REX_RETURN_IF_ERROR((prepare_prefill_kernel<HD>()));
  const dim3 grid(static_cast<unsigned>(q_heads), static_cast<unsigned>(work.num_tiles));
  float* part_o = work.partials;
  float2* part_ml = part_o ? reinterpret_cast<float2*>(part_o + int64_t(work.num_partials) * q_heads * kRows * HD)
                           : nullptr;
  attention_prefill_kernel<HD><<<grid, kThreads, prefill_smem_bytes<HD>(), stream>>>(
      q, q_stride, work.tiles, work.n, work.past, q_heads / cache.kv_heads, cache, block_shift, block_tables,
      attn::softmax_scale_log2(HD), out, q_heads * HD, part_o, part_ml);
  REX_RETURN_IF_ERROR(check_launch("attention_prefill_kernel"));
  if (work.num_combines == 0) return Status::Ok();
  const dim3 combine_grid(static_cast<unsigned>(q_heads), static_cast<unsigned>(work.num_combines), kRows / kWarps);
  attention_prefill_combine_kernel<HD><<<combine_grid, kThreads, 0, stream>>>(work.combines, part_o, part_ml, out,
                                                                             q_heads * HD);
  return check_launch("attention_prefill_combine_kernel");
}

Status launch_for_head_dim(const bf16* q, int q_stride, const LaunchWork& work, int q_heads, const PagedKv& cache,
                           const int32_t* block_tables, bf16* out, cudaStream_t stream) {
  int shift = 0;
  while ((1 << shift) < cache.block_size) ++shift;
  // 32: the small test checkpoints' decoder.
  if (cache.head_dim == 32) return launch_prefill<32>(q, q_stride, work, q_heads, cache, shift, block_tables, out, stream);
  if (cache.head_dim == 64) return launch_prefill<64>(q, q_stride, work, q_heads, cache, shift, block_tables, out, stream);
  return launch_prefill<128>(q, q_stride, work, q_heads, cache, shift, block_tables, out, stream);
}

std::string str(int64_t v) { return std::to_string(v); }

Status invalid(const char* fn, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, std::string(fn) + ": " + what);
}

bool power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

// The checks both entry points share: head layout, cache shape, q_stride.
Status check_layout(const char* fn, int q_stride, int q_heads, const PagedKv& cache) {
  auto bad = [fn](const std::string& what) { return invalid(fn, what); };
  const int hd = cache.head_dim;
  if (hd != 32 && hd != 64 && hd != 128) return bad("expected head_dim 32, 64 or 128 but got " + str(hd));
  if (cache.kv_heads <= 0) return bad("expected kv_heads >= 1 but got " + str(cache.kv_heads));
  if (q_heads <= 0 || q_heads > 65535 || q_heads % cache.kv_heads != 0)
    return bad("expected q_heads in 1..65535, a multiple of kv_heads " + str(cache.kv_heads) + ", but got " +
               str(q_heads));
  if (!power_of_two(cache.block_size))
    return bad("expected block_size a power of two but got " + str(cache.block_size));
  if (q_stride < q_heads * hd || q_stride % 8 != 0)
    return bad("expected q_stride >= q_heads*head_dim (" + str(q_heads * hd) + ") and a multiple of 8 but got " +
               str(q_stride));
  return Status::Ok();
}

// Pointers, checked only when there is work.
Status check_pointers(const char* fn, const bf16* q, const PagedKv& cache, const int32_t* block_tables,
                      const bf16* out) {
  auto bad = [fn](const std::string& what) { return invalid(fn, what); };
  if (!q || !cache.k || !cache.v || !block_tables || !out)
    return bad("expected non-null q, cache.k, cache.v, block_table and out but got a null pointer");
  if (!attn::aligned_to(q, 16) || !attn::aligned_to(cache.k, 16) || !attn::aligned_to(cache.v, 16))
    return bad("expected q, cache.k and cache.v 16-byte aligned but got a misaligned pointer");
  if (!attn::aligned_to(out, 4)) return bad("expected out 4-byte aligned but got a misaligned pointer");
  return Status::Ok();
}

}  // namespace

Status attention_prefill_bf16(const bf16* q, int q_stride, int n, int past, int q_heads, PagedKv cache,
                              const int32_t* block_table, bf16* out, cudaStream_t stream) {
  const char* fn = "attention_prefill_bf16";
  auto bad = [fn](const std::string& what) { return invalid(fn, what); };
  if (n < 0) return bad("expected n >= 0 but got " + str(n));
  if (past < 0) return bad("expected past >= 0 but got " + str(past));
  if (int64_t(past) + n > INT_MAX)
    return bad("expected past + n <= " + str(INT_MAX) + " but got " + str(int64_t(past) + n));
  REX_RETURN_IF_ERROR(check_layout(fn, q_stride, q_heads, cache));
  const int tiles = prefill_tiles(n);
  if (tiles > kMaxGridY) return bad("expected n <= " + str(int64_t(kMaxGridY) * kRows) + " but got " + str(n));
  if (n == 0) return Status::Ok();
  REX_RETURN_IF_ERROR(check_pointers(fn, q, cache, block_table, out));
  LaunchWork work;
  work.num_tiles = tiles;
  work.n = n;
  work.past = past;
  return launch_for_head_dim(q, q_stride, work, q_heads, cache, block_table, out, stream);
}

Status plan_prefill_tiles(const PrefillSegment* segments, int num_segments, int rows, int block_size,
                          int table_entries, std::vector<PrefillTile>* tiles, const PrefillSplit& split,
                          std::vector<PrefillCombine>* combines) {
  auto bad = [](const std::string& what) { return invalid("plan_prefill_tiles", what); };
  if (!tiles) return bad("expected a tile vector but got a null pointer");
  tiles->clear();
  if (combines) combines->clear();
  if (split.enabled() && !combines) return bad("expected a combine vector for a split plan but got a null pointer");
  if (num_segments < 0) return bad("expected num_segments >= 0 but got " + str(num_segments));
  if (rows < 0) return bad("expected rows >= 0 but got " + str(rows));
  if (!power_of_two(block_size)) return bad("expected block_size a power of two but got " + str(block_size));
  if (table_entries < 0) return bad("expected table_entries >= 0 but got " + str(table_entries));
  if (num_segments > 0 && !segments)
    return bad("expected " + str(num_segments) + " segments but got a null pointer");
  int64_t prev_end = 0, count = 0;
  for (int s = 0; s < num_segments; ++s) {
    const PrefillSegment& g = segments[s];
    auto seg_bad = [&](const std::string& what) { return bad("segment " + str(s) + ": " + what); };
    if (g.n <= 0) return seg_bad("expected n >= 1 but got " + str(g.n));
    if (g.past < 0) return seg_bad("expected past >= 0 but got " + str(g.past));
    if (int64_t(g.past) + g.n > INT_MAX)
      return seg_bad("expected past + n <= " + str(INT_MAX) + " but got " + str(int64_t(g.past) + g.n));
    if (g.row_start < prev_end)
      return seg_bad("expected row_start >= " + str(prev_end) +
                     (s ? " (the end of segment " + str(s - 1) + "; segments go up the rows without overlap)" : "") +
                     " but got " + str(g.row_start));
    if (int64_t(g.row_start) + g.n > rows)
      return seg_bad("expected row_start + n <= rows " + str(rows) + " but got " + str(int64_t(g.row_start) + g.n));
    if (g.table_offset < 0) return seg_bad("expected table_offset >= 0 but got " + str(g.table_offset));
    const int64_t blocks = (int64_t(g.past) + g.n + block_size - 1) / block_size;
    if (g.table_offset + blocks > table_entries)
      return seg_bad("expected table_offset + its " + str(blocks) + " blocks (past + n = " +
                     str(int64_t(g.past) + g.n) + " tokens of " + str(block_size) + ") <= table_entries " +
                     str(table_entries) + " but got " + str(g.table_offset + blocks));
    prev_end = int64_t(g.row_start) + g.n;
    count += prefill_tiles(g.n);
  }
  if (count > kMaxGridY)
    return bad("expected at most " + str(kMaxGridY) + " tiles of " + str(kRows) + " rows but got " + str(count));
  tiles->reserve(size_t(count));
  for (int s = 0; s < num_segments; ++s) {
    const PrefillSegment& g = segments[s];
    for (int q0 = 0; q0 < g.n; q0 += kRows) {
      const int n = std::min(kRows, g.n - q0), pos0 = g.past + q0;
      tiles->push_back(PrefillTile{g.row_start + q0, n, pos0, g.table_offset, 0, (pos0 + n + kKeyTile - 1) / kKeyTile, -1});
    }
  }
  if (split.applies(count)) {
    // Up to `shares` shares a tile, each of at least kMinKeyTiles key tiles, cut evenly.
    const int64_t shares = (split.target_ctas + count * split.q_heads - 1) / (count * split.q_heads);
    std::vector<PrefillTile> cut;
    int slot = 0;
    for (const PrefillTile& t : *tiles) {
      const int keys = t.key_end;
      const int n = int(std::min<int64_t>(shares, std::max(1, keys / PrefillSplit::kMinKeyTiles)));
      if (n <= 1) {
        cut.push_back(t);
        continue;
      }
      combines->push_back(PrefillCombine{t.row0, t.rows, slot, n});
      for (int i = 0; i < n; ++i) {
        PrefillTile share = t;
        share.key_begin = int(int64_t(keys) * i / n);
        share.key_end = int(int64_t(keys) * (i + 1) / n);
        share.partial = slot++;
        cut.push_back(share);
      }
    }
    if (int64_t(cut.size()) > kMaxGridY)  // cannot happen while target_ctas stays below kMaxGridY
      return bad("expected at most " + str(kMaxGridY) + " tiles after splitting keys but got " + str(int64_t(cut.size())));
    *tiles = std::move(cut);
  }
  // Longest first: a CTA walks key_end - key_begin key tiles (unsplit:
  // ceil((pos0 + rows) / 64), so the order is by keys seen), ties by keys seen.
  std::stable_sort(tiles->begin(), tiles->end(), [](const PrefillTile& a, const PrefillTile& b) {
    const int wa = a.key_end - a.key_begin, wb = b.key_end - b.key_begin;
    return wa != wb ? wa > wb : a.pos0 + a.rows > b.pos0 + b.rows;
  });
  return Status::Ok();
}

size_t prefill_partial_floats(int partials, int q_heads, int head_dim) {
  if (partials <= 0 || q_heads <= 0 || head_dim <= 0) return 0;
  return size_t(partials) * size_t(q_heads) * size_t(kRows) * size_t(head_dim + 2);  // O, then {m, l}
}

Status PrefillPlan::build(const PrefillSegment* segments, int num_segments, int rows, int block_size,
                          int table_entries, cudaStream_t stream, const PrefillSplit& split) {
  built_ = false;
  partials_ = 0;
  REX_RETURN_IF_ERROR(
      plan_prefill_tiles(segments, num_segments, rows, block_size, table_entries, &tiles_, split, &combines_));
  if (!tiles_.empty())
    REX_RETURN_IF_ERROR(device_.upload(tiles_.data(), tiles_.size(), stream, "the prefill tile list"));
  for (const PrefillCombine& c : combines_) partials_ += c.partials;
  if (!combines_.empty()) {
    REX_RETURN_IF_ERROR(device_combines_.upload(combines_.data(), combines_.size(), stream, "the prefill combine list"));
    REX_RETURN_IF_ERROR(workspace_.ensure(prefill_partial_floats(partials_, split.q_heads, split.head_dim),
                                          "the prefill attention partials"));
  }
  split_ = split;
  block_size_ = block_size;
  built_ = true;
  return Status::Ok();
}

Status PrefillPlan::reserve(int max_tiles) {
  if (max_tiles < 0 || max_tiles > kMaxGridY)
    return invalid("PrefillPlan::reserve", "expected max_tiles in 0.." + str(kMaxGridY) + " but got " + str(max_tiles));
  return device_.ensure(size_t(max_tiles), "the prefill tile list");
}

Status attention_prefill_varlen_bf16(const bf16* q, int q_stride, const PrefillPlan& plan, int q_heads,
                                     PagedKv cache, const int32_t* block_tables, bf16* out, cudaStream_t stream) {
  const char* fn = "attention_prefill_varlen_bf16";
  auto bad = [fn](const std::string& what) { return invalid(fn, what); };
  if (!plan.built()) return bad("expected a built PrefillPlan but got one whose last build failed or never ran");
  REX_RETURN_IF_ERROR(check_layout(fn, q_stride, q_heads, cache));
  if (cache.block_size != plan.block_size())
    return bad("expected cache.block_size " + str(plan.block_size()) + " (the plan's) but got " +
               str(cache.block_size));
  if (plan.num_partials() > 0 && (q_heads != plan.split().q_heads || cache.head_dim != plan.split().head_dim))
    return bad("expected q_heads " + str(plan.split().q_heads) + " and head_dim " + str(plan.split().head_dim) +
               " (the split plan's) but got " + str(q_heads) + " and " + str(cache.head_dim));
  if (plan.num_tiles() == 0) return Status::Ok();
  REX_RETURN_IF_ERROR(check_pointers(fn, q, cache, block_tables, out));
  LaunchWork work;
  work.tiles = plan.device_tiles();
  work.num_tiles = plan.num_tiles();
  work.combines = plan.device_combines();
  work.num_combines = plan.num_combines();
  work.num_partials = plan.num_partials();
  work.partials = plan.partials();
  return launch_for_head_dim(q, q_stride, work, q_heads, cache, block_tables, out, stream);
}

}  // namespace rex::cuda
