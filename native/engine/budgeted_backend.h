// A backend whose KV budget is a KvBudget (kv_budget.h): the block pool, the
// image prefix cache inside it, and slots that grow. Both backends derive
// from it, so what the budget answers is said once.
#pragma once

#include <memory>

#include "engine/backend.h"
#include "engine/kv_budget.h"

namespace rex {

class BudgetedBackend : public Backend {
 public:
  bool caches_prefixes() const override { return kv_ && kv_->caches_prefixes(); }
  PrefixCacheStats prefix_cache_stats() const override { return kv_ ? kv_->cache_stats() : PrefixCacheStats{}; }
  bool grows_slots() const override { return kv_ != nullptr; }

 protected:
  std::unique_ptr<KvBudget> kv_;  // set by prepare(); none: no budget (the CPU backend without kv_cache_bytes)
};

}  // namespace rex
