// Decode-step projections (gemv.cuh). Why this shape:
//  - A decode step is weight streaming: 16 bytes of W per 16 multiply-adds
//    per row, so the kernel is as fast as the bytes it keeps in flight. One
//    producer warp per block streams W with the copy engine (1-D bulk copies,
//    one per weight row per stage) into a ring of shared-memory stages that
//    fills the multiprocessor's shared memory: 70-200 KB in flight per SM,
//    far more than registers could hold, at a handful of instructions.
//  - The grid is persistent: min(tiles, what fits) blocks walk the 16-row
//    tiles, and the producer runs ahead across tile boundaries, so the stream
//    never drains between tiles. Tiles are whole rows of k: no cross-block
//    reduction, and a tile's stages are reduced in one fixed order.
//  - The tensor cores do the arithmetic with W as the A operand ("swap AB"):
//    one mma.sync m16n8k16 multiplies 16 weight rows by 8 batch rows, so a
//    launch takes up to 8 rows for one W read (more rows: one launch per 8,
//    the same arithmetic per row). Each lane reads its A fragment from the
//    stage with 16-byte loads: lane (g, t) takes 8 consecutive k of rows g
//    and g + 8 and gives them to two mmas' k slots (the dot product does not
//    care about the order of k; x is read with the same permutation). Rows
//    are padded to 64 mod 128 bytes, so each quarter-warp hits 32 banks.
//  - x lives in shared memory too, written once per block by the consumers
//    (normalised, with the fused norm): a consumer's step is then shared-
//    memory loads and mmas only, never a wait on L2 (the version that read x
//    from L2 in the loop streamed at a third of the bandwidth with one block
//    per SM: NOTES.md, gemv).
//  - Four consumer warps take the 32-k slabs of a stage in turn (slab s to
//    warp s mod 4); their partial sums meet in shared memory in warp order.
//    A row's bits therefore depend on k alone: not on m, n, the grid or the
//    other rows (row invariance; the restricted head equals the full one).
//  - Launched with programmatic dependent launch, the producer never waits
//    for the previous kernel (weights are constant): the first stages stream
//    while a norm, rope or attention finishes; only the consumers wait.
//  - The prologue may do what precedes it: the RMSNorm of the fp32 residual
//    rows, recomputed by every block from L2 (m x k floats) as it writes x,
//    so no norm kernel sits between projections.
//  - The epilogue does what follows the projection: bias (QKV), residual add
//    (o_proj, down_proj), SwiGLU over paired gate/up tiles (gate_up), or fp32
//    logits (LM head, over any row subset through row_ids).
#include "cuda/gemv.cuh"

#include <algorithm>
#include <string>

#include "cuda/bulk_copy.cuh"
#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"

namespace rex::cuda {
namespace {

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
  int tiles;   // ceil(n / 16)
  int stages;  // depth of the ring
};

// The producer warp: lane i < 16 R copies row i of the tile's rows, stage
// after stage, tile after tile, waiting only for a free slot of the ring.
template <int R>
__device__ void produce(const KernelArgs& a, uint8_t* ring, uint64_t* full, uint64_t* empty, int lane) {
  using S = Stage<R>;
  const uint64_t policy = l2_evict_first_policy();
  uint32_t q = 0;  // stages issued by this block
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
        bulk_copy_to_shared(ring + size_t(slot) * S::kBytes + lane * S::kRowBytes, src + kk, row_bytes, &full[slot], policy);
    }
  }
}

// Where a block keeps x: m rows of k bf16 after the ring, each row padded to
// 64 mod 128 bytes like the weight rows.
__host__ __device__ constexpr int x_row_bytes(int k) { return 2 * k + kRowPadBytes; }

