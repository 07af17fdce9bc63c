// M-RoPE position ids against hand-worked examples from REXOMNI.md's rules
// (values written out by hand, not computed by the code under test).
#include <vector>

#include "engine/mrope_positions.h"
#include "test_harness.h"

using namespace rex;

REX_TEST(text_image_text_by_hand) {
  // a b <vs> [2x3 image] <ve> c d ; I = image pad 9, others arbitrary.
  const int32_t I = 9;
  std::vector<int32_t> ids = {1, 2, 3, I, I, I, I, I, I, 4, 5, 6};
  auto p = mrope_positions(ids, I, 2, 3);
  CHECK(p.ok());
  if (!p.ok()) return;
  // Text 0,1,2. Image starts at s = 3: t = 3; h = 3 + row; w = 3 + col.
  // Max so far = 5 (w of col 2), so text resumes at 6.
  std::vector<int32_t> t = {0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7, 8};
  std::vector<int32_t> h = {0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7, 8};
  std::vector<int32_t> w = {0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 12; ++i) {
    CHECK_EQ(p->t(i), t[size_t(i)]);
    CHECK_EQ(p->h(i), h[size_t(i)]);
    CHECK_EQ(p->w(i), w[size_t(i)]);
  }
  CHECK_EQ(p->next_position, 9);
  CHECK_EQ(next_decode_position(p->next_position), 10);
}

REX_TEST(tall_image_uses_rows_for_the_max) {
  // <vs> [3x1 image] x : s = 1; h = 1,2,3; w = 1,1,1; next text = 4.
  const int32_t I = 9;
  auto p = mrope_positions({0, I, I, I, 7}, I, 3, 1);
  CHECK(p.ok());
  if (!p.ok()) return;
  CHECK_EQ(p->t(3), 1);
  CHECK_EQ(p->h(3), 3);
  CHECK_EQ(p->w(3), 1);
  CHECK_EQ(p->t(4), 4);
  CHECK_EQ(p->h(4), 4);
  CHECK_EQ(p->next_position, 5);
}

REX_TEST(image_first_token) {
  const int32_t I = 9;
  auto p = mrope_positions({I, I, I, I, 1}, I, 2, 2);
  CHECK(p.ok());
  if (!p.ok()) return;
  CHECK_EQ(p->t(0), 0);
  CHECK_EQ(p->h(3), 1);
  CHECK_EQ(p->w(3), 1);
  CHECK_EQ(p->t(4), 2);
  CHECK_EQ(p->next_position, 3);
}

REX_TEST(text_only_counts_up) {
  auto p = mrope_positions({4, 4, 4}, 9, 0, 0);
  CHECK(p.ok());
  if (!p.ok()) return;
  for (int i = 0; i < 3; ++i) {
    CHECK_EQ(p->t(i), i);
    CHECK_EQ(p->h(i), i);
    CHECK_EQ(p->w(i), i);
  }
  CHECK_EQ(p->next_position, 3);
}

REX_TEST(mismatched_image_tokens_are_errors) {
  auto p = mrope_positions({1, 9, 9, 9, 2}, 9, 2, 2);
  CHECK(!p.ok());
  if (!p.ok()) CHECK_CONTAINS(p.status().message(), "expected 4 image tokens");
  auto q = mrope_positions({9, 9, 1, 9, 9}, 9, 2, 2);
  CHECK(!q.ok());
  if (!q.ok()) CHECK_CONTAINS(q.status().message(), "contiguous");
}
