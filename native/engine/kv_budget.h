// A backend's KV budget: the block pool (kv_block_pool.h) and the image
// prefix cache that lives inside it (prefix_cache.h), behind the three
// questions a backend asks: does a request fit (counting the blocks a cached
// prefix brings and those the cache alone holds, which it gives back on
// demand), reserve its slot's blocks (the cached prefix's shared, a fresh
// copy of a partial last one, fresh ones for the rest, evicting least
// recently used entries as needed), and keep a finished prefix. Both
// backends use it, so CI runs the GPU's admission and sharing rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/kv_block_pool.h"
#include "engine/prefix_cache.h"

namespace rex {

// A slot's blocks as reserve() hands them out.
struct SlotReservation {
  std::vector<int32_t> blocks;  // the slot's table: the cached prefix's blocks first
  int prefix_tokens = 0;        // tokens those blocks already hold (0: no cached prefix)
  CowCopy copy;                 // the prefix's partial last block, to copy on the device (needs_copy())
};

class KvBudget {
 public:
  KvBudget() = default;
  // cache_blocks: the prefix cache's share of the blocks (0: no cache).
  KvBudget(int total_blocks, int block_size, size_t bytes_per_token, int cache_blocks);
  KvBudget(KvBudget&&) = delete;  // the cache points into the pool

  const KvBlockPool& pool() const { return *pool_; }
  bool caches_prefixes() const { return cache_ && cache_->max_blocks() > 0; }
  PrefixCacheStats cache_stats() const { return cache_ ? cache_->stats() : PrefixCacheStats{}; }
  int cache_blocks() const { return cache_ ? cache_->max_blocks() : 0; }
  bool cached(const PrefixKey& key) const { return cache_ && cache_->contains(key); }

  // kNow / kLater / kNever for a slot of `tokens` tokens, whose prefix may be
  // cached under *key (null: no prefix).
  AdmissionCheck check(int tokens, const PrefixKey* key) const;
  // The slot's blocks; kOutOfMemory (check()'s message) when they do not fit now.
  Result<SlotReservation> reserve(int tokens, const PrefixKey* key);
  // Grows a slot's table to hold `tokens` tokens (fresh blocks at its end,
  // evicting cache entries as needed); kOutOfMemory, changing nothing, when
  // they cannot be had.
  Status grow(std::vector<int32_t>* blocks, int tokens);
  // Caches the first `tokens` tokens of a slot's table under key (the slot
  // keeps its references). False when not cached (no cache, or too large).
  Result<bool> keep(const PrefixKey& key, const std::vector<int32_t>& slot_blocks, int tokens);
  void release(std::vector<int32_t>* blocks) { pool_->release(blocks); }

 private:
  // Blocks a slot of `tokens` tokens takes from the free list, given the hit.
  int fresh_blocks(int tokens, const std::optional<PrefixHit>& hit) const;

  std::unique_ptr<KvBlockPool> pool_ = std::make_unique<KvBlockPool>();
  std::unique_ptr<PrefixCache> cache_;
};

}  // namespace rex