// The consumer warps: x (the fused norm's output, or the input as is) into
// shared memory once per block, then per tile the mma over the stages and
// the epilogue.
template <int R, GemvEpilogue E>
__device__ void consume(const KernelArgs& a, const uint8_t* ring, uint64_t* full, uint64_t* empty, uint8_t* xs, int warp,
                        int lane) {
  using S = Stage<R>;
  const int g = lane / 4, t = lane % 4, tid = warp * 32 + lane;
  __shared__ float inv_rms[kRowsPerCall];
  __shared__ float4 partial[kConsumerWarps][R][32];
  pdl_wait();  // x (and the residual) come from the previous kernel
  if (a.norm_input) {
    for (int row = warp; row < a.m; row += kConsumerWarps) {
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
    consumer_sync();
  }
  // x row by row, 8 k per thread: with the fused norm,
  // x = bf16(bf16(r * inv_rms) * norm_weight).
  for (int row = 0; row < a.m; ++row)
    for (int k = tid * 8; k < a.k; k += kConsumerWarps * 32 * 8) {
      uint4 v;
      if (!a.norm_input) {
        v = __ldg(reinterpret_cast<const uint4*>(a.x + size_t(row) * a.lda + k));
      } else {
        const float4* r = reinterpret_cast<const float4*>(a.norm_input + size_t(row) * a.lda + k);
        const float4 r0 = r[0], r1 = r[1];
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
      *reinterpret_cast<uint4*>(xs + row * x_row_bytes(a.k) + 2 * k) = v;
    }
  consumer_sync();
  // This lane's x row (g) as the mma's B fragment wants it; rows past m are zeros.
  const uint8_t* xrow = g < a.m ? xs + g * x_row_bytes(a.k) + 16 * t : nullptr;

  uint32_t q = 0;  // stages consumed by this block
  for (int tile = blockIdx.x; tile < a.tiles; tile += gridDim.x) {
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][e] = 0.0f;
    for (int kk = 0; kk < a.k; kk += S::kK, ++q) {
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
          const uint4 xv = xrow ? *reinterpret_cast<const uint4*>(xrow + 2 * (kk + s * kSlabK)) : make_uint4(0, 0, 0, 0);
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
    for (int r = 0; r < R; ++r) partial[warp][r][lane] = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    consumer_sync();
    if (warp == 0) {
      float v[R][4];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float4 sum = partial[0][r][lane];
#pragma unroll
        for (int w = 1; w < kConsumerWarps; ++w) {
          const float4 p = partial[w][r][lane];
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
          a.residual[o] += round_bf16(v[0][e]);
        } else {
          a.out_bf16[o] = __float2bfloat16_rn(silu(round_bf16(v[0][e])) * round_bf16(v[R - 1][e]));
        }
      }
    }
    consumer_sync();
  }
}

template <int R, GemvEpilogue E>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const KernelArgs a) {
  pdl_launch_dependents();
  extern __shared__ __align__(128) uint8_t ring[];
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + size_t(a.stages) * Stage<R>::kBytes);
  uint64_t* empty = full + a.stages;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    for (int s = 0; s < a.stages; ++s) {
      mbarrier_init(&full[s], 1);
      mbarrier_init(&empty[s], kConsumerWarps);
    }
    mbarrier_init_fence();
  }
  __syncthreads();
  if (warp == kConsumerWarps)
    produce<R>(a, ring, full, empty, lane);
  else
    consume<R, E>(a, ring, full, empty, reinterpret_cast<uint8_t*>(empty + a.stages), warp, lane);
}

// What the device offers one kernel: multiprocessors, and shared memory per
// multiprocessor and per block (opt-in), less the kernel's static share.
struct Fit {
  int multiprocessors = 0, smem_per_sm = 0, smem_per_block = 0, static_smem = 0;
  Status status;
};

template <int R, GemvEpilogue E>
const Fit& fit() {
  static const Fit f = [] {
    Fit r;
    int dev = 0;
    cudaFuncAttributes attr{};
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.multiprocessors, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaFuncGetAttributes(&attr, gemv_kernel<R, E>);
    if (e == cudaSuccess) {
      r.static_smem = int(attr.sharedSizeBytes);
      e = cudaFuncSetAttribute(gemv_kernel<R, E>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               r.smem_per_block - r.static_smem);
    }
    return Fit{r.multiprocessors, r.smem_per_sm, r.smem_per_block, r.static_smem, cuda_status(e, "gemv setup")};
  }();
  return f;
}

