// See token_mask.h. apply_token_mask merges the allowed ranges and ids into
// sorted intervals once, then writes -inf into the gaps: one pass over the
// row, no per-id set lookups. allowed_ranges cuts the denied ids out of the
// same intervals.
#include "sampling/token_mask.h"

#include <algorithm>
#include <utility>
#include <cmath>

namespace rex {

bool TokenMask::allows(int32_t id) const {
  if (std::find(deny_ids.begin(), deny_ids.end(), id) != deny_ids.end()) return false;
  for (const IdRange& r : allow_ranges)
    if (id >= r.begin && id < r.end) return true;
  return std::find(allow_ids.begin(), allow_ids.end(), id) != allow_ids.end();
}

namespace {

// Allowed ranges and ids as sorted, disjoint, non-empty intervals clipped to [0, vocab).
std::vector<IdRange> merged_intervals(const TokenMask& m, int vocab) {
  std::vector<IdRange> v;
  v.reserve(m.allow_ranges.size() + m.allow_ids.size());
  for (const IdRange& r : m.allow_ranges) {
    IdRange c{std::max(r.begin, 0), std::min(r.end, int32_t(vocab))};
    if (c.begin < c.end) v.push_back(c);
  }
  for (int32_t id : m.allow_ids)
    if (id >= 0 && id < vocab) v.push_back({id, id + 1});
  return merge_ranges(std::move(v));
}

}  // namespace

std::vector<IdRange> merge_ranges(std::vector<IdRange> v) {
  std::sort(v.begin(), v.end(), [](const IdRange& a, const IdRange& b) { return a.begin < b.begin; });
  std::vector<IdRange> out;
  for (const IdRange& r : v) {
    if (r.begin >= r.end) continue;
    if (!out.empty() && r.begin <= out.back().end) out.back().end = std::max(out.back().end, r.end);
    else out.push_back(r);
  }
  return out;
}

int32_t TokenMask::first_allowed(int vocab) const {
  const std::vector<IdRange> ranges = allowed_ranges(this, vocab);
  return ranges.empty() ? -1 : ranges.front().begin;
}

std::vector<uint32_t> TokenMask::to_bitmask(int vocab) const {
  std::vector<uint32_t> bits(size_t((std::max(vocab, 0) + 31) / 32), 0u);
  for (const IdRange& r : allowed_ranges(this, vocab))
    for (int32_t id = r.begin; id < r.end; ++id) bits[size_t(id) / 32] |= 1u << (id % 32);
  return bits;
}

void apply_token_mask(float* logits, int vocab, const TokenMask& mask) {
  int32_t next = 0;
  for (const IdRange& r : merged_intervals(mask, vocab)) {
    for (int32_t id = next; id < r.begin; ++id) logits[id] = -INFINITY;
    next = r.end;
  }
  for (int32_t id = next; id < vocab; ++id) logits[id] = -INFINITY;
  for (int32_t id : mask.deny_ids)
    if (id >= 0 && id < vocab) logits[id] = -INFINITY;
}

std::vector<IdRange> allowed_ranges(const TokenMask* mask, int vocab) {
  if (vocab <= 0) return {};
  if (!mask) return {IdRange{0, int32_t(vocab)}};
  std::vector<int32_t> deny;
  for (int32_t id : mask->deny_ids)
    if (id >= 0 && id < vocab) deny.push_back(id);
  std::sort(deny.begin(), deny.end());
  deny.erase(std::unique(deny.begin(), deny.end()), deny.end());
  // Each merged interval minus the denied ids inside it (both lists are sorted).
  std::vector<IdRange> out;
  auto d = deny.begin();
  for (const IdRange& r : merged_intervals(*mask, vocab)) {
    int32_t begin = r.begin;
    for (d = std::lower_bound(d, deny.end(), begin); d != deny.end() && *d < r.end; ++d) {
      if (*d > begin) out.push_back({begin, *d});
      begin = *d + 1;
    }
    if (begin < r.end) out.push_back({begin, r.end});
  }
  return out;
}

int64_t allowed_count(const TokenMask* mask, int vocab) {
  int64_t n = 0;
  for (const IdRange& r : allowed_ranges(mask, vocab)) n += r.end - r.begin;
  return n;
}

}  // namespace rex
