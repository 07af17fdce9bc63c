// See kv_block_pool.h.
#include "engine/kv_block_pool.h"

#include <cstdio>
#include <string>

namespace rex {

namespace {
std::string mib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / (1024.0 * 1024.0));
  return text;
}
}  // namespace

KvBlockPool::KvBlockPool(int total_blocks, int block_size, size_t bytes_per_token)
    : total_(total_blocks < 0 ? 0 : total_blocks), block_size_(block_size), bytes_per_token_(bytes_per_token) {
  free_.reserve(size_t(total_));
  for (int b = total_ - 1; b >= 0; --b) free_.push_back(b);  // block 0 on top
}

AdmissionCheck KvBlockPool::check(int tokens) const {
  const int need = blocks_for(tokens);
  AdmissionCheck result;
  if (need <= free_blocks()) return result;
  const std::string needs = "the request needs " + std::to_string(tokens) + " tokens of KV cache (" +
                            mib(size_t(need) * bytes_per_block()) + ")";
  if (need > total_) {
    result.verdict = Admission::kNever;
    result.detail = needs + ", more than the whole KV budget of " + mib(size_t(total_) * bytes_per_block()) +
                    " (" + std::to_string(total_ * block_size_) +
                    " tokens); raise kvCacheGB or gpuMemoryFraction, or lower maxNewTokens";
  } else {
    result.verdict = Admission::kLater;
    result.detail = needs + ", and " + mib(size_t(free_blocks()) * bytes_per_block()) + " of " +
                    mib(size_t(total_) * bytes_per_block()) + " is free";
  }
  return result;
}

Result<std::vector<int32_t>> KvBlockPool::allocate(int tokens) {
  AdmissionCheck c = check(tokens);
  if (c.verdict != Admission::kNow) return Status(StatusCode::kOutOfMemory, c.detail);
  std::vector<int32_t> blocks(size_t(blocks_for(tokens)));
  for (auto& b : blocks) {
    b = free_.back();
    free_.pop_back();
  }
  return blocks;
}

void KvBlockPool::release(std::vector<int32_t>* blocks) {
  for (auto it = blocks->rbegin(); it != blocks->rend(); ++it) free_.push_back(*it);
  blocks->clear();
}

}  // namespace rex
