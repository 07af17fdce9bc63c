// The KV-cache budget as fixed-size blocks: a pool of `total` blocks of
// block_size tokens, handed to sequences and taken back. Both backends keep
// their budget with it (the CUDA backend's blocks are real device memory that
// attention reads through block tables; the CPU backend uses it for the
// bookkeeping alone), so CI exercises the same admission rules the GPU runs.
//
// Sharing. A block may be read by several holders at once: sequences that
// reuse one image prefix, and the prefix cache itself (prefix_cache.h). Each
// block therefore has a reference count: allocate() gives references of 1,
// share() adds one per block, release() drops one per block and returns a
// block to the free list only when its count reaches zero. A holder that must
// append into a block it does not own alone calls copy_on_write(), which
// swaps a fresh block into its table and names the (from, to) pair the
// backend copies on its device. used_bytes() and check() count physical
// blocks, so a shared block costs the budget once however many read it.
//
// Determinism. Free blocks are a stack (LIFO): a new pool hands out 0, 1, 2,
// ...; release() pushes the blocks that reach zero from the last entry of the
// table to the first, so the next allocation of the same size gets the same
// ids back in the same order. copy_on_write() takes the top of the stack.
// Nothing depends on addresses or hashing, so the same calls give the same
// ids on every run and on both backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace rex {

// What copy_on_write() asks the backend to do: copy block `from` into block
// `to` (the whole block, or at least its filled tokens). from == to: the
// block was already writable and nothing is copied.
struct CowCopy {
  int32_t from = -1;
  int32_t to = -1;
  bool needs_copy() const { return from != to; }
};

class KvBlockPool {
 public:
  KvBlockPool() = default;
  // bytes_per_token: what one token's K and V cost over all layers.
  KvBlockPool(int total_blocks, int block_size, size_t bytes_per_token);

  int block_size() const { return block_size_; }
  int total_blocks() const { return total_; }
  int free_blocks() const { return int(free_.size()); }
  int held_blocks() const { return total_ - free_blocks(); }  // physical blocks in use
  int blocks_for(int tokens) const { return tokens <= 0 ? 0 : (tokens + block_size_ - 1) / block_size_; }
  size_t bytes_per_block() const { return bytes_per_token_ * size_t(block_size_); }
  size_t used_bytes() const { return size_t(held_blocks()) * bytes_per_block(); }

  // kNow / kLater / kNever for a sequence of `tokens` tokens, with a message
  // naming what it needs and what the budget holds and has free.
  AdmissionCheck check(int tokens) const;

  // Blocks for `tokens` tokens, each with one reference; kOutOfMemory (with
  // check()'s message) when they are not free now.
  Result<std::vector<int32_t>> allocate(int tokens);
  // Drops one reference per block (a block listed twice loses two), frees
  // those that reach zero, and clears the vector. Ids that are out of range
  // or already free are skipped and counted in stray_releases(): release is
  // called on teardown paths that cannot report an error.
  void release(std::vector<int32_t>* blocks);

  // Adds one reference to each block: another holder now reads them.
  // kInvalidArgument, changing nothing, when any id is out of range or free.
  Status share(const std::vector<int32_t>& blocks);
  // References on `block`; 0 when it is free or out of range.
  int ref_count(int32_t block) const;
  // True when exactly one holder has the block: it may be written in place.
  bool writable(int32_t block) const { return ref_count(block) == 1; }
  // Makes (*blocks)[index] writable for this holder. Already writable:
  // {b, b}, nothing changes. Shared: takes a free block, drops this holder's
  // reference to the old one, puts the new id in the table and returns
  // {old, new} for the backend to copy. kOutOfMemory when no block is free,
  // kInvalidArgument for a bad index or a block the table does not hold.
  Result<CowCopy> copy_on_write(std::vector<int32_t>* blocks, int index);

  // Releases of ids that were not held (a caller's bookkeeping bug).
  int64_t stray_releases() const { return stray_releases_; }

 private:
  Status expect_held(int32_t block, const char* what) const;

  int total_ = 0;
  int block_size_ = 64;
  size_t bytes_per_token_ = 0;
  std::vector<int32_t> free_;
  std::vector<int32_t> refs_;  // per block; 0 = on the free list
  int64_t stray_releases_ = 0;
};

}  // namespace rex
