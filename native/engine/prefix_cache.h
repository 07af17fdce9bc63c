// The image prefix cache's bookkeeping: the KV blocks of an image prompt's
// prefix, up to and including <|vision_end|>, kept after the request that
// computed them, so that the next question about the same image (detect, then
// point, then OCR) reads them instead of running the vision encoder and the
// prefix prefill again. The task prompt comes after the image, so that prefix
// is the same for every task on the image.
//
// Shape. An entry holds one reference on each of its blocks through the
// KvBlockPool (share()), so the cache lives inside the same KV budget as the
// sequences and a block is freed only when neither the cache nor any
// sequence reads it. A sequence that reuses an entry takes its own references
// (pool.share(hit.blocks)) before anything else runs; evicting the entry
// later drops only the cache's reference, so entries in use by live
// sequences stay evictable. The prefix's token count need not be a multiple
// of the block size: when the last block is partial the reusing sequence
// must copy_on_write() that block before it appends its task tokens
// (PrefixHit::last_block_partial says so).
//
// Determinism. Recency is a list (most recent first) touched by lookup hits
// and inserts; eviction always takes the tail. The hash map only finds
// entries, it never decides an order, so the same calls evict the same
// entries on every run.
//
// Lifetime. The cache keeps a pointer to the pool: clear() it (or destroy
// it) before the pool is destroyed or replaced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "engine/kv_block_pool.h"
#include "engine/prefix_key.h"
#include "rex/status.h"

namespace rex {

// A cached prefix as lookup() returns it: a copy of the block table (it
// stays valid after the entry is evicted, but the blocks do not: share them
// before the next eviction) and the number of tokens they hold.
struct PrefixHit {
  std::vector<int32_t> blocks;
  int tokens = 0;
  bool last_block_partial = false;  // copy_on_write(blocks.size() - 1) before appending
};


class PrefixCache {
 public:
  // max_blocks: the most blocks the cache may hold references on, a share of
  // the pool's budget (not extra memory). Negative is read as 0.
  PrefixCache(KvBlockPool* pool, int max_blocks);
  ~PrefixCache() { clear(); }
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The entry for `key`, marked most recently used, and a hit; or nullopt and
  // a miss. Takes no reference for the caller.
  std::optional<PrefixHit> lookup(const PrefixKey& key);
  // As lookup, but neither counted nor marked used (admission checks).
  std::optional<PrefixHit> peek(const PrefixKey& key) const;
  bool contains(const PrefixKey& key) const { return index_.count(key) != 0; }

  // Caches `tokens` tokens held in `blocks` (blocks_for(tokens) of them, all
  // held by the caller) under `key`, taking the cache's own reference on
  // each; the caller keeps and later releases its own. Evicts LRU entries to
  // stay within the cap. Returns true when cached; false, changing nothing,
  // when the prefix alone is larger than the cap. An existing key keeps its
  // entry (same key, same KV) and is marked used; kInvalidArgument when its
  // token count differs (a key collision or a caller bug), or for a block
  // count that does not match the tokens or blocks the pool does not hold.
  Result<bool> insert(const PrefixKey& key, const std::vector<int32_t>& blocks, int tokens);

  // Evicts least recently used entries until the pool has `free_blocks`
  // free. When even evicting every entry would not free that many (blocks
  // that live sequences still read are not freed by eviction), evicts
  // nothing and returns kOutOfMemory naming what is needed and reachable.
  Status evict_until_free(int free_blocks);
  // Evicts the least recently used entry; false when the cache is empty.
  bool evict_lru();
  // Evicts every entry: the cache's references all go back to the pool.
  void clear();

  // Changes the cap, evicting LRU entries down to it.
  void set_max_blocks(int max_blocks);
  int max_blocks() const { return max_blocks_; }

  // Blocks that evicting every entry would return to the pool now: those
  // whose every reference is the cache's.
  int reclaimable_blocks() const;

  PrefixCacheStats stats() const;
  // Keys from most to least recently used (tests, diagnostics).
  std::vector<PrefixKey> keys_by_recency() const;

 private:
  struct Entry {
    PrefixKey key;
    std::vector<int32_t> blocks;
    int tokens = 0;
  };
  using EntryList = std::list<Entry>;

  PrefixHit hit_of(const Entry& entry) const;
  void touch(EntryList::iterator it);
  void evict(EntryList::iterator it);

  KvBlockPool* pool_;
  int max_blocks_;
  EntryList recency_;  // front = most recently used
  std::unordered_map<PrefixKey, EntryList::iterator, PrefixKeyHash> index_;
  int blocks_held_ = 0;
  PrefixCacheStats counters_;
};

}  // namespace rex
