// KvBudget: the pool and the prefix cache behind a backend's admission and
// slots. A hit shares the prefix's full blocks and copies a partial last one;
// admission counts the blocks the cache alone holds as free (eviction gives
// them back) but not those a live slot still reads; keeping a prefix leaves
// the slot's own references; nothing leaks.
#include <algorithm>
#include <vector>

#include "engine/kv_budget.h"
#include "test_harness.h"

using namespace rex;

namespace {

constexpr int kBlock = 16;

PrefixKey key_of(uint64_t pixels) {
  PrefixKey key;
  key.pixels_hash = pixels;
  key.grid_h = 4;
  key.grid_w = 4;
  return key;
}

// A request that computed a prefix of `prefix` tokens in a slot of `tokens`,
// kept it, and finished.
void finished_request(KvBudget* kv, uint64_t pixels, int prefix, int tokens) {
  const PrefixKey key = key_of(pixels);
  auto slot = kv->reserve(tokens, &key);
  CHECK(slot.ok());
  if (!slot.ok()) return;
  CHECK_EQ(slot->prefix_tokens, 0);
  auto kept = kv->keep(key, slot->blocks, prefix);
  CHECK(kept.ok() && kept.value());
  kv->release(&slot->blocks);
}

}  // namespace

REX_TEST(a_hit_shares_full_blocks_and_copies_a_partial_one) {
  KvBudget kv(10, kBlock, 4, 10);
  finished_request(&kv, 1, 40, 64);  // 40 tokens: 2 full blocks and a partial third
  CHECK_EQ(kv.pool().held_blocks(), 3);
  const PrefixKey key = key_of(1);
  auto slot = kv.reserve(64, &key);
  CHECK(slot.ok());
  if (!slot.ok()) return;
  CHECK_EQ(slot->prefix_tokens, 40);
  CHECK_EQ(int(slot->blocks.size()), 4);
  CHECK(slot->copy.needs_copy());
  // Blocks 0 and 1 are shared with the cache; the third is a fresh copy of the cache's.
  CHECK_EQ(kv.pool().ref_count(slot->blocks[0]), 2);
  CHECK_EQ(kv.pool().ref_count(slot->blocks[1]), 2);
  CHECK_EQ(slot->copy.to, slot->blocks[2]);
  CHECK(kv.pool().writable(slot->blocks[2]) && kv.pool().writable(slot->blocks[3]));
  CHECK_EQ(kv.pool().ref_count(slot->copy.from), 1);  // the cache's, still
  CHECK_EQ(kv.pool().held_blocks(), 3 + 2);
  kv.release(&slot->blocks);
  CHECK_EQ(kv.pool().held_blocks(), 3);
  CHECK_EQ(kv.cache_stats().hits, 1);
}

REX_TEST(a_prefix_of_whole_blocks_needs_no_copy) {
  KvBudget kv(10, kBlock, 4, 10);
  finished_request(&kv, 2, 32, 48);
  const PrefixKey key = key_of(2);
  auto slot = kv.reserve(48, &key);
  CHECK(slot.ok());
  if (!slot.ok()) return;
  CHECK(!slot->copy.needs_copy());
  CHECK_EQ(int(slot->blocks.size()), 3);
  CHECK_EQ(kv.pool().held_blocks(), 3);  // 2 shared + 1 fresh
  kv.release(&slot->blocks);
}

REX_TEST(admission_counts_what_eviction_would_free) {
  KvBudget kv(8, kBlock, 4, 8);
  finished_request(&kv, 1, 48, 48);  // the cache alone holds 3 blocks
  finished_request(&kv, 2, 48, 48);  // and 3 more: 2 free
  CHECK_EQ(kv.pool().free_blocks(), 2);
  // 8 blocks fit: the cache gives its 6 back.
  CHECK(kv.check(8 * kBlock, nullptr).verdict == Admission::kNow);
  // A live slot reading entry 1 pins its blocks: then 8 do not fit now.
  const PrefixKey one = key_of(1);
  auto reader = kv.reserve(3 * kBlock, &one);
  CHECK(reader.ok());
  CHECK_EQ(kv.pool().held_blocks(), 6);
  CHECK(kv.check(8 * kBlock, nullptr).verdict == Admission::kLater);
  CHECK(kv.check(5 * kBlock, nullptr).verdict == Admission::kNow);
  CHECK(kv.check(9 * kBlock, nullptr).verdict == Admission::kNever);
  // Reserving 5 evicts entry 2 (the least recently used, and not read).
  auto big = kv.reserve(5 * kBlock, nullptr);
  CHECK(big.ok());
  CHECK_EQ(kv.cache_stats().evictions, 1);
  CHECK(kv.cached(key_of(1)) && !kv.cached(key_of(2)));
  CHECK_EQ(kv.pool().free_blocks(), 0);
  // A hit needs only its fresh blocks.
  kv.release(&big->blocks);
  CHECK(kv.check(3 * kBlock + 4 * kBlock, &one).verdict == Admission::kNow);
  kv.release(&reader->blocks);
  CHECK_EQ(kv.pool().held_blocks(), 3);  // the cache's entry
  CHECK_EQ(kv.pool().stray_releases(), 0);
}

REX_TEST(no_cache_means_plain_blocks) {
  KvBudget kv(4, kBlock, 4, 0);
  CHECK(!kv.caches_prefixes());
  const PrefixKey key = key_of(3);
  auto slot = kv.reserve(2 * kBlock, &key);
  CHECK(slot.ok());
  if (!slot.ok()) return;
  auto kept = kv.keep(key, slot->blocks, kBlock);
  CHECK(kept.ok() && !kept.value());
  kv.release(&slot->blocks);
  CHECK_EQ(kv.pool().held_blocks(), 0);
  auto bad = KvBudget(4, kBlock, 4, 4).keep(key, {}, 5);
  CHECK(!bad.ok());
}
