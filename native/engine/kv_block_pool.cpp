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
    : total_(total_blocks < 0 ? 0 : total_blocks),
      block_size_(block_size),
      bytes_per_token_(bytes_per_token),
      refs_(size_t(total_), 0) {
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
    refs_[size_t(b)] = 1;
  }
  return blocks;
}

void KvBlockPool::release(std::vector<int32_t>* blocks) {
  for (auto it = blocks->rbegin(); it != blocks->rend(); ++it) {
    const int32_t b = *it;
    if (ref_count(b) == 0) {
      ++stray_releases_;
      continue;
    }
    if (--refs_[size_t(b)] == 0) free_.push_back(b);
  }
  blocks->clear();
}

int KvBlockPool::ref_count(int32_t block) const {
  return block >= 0 && block < total_ ? refs_[size_t(block)] : 0;
}

Status KvBlockPool::expect_held(int32_t block, const char* what) const {
  if (block < 0 || block >= total_)
    return Status(StatusCode::kInvalidArgument, std::string("expected ") + what + " to be a block id in [0, " +
                                                    std::to_string(total_) + ") but got " + std::to_string(block));
  if (refs_[size_t(block)] == 0)
    return Status(StatusCode::kInvalidArgument, std::string("expected ") + what +
                                                    " to be a held block but got block " + std::to_string(block) +
                                                    ", which is free");
  return Status::Ok();
}

Status KvBlockPool::share(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) REX_RETURN_IF_ERROR(expect_held(b, "every shared block"));
  for (int32_t b : blocks) ++refs_[size_t(b)];
  return Status::Ok();
}

Result<CowCopy> KvBlockPool::copy_on_write(std::vector<int32_t>* blocks, int index) {
  if (index < 0 || size_t(index) >= blocks->size())
    return Status(StatusCode::kInvalidArgument, "expected a copy-on-write index in [0, " +
                                                    std::to_string(blocks->size()) + ") but got " +
                                                    std::to_string(index));
  const int32_t old_block = (*blocks)[size_t(index)];
  REX_RETURN_IF_ERROR(expect_held(old_block, "the copy-on-write block"));
  if (refs_[size_t(old_block)] == 1) return CowCopy{old_block, old_block};
  if (free_.empty())
    return Status(StatusCode::kOutOfMemory,
                  "copy-on-write of shared block " + std::to_string(old_block) + " needs one free KV block (" +
                      mib(bytes_per_block()) + ") but got none: all " + std::to_string(total_) + " blocks (" +
                      mib(size_t(total_) * bytes_per_block()) + ") are in use");
  const int32_t new_block = free_.back();
  free_.pop_back();
  refs_[size_t(new_block)] = 1;
  --refs_[size_t(old_block)];  // was >= 2: stays held by its other readers
  (*blocks)[size_t(index)] = new_block;
  return CowCopy{old_block, new_block};
}

}  // namespace rex
