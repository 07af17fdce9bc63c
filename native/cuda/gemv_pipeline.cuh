// The decode GEMV's pieces (gemv.cu launches one projection with them): the
// ring of shared-memory stages, the producer warp that streams W into it, and
// the consumer warps that stage x, multiply on the tensor cores and run the
// epilogue. Why they are shaped this way is in gemv.cu's note; here, what
// each piece promises:
//  - produce / consume_tiles walk the same (tile, k) sequence of the
//    projection for this block, through ring positions counted from 0;
//  - a row's bits depend on k alone (fixed slab order, fixed reduction);
//  - activations (x, the norm's input, the residual) are read through L2
//    (ld.global.cg), not L1.
// Internal to native/cuda (namespace gemv_detail).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "cuda/bulk_copy.cuh"
#include "cuda/gemv.cuh"
#include "cuda/pdl.cuh"

namespace rex::cuda::gemv_detail {

constexpr int kConsumerWarps = 4;
constexpr int kThreads = (kConsumerWarps + 1) * 32;  // + the producer warp
constexpr int kSlabK = 32;                           // k per mma pair: 4 lanes x 8 k
constexpr int kRowPadBytes = 64;                     // row stride = 64 mod 128 bytes
constexpr int kMaxStages = 16;
constexpr int kRowsPerCall = 8;                      // batch rows per mma (its n)

// Overrides for A/B runs (scripts/gemv-ab.sh): blocks per SM (0: from the
// tile count), the deepest ring, and the k of a stage (R = 1; half for R = 2).
#ifndef REX_GEMV_BLOCKS_PER_SM
#define REX_GEMV_BLOCKS_PER_SM 0
#endif
#ifndef REX_GEMV_MAX_STAGES
#define REX_GEMV_MAX_STAGES kMaxStages
#endif
#ifndef REX_GEMV_STAGE_K
#define REX_GEMV_STAGE_K 512
#endif

// One stage: 16 weight rows per row tile (R tiles: 2 for gate and up) by
// kK of k. Each row is one bulk copy of up to 2 kK bytes.
template <int R>
struct Stage {
  static constexpr int kK = R == 1 ? REX_GEMV_STAGE_K : REX_GEMV_STAGE_K / 2;
  static constexpr int kRows = 16 * R;
  static constexpr int kRowBytes = 2 * kK + kRowPadBytes;
  static constexpr int kBytes = kRows * kRowBytes;
};

// Where a block keeps x: m rows of k bf16 after the ring, each row padded to
// 64 mod 128 bytes like the weight rows.
__host__ __device__ constexpr int x_row_bytes(int k) { return 2 * k + kRowPadBytes; }

// One projection as the kernels see it.
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
  int tiles;    // ceil(n / 16)
  int stages;   // depth of the ring
  int x_seg_k;  // k of x in shared memory at once: k, or a multiple of the stage's k (x_segment_k)
};

// x too large to sit in shared memory beside a deep ring (down_proj's 11008
// k at 8 rows: 176 KB) is staged in segments of k, each before its stages:
// the same values in the same order, so the same bits.
constexpr int kWholeXMaxBytes = 64 << 10;
inline int x_segment_k(int m, int k, int stage_k) {
  const long long whole = (long long)m * (2LL * k + kRowPadBytes);
  if (whole <= kWholeXMaxBytes) return k;
  const int segments = int((whole + kWholeXMaxBytes - 1) / kWholeXMaxBytes);
  const int stages_k = (k + stage_k - 1) / stage_k;
  return ((stages_k + segments - 1) / segments) * stage_k;
}

// An epilogue as compile-time constants: R weight-row tiles per output tile
// (2: gate and up), E the epilogue.
template <int R_, GemvEpilogue E_>
struct EpilogueKind {
  static constexpr int R = R_;
  static constexpr GemvEpilogue E = E_;
};

// f(EpilogueKind<R, E>{}) for the runtime epilogue e: the one place a
// runtime epilogue picks its template instantiation. An unknown value is
// rejected by check_args.
template <typename F>
inline auto with_epilogue(GemvEpilogue e, F&& f) {
  switch (e) {
    case GemvEpilogue::kStoreF32: return f(EpilogueKind<1, GemvEpilogue::kStoreF32>{});
    case GemvEpilogue::kAddResidual: return f(EpilogueKind<1, GemvEpilogue::kAddResidual>{});
    case GemvEpilogue::kSwiglu: return f(EpilogueKind<2, GemvEpilogue::kSwiglu>{});
    default: return f(EpilogueKind<1, GemvEpilogue::kStoreBf16>{});
  }
}

#ifdef __CUDACC__
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// The consumer warps' own barrier (the producer runs on independently).
__device__ __forceinline__ void consumer_sync() {
  asm volatile("bar.sync 1, %0;\n" ::"n"(kConsumerWarps * 32) : "memory");
}