template <int R, GemvEpilogue E>
Status launch(KernelArgs a, bool overlap, cudaStream_t stream) {
  using S = Stage<R>;
  const Fit& f = fit<R, E>();
  REX_RETURN_IF_ERROR(f.status);
  // As many blocks per SM as there are tiles for (at most 3), each with x and
  // the deepest ring that leaves room for the others (1 KB per block is the
  // system's; 16 bytes per stage are the barriers).
  const int x_bytes = a.m * x_row_bytes(a.k);
  int per_sm = REX_GEMV_BLOCKS_PER_SM > 0 ? REX_GEMV_BLOCKS_PER_SM
                                          : std::clamp(int(ceil_div(size_t(a.tiles), size_t(f.multiprocessors))), 1, 3);
  int stages = 0;
  for (; per_sm >= 1; --per_sm) {
    const int budget = std::min(f.smem_per_block, f.smem_per_sm / per_sm - 1024) - f.static_smem - x_bytes;
    stages = std::min(REX_GEMV_MAX_STAGES, budget / (S::kBytes + 16));
    if (stages >= 2) break;
  }
  if (stages < 2)
    return Status(StatusCode::kResourceExhausted,
                  "gemv: expected x (" + std::to_string(x_bytes) + " bytes) and a two-stage ring to fit in shared memory");
  a.stages = stages;
  const size_t smem = size_t(stages) * (S::kBytes + 16) + size_t(x_bytes);
  const dim3 grid(unsigned(std::min(a.tiles, per_sm * f.multiprocessors))), block(kThreads);
  return launch_maybe_overlapped(gemv_kernel<R, E>, grid, block, smem, stream, overlap, "gemv", a);
}

// More than kRowsPerCall rows: one launch per group of rows, so a row's
// arithmetic is the same whatever the batch (W is read once per group).
template <int R, GemvEpilogue E>
Status launch_rows(KernelArgs a, bool overlap, cudaStream_t stream) {
  const int m = a.m;
  for (int r0 = 0; r0 < m; r0 += kRowsPerCall) {
    KernelArgs part = a;
    part.m = std::min(kRowsPerCall, m - r0);
    if (a.x) part.x = a.x + size_t(r0) * a.lda;
    if (a.norm_input) part.norm_input = a.norm_input + size_t(r0) * a.lda;
    if (a.out_bf16) part.out_bf16 = a.out_bf16 + size_t(r0) * a.ldo;
    if (a.out_f32) part.out_f32 = a.out_f32 + size_t(r0) * a.ldo;
    if (a.residual) part.residual = a.residual + size_t(r0) * a.ldo;
    const Status st = launch<R, E>(part, overlap, stream);
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

}  // namespace

bool gemv_supports(int m, int k, int n) { return m >= 1 && m <= 64 && k >= kSlabK && k % kSlabK == 0 && n >= 1; }

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
  if (reinterpret_cast<uintptr_t>(args.w) % 16 != 0) return bad("expected w 16-byte aligned");
  const KernelArgs a{args.x,        args.norm_input, args.norm_weight, args.norm_eps, args.lda,
                     args.m,        args.w,          args.k,           args.n,        args.row_ids,
                     args.pair_offset, args.bias,    args.out_bf16,    args.out_f32,  args.residual,
                     args.ldo > 0 ? args.ldo : args.n, int(ceil_div(size_t(args.n), 16)), 0};
  const bool ov = args.overlap_previous;
  switch (args.epilogue) {
    case GemvEpilogue::kStoreBf16:
      if (!args.out_bf16) return bad("the bf16 store needs out_bf16");
      return launch_rows<1, GemvEpilogue::kStoreBf16>(a, ov, stream);
    case GemvEpilogue::kStoreF32:
      if (!args.out_f32) return bad("the fp32 store needs out_f32");
      return launch_rows<1, GemvEpilogue::kStoreF32>(a, ov, stream);
    case GemvEpilogue::kAddResidual:
      if (!args.residual) return bad("the residual add needs residual");
      return launch_rows<1, GemvEpilogue::kAddResidual>(a, ov, stream);
    case GemvEpilogue::kSwiglu:
      if (!args.out_bf16 || args.pair_offset <= 0) return bad("SwiGLU needs out_bf16 and the up rows' pair_offset");
      return launch_rows<2, GemvEpilogue::kSwiglu>(a, ov, stream);
  }
  return bad("unknown epilogue");
}

}  // namespace rex::cuda
