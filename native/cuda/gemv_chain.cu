// Chained decode projections in one persistent launch (gemv.cuh,
// gemv_chain). Why: in a graphed step each separate GEMV launch lost
// ~3.5-4.7 us of its weight stream (its blocks find room only as the last
// launch's leave, then every ring stage waits a DRAM round trip), 144 times
// a step. Here one grid stays resident across the projections: the producer
// warp of each block walks every projection's (tile, k) sequence through
// the one ring without waiting for anyone but its own consumers, so while
// the consumers finish projection i (and wait at the barrier for the other
// blocks), the ring already fills with projection i + 1's weights. The
// consumers are gemv.cu's (gemv_pipeline.cuh): the same tiles per block, the
// same arithmetic, so the bits are those of separate launches.
//  - The barrier is cooperative groups' grid sync in shape: the block's
//    threads meet, thread 0 fences, counts the block in and waits for the
//    count, fences, and the block meets again; activations written before it
//    are read after it through L2 (gemv_pipeline.cuh reads them .cg).
//  - All blocks must be resident at once: the grid is what fits (blocks per
//    SM by the ring's share of shared memory), and a dependent launch's
//    blocks only start once every block here has started.
//  - The last block out resets the counts, so a captured graph replays.
#include <algorithm>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/gemv_pipeline.cuh"

namespace rex::cuda {
namespace {

using namespace gemv_detail;

// Blocks per SM of a chain (A/B: scripts/gemv-ab.sh -DREX_GEMV_CHAIN_BLOCKS_PER_SM=N).
#ifndef REX_GEMV_CHAIN_BLOCKS_PER_SM
#define REX_GEMV_CHAIN_BLOCKS_PER_SM 2
#endif

struct ChainArgs {
  KernelArgs stage[kGemvChainMax];
  GemvEpilogue epilogue[kGemvChainMax];
  int count;
  unsigned* sync;  // [0]: projections finished, summed over blocks; [1]: blocks out
};

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

// The consumer warps of every block meet: `finished` reaches target. A
// block that never arrives (the grid not resident at once after all) would
// hang the device; after 2 s the kernel traps instead, so the launch fails
// with an error rather than never returning.
__device__ __forceinline__ void grid_barrier(unsigned* finished, unsigned target) {
  consumer_sync();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(finished, 1u);
    const uint64_t start = global_ns();
    while (load_acquire(finished) < target) {
      __nanosleep(32);
      if (global_ns() - start > 2000000000ull) __trap();
    }
    __threadfence();
  }
  consumer_sync();
}

// Min blocks per SM in the bounds: the registers must leave room for the
// whole grid at once (the barrier waits for every block).
__global__ void __launch_bounds__(kThreads, REX_GEMV_CHAIN_BLOCKS_PER_SM) gemv_chain_kernel(const ChainArgs c) {
  pdl_launch_dependents();
  extern __shared__ __align__(128) uint8_t ring[];
  __shared__ float inv_rms[kRowsPerCall];
  __shared__ float4 partial[kConsumerWarps * 2 * 32];
  const int stages = c.stage[0].stages;
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + size_t(stages) * c.stage[0].slot_bytes);
  uint64_t* empty = full + stages;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) init_ring(full, empty, stages);
  __syncthreads();
  uint32_t q = 0;
  // The stage loops are unrolled, so c.stage[i] is read from the parameter
  // space at fixed offsets (a runtime index would copy the arguments to
  // local memory).
  if (warp == kConsumerWarps) {
#pragma unroll
    for (int i = 0; i < kGemvChainMax; ++i) {
      if (i >= c.count) break;
      with_epilogue(c.epilogue[i], [&](auto kind) { produce<decltype(kind)::R>(c.stage[i], ring, full, empty, lane, q); });
    }
    return;
  }
  uint8_t* xs = reinterpret_cast<uint8_t*>(empty + stages);
  pdl_wait();  // the first projection's x (and the residual) come from the previous kernel
