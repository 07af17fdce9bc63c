// allowed_ranges / allowed_count (sampling/token_mask.h) against
// TokenMask::allows, id by id, over random masks: overlapping and adjacent
// ranges, ranges reaching outside [0, vocab), duplicate ids, ids inside
// ranges, deny ids inside ranges, at their edges and outside them, and masks
// that allow nothing. The ranges must be sorted, disjoint, non-empty and
// maximal (no two touch), and cover exactly the allowed ids.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "sampling/rng.h"
#include "sampling/token_mask.h"
#include "test_harness.h"

using namespace rex;

namespace {

int32_t uniform_int(Pcg32& rng, int32_t lo, int32_t hi) {  // [lo, hi)
  return lo + int32_t(rng.next_u32() % uint32_t(hi - lo));
}

TokenMask random_mask(Pcg32& rng, int vocab) {
  TokenMask m;
  const int ranges = uniform_int(rng, 0, 5), ids = uniform_int(rng, 0, 6), denies = uniform_int(rng, 0, 8);
  for (int i = 0; i < ranges; ++i) {
    const int32_t a = uniform_int(rng, -5, vocab + 5), len = uniform_int(rng, 0, vocab / 3 + 1);
    m.allow_ranges.push_back({a, a + len});
  }
  for (int i = 0; i < ids; ++i) {
    const int32_t id = uniform_int(rng, -2, vocab + 2);
    m.allow_ids.push_back(id);
    if (rng.next_u32() % 3 == 0) m.allow_ids.push_back(id);  // a duplicate
  }
  for (int i = 0; i < denies; ++i) {
    int32_t id = uniform_int(rng, -2, vocab + 2);
    // Often right at a range's edge, where a cut is easiest to get wrong.
    if (!m.allow_ranges.empty() && rng.next_u32() % 2 == 0) {
      const IdRange& r = m.allow_ranges[rng.next_u32() % m.allow_ranges.size()];
      const int32_t edges[] = {r.begin, r.end - 1, r.end, r.begin - 1};
      id = edges[rng.next_u32() % 4];
    }
    m.deny_ids.push_back(id);
  }
  return m;
}

// Checks the ranges' shape and that they cover exactly what `allows` says.
void check_ranges(const TokenMask* m, int vocab, const std::string& what) {
  const std::vector<IdRange> ranges = allowed_ranges(m, vocab);
  std::vector<uint8_t> covered(static_cast<size_t>(vocab), 0);
  bool shape_ok = true;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const IdRange& r = ranges[i];
    shape_ok = shape_ok && r.begin >= 0 && r.end <= vocab && r.begin < r.end;
    if (i > 0) shape_ok = shape_ok && ranges[i - 1].end < r.begin;  // disjoint, and maximal
    for (int32_t id = std::max(r.begin, 0); id < std::min(r.end, int32_t(vocab)); ++id) covered[size_t(id)] = 1;
  }
  if (!shape_ok) ::rex_test::fail(__FILE__, __LINE__, what + ": ranges not sorted, disjoint, non-empty and maximal");
  int64_t allowed = 0, mismatches = 0;
  for (int32_t id = 0; id < vocab; ++id) {
    const bool want = m ? m->allows(id) : true;
    allowed += want;
    mismatches += want != bool(covered[size_t(id)]);
  }
  if (mismatches) ::rex_test::fail(__FILE__, __LINE__, what + ": " + std::to_string(mismatches) + " ids differ from allows()");
  CHECK_EQ(allowed_count(m, vocab), allowed);
}

}  // namespace

REX_TEST(random_masks_match_allows_id_by_id) {
  Pcg32 rng(7);
  int empty = 0, several = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int vocab = uniform_int(rng, 1, 80);
    const TokenMask m = random_mask(rng, vocab);
    check_ranges(&m, vocab, "trial " + std::to_string(trial));
    const size_t n = allowed_ranges(&m, vocab).size();
    empty += n == 0;
    several += n > 2;
  }
  CHECK(empty > 50);    // the generator does produce masks that allow nothing ...
  CHECK(several > 50);  // ... and ones cut into several ranges
}

REX_TEST(null_mask_is_the_whole_vocabulary) {
  const std::vector<IdRange> r = allowed_ranges(nullptr, 37);
  CHECK_EQ(r.size(), size_t(1));
  if (r.size() == 1) {
    CHECK_EQ(r[0].begin, 0);
    CHECK_EQ(r[0].end, 37);
  }
  CHECK_EQ(allowed_count(nullptr, 37), int64_t(37));
  CHECK(allowed_ranges(nullptr, 0).empty());
  check_ranges(nullptr, 37, "null mask");
}

REX_TEST(adjacent_ranges_and_ids_merge_and_denies_cut) {
  TokenMask m;
  m.allow_ranges = {{10, 20}, {20, 25}, {3, 5}};
  m.allow_ids = {5, 5, 26, 40};
  m.deny_ids = {10, 24, 15, 15, 40, 99};
  // {3..5} ∪ {5} = [3,6); [10,25) minus 10, 15, 24 = [11,15) [16,24); 26 alone; 40 denied.
  const std::vector<IdRange> r = allowed_ranges(&m, 50);
  const std::vector<std::pair<int32_t, int32_t>> want = {{3, 6}, {11, 15}, {16, 24}, {26, 27}};
  CHECK_EQ(r.size(), want.size());
  for (size_t i = 0; i < r.size() && i < want.size(); ++i) {
    CHECK_EQ(r[i].begin, want[i].first);
    CHECK_EQ(r[i].end, want[i].second);
  }
  CHECK_EQ(allowed_count(&m, 50), int64_t(3 + 4 + 8 + 1));
  CHECK_EQ(m.first_allowed(50), 3);
  // Clipping: a range past the vocabulary ends at it.
  TokenMask tail;
  tail.allow_ranges = {{45, 90}};
  CHECK_EQ(allowed_count(&tail, 50), int64_t(5));
  TokenMask none;
  none.allow_ids = {7};
  none.deny_ids = {7};
  CHECK(allowed_ranges(&none, 50).empty());
  CHECK_EQ(none.first_allowed(50), -1);
}

REX_TEST(bitmask_agrees_with_ranges) {
  Pcg32 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = uniform_int(rng, 1, 100);
    const TokenMask m = random_mask(rng, vocab);
    const std::vector<uint32_t> bits = m.to_bitmask(vocab);
    int64_t set = 0, wrong = 0;
    for (int32_t id = 0; id < vocab; ++id) {
      const bool bit = (bits[size_t(id) / 32] >> (id % 32)) & 1u;
      set += bit;
      wrong += bit != m.allows(id);
    }
    CHECK_EQ(wrong, int64_t(0));
    CHECK_EQ(set, allowed_count(&m, vocab));
  }
}
