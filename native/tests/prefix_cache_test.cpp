// The image prefix cache's bookkeeping over a KvBlockPool: hits and misses
// by every key field, LRU eviction order, eviction freeing pool blocks only
// when no sequence still reads them, the cap, inserting an existing key, no
// leaks after clear(), and a randomized soak against a simple reference model
// (block contents included, so a write that skipped copy-on-write shows).
#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "engine/prefix_cache.h"
#include "test_harness.h"

using namespace rex;

namespace {

PrefixKey key_of(uint64_t pixels) {
  PrefixKey key;
  key.pixels_hash = pixels;
  key.grid_h = 28;
  key.grid_w = 36;
  key.settings_hash = 7;
  key.prompt_prefix_hash = 11;
  return key;
}

// A sequence's prefix of `tokens` tokens, freshly allocated.
std::vector<int32_t> prefix_blocks(KvBlockPool* pool, int tokens) {
  auto blocks = pool->allocate(tokens);
  return blocks.ok() ? std::move(blocks).value() : std::vector<int32_t>{};
}

// A request computed the prefix, cached it, and finished: only the cache's
// references remain. True when it was cached.
bool cache_finished_prefix(KvBlockPool* pool, PrefixCache* cache, uint64_t pixels, int tokens) {
  auto blocks = prefix_blocks(pool, tokens);
  auto inserted = cache->insert(key_of(pixels), blocks, tokens);
  pool->release(&blocks);
  return inserted.ok() && inserted.value();
}

}  // namespace

REX_TEST(hash_bytes_sees_every_byte_the_length_and_the_seed) {
  // A buffer past several 32-byte rounds plus a tail: flipping any one bit,
  // in the lanes or in the tail, changes the hash; so do the length (a zero
  // appended) and the seed; the same input gives the same hash.
  std::vector<unsigned char> data(1000 * 3 + 7);
  std::mt19937 rng(5);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  const uint64_t h = hash_bytes(data.data(), data.size());
  CHECK_EQ(hash_bytes(data.data(), data.size()), h);
  int unchanged = 0;
  for (size_t i = 0; i < data.size(); ++i)
    for (int bit = 0; bit < 8; bit += 3) {
      data[i] ^= static_cast<unsigned char>(1u << bit);
      unchanged += hash_bytes(data.data(), data.size()) == h;
      data[i] ^= static_cast<unsigned char>(1u << bit);
    }
  CHECK_EQ(unchanged, 0);
  data.push_back(0);
  CHECK(hash_bytes(data.data(), data.size()) != h);
  data.pop_back();
  CHECK(hash_bytes(data.data(), data.size(), 1) != h);
  CHECK(hash_bytes("", 0) != hash_bytes("", 0, 1));
  // Words that swap places between lanes differ too.
  std::vector<unsigned char> swapped = data;
  std::swap_ranges(swapped.begin(), swapped.begin() + 8, swapped.begin() + 8);
  CHECK(hash_bytes(swapped.data(), swapped.size()) != h);
}

