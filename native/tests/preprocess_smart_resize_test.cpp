// smart_resize against hand-checked cases (Python rounding, min/max branches,
// the 200 aspect limit) and against the table Python's qwen_vl_utils code
// wrote into data/resize_golden.txt ("smart" lines).
#include <fstream>
#include <sstream>
#include <string>

#include "preprocess/preprocess.h"
#include "resize_golden_table.h"
#include "test_harness.h"

namespace {


void expect_size(int h, int w, int want_h, int want_w, int min_pixels = 16 * 28 * 28,
                 int max_pixels = 2560 * 28 * 28) {
  auto r = rex::smart_resize(h, w, 28, min_pixels, max_pixels);
  CHECK(r.ok());
  if (!r.ok()) {
    std::fprintf(stderr, "  smart_resize(%d, %d): %s\n", h, w, r.status().message().c_str());
    return;
  }
  if (r->height != want_h || r->width != want_w) {
    std::fprintf(stderr, "  smart_resize(%d, %d) = %dx%d (h x w), want %dx%d\n", h, w, r->height, r->width, want_h,
                 want_w);
  }
  CHECK_EQ(r->height, want_h);
  CHECK_EQ(r->width, want_w);
}

}  // namespace

REX_TEST(plain_rounding_to_multiples_of_28) {
  expect_size(480, 640, 476, 644);    // 17.14 -> 17, 22.86 -> 23
  expect_size(1080, 1920, 1036, 1876);  // over max: floor branch
  expect_size(250, 350, 252, 336);
}

REX_TEST(halves_round_to_even) {
  expect_size(126, 700, 112, 700);  // 4.5 -> 4
  expect_size(154, 700, 168, 700);  // 5.5 -> 6
  expect_size(700, 70, 700, 56);    // 2.5 -> 2
  expect_size(700, 98, 700, 112);   // 3.5 -> 4
  expect_size(1414, 1414, 1400, 1400);  // 50.5 -> 50 (half-up would overflow max)
}

REX_TEST(min_pixels_branch_scales_up_with_ceil) {
  expect_size(1, 1, 112, 112);
  expect_size(28, 28, 112, 112);
  expect_size(99, 101, 112, 112);
  expect_size(50, 60, 420, 504, 3136 * 64, 3136 * 100);
}

REX_TEST(max_pixels_branch_scales_down_with_floor) {
  expect_size(3000, 4000, 1204, 1624);
  expect_size(4000, 3000, 1624, 1204);
  expect_size(1000, 1000, 448, 448, 3136, 200704);
}

REX_TEST(each_side_at_least_one_factor) {
  expect_size(40, 3000, 28, 2996);
  expect_size(3000, 40, 2996, 28);
  expect_size(10, 2000, 28, 1988);
  expect_size(1, 200, 28, 1596);
}

REX_TEST(aspect_ratio_above_200_is_an_error) {
  auto r = rex::smart_resize(1, 201);
  CHECK(!r.ok());
  CHECK(r.status().code() == rex::StatusCode::kInvalidArgument);
  CHECK_CONTAINS(r.status().message(), "expected an aspect ratio of at most 200 but got 201");
  auto r2 = rex::smart_resize(2001, 10);
  CHECK(!r2.ok());
  CHECK_CONTAINS(r2.status().message(), "but got 200.1");
  CHECK(rex::smart_resize(7000, 35).ok());  // exactly 200 is allowed
}

REX_TEST(non_positive_sizes_and_bad_options_are_errors) {
  for (auto hw : {std::pair<int, int>{0, 5}, {5, 0}, {-3, 10}}) {
    auto r = rex::smart_resize(hw.first, hw.second);
    CHECK(!r.ok());
    CHECK(r.status().code() == rex::StatusCode::kInvalidArgument);
  }
  CHECK(!rex::smart_resize(100, 100, 0).ok());
  CHECK(!rex::smart_resize(100, 100, 28, 5000, 4000).ok());
}

REX_TEST(matches_python_table) {
  const int cases = rex_test::for_each_resize_golden("smart", [&](std::istringstream& s, const std::string& line) {
    int h, w, mn, mx, oh, ow;
    s >> h >> w >> mn >> mx >> oh >> ow;
    CHECK(!s.fail());
    auto r = rex::smart_resize(h, w, 28, mn, mx);
    if (oh < 0) {
      CHECK(!r.ok());
      return;
    }
    CHECK(r.ok());
    if (!r.ok()) return;
    if (r->height != oh || r->width != ow) std::fprintf(stderr, "  case: %s\n", line.c_str());
    CHECK_EQ(r->height, oh);
    CHECK_EQ(r->width, ow);
  });
  CHECK(cases >= 30);
}
