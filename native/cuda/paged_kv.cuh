// How attention kernels find a sequence's keys and values in the paged KV
// cache: fixed-size blocks of block_size tokens; a sequence's token t sits at
// physical token block_table[t / block_size] * block_size + t % block_size of
// the layer's K and V planes (see rope.cuh's KvPlane for the element layout).
#pragma once

#include <cstdint>

#include "cuda/bf16.cuh"

namespace rex::cuda {

struct PagedKv {
  const bf16* k = nullptr;        // this layer's K plane
  const bf16* v = nullptr;        // this layer's V plane
  int block_size = 0;             // tokens per block (a power of two, >= 16)
  int kv_heads = 0;
  int head_dim = 0;
};

__host__ __device__ inline int64_t paged_row(const int32_t* block_table, int block_size, int t) {
  return int64_t(block_table[t / block_size]) * block_size + t % block_size;
}

}  // namespace rex::cuda
