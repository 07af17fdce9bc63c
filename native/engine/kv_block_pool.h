// The KV-cache budget as fixed-size blocks: a pool of `total` blocks of
// block_size tokens, handed to sequences and taken back. Both backends keep
// their budget with it (the CUDA backend's blocks are real device memory that
// attention reads through block tables; the CPU backend uses it for the
// bookkeeping alone), so CI exercises the same admission rules the GPU runs.
// Free blocks are a stack: allocation order is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace rex {

class KvBlockPool {
 public:
  KvBlockPool() = default;
  // bytes_per_token: what one token's K and V cost over all layers.
  KvBlockPool(int total_blocks, int block_size, size_t bytes_per_token);

  int block_size() const { return block_size_; }
  int total_blocks() const { return total_; }
  int free_blocks() const { return int(free_.size()); }
  int blocks_for(int tokens) const { return tokens <= 0 ? 0 : (tokens + block_size_ - 1) / block_size_; }
  size_t bytes_per_block() const { return bytes_per_token_ * size_t(block_size_); }
  size_t used_bytes() const { return size_t(total_ - free_blocks()) * bytes_per_block(); }

  // kNow / kLater / kNever for a sequence of `tokens` tokens, with a message
  // naming what it needs and what the budget holds and has free.
  AdmissionCheck check(int tokens) const;

  // Blocks for `tokens` tokens; kOutOfMemory (with check()'s message) when
  // they are not free now.
  Result<std::vector<int32_t>> allocate(int tokens);
  // Returns blocks to the pool and clears the vector.
  void release(std::vector<int32_t>* blocks);

 private:
  int total_ = 0;
  int block_size_ = 64;
  size_t bytes_per_token_ = 0;
  std::vector<int32_t> free_;
};

}  // namespace rex