// The ring's barriers: full[s] completes when slot s holds its copies,
// empty[s] when the consumer warps are done with it. One thread, then a
// __syncthreads by the caller.
__device__ __forceinline__ void init_ring(uint64_t* full, uint64_t* empty, int stages) {
  for (int s = 0; s < stages; ++s) {
    mbarrier_init(&full[s], 1);
    mbarrier_init(&empty[s], kConsumerWarps);
  }
  mbarrier_init_fence();
}

// The producer warp: lane i < 16 R copies row i of the tile's rows, stage
// after stage, tile after tile, waiting only for a free slot of the ring.
template <int R>
__device__ void produce(const KernelArgs& a, uint8_t* ring, uint64_t* full, uint64_t* empty, int lane) {
  using S = Stage<R>;
  const uint64_t policy = l2_evict_first_policy();
  uint32_t q = 0;  // ring positions issued by this block
  for (int tile = blockIdx.x; tile < a.tiles; tile += gridDim.x) {
    const bf16* src = a.w;
    if (lane < S::kRows) {
      // Rows past n copy a valid row; their outputs are not stored.
      const int j = min(tile * 16 + lane % 16, a.n - 1);
      src = a.w + size_t((a.row_ids ? a.row_ids[j] : j) + (lane / 16) * a.pair_offset) * a.k;
    }
    for (int kk = 0; kk < a.k; kk += S::kK, ++q) {
      const uint32_t slot = q % uint32_t(a.stages), round = q / uint32_t(a.stages);
      if (round > 0) mbarrier_wait(&empty[slot], (round - 1) & 1);
      const uint32_t row_bytes = uint32_t(min(S::kK, a.k - kk)) * 2;
      if (lane == 0) mbarrier_arrive_expect_bytes(&full[slot], row_bytes * S::kRows);
      __syncwarp();
      if (lane < S::kRows)
        bulk_copy_to_shared(ring + size_t(slot) * S::kBytes + lane * S::kRowBytes, src + kk, row_bytes, &full[slot],
                            policy);
    }
  }
}

// The consumer warps, before a projection's x: with the fused norm, each
// row's 1 / rms into inv_rms (kRowsPerCall floats of shared memory).
__device__ __forceinline__ void norm_scales(const KernelArgs& a, float* inv_rms, int warp, int lane) {
  if (!a.norm_input) return;
  for (int row = warp; row < a.m; row += kConsumerWarps) {
    const float* r = a.norm_input + size_t(row) * a.lda;
    float ss = 0.0f;
    for (int i = lane * 4; i < a.k; i += 128) {
      const float4 v = __ldcg(reinterpret_cast<const float4*>(r + i));
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) inv_rms[row] = rsqrtf(ss / float(a.k) + a.norm_eps);
  }
  consumer_sync();
}

