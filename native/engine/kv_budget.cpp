// See kv_budget.h.
#include "engine/kv_budget.h"

#include <algorithm>
#include <string>

namespace rex {

KvBudget::KvBudget(int total_blocks, int block_size, size_t bytes_per_token, int cache_blocks)
    : pool_(std::make_unique<KvBlockPool>(total_blocks, block_size, bytes_per_token)),
      cache_(std::make_unique<PrefixCache>(pool_.get(), std::min(cache_blocks, total_blocks))) {}

int KvBudget::fresh_blocks(int tokens, const std::optional<PrefixHit>& hit) const {
  const int need = pool_->blocks_for(tokens);
  if (!hit) return need;
  // The shared blocks come with the hit; a partial last one is copied into a fresh block.
  return std::max(0, need - int(hit->blocks.size())) + (hit->last_block_partial ? 1 : 0);
}

AdmissionCheck KvBudget::check(int tokens, const PrefixKey* key) const {
  std::optional<PrefixHit> hit;
  if (key && cache_) hit = cache_->peek(*key);
  AdmissionCheck result = pool_->check(tokens);
  if (result.verdict == Admission::kNever || (!hit && !caches_prefixes())) return result;
  // Free blocks, and those the cache alone holds (eviction returns them),
  // less the hit's own (the slot is about to share them).
  int reclaimable = cache_->reclaimable_blocks();
  if (hit)
    for (int32_t b : hit->blocks) reclaimable -= pool_->ref_count(b) == 1;
  // (When the pool alone says kNow, fresh <= need <= free and this returns kNow.)
  if (fresh_blocks(tokens, hit) <= pool_->free_blocks() + reclaimable) return AdmissionCheck{};
  return result;
}

Result<SlotReservation> KvBudget::reserve(int tokens, const PrefixKey* key) {
  const AdmissionCheck fits = check(tokens, key);
  if (fits.verdict != Admission::kNow) return Status(StatusCode::kOutOfMemory, fits.detail);
  SlotReservation r;
  std::optional<PrefixHit> hit;
  if (key && cache_) hit = cache_->lookup(*key);
  if (hit) {
    // Take the slot's references before any eviction can free the blocks.
    REX_RETURN_IF_ERROR(pool_->share(hit->blocks));
    r.blocks = hit->blocks;
    r.prefix_tokens = hit->tokens;
  }
  const int fresh = fresh_blocks(tokens, hit);
  if (cache_) {
    const Status room = cache_->evict_until_free(fresh);
    if (!room.ok()) {
      pool_->release(&r.blocks);
      return room;
    }
  }
  if (hit && hit->last_block_partial) {
    auto copy = pool_->copy_on_write(&r.blocks, int(r.blocks.size()) - 1);
    if (!copy.ok()) {
      pool_->release(&r.blocks);
      return copy.status();
    }
    r.copy = copy.value();
  }
  // The rest fresh (what grow() does; the room is free already, so it evicts nothing).
  const Status grown = grow(&r.blocks, tokens);
  if (!grown.ok()) {
    pool_->release(&r.blocks);
    return grown;
  }
  return r;
}

Status KvBudget::grow(std::vector<int32_t>* blocks, int tokens) {
  const int more = pool_->blocks_for(tokens) - int(blocks->size());
  if (more <= 0) return Status::Ok();
  if (cache_) REX_RETURN_IF_ERROR(cache_->evict_until_free(more));
  auto fresh = pool_->allocate(more * pool_->block_size());
  if (!fresh.ok()) return fresh.status();
  blocks->insert(blocks->end(), fresh->begin(), fresh->end());
  return Status::Ok();
}

Result<bool> KvBudget::keep(const PrefixKey& key, const std::vector<int32_t>& slot_blocks, int tokens) {
  if (!caches_prefixes()) return false;
  const int n = pool_->blocks_for(tokens);
  if (tokens <= 0 || n > int(slot_blocks.size()))
    return Status(StatusCode::kInvalidArgument, "expected a prefix of 1.." +
                                                    std::to_string(int(slot_blocks.size()) * pool_->block_size()) +
                                                    " tokens of the slot but got " + std::to_string(tokens));
  return cache_->insert(key, std::vector<int32_t>(slot_blocks.begin(), slot_blocks.begin() + n), tokens);
}

}  // namespace rex
