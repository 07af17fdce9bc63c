// Decode-step projections (gemv.cuh). Why this shape:
//  - A decode step is weight streaming: 16 bytes of W per 16 multiply-adds
//    per row. The tensor cores do the arithmetic with W as the A operand
//    ("swap AB"): one mma.sync m16n8k16 multiplies 16 weight rows by 8 batch
//    rows, so m <= 8 costs one W read and m <= 64 still reads W once
//    (TILES column tiles reuse each A fragment).
//  - Each lane loads W straight into its A fragment with 16-byte loads: the
//    dot product does not care about the order of k, so lane (g, t) reads 8
//    consecutive k of rows g and g+8 and gives them to two mmas' k slots; the
//    x row is read with the same permutation. No shared memory on the way in.
//  - A block is `split` warps on one 16-row tile, each over its own k range,
//    so every shape has >= ~2000 warps in flight over the 132 SMs; the warps'
//    partial sums meet in shared memory and are added in warp order (fixed,
//    so results are deterministic and do not depend on m).
//  - Each warp holds one step of W loads ahead (two register buffers used in
//    turn), and the first step is issued before griddepcontrol.wait: launched with
//    programmatic dependent launch, the weights stream while the previous
//    kernel (a norm, rope, attention) finishes.
//  - The prologue may do what precedes it: the RMSNorm of the fp32 residual
//    rows, recomputed by every block from L2 (m x k floats), so no norm
//    kernel sits between projections.
//  - The epilogue does what follows the projection: bias (QKV), residual add
//    (o_proj, down_proj), SwiGLU over paired gate/up tiles (gate_up), or fp32
//    logits (LM head, over any row subset through row_ids).
#include "cuda/gemv.cuh"

#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"

namespace rex::cuda {
namespace {

constexpr int kMaxSplit = 16;
constexpr int kSlabK = 32;  // k per lane-group pass: 4 lanes x 8 k

// How W is read (REX_GEMV_LOAD, for A/B runs; NOTES.md, gemv): 0 the
// non-coherent path without L1 allocation, 1 the same with the L2 fetching
// 256-byte sectors, 2 L2-only (.cg) with 256-byte sectors, 3 a plain load.
#ifndef REX_GEMV_LOAD
#define REX_GEMV_LOAD 1
#endif
__device__ __forceinline__ uint4 load_weight(const bf16* p) {
  uint4 v;
#if REX_GEMV_LOAD == 0
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
#elif REX_GEMV_LOAD == 1
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
#elif REX_GEMV_LOAD == 2
  asm volatile("ld.global.cg.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
#else
  v = *reinterpret_cast<const uint4*>(p);
#endif
  return v;
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

struct KernelArgs {
  const bf16* x;
  const float* norm_input;
  const bf16* norm_weight;
  float norm_eps;
  int lda, m;
  const bf16* w;
  int k, n;
  const int32_t* row_ids;
  int pair_offset;
  const bf16* bias;
  bf16* out_bf16;
  float* out_f32;
  float* residual;
  int ldo;
  int k_chunk;  // k per warp, a multiple of kSlabK
};

// R row tiles per warp (2: gate and up), TILES column tiles of 8 batch rows,
// U slabs of 32 k per step.
template <int TILES, int R, int U, GemvEpilogue E>
__global__ void __launch_bounds__(kMaxSplit * 32) gemv_kernel(const KernelArgs a) {
  pdl_launch_dependents();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 16;
  // The weight rows of this lane: rows g and g + 8 of the tile, clamped into
  // range (rows past n compute on a valid row and are not stored).
  const bf16* wrow[R][2];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int j = min(n0 + g + 8 * h, a.n - 1);
      const int row = (a.row_ids ? a.row_ids[j] : j) + r * a.pair_offset;
      wrow[r][h] = a.w + size_t(row) * a.k + 8 * t;
    }
  const int k_begin = warp * a.k_chunk, k_end = min(a.k, k_begin + a.k_chunk);
  constexpr int kStep = U * kSlabK;

  float acc[R][TILES][4];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < TILES; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][c][e] = 0.0f;

  auto load_step = [&](uint4 (&wv)[U][R][2], int kk) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[u][r][h] = kk + u * kSlabK < k_end ? load_weight(wrow[r][h] + kk + u * kSlabK) : make_uint4(0, 0, 0, 0);
  };

