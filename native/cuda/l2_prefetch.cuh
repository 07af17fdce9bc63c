// Weights pulled into L2 ahead of the kernel that reads them. Why: in a
// graphed decode step every GEMV began with ~4 us of its stream missing
// (its blocks find a place only when the previous kernel's leave, then wait
// a DRAM round trip per ring stage), and the latency-bound kernels between
// projections (rope, attention) leave DRAM idle for ~10 us a layer. Weights
// are constants, so a kernel can ask for the next projection's first bytes
// (or all of a small one) while it runs; the next kernel's bulk copies then
// hit L2. A prefetch is a hint (cp.async.bulk.prefetch.L2): no completion,
// no effect on results.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace rex::cuda {

// rows runs of run_bytes each, row_stride bytes apart from base, and the
// same runs again at base + pair_offset when pair_offset != 0 (the up rows
// of gate_up). Addresses, strides and run_bytes are multiples of 16.
struct L2Prefetch {
  const void* base = nullptr;
  unsigned long long row_stride = 0;
  unsigned long long pair_offset = 0;
  uint32_t run_bytes = 0;
  int rows = 0;
  unsigned long long bytes() const { return base ? (pair_offset ? 2ull : 1ull) * rows * run_bytes : 0ull; }
};

#ifdef __CUDACC__
constexpr uint32_t kPrefetchPiece = 16384;  // bytes per prefetch instruction

// Part `part` of `parts` (blocks, or warps of blocks) issues its share of the
// pieces, spread over the 32 lanes of the calling warp.
__device__ __forceinline__ void prefetch_share(const L2Prefetch& p, int part, int parts, int lane) {
  if (!p.base || p.rows <= 0 || p.run_bytes == 0) return;
  const uint32_t per_run = (p.run_bytes + kPrefetchPiece - 1) / kPrefetchPiece;
  const uint64_t runs = uint64_t(p.rows) * (p.pair_offset ? 2 : 1), pieces = runs * per_run;
  for (uint64_t i = uint64_t(part) * 32 + lane; i < pieces; i += uint64_t(parts) * 32) {
    const uint64_t run = i / per_run, piece = i % per_run;
    const uint64_t row = run % uint64_t(p.rows), pair = run / uint64_t(p.rows);
    const uint32_t first = uint32_t(piece) * kPrefetchPiece;
    const uint32_t bytes = min(kPrefetchPiece, p.run_bytes - first);
    const char* src = static_cast<const char*>(p.base) + pair * p.pair_offset + row * p.row_stride + first;
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
  }
}
#endif  // __CUDACC__

}  // namespace rex::cuda
