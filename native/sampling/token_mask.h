// The set of token ids a grammar allows at one step, as plain data a GPU
// kernel can apply without calling back into anything: a few half-open id
// ranges, a few single ids, and a few denied ids that win over both.
//   allowed(id) = (id in some allow_ranges[i] or id in allow_ids) and id not in deny_ids
// The lists stay small (a grammar step allows one coordinate range, a handful
// of trie children or separator ids, or the complement of a few banned ranges
// for free text), so a kernel can walk them per row; to_bitmask() gives the
// dense equivalent (one bit per vocabulary id) for kernels that prefer that.
#pragma once

#include <cstdint>
#include <vector>

namespace rex {

struct IdRange {
  int32_t begin = 0;  // first id
  int32_t end = 0;    // one past the last id
};

struct TokenMask {
  std::vector<IdRange> allow_ranges;
  std::vector<int32_t> allow_ids;
  std::vector<int32_t> deny_ids;

  void clear() { allow_ranges.clear(); allow_ids.clear(); deny_ids.clear(); }
  bool allows(int32_t id) const;
  // The lowest allowed id below `vocab`, or -1 when none is.
  int32_t first_allowed(int vocab) const;
  // Bit (id % 32) of word (id / 32) is set when the id is allowed.
  std::vector<uint32_t> to_bitmask(int vocab) const;
};

// Sets every id that `mask` does not allow to -inf.
void apply_token_mask(float* logits, int vocab, const TokenMask& mask);

// The ids `mask` allows below `vocab`, as sorted, disjoint, non-empty,
// maximal [begin, end) ranges (deny_ids already cut out): the segment list a
// GPU sampler walks. A null mask allows everything: {[0, vocab)}.
std::vector<IdRange> allowed_ranges(const TokenMask* mask, int vocab);

// The union of any ranges as sorted, disjoint, maximal ones (empty ones dropped).
std::vector<IdRange> merge_ranges(std::vector<IdRange> ranges);
// How many ids below `vocab` the mask allows (a null mask: vocab).
int64_t allowed_count(const TokenMask* mask, int vocab);

}  // namespace rex