  // The prologue of a fused RMSNorm: 1 / rms of each of the m rows, the
  // warps taking rows in turn (lanes over k, then a fixed shuffle tree).
  __shared__ float inv_rms[64];
  auto x_chunk = [&](int row, int k) -> uint4 {
    if (row >= a.m) return make_uint4(0, 0, 0, 0);
    if (!a.norm_input) return __ldg(reinterpret_cast<const uint4*>(a.x + size_t(row) * a.lda + k));
    const float4* r = reinterpret_cast<const float4*>(a.norm_input + size_t(row) * a.lda + k);
    const float4 r0 = r[0], r1 = r[1];
    const uint4 wraw = __ldg(reinterpret_cast<const uint4*>(a.norm_weight + k));
    const float inv = inv_rms[row];
    const float v[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
    const uint32_t wwords[4] = {wraw.x, wraw.y, wraw.z, wraw.w};
    uint32_t out[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float lo = round_bf16(round_bf16(v[2 * i] * inv) * bf16_lo(wwords[i]));
      const float hi = round_bf16(round_bf16(v[2 * i + 1] * inv) * bf16_hi(wwords[i]));
      out[i] = pack_bf16x2(lo, hi);
    }
    return make_uint4(out[0], out[1], out[2], out[3]);
  };

  auto compute_step = [&](const uint4 (&wv)[U][R][2], int kk) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ks = kk + u * kSlabK;
      if (ks >= k_end) break;
#pragma unroll
      for (int c = 0; c < TILES; ++c) {
        const uint4 xv = x_chunk(c * 8 + g, ks + 8 * t);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint4 lo = wv[u][r][0], hi = wv[u][r][1];
          mma_bf16(acc[r][c], lo.x, hi.x, lo.y, hi.y, xv.x, xv.y);
          mma_bf16(acc[r][c], lo.z, hi.z, lo.w, hi.w, xv.z, xv.w);
        }
      }
    }
  };

  // Two register buffers in turn (ping-pong, no copies between them: a copy
  // would wait for the loads it moves), so two steps of W are in flight.
  uint4 wa[U][R][2], wb[U][R][2];
  if (k_begin < k_end) load_step(wa, k_begin);
  pdl_wait();  // x (and the residual) come from the previous kernel
  if (a.norm_input) {
    const int warps = blockDim.x / 32;
    for (int row = warp; row < a.m; row += warps) {
      const float* r = a.norm_input + size_t(row) * a.lda;
      float ss = 0.0f;
      for (int i = lane * 4; i < a.k; i += 128) {
        const float4 v = *reinterpret_cast<const float4*>(r + i);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
#pragma unroll
      for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
      if (lane == 0) inv_rms[row] = rsqrtf(ss / float(a.k) + a.norm_eps);
    }
    __syncthreads();
  }
  for (int kk = k_begin; kk < k_end; kk += 2 * kStep) {
    if (kk + kStep < k_end) load_step(wb, kk + kStep);
    compute_step(wa, kk);
    if (kk + kStep >= k_end) break;
    if (kk + 2 * kStep < k_end) load_step(wa, kk + 2 * kStep);
    compute_step(wb, kk + kStep);
  }

  // Warp partials meet in shared memory, one column tile at a time, added in
  // warp order by warp 0, which then runs the epilogue.
  __shared__ float4 partial[kMaxSplit][R][32];
  const int warps = blockDim.x / 32;
#pragma unroll
  for (int c = 0; c < TILES; ++c) {
    if (c * 8 >= a.m) break;
#pragma unroll
    for (int r = 0; r < R; ++r) partial[warp][r][lane] = make_float4(acc[r][c][0], acc[r][c][1], acc[r][c][2], acc[r][c][3]);
    __syncthreads();
    if (warp == 0) {
      float v[R][4];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float4 s = partial[0][r][lane];
        for (int w = 1; w < warps; ++w) {
          const float4 p = partial[w][r][lane];
          s.x += p.x;
          s.y += p.y;
          s.z += p.z;
          s.w += p.w;
        }
        v[r][0] = s.x;
        v[r][1] = s.y;
        v[r][2] = s.z;
        v[r][3] = s.w;
      }
      // Element e: output row j = n0 + g + 8 * (e / 2), batch row b = c * 8 + 2t + e % 2.
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = n0 + g + 8 * (e / 2), b = c * 8 + 2 * t + (e % 2);
        if (j >= a.n || b >= a.m) continue;
        const size_t o = size_t(b) * a.ldo + j;
        if constexpr (E == GemvEpilogue::kStoreBf16) {
          const float bias = a.bias ? __bfloat162float(a.bias[j]) : 0.0f;
          a.out_bf16[o] = __float2bfloat16_rn(v[0][e] + bias);
        } else if constexpr (E == GemvEpilogue::kStoreF32) {
          a.out_f32[o] = v[0][e];
        } else if constexpr (E == GemvEpilogue::kAddResidual) {
          a.residual[o] += round_bf16(v[0][e]);
        } else {
          a.out_bf16[o] = __float2bfloat16_rn(silu(round_bf16(v[0][e])) * round_bf16(v[R - 1][e]));
        }
      }
    }
    __syncthreads();
  }
}