#pragma unroll
  for (int i = 0; i < kGemvChainMax; ++i) {
    if (i >= c.count) break;
    const KernelArgs& a = c.stage[i];
    if (int(blockIdx.x) < a.tiles) {  // a block without tiles here stages no x
      stage_x(a, xs, inv_rms, warp, lane);
      with_epilogue(c.epilogue[i], [&](auto kind) {
        consume_tiles<decltype(kind)::R, decltype(kind)::E>(a, ring, full, empty, xs, inv_rms, partial, warp, lane, q);
      });
    }
    if (i + 1 < c.count) grid_barrier(&c.sync[0], unsigned(i + 1) * gridDim.x);
  }
  consumer_sync();
  if (threadIdx.x == 0 && atomicAdd(&c.sync[1], 1u) == gridDim.x - 1) {  // the last block out
    c.sync[0] = 0u;
    c.sync[1] = 0u;
    __threadfence();
  }
}

const Fit& chain_fit() {
  static const Fit f = query_fit(reinterpret_cast<const void*>(gemv_chain_kernel));
  return f;
}

Status one_launch_each(const GemvArgs* stages, int count, cudaStream_t stream) {
  for (int i = 0; i < count; ++i) REX_RETURN_IF_ERROR(gemv(stages[i], stream));
  return Status::Ok();
}

}  // namespace

size_t gemv_chain_sync_words() { return 2; }

Status gemv_chain(const GemvArgs* stages, int count, unsigned* sync, cudaStream_t stream) {
  auto bad = [](const std::string& what) { return Status(StatusCode::kInvalidArgument, "gemv_chain: " + what); };
  if (!stages || count < 1 || count > kGemvChainMax)
    return bad("expected 1 to " + std::to_string(kGemvChainMax) + " stages but got " + std::to_string(count));
  if (!sync) return bad("expected the sync words (gemv_chain_sync_words) but got null");
  const int m = stages[0].m;
  int x_bytes = 0, slot_bytes = 0;
  for (int i = 0; i < count; ++i) {
    REX_RETURN_IF_ERROR(check_args(stages[i]));
    if (stages[i].m != m)
      return bad("expected every stage's m to be " + std::to_string(m) + " but stage " + std::to_string(i) + " has " +
                 std::to_string(stages[i].m));
    x_bytes = std::max(x_bytes, m * x_row_bytes(stages[i].k));
    slot_bytes = std::max(slot_bytes, with_epilogue(stages[i].epilogue, [](auto kind) { return Stage<decltype(kind)::R>::kBytes; }));
  }
  if (m > kRowsPerCall) return one_launch_each(stages, count, stream);
  const Fit& f = chain_fit();
  REX_RETURN_IF_ERROR(f.status);
  // Blocks per SM: the most (up to REX_GEMV_CHAIN_BLOCKS_PER_SM) whose rings
  // hold two slots and that the device says fit at once.
  int per_sm = REX_GEMV_CHAIN_BLOCKS_PER_SM, ring = 0;
  size_t smem = 0;
  for (; per_sm >= 1; --per_sm) {
    const int budget = std::min(f.smem_per_block, f.smem_per_sm / per_sm - 1024) - f.static_smem - x_bytes;
    ring = std::min(REX_GEMV_MAX_STAGES, budget / (slot_bytes + 16));
    if (ring < 2) continue;
    smem = size_t(ring) * (slot_bytes + 16) + size_t(x_bytes);
    int resident = 0;
    REX_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, gemv_chain_kernel, kThreads, smem));
    if (resident >= per_sm) break;
  }
  if (per_sm < 1) return one_launch_each(stages, count, stream);
  ChainArgs c{};
  for (int i = 0; i < count; ++i) {
    c.stage[i] = kernel_args(stages[i]);
    c.stage[i].stages = ring;
    c.stage[i].slot_bytes = slot_bytes;
    c.epilogue[i] = stages[i].epilogue;
  }
  c.count = count;
  c.sync = sync;
  return launch_maybe_overlapped(gemv_chain_kernel, dim3(unsigned(per_sm * f.multiprocessors)), dim3(kThreads), smem,
                                 stream, stages[0].overlap_previous, "gemv_chain", c);
}

}  // namespace rex::cuda
