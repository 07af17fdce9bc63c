// Weights pulled into L2 while the memory bus is idle. At batch 1 a decode
// layer's rotary and attention move ~1.3 MB in ~10 us: the HBM is idle for
// most of that time, while the o projection that follows streams 8.4 MB and
// gate_up 90 MB. Bulk prefetches (cp.async.bulk.prefetch.L2, sm_90: one
// instruction per up-to-64-KB run, fire and forget, nothing waits for them)
// issued at the start of the rotary kernel move o's weights and the first
// rows of gate and up into L2, so those kernels read them from L2. It
// changes no value, only where the bytes come from. Which ranges, and how
// many bytes, is the caller's (TextRunner, REX_OMNI_L2_PREFETCH_MB).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rex::cuda {

struct L2Prefetch {
  static constexpr int kMaxRanges = 4;
  static constexpr uint32_t kChunkBytes = 64 << 10;  // one prefetch instruction
  const char* ptr[kMaxRanges] = {};
  uint32_t bytes[kMaxRanges] = {};  // multiples of 16
  int count = 0;
  int blocks = 0;   // the extra blocks a kernel adds to issue them (0: none)
  // Adds [p, p + n) rounded down to 16 bytes (p 16-byte aligned); false when
  // full or the range is empty.
  bool add(const void* p, size_t n) {
    n &= ~size_t(15);
    if (count == kMaxRanges || !p || n == 0 || n > 0xfffffff0u || reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    ptr[count] = static_cast<const char*>(p);
    bytes[count++] = uint32_t(n);
    return true;
  }
  size_t total_bytes() const {
    size_t t = 0;
    for (int i = 0; i < count; ++i) t += bytes[i];
    return t;
  }
  // Instructions in all: chunks of kChunkBytes.
  size_t chunks() const {
    size_t c = 0;
    for (int i = 0; i < count; ++i) c += (size_t(bytes[i]) + kChunkBytes - 1) / kChunkBytes;
    return c;
  }
};

#ifdef __CUDACC__
// This thread's share of every range: the chunks of all ranges in a row,
// chunk c to block c % blocks (so every block's copy engine takes a share),
// thread c / blocks of it (block in 0..pf.blocks-1).
__device__ __forceinline__ void issue_l2_prefetch(const L2Prefetch& pf, int block, int threads, int tid) {
  const uint32_t stride = uint32_t(pf.blocks) * uint32_t(threads);
  uint32_t first = uint32_t(block) + uint32_t(pf.blocks) * uint32_t(tid);  // this thread's first chunk
  for (int r = 0; r < pf.count; ++r) {
    const uint32_t n = pf.bytes[r], chunks = (n + L2Prefetch::kChunkBytes - 1) / L2Prefetch::kChunkBytes;
    uint32_t c = first;
    for (; c < chunks; c += stride) {
      const uint32_t off = c * L2Prefetch::kChunkBytes, len = min(L2Prefetch::kChunkBytes, n - off);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(pf.ptr[r] + off), "r"(len) : "memory");
    }
    first = c - chunks;  // the same thread goes on in the next range
  }
}
#endif

}  // namespace rex::cuda
