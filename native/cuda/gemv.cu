// Decode-step projections (gemv.cuh), one launch per projection; the pieces
// (ring, producer, consumers) are in gemv_pipeline.cuh. Why this shape:
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
//  - x that would crowd the ring out (down_proj at 3 to 8 rows: up to 176 KB)
//    is staged in segments of k (x_segment_k, at most ~64 KB), each just
//    before its stages: at 8 rows down_proj had a 3-stage ring and took
//    52 us against 19 at one row. The values and their order are the same,
//    so the bits are too.
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

#include "cuda/cuda_check.h"
#include "cuda/gemv_pipeline.cuh"

namespace rex::cuda {
namespace gemv_detail {

Fit query_fit(const void* kernel) {
  Fit r;
  int dev = 0;
  cudaFuncAttributes attr{};
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.multiprocessors, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&r.smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e == cudaSuccess) e = cudaFuncGetAttributes(&attr, kernel);
  if (e == cudaSuccess) {
    r.static_smem = int(attr.sharedSizeBytes);
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, r.smem_per_block - r.static_smem);
  }
  return Fit{r.multiprocessors, r.smem_per_sm, r.smem_per_block, r.static_smem, cuda_status(e, "gemv setup")};
}

Status check_args(const GemvArgs& args) {
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
  switch (args.epilogue) {
    case GemvEpilogue::kStoreBf16:
      return args.out_bf16 ? Status::Ok() : bad("the bf16 store needs out_bf16");
    case GemvEpilogue::kStoreF32:
      return args.out_f32 ? Status::Ok() : bad("the fp32 store needs out_f32");
    case GemvEpilogue::kAddResidual:
      return args.residual ? Status::Ok() : bad("the residual add needs residual");
    case GemvEpilogue::kSwiglu:
      return args.out_bf16 && args.pair_offset > 0 ? Status::Ok()
                                                   : bad("SwiGLU needs out_bf16 and the up rows' pair_offset");
  }
  return bad("unknown epilogue");
}

KernelArgs kernel_args(const GemvArgs& args) {
  return KernelArgs{args.x,        args.norm_input, args.norm_weight, args.norm_eps, args.lda,
                    args.m,        args.w,          args.k,           args.n,        args.row_ids,
                    args.pair_offset, args.bias,    args.out_bf16,    args.out_f32,  args.residual,
                    args.ldo > 0 ? args.ldo : args.n, int(ceil_div(size_t(args.n), 16)), 0, args.k};
}

}  // namespace gemv_detail

namespace {

using namespace gemv_detail;

template <int R, GemvEpilogue E>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const KernelArgs a) {
  pdl_launch_dependents();
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ float inv_rms[kRowsPerCall];
  __shared__ float4 partial[kConsumerWarps * R * 32];  // sized by R: the R = 1 kernels keep the room for their ring
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + size_t(a.stages) * Stage<R>::kBytes);
  uint64_t* empty = full + a.stages;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) init_ring(full, empty, a.stages);
  __syncthreads();
  if (warp == kConsumerWarps) {
    produce<R>(a, ring, full, empty, lane);
  } else {
    uint8_t* xs = reinterpret_cast<uint8_t*>(empty + a.stages);
    pdl_wait();  // x (and the residual) come from the previous kernel
    stage_x(a, xs, inv_rms, warp, lane);
    consume_tiles<R, E>(a, ring, full, empty, xs, inv_rms, partial, warp, lane);
  }
}

template <int R, GemvEpilogue E>
const Fit& fit() {
  static const Fit f = query_fit(reinterpret_cast<const void*>(gemv_kernel<R, E>));
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
  a.x_seg_k = x_segment_k(a.m, a.k, S::kK);
  const int x_bytes = a.m * x_row_bytes(a.x_seg_k);
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
  REX_RETURN_IF_ERROR(check_args(args));
  const KernelArgs a = kernel_args(args);
  const bool ov = args.overlap_previous;
  return with_epilogue(args.epilogue, [&](auto kind) {
    return launch_rows<decltype(kind)::R, decltype(kind)::E>(a, ov, stream);
  });
}

}  // namespace rex::cuda