// x[:, k0:k1] (the fused norm's output, or the input as is) into shared
// memory, rows x_row_bytes(x_seg_k) apart, 8 k per thread; ends with a
// consumer_sync. With the fused norm, x = bf16(bf16(r * inv_rms) * norm_weight).
__device__ __forceinline__ void stage_x_range(const KernelArgs& a, uint8_t* xs, const float* inv_rms, int k0, int k1,
                                              int warp, int lane) {
  const int tid = warp * 32 + lane;
  for (int row = 0; row < a.m; ++row)
    for (int k = k0 + tid * 8; k < k1; k += kConsumerWarps * 32 * 8) {
      uint4 v;
      if (!a.norm_input) {
        v = __ldcg(reinterpret_cast<const uint4*>(a.x + size_t(row) * a.lda + k));
      } else {
        const float4* r = reinterpret_cast<const float4*>(a.norm_input + size_t(row) * a.lda + k);
        const float4 r0 = __ldcg(r), r1 = __ldcg(r + 1);
        const uint4 wraw = __ldg(reinterpret_cast<const uint4*>(a.norm_weight + k));
        const float inv = inv_rms[row];
        const float f[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
        const uint32_t wwords[4] = {wraw.x, wraw.y, wraw.z, wraw.w};
        uint32_t out[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          out[i] = pack_bf16x2(round_bf16(round_bf16(f[2 * i] * inv) * bf16_lo(wwords[i])),
                               round_bf16(round_bf16(f[2 * i + 1] * inv) * bf16_hi(wwords[i])));
        v = make_uint4(out[0], out[1], out[2], out[3]);
      }
      *reinterpret_cast<uint4*>(xs + row * x_row_bytes(a.x_seg_k) + 2 * (k - k0)) = v;
    }
  consumer_sync();
}

// Before a projection's tiles: the norm's scales, and all of x when it sits
// in shared memory whole (else consume_tiles stages each segment).
__device__ __forceinline__ void stage_x(const KernelArgs& a, uint8_t* xs, float* inv_rms, int warp, int lane) {
  norm_scales(a, inv_rms, warp, lane);
  if (a.x_seg_k >= a.k) stage_x_range(a, xs, inv_rms, 0, a.k, warp, lane);
}

// The consumer warps over a projection's tiles (after stage_x): per tile the
// mma over its stages (staging each segment of x first when x is segmented),
// then the epilogue. partial: kConsumerWarps * R * 32 float4 of shared
// memory.
template <int R, GemvEpilogue E>
__device__ void consume_tiles(const KernelArgs& a, const uint8_t* ring, uint64_t* full, uint64_t* empty, uint8_t* xs,
                              const float* inv_rms, float4* partial, int warp, int lane) {
  using S = Stage<R>;
  const int g = lane / 4, t = lane % 4;
  const bool segmented = a.x_seg_k < a.k;
  auto part = [&](int w, int r, int l) -> float4& { return partial[(w * R + r) * 32 + l]; };
  // This lane's x row (g) as the mma's B fragment wants it; rows past m are zeros.
  const uint8_t* xrow = g < a.m ? xs + g * x_row_bytes(a.x_seg_k) + 16 * t : nullptr;
  uint32_t q = 0;  // ring positions consumed by this block
  for (int tile = blockIdx.x; tile < a.tiles; tile += gridDim.x) {
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][e] = 0.0f;
    for (int kk = 0; kk < a.k; kk += S::kK, ++q) {
      const int seg0 = segmented ? kk / a.x_seg_k * a.x_seg_k : 0;  // where this stage's x segment starts
      if (segmented && kk == seg0) {
        consumer_sync();  // every warp is done with the last segment
        stage_x_range(a, xs, inv_rms, seg0, min(a.k, seg0 + a.x_seg_k), warp, lane);
      }
      const uint32_t slot = q % uint32_t(a.stages);
      mbarrier_wait(&full[slot], (q / uint32_t(a.stages)) & 1);
      const uint8_t* stage = ring + size_t(slot) * S::kBytes + g * S::kRowBytes + 16 * t;
      const int slabs = min(S::kK, a.k - kk) / kSlabK;
#pragma unroll
      for (int u = 0; u < S::kK / kSlabK / kConsumerWarps; ++u) {
        const int s = warp + u * kConsumerWarps;
        if (s < slabs) {
          uint4 wv[R][2];
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              wv[r][h] = *reinterpret_cast<const uint4*>(stage + (r * 16 + 8 * h) * S::kRowBytes + s * 64);
          const uint4 xv =
              xrow ? *reinterpret_cast<const uint4*>(xrow + 2 * (kk - seg0 + s * kSlabK)) : make_uint4(0, 0, 0, 0);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            mma_bf16(acc[r], wv[r][0].x, wv[r][1].x, wv[r][0].y, wv[r][1].y, xv.x, xv.y);
            mma_bf16(acc[r], wv[r][0].z, wv[r][1].z, wv[r][0].w, wv[r][1].w, xv.z, xv.w);
          }
        }
      }
      __syncwarp();
      if (lane == 0) mbarrier_arrive(&empty[slot]);
    }

    // Warp partials meet in shared memory, added in warp order by warp 0,
    // which then runs the epilogue.
#pragma unroll
    for (int r = 0; r < R; ++r) part(warp, r, lane) = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    consumer_sync();
    if (warp == 0) {
      float v[R][4];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float4 sum = part(0, r, lane);
#pragma unroll
        for (int w = 1; w < kConsumerWarps; ++w) {
          const float4 p = part(w, r, lane);
          sum.x += p.x;
          sum.y += p.y;
          sum.z += p.z;
          sum.w += p.w;
        }
        v[r][0] = sum.x;
        v[r][1] = sum.y;
        v[r][2] = sum.z;
        v[r][3] = sum.w;
      }
      // Element e: output row j = n0 + g + 8 * (e / 2), batch row b = 2t + e % 2.
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = tile * 16 + g + 8 * (e / 2), b = 2 * t + (e % 2);
        if (j >= a.n || b >= a.m) continue;
        const size_t o = size_t(b) * a.ldo + j;
        if constexpr (E == GemvEpilogue::kStoreBf16) {
          const float bias = a.bias ? __bfloat162float(a.bias[j]) : 0.0f;
          a.out_bf16[o] = __float2bfloat16_rn(v[0][e] + bias);
        } else if constexpr (E == GemvEpilogue::kStoreF32) {
          a.out_f32[o] = v[0][e];
        } else if constexpr (E == GemvEpilogue::kAddResidual) {
          a.residual[o] = __ldcg(a.residual + o) + round_bf16(v[0][e]);
        } else {
          a.out_bf16[o] = __float2bfloat16_rn(silu(round_bf16(v[0][e])) * round_bf16(v[R - 1][e]));
        }
      }
    }
    consumer_sync();
  }
}
#endif  // __CUDACC__

// What the device offers one kernel: multiprocessors, and shared memory per
// multiprocessor and per block (opt-in), less the kernel's static share (the
// opt-in limit is raised for it).
struct Fit {
  int multiprocessors = 0, smem_per_sm = 0, smem_per_block = 0, static_smem = 0;
  Status status;
};
Fit query_fit(const void* kernel);

// Checks a projection's arguments (gemv.cuh's rules) and converts them.
Status check_args(const GemvArgs& args);
KernelArgs kernel_args(const GemvArgs& args);

}  // namespace rex::cuda::gemv_detail
