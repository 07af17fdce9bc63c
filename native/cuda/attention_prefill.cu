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
//  - K/V rows are gathered from the paged cache with 16-byte cp.async, one
//    block-table lookup per row (block_size a power of two: shift and mask);
//    q rows are read in place at q_stride (the fused qkv GEMM output).
//  - 52 KB of shared memory (Q, K and V tiles of 64 x 136 bf16) for head_dim
//    128, so the limit is raised once with cudaFuncSetAttribute.
#include "cuda/attention_prefill.cuh"

#include <climits>
#include <string>

#include "cuda/attention_mma.cuh"
#include "cuda/cuda_check.h"

namespace rex::cuda {
namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kRows = kWarps * 16, kKeyTile = 64;

// head_dim 64 fits 3 CTAs per SM without spills; 128 needs ~190 registers (2 per SM).
template <int HD>
constexpr int prefill_min_blocks() {
  return HD == 128 ? 2 : 3;
}

template <int HD>
__global__ void __launch_bounds__(kThreads, prefill_min_blocks<HD>())
    attention_prefill_kernel(const bf16* __restrict__ q, int q_stride, int n, int past, int group, PagedKv cache,
                             int block_shift, const int32_t* __restrict__ block_table, float scale_log2,
                             bf16* __restrict__ out, int out_stride) {
  using Warp = attn::WarpFlash<HD, kKeyTile>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int head = blockIdx.x;
  const int tile = gridDim.y - 1 - blockIdx.y;  // longest first
  const int q0 = tile * kRows;
  const int kv_head = head / group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  // Keys this CTA can see: 0 .. past + (its last valid row), exclusive end.
  const int kv_end = past + min(q0 + kRows, n);
  const int64_t kv_row = int64_t(cache.kv_heads) * HD;
  const bf16* q_base = q + int64_t(head) * HD;
  const bf16* k_base = cache.k + int64_t(kv_head) * HD;
  const bf16* v_base = cache.v + int64_t(kv_head) * HD;
  auto q_offset = [q_stride](int t) { return int64_t(t) * q_stride; };
  auto kv_offset = [block_table, block_shift, kv_row](int t) {
    return attn::paged_row_pow2(block_table, block_shift, t) * kv_row;
  };
  const attn::FlashPass<HD, kKeyTile, kRows, kThreads> pass(smem_raw, tid);
  pass.prologue(q_base, q0, n, q_offset, k_base, v_base, kv_end, kv_offset);

  // This thread's two rows (absolute query index) and the warp's first row.
  const int g = lane / 4;
  const int warp_row0 = q0 + warp * 16;
  const int r0 = warp_row0 + g, r1 = r0 + 8;

  Warp w;
  w.init();
  const int num_tiles = (kv_end + kKeyTile - 1) / kKeyTile;
  for (int j = 0; j < num_tiles; ++j) {
    const int k0 = j * kKeyTile;
    pass.begin_tile(w, j, k0, warp, lane, v_base, kv_end, kv_offset);

    // Warp-uniform: does any row of this warp see any key of this tile?
    const bool active = warp_row0 < n && k0 <= past + warp_row0 + 15;
    float s[Warp::kSTiles][4];
    if (active) {
      w.scores(s, pass.sk, lane);
      // Key k0 + c is visible to row r iff k0 + c <= past + r (and k0 + c < kv_end).
      if (k0 + kKeyTile - 1 > past + warp_row0 || k0 + kKeyTile > kv_end)
        w.mask(s, kv_end - k0, past + r0 - k0, past + r1 - k0, lane);
      w.softmax(s, scale_log2);
    }

    pass.end_tile(j, num_tiles, k0, k_base, kv_end, kv_offset);
    if (active) w.accumulate(s, pass.sv, lane);
  }

  w.reduce_sums();
  bf16* o_base = out + int64_t(head) * HD;
  w.store(o_base + int64_t(r0) * out_stride, o_base + int64_t(r1) * out_stride, r0 < n, r1 < n, lane);
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

template <int HD>
Status launch_prefill(const bf16* q, int q_stride, int n, int past, int q_heads, const PagedKv& cache,
                      int block_shift, const int32_t* block_table, bf16* out, cudaStream_t stream) {
  REX_RETURN_IF_ERROR((prepare_prefill_kernel<HD>()));
  const int tiles = (n + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned>(q_heads), static_cast<unsigned>(tiles));
  attention_prefill_kernel<HD><<<grid, kThreads, prefill_smem_bytes<HD>(), stream>>>(
      q, q_stride, n, past, q_heads / cache.kv_heads, cache, block_shift, block_table,
      attn::softmax_scale_log2(HD), out, q_heads * HD);
  return check_launch("attention_prefill_kernel");
}

}  // namespace

Status attention_prefill_bf16(const bf16* q, int q_stride, int n, int past, int q_heads, PagedKv cache,
                              const int32_t* block_table, bf16* out, cudaStream_t stream) {
  auto bad = [](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, "attention_prefill_bf16: " + what);
  };
  const int hd = cache.head_dim;
  if (hd != 32 && hd != 64 && hd != 128) return bad("expected head_dim 32, 64 or 128 but got " + std::to_string(hd));
  if (n < 0) return bad("expected n >= 0 but got " + std::to_string(n));
  if (past < 0) return bad("expected past >= 0 but got " + std::to_string(past));
  if (int64_t(past) + n > INT_MAX)
    return bad("expected past + n <= " + std::to_string(INT_MAX) + " but got " + std::to_string(int64_t(past) + n));
  if (cache.kv_heads <= 0) return bad("expected kv_heads >= 1 but got " + std::to_string(cache.kv_heads));
  if (q_heads <= 0 || q_heads > 65535 || q_heads % cache.kv_heads != 0)
    return bad("expected q_heads in 1..65535, a multiple of kv_heads " + std::to_string(cache.kv_heads) +
               ", but got " + std::to_string(q_heads));
  const int bs = cache.block_size;
  if (bs <= 0 || (bs & (bs - 1)) != 0)
    return bad("expected block_size a power of two but got " + std::to_string(bs));
  if (q_stride < q_heads * hd || q_stride % 8 != 0)
    return bad("expected q_stride >= q_heads*head_dim (" + std::to_string(q_heads * hd) +
               ") and a multiple of 8 but got " + std::to_string(q_stride));
  if ((n + kRows - 1) / kRows > 65535)
    return bad("expected n <= " + std::to_string(65535 * kRows) + " but got " + std::to_string(n));
  if (n == 0) return Status::Ok();
  if (!q || !cache.k || !cache.v || !block_table || !out)
    return bad("expected non-null q, cache.k, cache.v, block_table and out but got a null pointer");
  if (!attn::aligned_to(q, 16) || !attn::aligned_to(cache.k, 16) || !attn::aligned_to(cache.v, 16))
    return bad("expected q, cache.k and cache.v 16-byte aligned but got a misaligned pointer");
  if (!attn::aligned_to(out, 4)) return bad("expected out 4-byte aligned but got a misaligned pointer");
  int shift = 0;
  while ((1 << shift) < bs) ++shift;
  // 32: the small test checkpoints' decoder.
  if (hd == 32) return launch_prefill<32>(q, q_stride, n, past, q_heads, cache, shift, block_table, out, stream);
  if (hd == 64) return launch_prefill<64>(q, q_stride, n, past, q_heads, cache, shift, block_table, out, stream);
  return launch_prefill<128>(q, q_stride, n, past, q_heads, cache, shift, block_table, out, stream);
}

}  // namespace rex::cuda
