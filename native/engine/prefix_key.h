// What names an image prefix in the KV cache (prefix_cache.h), and the
// cache's counters: the plain data backend.h shares with the engine.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rex {

// A 64-bit hash of `size` bytes from `seed` (pass the previous result to
// hash several buffers as one): FNV-1a's multiply over four independent lanes
// of 8-byte words, then the tail bytes, then the lanes and the length. Eight
// bytes per multiply in four chains: a 1000x750 RGB image (2.25 MB) in
// 0.28 ms on this project's 2-core CI machine, where byte-wise FNV-1a took
// 3.0 ms (and made up a quarter of a cached request's time to first token
// on the H200 machine).
constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;
uint64_t hash_bytes(const void* data, size_t size, uint64_t seed = kFnv1aOffset);

// What makes two image prefixes the same KV: the preprocessed pixels, the
// patch grid they were resized to, the resize/normalisation settings, and
// the prompt tokens before and around the image (system prompt, template).
struct PrefixKey {
  uint64_t pixels_hash = 0;
  int32_t grid_h = 0;
  int32_t grid_w = 0;
  uint64_t settings_hash = 0;
  uint64_t prompt_prefix_hash = 0;

  bool operator==(const PrefixKey& other) const {
    return pixels_hash == other.pixels_hash && grid_h == other.grid_h && grid_w == other.grid_w &&
           settings_hash == other.settings_hash && prompt_prefix_hash == other.prompt_prefix_hash;
  }
  bool operator!=(const PrefixKey& other) const { return !(*this == other); }
};

struct PrefixKeyHash {
  size_t operator()(const PrefixKey& key) const;
};

struct PrefixCacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t insertions = 0;
  int64_t evictions = 0;
  int64_t rejected = 0;  // inserts larger than the whole cap, not cached
  int entries = 0;
  int blocks_held = 0;   // references the cache holds (one per block per entry)
};

}  // namespace rex