REX_TEST(every_key_field_distinguishes_entries) {
  KvBlockPool pool(16, 16, 10);
  PrefixCache cache(&pool, 16);
  const PrefixKey base = key_of(1);
  auto blocks = prefix_blocks(&pool, 20);
  CHECK(cache.insert(base, blocks, 20).ok());
  CHECK(cache.lookup(base).has_value());
  std::vector<PrefixKey> others(5, base);
  others[0].pixels_hash = 2;
  others[1].grid_h = 29;
  others[2].grid_w = 35;
  others[3].settings_hash = 8;
  others[4].prompt_prefix_hash = 12;
  PrefixKeyHash hasher;
  for (const PrefixKey& other : others) {
    CHECK(other != base);
    CHECK(hasher(other) != hasher(base));
    CHECK(!cache.lookup(other).has_value());
  }
  auto hit = cache.lookup(base);
  CHECK(hit.has_value());
  CHECK((hit->blocks == blocks));
  CHECK_EQ(hit->tokens, 20);
  CHECK(hit->last_block_partial);
  const PrefixCacheStats s = cache.stats();
  CHECK_EQ(s.hits, 2);
  CHECK_EQ(s.misses, 5);
  CHECK_EQ(s.entries, 1);
  CHECK_EQ(s.blocks_held, 2);
  pool.release(&blocks);
  cache.clear();
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(reuse_shares_and_copies_the_partial_last_block) {
  KvBlockPool pool(8, 16, 10);
  PrefixCache cache(&pool, 8);
  auto first = prefix_blocks(&pool, 40);  // 3 blocks, the last one partial
  CHECK(cache.insert(key_of(1), first, 40).ok());
  pool.release(&first);  // the first request ends; the cache keeps the prefix
  CHECK_EQ(pool.held_blocks(), 3);
  auto hit = cache.lookup(key_of(1));
  CHECK(hit.has_value());
  std::vector<int32_t> second = hit->blocks;
  CHECK(pool.share(second).ok());
  CHECK(hit->last_block_partial);
  auto copy = pool.copy_on_write(&second, int(second.size()) - 1);
  CHECK(copy.ok());
  CHECK(copy->needs_copy());
  CHECK_EQ(second[0], hit->blocks[0]);  // full blocks stay shared
  CHECK(second.back() != hit->blocks.back());
  CHECK_EQ(pool.held_blocks(), 4);
  pool.release(&second);
  cache.clear();
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(eviction_is_least_recently_used_first) {
  KvBlockPool pool(16, 16, 10);
  PrefixCache cache(&pool, 16);
  for (uint64_t i = 1; i <= 3; ++i) CHECK(cache_finished_prefix(&pool, &cache, i, 16));
  CHECK(cache.lookup(key_of(1)).has_value());  // 1 is now the most recent
  auto order = cache.keys_by_recency();
  CHECK_EQ(order.size(), size_t(3));
  CHECK_EQ(order[0].pixels_hash, uint64_t(1));
  CHECK_EQ(order[1].pixels_hash, uint64_t(3));
  CHECK_EQ(order[2].pixels_hash, uint64_t(2));
  CHECK(cache.evict_lru());
  CHECK(!cache.contains(key_of(2)));
  CHECK(cache.evict_lru());
  CHECK(!cache.contains(key_of(3)));
  CHECK(cache.contains(key_of(1)));
  CHECK_EQ(cache.stats().evictions, 2);
  cache.clear();
  CHECK(!cache.evict_lru());
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(eviction_frees_only_blocks_no_sequence_reads) {
  KvBlockPool pool(6, 16, 10);
  PrefixCache cache(&pool, 6);
  auto live = prefix_blocks(&pool, 32);  // a running sequence keeps its prefix
  CHECK(cache.insert(key_of(1), live, 32).ok());
  auto done = prefix_blocks(&pool, 32);  // a finished one left only the cache's copy
  CHECK(cache.insert(key_of(2), done, 32).ok());
  pool.release(&done);
  CHECK_EQ(pool.free_blocks(), 2);
  CHECK_EQ(cache.reclaimable_blocks(), 2);
  // Four free blocks are reachable: evicts key 1 (LRU, frees nothing), then key 2.
  CHECK(cache.evict_until_free(4).ok());
  CHECK_EQ(pool.free_blocks(), 4);
  CHECK_EQ(cache.stats().entries, 0);
  CHECK_EQ(pool.ref_count(live[0]), 1);  // the sequence's own reference stays
  CHECK(cache.insert(key_of(1), live, 32).ok());
  // Five are not reachable while the sequence runs: nothing is evicted.
  Status s = cache.evict_until_free(5);
  CHECK(s.code() == StatusCode::kOutOfMemory);
  CHECK_CONTAINS(s.message(), "expected 5 free KV blocks after evicting the prefix cache but got 4 at most");
  CHECK_EQ(cache.stats().entries, 1);
  CHECK(cache.evict_until_free(3).ok());  // already free: evicts nothing
  CHECK_EQ(cache.stats().entries, 1);
  pool.release(&live);
  CHECK_EQ(pool.free_blocks(), 4);  // the cache still holds them
  cache.clear();
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(the_cap_bounds_the_blocks_held) {
  KvBlockPool pool(16, 16, 10);
  PrefixCache cache(&pool, 4);
  for (uint64_t i = 1; i <= 3; ++i) {
    CHECK(cache_finished_prefix(&pool, &cache, i, 32));
    CHECK(cache.stats().blocks_held <= 4);
  }
  CHECK(!cache.contains(key_of(1)));  // pushed out by key 3
  CHECK_EQ(pool.held_blocks(), 4);
  auto big = prefix_blocks(&pool, 80);  // 5 blocks: over the whole cap
  auto rejected = cache.insert(key_of(9), big, 80);
  CHECK(rejected.ok() && !rejected.value());
  CHECK_EQ(cache.stats().rejected, 1);
  CHECK_EQ(cache.stats().entries, 2);  // nothing evicted for it
  CHECK_EQ(pool.ref_count(big[0]), 1);
  pool.release(&big);
  cache.set_max_blocks(2);
  CHECK_EQ(cache.stats().entries, 1);
  CHECK(cache.contains(key_of(3)));
  CHECK_EQ(pool.held_blocks(), 2);
  cache.set_max_blocks(0);
  CHECK_EQ(pool.used_bytes(), size_t(0));
}

REX_TEST(inserting_an_existing_key_keeps_one_entry) {
  KvBlockPool pool(8, 16, 10);
  PrefixCache cache(&pool, 8);
  auto a = prefix_blocks(&pool, 20);
  auto b = prefix_blocks(&pool, 20);  // the same prefix computed twice
  CHECK(cache.insert(key_of(1), a, 20).ok());
  CHECK(cache.insert(key_of(2), b, 20).ok());
  auto again = cache.insert(key_of(1), b, 20);
  CHECK(again.ok() && again.value());
  CHECK_EQ(cache.stats().entries, 2);
  CHECK_EQ(cache.stats().insertions, 2);
  CHECK_EQ(pool.ref_count(b[0]), 2);        // no extra reference taken
  CHECK_EQ(cache.keys_by_recency()[0].pixels_hash, uint64_t(1));  // marked used
  auto clash = cache.insert(key_of(1), prefix_blocks(&pool, 0), 0);
  CHECK(clash.status().code() == StatusCode::kInvalidArgument);
  auto other_length = cache.insert(key_of(1), a, 16);
  CHECK_CONTAINS(other_length.status().message(), "expected 1 blocks for a prefix of 16 tokens but got 2");
  std::vector<int32_t> first_block = {a[0]};
  auto collision = cache.insert(key_of(1), first_block, 16);
  CHECK_CONTAINS(collision.status().message(), "expected the cached prefix's 20 tokens for this key but got 16");
  std::vector<int32_t> free_blocks = {7};
  auto unheld = cache.insert(key_of(5), free_blocks, 16);
  CHECK(unheld.status().code() == StatusCode::kInvalidArgument);
  CHECK(!cache.contains(key_of(5)));
  pool.release(&a);
  pool.release(&b);
  cache.clear();
  CHECK_EQ(pool.used_bytes(), size_t(0));
  CHECK_EQ(pool.stray_releases(), 0);
}

namespace {

// The reference model for the soak: every holder's table, the device's block
// contents (one value a block), and the cache's entries in recency order.
struct Holder {
  std::vector<int32_t> blocks;
  std::vector<uint64_t> contents;  // what this holder expects each block to read
};

struct ModelEntry {
  uint64_t pixels;
  std::vector<int32_t> blocks;
  std::vector<uint64_t> contents;
  int tokens;
};

struct Soak {
  KvBlockPool pool{48, 16, 10};
  PrefixCache cache{&pool, 24};
  std::mt19937_64 rng{12345};
  std::vector<Holder> sequences;
  std::vector<ModelEntry> entries;  // front = most recent
  std::vector<uint64_t> device = std::vector<uint64_t>(48, 0);
  uint64_t next_value = 1;
  int64_t hits = 0, misses = 0;

  int pick(int n) { return int(rng() % uint64_t(n)); }

  void write(Holder* h, int index) {
    auto cow = pool.copy_on_write(&h->blocks, index);
    if (!cow.ok()) {
      CHECK(cow.status().code() == StatusCode::kOutOfMemory);
      CHECK_EQ(pool.free_blocks(), 0);
      return;
    }
    if (cow->needs_copy()) device[size_t(cow->to)] = device[size_t(cow->from)];
    const uint64_t value = next_value++;
    device[size_t(h->blocks[size_t(index)])] = value;
    h->contents[size_t(index)] = value;
  }

  void model_evict_to(size_t cap_blocks) {
    auto held = [&] {
      size_t n = 0;
      for (auto& e : entries) n += e.blocks.size();
      return n;
    };
    while (held() > cap_blocks) entries.pop_back();
  }

  void step() {
    switch (pick(9)) {
      case 0: {  // a new sequence
        const int tokens = 1 + pick(60);
        auto blocks = pool.allocate(tokens);
        if (!blocks.ok()) {
          CHECK(blocks.status().code() == StatusCode::kOutOfMemory);
          break;
        }
        Holder h;
        h.blocks = std::move(blocks).value();
        h.contents.resize(h.blocks.size());
        for (size_t i = 0; i < h.blocks.size(); ++i) {
          h.contents[i] = next_value++;
          device[size_t(h.blocks[i])] = h.contents[i];
        }
        sequences.push_back(std::move(h));
        break;
      }
      case 1:
      case 8: {  // a sequence ends (twice as likely, so the pool does not stay full)
        if (sequences.empty()) break;
        const int i = pick(int(sequences.size()));
        pool.release(&sequences[size_t(i)].blocks);
        sequences.erase(sequences.begin() + i);
        break;
      }
      case 2: {  // a sequence forks (shares all its blocks)
        if (sequences.empty()) break;
        Holder copy = sequences[size_t(pick(int(sequences.size())))];
        CHECK(pool.share(copy.blocks).ok());
        sequences.push_back(std::move(copy));
        break;
      }
      case 3: {  // a sequence writes one of its blocks
        if (sequences.empty()) break;
        Holder& h = sequences[size_t(pick(int(sequences.size())))];
        write(&h, pick(int(h.blocks.size())));
        break;
      }
      case 4: {  // a sequence's prefix goes into the cache
        if (sequences.empty()) break;
        const Holder& h = sequences[size_t(pick(int(sequences.size())))];
        const int n = 1 + pick(int(h.blocks.size()));
        const int tokens = (n - 1) * 16 + 1 + pick(16);
        std::vector<int32_t> prefix(h.blocks.begin(), h.blocks.begin() + n);
        const uint64_t pixels = uint64_t(pick(12));
        auto inserted = cache.insert(key_of(pixels), prefix, tokens);
        auto found = std::find_if(entries.begin(), entries.end(), [&](auto& e) { return e.pixels == pixels; });
        if (found != entries.end()) {
          CHECK_EQ(inserted.ok(), found->tokens == tokens);
          if (inserted.ok()) std::rotate(entries.begin(), found, found + 1);
        } else if (n > cache.max_blocks()) {
          CHECK(inserted.ok() && !inserted.value());
        } else {
          CHECK(inserted.ok() && inserted.value());
          model_evict_to(size_t(cache.max_blocks() - n));
          entries.insert(entries.begin(),
                         ModelEntry{pixels, prefix, std::vector<uint64_t>(h.contents.begin(), h.contents.begin() + n),
                                    tokens});
        }
        break;
      }
      case 5: {  // a lookup; a hit starts a sequence on the prefix
        const uint64_t pixels = uint64_t(pick(12));
        auto hit = cache.lookup(key_of(pixels));
        auto found = std::find_if(entries.begin(), entries.end(), [&](auto& e) { return e.pixels == pixels; });
        CHECK_EQ(hit.has_value(), found != entries.end());
        if (!hit) {
          ++misses;
          break;
        }
        ++hits;
        CHECK((hit->blocks == found->blocks));
        CHECK_EQ(hit->tokens, found->tokens);
        std::rotate(entries.begin(), found, found + 1);
        Holder h{hit->blocks, entries.front().contents};
        CHECK(pool.share(h.blocks).ok());
        if (hit->last_block_partial) write(&h, int(h.blocks.size()) - 1);
        sequences.push_back(std::move(h));
        break;
      }
      case 6: {  // make room
        const int want = pick(49);
        const int before = pool.free_blocks();
        Status s = cache.evict_until_free(want);
        if (!s.ok()) {
          CHECK(s.code() == StatusCode::kOutOfMemory);
          CHECK_EQ(pool.free_blocks(), before);
        } else {
          CHECK(pool.free_blocks() >= want);
          entries.resize(size_t(cache.stats().entries));  // the LRU tail went
        }
        break;
      }
      case 7: {  // the cap changes
        const int cap = pick(30);
        cache.set_max_blocks(cap);
        model_evict_to(size_t(cap));
        break;
      }
    }
    check_invariants();
  }

  void check_invariants() {
    std::map<int32_t, int> refs;
    for (auto& h : sequences)
      for (size_t i = 0; i < h.blocks.size(); ++i) {
        ++refs[h.blocks[i]];
        CHECK_EQ(device[size_t(h.blocks[i])], h.contents[i]);  // nobody wrote a shared block
      }
    int cache_blocks = 0;
    for (auto& e : entries) {
      cache_blocks += int(e.blocks.size());
      for (size_t i = 0; i < e.blocks.size(); ++i) {
        ++refs[e.blocks[i]];
        CHECK_EQ(device[size_t(e.blocks[i])], e.contents[i]);
      }
    }
    int held = 0;
    for (int32_t b = 0; b < pool.total_blocks(); ++b) {
      const int expected = refs.count(b) ? refs[b] : 0;
      CHECK_EQ(pool.ref_count(b), expected);
      held += expected > 0;
    }
    CHECK_EQ(pool.held_blocks(), held);
    CHECK_EQ(pool.used_bytes(), size_t(held) * pool.bytes_per_block());
    const PrefixCacheStats s = cache.stats();
    CHECK_EQ(s.entries, int(entries.size()));
    CHECK_EQ(s.blocks_held, cache_blocks);
    CHECK(s.blocks_held <= cache.max_blocks());
    CHECK_EQ(s.hits, hits);
    CHECK_EQ(s.misses, misses);
    auto order = cache.keys_by_recency();
    for (size_t i = 0; i < order.size() && i < entries.size(); ++i) CHECK_EQ(order[i].pixels_hash, entries[i].pixels);
    CHECK_EQ(pool.stray_releases(), 0);
  }
};

}  // namespace

REX_TEST(randomized_soak_matches_the_reference_model) {
  Soak soak;
  for (int i = 0; i < 5000 && ::rex_test::failures() == 0; ++i) soak.step();
  for (auto& h : soak.sequences) soak.pool.release(&h.blocks);
  soak.sequences.clear();
  soak.cache.clear();
  soak.entries.clear();
  soak.check_invariants();
  CHECK_EQ(soak.pool.used_bytes(), size_t(0));
  CHECK_EQ(soak.pool.free_blocks(), soak.pool.total_blocks());
  CHECK(soak.cache.stats().hits > 100);
  CHECK(soak.cache.stats().evictions > 100);
}