template <int TILES, int R, GemvEpilogue E>
Status launch(const KernelArgs& a, int split, bool overlap, cudaStream_t stream) {
  // One step of W loads ahead, in registers: fewer slabs per step as the
  // accumulators grow, so nothing spills under the 128-register cap.
  constexpr int U = (R == 1 && TILES <= 2) ? 4 : (R * TILES >= 8 ? 1 : 2);
  const dim3 grid(ceil_div(size_t(a.n), 16)), block(unsigned(split * 32));
  return launch_maybe_overlapped(gemv_kernel<TILES, R, U, E>, grid, block, 0, stream, overlap, "gemv", a);
}

template <int R, GemvEpilogue E>
Status launch_tiles(const KernelArgs& a, int split, bool overlap, cudaStream_t stream) {
  if (a.m <= 8) return launch<1, R, E>(a, split, overlap, stream);
  if (a.m <= 16) return launch<2, R, E>(a, split, overlap, stream);
  if (a.m <= 32) return launch<4, R, E>(a, split, overlap, stream);
  return launch<8, R, E>(a, split, overlap, stream);
}

}  // namespace

bool gemv_supports(int m, int k, int n) { return m >= 1 && m <= 64 && k >= kSlabK && k % kSlabK == 0 && n >= 1; }

int gemv_default_split(int n, int k) {
  // Enough warps to cover the chip (~2000), never a warp with less than one
  // 128-k step of its own.
  const int tiles = int(ceil_div(size_t(n), 16));
  int split = 1;
  while (split < kMaxSplit && tiles * split < 2048 && k / (2 * split) >= 128) split *= 2;
  return split;
}

Status gemv(const GemvArgs& args, cudaStream_t stream) {
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, "gemv: " + what); };
  if (!gemv_supports(args.m, args.k, args.n))
    return bad("expected 1 <= m <= 64, k a positive multiple of 32 and n >= 1 but got m " + std::to_string(args.m) +
               ", k " + std::to_string(args.k) + ", n " + std::to_string(args.n));
  if ((!args.x && !args.norm_input) || !args.w || args.lda < args.k || args.lda % 8 != 0)
    return bad("expected x (or norm_input) and w, and a row stride lda >= k that is a multiple of 8, but got lda " +
               std::to_string(args.lda));
  if (args.norm_input && (!args.norm_weight || args.k % 128 != 0))
    return bad("expected the fused norm's weight and k a multiple of 128 but got k " + std::to_string(args.k));
  const int split = args.split > 0 ? args.split : gemv_default_split(args.n, args.k);
  if (split > kMaxSplit) return bad("expected a split of at most 16 but got " + std::to_string(split));
  KernelArgs a{args.x, args.norm_input, args.norm_weight, args.norm_eps, args.lda, args.m, args.w, args.k, args.n, args.row_ids, args.pair_offset, args.bias,
               args.out_bf16, args.out_f32, args.residual, args.ldo > 0 ? args.ldo : args.n, 0};
  a.k_chunk = int(ceil_div(ceil_div(size_t(args.k), size_t(split)), kSlabK)) * kSlabK;
  const bool ov = args.overlap_previous;
  switch (args.epilogue) {
    case GemvEpilogue::kStoreBf16:
      if (!args.out_bf16) return bad("the bf16 store needs out_bf16");
      return launch_tiles<1, GemvEpilogue::kStoreBf16>(a, split, ov, stream);
    case GemvEpilogue::kStoreF32:
      if (!args.out_f32) return bad("the fp32 store needs out_f32");
      return launch_tiles<1, GemvEpilogue::kStoreF32>(a, split, ov, stream);
    case GemvEpilogue::kAddResidual:
      if (!args.residual) return bad("the residual add needs residual");
      return launch_tiles<1, GemvEpilogue::kAddResidual>(a, split, ov, stream);
    case GemvEpilogue::kSwiglu:
      if (!args.out_bf16 || args.pair_offset <= 0) return bad("SwiGLU needs out_bf16 and the up rows' pair_offset");
      return launch_tiles<2, GemvEpilogue::kSwiglu>(a, split, ov, stream);
  }
  return bad("unknown epilogue");
}

}  // namespace rex::cuda
