// Vision attention (non-causal, varlen segments), FlashAttention-2 style on
// mma.sync m16n8k16 bf16 tensor cores.
//
// Why this shape:
//  - The full-attention blocks are matrix-bound (3888 patches: 77 GFLOP per
//    block, ~14 MB of q/k/v), so the work must run on tensor cores and S x S
//    must never reach memory: keys stream through shared memory in tiles of
//    64 and the softmax is online, in fp32 registers (attention_mma.cuh).
//  - A CTA owns one (segment, head, tile of query rows). Windows (<= 64 rows)
//    get 4 warps = 64 query rows, so one CTA is one window-head and there is
//    no idle half-tile; full attention gets 8 warps = 128 query rows, which
//    halves the K/V traffic through L2 per FLOP (128 FLOP per loaded byte).
//  - One K buffer and one V buffer, FA2's schedule: V_j is fetched while
//    S = Q K_j^T is computed, K_{j+1} while O += P V_j (V_0 is issued with
//    Q and K_0, so a one-tile window waits for one load latency, not two).
//    Several CTAs per SM hide the rest of the latency.
//  - q, k and v are read in place from the packed qkv GEMM rows (16-byte
//    cp.async; a head's 80 dims are 10 chunks); rows past a segment's end are
//    zero-filled in shared memory and their scores masked to -inf.
//  - Grid: x = segment * tiles_per_segment + tile (fastest, so the CTAs that
//    run together share one head's K/V in L2), y = head. Tiles past a short
//    segment's end exit at once.
#include "cuda/attention_vision.cuh"

#include <climits>
#include <string>

#include "cuda/attention_mma.cuh"
#include "cuda/cuda_check.h"

namespace rex::cuda {
namespace {

constexpr int kKeyTile = 64;

// Minimum CTAs per SM given to ptxas. The model's head_dim 80 is capped at
// 128 registers (4 CTAs of 4 warps, or 2 of 8, per SM), which it fits without
// spills; 64 and 128 (not used by the model) get looser caps that keep them
// spill-free too (ptxas -v, nvcc 13.0).
template <int HD, int WARPS>
constexpr int vision_min_blocks() {
  if (HD == 80) return WARPS == 8 ? 2 : 4;
  if (HD == 64) return WARPS == 8 ? 1 : 3;
  return 1;
}

template <int HD, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, vision_min_blocks<HD, WARPS>())
    attention_vision_kernel(const bf16* __restrict__ qkv, int heads, const int32_t* __restrict__ cu_seqlens,
                            int tiles_per_segment, float scale_log2, bf16* __restrict__ out) {
  constexpr int kThreads = WARPS * 32, kRows = WARPS * 16;
  using Warp = attn::WarpFlash<HD, kKeyTile>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int segment = blockIdx.x / tiles_per_segment, tile = blockIdx.x % tiles_per_segment;
  const int head = blockIdx.y;
  const int seg_begin = cu_seqlens[segment];
  const int seg_len = cu_seqlens[segment + 1] - seg_begin;
  const int q0 = tile * kRows;
  if (q0 >= seg_len) return;  // whole CTA: this segment is shorter than the longest one

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t row_stride = int64_t(3) * heads * HD;
  const bf16* q_base = qkv + int64_t(seg_begin) * row_stride + int64_t(head) * HD;
  const bf16* k_base = q_base + int64_t(heads) * HD;
  const bf16* v_base = q_base + int64_t(2) * heads * HD;

  auto row_offset = [row_stride](int t) { return int64_t(t) * row_stride; };
  const attn::FlashPass<HD, kKeyTile, kRows, kThreads> pass(smem_raw, tid);
  pass.prologue(q_base, q0, seg_len, row_offset, k_base, v_base, seg_len, row_offset);

  Warp w;
  w.init();
  const int num_tiles = (seg_len + kKeyTile - 1) / kKeyTile;
  for (int j = 0; j < num_tiles; ++j) {
    const int k0 = j * kKeyTile;
    pass.begin_tile(w, j, k0, warp, lane, v_base, seg_len, row_offset);

    float s[Warp::kSTiles][4];
    w.scores(s, pass.sk, lane);
    if (k0 + kKeyTile > seg_len) w.mask(s, seg_len - k0, INT_MAX, INT_MAX, lane);
    w.softmax(s, scale_log2);

    pass.end_tile(j, num_tiles, k0, k_base, seg_len, row_offset);
    w.accumulate(s, pass.sv, lane);
  }

  w.reduce_sums();
  const int g = lane / 4;
  const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
  const int64_t out_stride = int64_t(heads) * HD;
  bf16* o_base = out + int64_t(seg_begin) * out_stride + int64_t(head) * HD;
  w.store(o_base + int64_t(r0) * out_stride, o_base + int64_t(r1) * out_stride, r0 < seg_len, r1 < seg_len, lane);
}

template <int HD, int WARPS>
constexpr int vision_smem_bytes() {
  return attn::flash_smem_bytes<HD, WARPS * 16, kKeyTile>();
}

// Raises the kernel's dynamic shared-memory limit once per process (needed
// above 48 KB); the result of the one call is kept and returned every time.
template <int HD, int WARPS>
Status prepare_vision_kernel() {
  static const cudaError_t err = cudaFuncSetAttribute(attention_vision_kernel<HD, WARPS>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      vision_smem_bytes<HD, WARPS>());
  return cuda_status(err, "cudaFuncSetAttribute(attention_vision_kernel)");
}

template <int HD, int WARPS>
Status launch_vision(const bf16* qkv, int heads, const int32_t* cu_seqlens, int num_segments, int max_seqlen,
                     bf16* out, cudaStream_t stream) {
  REX_RETURN_IF_ERROR((prepare_vision_kernel<HD, WARPS>()));
  constexpr int kRows = WARPS * 16;
  const int tiles = (max_seqlen + kRows - 1) / kRows;
  if (int64_t(tiles) * num_segments > INT_MAX)
    return Status(StatusCode::kInvalidArgument, "attention_vision_bf16: expected num_segments * query tiles <= " +
                                                    std::to_string(INT_MAX) + " but got " +
                                                    std::to_string(int64_t(tiles) * num_segments));
  const dim3 grid(static_cast<unsigned>(tiles * num_segments), static_cast<unsigned>(heads));
  attention_vision_kernel<HD, WARPS><<<grid, WARPS * 32, vision_smem_bytes<HD, WARPS>(), stream>>>(
      qkv, heads, cu_seqlens, tiles, attn::softmax_scale_log2(HD), out);
  return check_launch("attention_vision_kernel");
}

Status validate(const bf16* qkv, int tokens, int heads, int head_dim, const int32_t* cu_seqlens, int num_segments,
                int max_seqlen, const bf16* out) {
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, "attention_vision_bf16: " + what); };
  if (head_dim != 16 && head_dim != 32 && head_dim != 64 && head_dim != 80 && head_dim != 128)
    return bad("expected head_dim 16, 32, 64, 80 or 128 but got " + std::to_string(head_dim));
  if (tokens < 0) return bad("expected tokens >= 0 but got " + std::to_string(tokens));
  if (heads <= 0 || heads > 65535) return bad("expected heads in 1..65535 but got " + std::to_string(heads));
  if (num_segments < 0) return bad("expected num_segments >= 0 but got " + std::to_string(num_segments));
  if (max_seqlen < 0) return bad("expected max_seqlen >= 0 but got " + std::to_string(max_seqlen));
  if (max_seqlen > tokens)
    return bad("expected max_seqlen <= tokens (" + std::to_string(tokens) + ") but got " + std::to_string(max_seqlen));
  if (tokens == 0 || num_segments == 0 || max_seqlen == 0) return Status::Ok();
  if (!qkv || !cu_seqlens || !out) return bad("expected non-null qkv, cu_seqlens and out but got a null pointer");
  if (!attn::aligned_to(qkv, 16)) return bad("expected qkv 16-byte aligned but got a misaligned pointer");
  if (!attn::aligned_to(out, 4)) return bad("expected out 4-byte aligned but got a misaligned pointer");
  return Status::Ok();
}

}  // namespace

