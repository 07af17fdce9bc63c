// preprocess_image end to end against numpy (data/resize_golden.txt
// "preprocess" lines: sha256 of the resized RGB and of the float32
// pixel_values, so agreement is exact, plus sums), the patch row order on a
// hand-built image, input validation, and the max_pixels path on a 4000x3000 image.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "preprocess/preprocess.h"
#include "preprocess/synthetic_image.h"
#include "sha256.h"
#include "resize_golden_table.h"
#include "test_harness.h"

REX_TEST(matches_numpy_reference) {
  const int cases = rex_test::for_each_resize_golden("preprocess", [&](std::istringstream& s, const std::string& line) {
    std::string rgb_sha, pv_sha;
    int w, h, seed, mn, mx, rw, rh, gt, gh, gw;
    double sum, abs_sum;
    s >> w >> h >> seed >> mn >> mx >> rw >> rh >> gt >> gh >> gw >> rgb_sha >> pv_sha >> sum >> abs_sum;
    CHECK(!s.fail());
    auto img = rex::make_synthetic_rgb(w, h, static_cast<uint32_t>(seed));
    CHECK(img.ok());
    if (!img.ok()) return;
    rex::PreprocessOptions o;
    o.min_pixels = mn;
    o.max_pixels = mx;
    auto r = rex::preprocess_image(img->data(), w, h, o);
    CHECK(r.ok());
    if (!r.ok()) return;
    CHECK_EQ(r->resized_width, rw);
    CHECK_EQ(r->resized_height, rh);
    CHECK_EQ(r->grid_t, gt);
    CHECK_EQ(r->grid_h, gh);
    CHECK_EQ(r->grid_w, gw);
    CHECK_EQ(r->pixel_values.size(), static_cast<size_t>(gt) * gh * gw * 1176);
    CHECK_EQ(rex_test::sha256_hex(r->resized_rgb.data(), r->resized_rgb.size()), rgb_sha);
    const std::string got_pv = rex_test::sha256_hex(r->pixel_values.data(), r->pixel_values.size() * sizeof(float));
    if (got_pv != pv_sha) std::fprintf(stderr, "  pixel_values differ for %s\n", line.c_str());
    CHECK_EQ(got_pv, pv_sha);
    double s1 = 0, s2 = 0;
    for (float v : r->pixel_values) {
      s1 += v;
      s2 += std::fabs(v);
    }
    CHECK_NEAR(s1, sum, 1e-6 * abs_sum);
    CHECK_NEAR(s2, abs_sum, 1e-6 * abs_sum);
  });
  CHECK(cases >= 8);
}

REX_TEST(rows_follow_merge_block_order) {
  // A 56x56 image: a 4x4 grid of 14px patches forming 2x2 merge blocks. Red
  // holds each patch's raster index, green its pixel row, blue its pixel col.
  const int W = 56, H = 56;
  std::vector<uint8_t> img(W * H * 3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      uint8_t* p = &img[(y * W + x) * 3];
      p[0] = static_cast<uint8_t>((y / 14) * 4 + (x / 14));  // patch raster index
      p[1] = static_cast<uint8_t>(y % 14);
      p[2] = static_cast<uint8_t>(x % 14);
    }
  rex::PreprocessOptions o;
  auto pv = rex::normalize_patchify(img.data(), W, H, o);
  CHECK(pv.ok());
  if (!pv.ok()) return;
  CHECK_EQ(pv->size(), static_cast<size_t>(16 * 1176));
  // Expected row order: block (0,0): patches 0,1,4,5; block (0,1): 2,3,6,7; ...
  const int expect[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  auto norm = [&](int c, int v) {
    float r = static_cast<float>(static_cast<double>(v) * (1.0 / 255.0));
    return (r - o.mean[c]) / o.std[c];
  };
  for (int row = 0; row < 16; ++row) {
    const float* r = pv->data() + row * 1176;
    // layout: channel(3) x frame(2) x py(14) x px(14)
    for (int c = 0; c < 3; ++c)
      for (int t = 0; t < 2; ++t)
        for (int py = 0; py < 14; ++py)
          for (int px = 0; px < 14; ++px) {
            const int v = c == 0 ? expect[row] : c == 1 ? py : px;
            const float got = r[((c * 2 + t) * 14 + py) * 14 + px];
            if (got != norm(c, v)) {
              CHECK_EQ(got, norm(c, v));
              return;
            }
          }
  }
}

REX_TEST(normalize_is_float32_as_transformers) {
  // Value for 0 and 255 in channel 0, computed the numpy way.
  rex::PreprocessOptions o;
  std::vector<uint8_t> img(28 * 28 * 3, 255);
  img[0] = 0;
  auto pv = rex::normalize_patchify(img.data(), 28, 28, o);
  CHECK(pv.ok());
  if (!pv.ok()) return;
  const float zero = (0.0f - o.mean[0]) / o.std[0];
  const float one = (static_cast<float>(255.0 * (1.0 / 255.0)) - o.mean[0]) / o.std[0];
  CHECK_EQ(pv.value()[0], zero);
  CHECK_EQ(pv.value()[1], one);
  CHECK_NEAR(pv.value()[0], -1.7922625, 1e-6);
  CHECK_NEAR(pv.value()[1], 1.9303361, 1e-6);
}

REX_TEST(bad_input_is_an_error) {
  rex::PreprocessOptions o;
  uint8_t px[3] = {0, 0, 0};
  auto a = rex::preprocess_image(px, 0, 5, o);
  CHECK(!a.ok());
  CHECK(a.status().code() == rex::StatusCode::kInvalidArgument);
  CHECK_CONTAINS(a.status().message(), "expected a non-empty RGB image but got 0x5");
  auto b = rex::preprocess_image(nullptr, 4, 4, o);
  CHECK(!b.ok() && b.status().code() == rex::StatusCode::kInvalidArgument);
  CHECK_CONTAINS(b.status().message(), "expected a non-empty RGB image");
  std::vector<uint8_t> wide(201 * 3, 9);
  auto c = rex::preprocess_image(wide.data(), 201, 1, o);
  CHECK(!c.ok());
  CHECK_CONTAINS(c.status().message(), "expected an aspect ratio of at most 200 but got 201");
  rex::PreprocessOptions bad;
  bad.patch_size = 0;
  CHECK(!rex::preprocess_image(px, 1, 1, bad).ok());
  auto d = rex::normalize_patchify(px, 1, 1, o);  // not a multiple of 28
  CHECK(!d.ok() && d.status().code() == rex::StatusCode::kInvalidArgument);
}

// Speed is measured by the benchmarks, not asserted here: this checks the
// max_pixels path on a large photo-sized input.
REX_TEST(large_photo_hits_max_pixels) {
  auto img = rex::make_synthetic_rgb(4000, 3000, 42);
  CHECK(img.ok());
  if (!img.ok()) return;
  rex::PreprocessOptions o;
  auto r = rex::preprocess_image(img->data(), 4000, 3000, o);
  CHECK(r.ok());
  if (r.ok()) {
    CHECK_EQ(r->resized_width, 1624);
    CHECK_EQ(r->resized_height, 1204);
    CHECK_EQ(r->pixel_values.size(), size_t(1624 / 14) * (1204 / 14) * 1176);
  }
}
