// See prefix_cache.h.
#include "engine/prefix_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace rex {

uint64_t hash_bytes(const void* data, size_t size, uint64_t seed) {
  constexpr uint64_t kPrime = 0x100000001b3ull;  // the FNV-1a 64 prime
  const auto* bytes = static_cast<const unsigned char*>(data);
  // Four lanes of 8-byte words (independent multiply chains), then the tail
  // byte by byte, then the lanes folded in order.
  uint64_t lane[4] = {seed, seed ^ 0x9e3779b97f4a7c15ull, seed ^ 0xc2b2ae3d27d4eb4full, seed ^ 0x165667b19e3779f9ull};
  size_t i = 0;
  for (; i + 32 <= size; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t word;
      std::memcpy(&word, bytes + i + 8 * l, sizeof word);
      lane[l] = (lane[l] ^ word) * kPrime;
    }
  uint64_t h = seed;
  for (; i < size; ++i) h = (h ^ bytes[i]) * kPrime;
  for (uint64_t l : lane) h = (h ^ l) * kPrime;
  return (h ^ uint64_t(size)) * kPrime;
}

size_t PrefixKeyHash::operator()(const PrefixKey& key) const {
  const int32_t grid[2] = {key.grid_h, key.grid_w};
  uint64_t h = hash_bytes(&key.pixels_hash, sizeof key.pixels_hash);
  h = hash_bytes(grid, sizeof grid, h);
  h = hash_bytes(&key.settings_hash, sizeof key.settings_hash, h);
  h = hash_bytes(&key.prompt_prefix_hash, sizeof key.prompt_prefix_hash, h);
  return size_t(h);
}

PrefixCache::PrefixCache(KvBlockPool* pool, int max_blocks) : pool_(pool), max_blocks_(std::max(max_blocks, 0)) {}

PrefixHit PrefixCache::hit_of(const Entry& entry) const {
  PrefixHit hit;
  hit.blocks = entry.blocks;
  hit.tokens = entry.tokens;
  hit.last_block_partial = entry.tokens % pool_->block_size() != 0;
  return hit;
}

std::optional<PrefixHit> PrefixCache::peek(const PrefixKey& key) const {
  auto found = index_.find(key);
  if (found == index_.end()) return std::nullopt;
  return hit_of(*found->second);
}

std::optional<PrefixHit> PrefixCache::lookup(const PrefixKey& key) {
  auto found = index_.find(key);
  if (found == index_.end()) {
    ++counters_.misses;
    return std::nullopt;
  }
  ++counters_.hits;
  touch(found->second);
  return hit_of(*found->second);
}

Result<bool> PrefixCache::insert(const PrefixKey& key, const std::vector<int32_t>& blocks, int tokens) {
  if (tokens <= 0)
    return Status(StatusCode::kInvalidArgument,
                  "expected a cached prefix of at least one token but got " + std::to_string(tokens));
  const int need = pool_->blocks_for(tokens);
  if (int(blocks.size()) != need)
    return Status(StatusCode::kInvalidArgument, "expected " + std::to_string(need) + " blocks for a prefix of " +
                                                    std::to_string(tokens) + " tokens but got " +
                                                    std::to_string(blocks.size()));
  auto found = index_.find(key);
  if (found != index_.end()) {
    if (found->second->tokens != tokens)
      return Status(StatusCode::kInvalidArgument, "expected the cached prefix's " +
                                                      std::to_string(found->second->tokens) +
                                                      " tokens for this key but got " + std::to_string(tokens));
    touch(found->second);
    return true;
  }
  if (need > max_blocks_) {
    ++counters_.rejected;
    return false;
  }
  // Take the references first: a bad table fails before anything is evicted.
  REX_RETURN_IF_ERROR(pool_->share(blocks));
  while (blocks_held_ + need > max_blocks_) evict(std::prev(recency_.end()));
  recency_.push_front(Entry{key, blocks, tokens});
  index_.emplace(key, recency_.begin());
  blocks_held_ += need;
  ++counters_.insertions;
  return true;
}

int PrefixCache::reclaimable_blocks() const {
  std::vector<int32_t> held;
  held.reserve(size_t(blocks_held_));
  for (const Entry& entry : recency_) held.insert(held.end(), entry.blocks.begin(), entry.blocks.end());
  std::sort(held.begin(), held.end());
  int reclaimable = 0;
  for (size_t i = 0; i < held.size();) {
    size_t j = i;
    while (j < held.size() && held[j] == held[i]) ++j;
    if (pool_->ref_count(held[i]) == int(j - i)) ++reclaimable;  // every reference is ours
    i = j;
  }
  return reclaimable;
}

Status PrefixCache::evict_until_free(int free_blocks) {
  if (pool_->free_blocks() >= free_blocks) return Status::Ok();
  const int reachable = pool_->free_blocks() + reclaimable_blocks();
  if (reachable < free_blocks)
    return Status(StatusCode::kOutOfMemory,
                  "expected " + std::to_string(free_blocks) + " free KV blocks after evicting the prefix cache but got " +
                      std::to_string(reachable) + " at most (" + std::to_string(pool_->free_blocks()) + " free, " +
                      std::to_string(reachable - pool_->free_blocks()) + " held by the cache alone, of " +
                      std::to_string(pool_->total_blocks()) + "); nothing was evicted");
  while (pool_->free_blocks() < free_blocks && evict_lru()) {
  }
  return Status::Ok();
}

bool PrefixCache::evict_lru() {
  if (recency_.empty()) return false;
  evict(std::prev(recency_.end()));
  return true;
}

void PrefixCache::clear() {
  while (evict_lru()) {
  }
}

void PrefixCache::set_max_blocks(int max_blocks) {
  max_blocks_ = std::max(max_blocks, 0);
  while (blocks_held_ > max_blocks_) evict(std::prev(recency_.end()));
}

PrefixCacheStats PrefixCache::stats() const {
  PrefixCacheStats s = counters_;
  s.entries = int(recency_.size());
  s.blocks_held = blocks_held_;
  return s;
}

std::vector<PrefixKey> PrefixCache::keys_by_recency() const {
  std::vector<PrefixKey> keys;
  keys.reserve(recency_.size());
  for (const Entry& entry : recency_) keys.push_back(entry.key);
  return keys;
}

void PrefixCache::touch(EntryList::iterator it) { recency_.splice(recency_.begin(), recency_, it); }

void PrefixCache::evict(EntryList::iterator it) {
  blocks_held_ -= int(it->blocks.size());
  pool_->release(&it->blocks);  // drops the cache's references only
  index_.erase(it->key);
  recency_.erase(it);
  ++counters_.evictions;
}

}  // namespace rex