namespace detail {

// The public entry with the query tile chosen by the caller (64 or 128 rows);
// tests time both. attention_vision_bf16 picks by max_seqlen.
Status attention_vision_bf16_rows(const bf16* qkv, int tokens, int heads, int head_dim, const int32_t* cu_seqlens,
                                  int num_segments, int max_seqlen, int query_rows, bf16* out, cudaStream_t stream) {
  REX_RETURN_IF_ERROR(validate(qkv, tokens, heads, head_dim, cu_seqlens, num_segments, max_seqlen, out));
  if (query_rows != 64 && query_rows != 128)
    return Status(StatusCode::kInvalidArgument,
                  "attention_vision_bf16: expected query_rows 64 or 128 but got " + std::to_string(query_rows));
  if (tokens == 0 || num_segments == 0 || max_seqlen == 0) return Status::Ok();
  const bool wide = query_rows == 128;
  switch (head_dim) {
    // 16 and 32: the small test checkpoints' towers.
    case 16:
      return wide ? launch_vision<16, 8>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream)
                  : launch_vision<16, 4>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream);
    case 32:
      return wide ? launch_vision<32, 8>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream)
                  : launch_vision<32, 4>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream);
    case 64:
      return wide ? launch_vision<64, 8>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream)
                  : launch_vision<64, 4>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream);
    case 80:
      return wide ? launch_vision<80, 8>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream)
                  : launch_vision<80, 4>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream);
    default:
      return wide ? launch_vision<128, 8>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream)
                  : launch_vision<128, 4>(qkv, heads, cu_seqlens, num_segments, max_seqlen, out, stream);
  }
}

}  // namespace detail

Status attention_vision_bf16(const bf16* qkv, int tokens, int heads, int head_dim, const int32_t* cu_seqlens,
                             int num_segments, int max_seqlen, bf16* out, cudaStream_t stream) {
  // Windows (<= 64 rows): one 64-row CTA per window-head. Longer segments:
  // 128-row CTAs, half the K/V traffic per FLOP.
  const int query_rows = max_seqlen <= 64 ? 64 : 128;
  return detail::attention_vision_bf16_rows(qkv, tokens, heads, head_dim, cu_seqlens, num_segments, max_seqlen,
                                            query_rows, out, stream);
}

}  // namespace rex::cuda
