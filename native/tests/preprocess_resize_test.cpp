// Pillow exactness of resize_bicubic_rgb8: sha256 of our bytes against the
// sha256 of Pillow's Image.resize(BICUBIC) bytes recorded by
// data/make_resize_golden.py (Pillow 9.4, whose 8-bit resample is 10.4's),
// on synthetic images. Also checks the synthetic formula and sha256 itself,
// since a mismatch in either would masquerade as a resampling bug.
#include <fstream>
#include <sstream>
#include <string>

#include "preprocess/preprocess.h"
#include "preprocess/synthetic_image.h"
#include "sha256.h"
#include "resize_golden_table.h"
#include "test_harness.h"

REX_TEST(sha256_known_vectors) {
  CHECK_EQ(rex_test::sha256_hex("", 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  CHECK_EQ(rex_test::sha256_hex("abc", 3), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK_EQ(rex_test::sha256_hex(two_blocks.data(), two_blocks.size()),
           std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

REX_TEST(synthetic_matches_python) {
  const int cases = rex_test::for_each_resize_golden("synthetic", [&](std::istringstream& s, const std::string& line) {
    std::string sha;
    int w, h;
    unsigned long long seed;
    s >> w >> h >> seed >> sha;
    auto img = rex::make_synthetic_rgb(w, h, static_cast<uint32_t>(seed));
    CHECK(img.ok());
    if (img.ok()) CHECK_EQ(rex_test::sha256_hex(img->data(), img->size()), sha);
  });
  CHECK_EQ(cases, 3);
}

REX_TEST(synthetic_name_parsing) {
  auto spec = rex::parse_synthetic_name("synthetic:640x480:7");
  CHECK(spec.ok());
  if (spec.ok()) {
    CHECK_EQ(spec->width, 640);
    CHECK_EQ(spec->height, 480);
    CHECK_EQ(spec->seed, 7u);
  }
  CHECK(!rex::parse_synthetic_name("synthetic:640x480").ok());
  CHECK(!rex::parse_synthetic_name("synthetic:0x480:1").ok());
  CHECK(!rex::parse_synthetic_name("shared:cafe.jpg").ok());
  CHECK(!rex::parse_synthetic_name("synthetic:64x48:-1").ok());
}

REX_TEST(bicubic_matches_pillow_bytes) {
  int mismatches = 0;
  const int cases = rex_test::for_each_resize_golden("resize", [&](std::istringstream& s, const std::string& line) {
    std::string sha;
    int w, h, seed, ow, oh;
    s >> w >> h >> seed >> ow >> oh >> sha;
    CHECK(!s.fail());
    auto img = rex::make_synthetic_rgb(w, h, static_cast<uint32_t>(seed));
    CHECK(img.ok());
    if (!img.ok()) return;
    auto out = rex::resize_bicubic_rgb8(img->data(), w, h, ow, oh);
    CHECK(out.ok());
    if (!out.ok()) return;
    CHECK_EQ(out->size(), static_cast<size_t>(ow) * oh * 3);
    const std::string got = rex_test::sha256_hex(out->data(), out->size());
    if (got != sha) {
      ++mismatches;
      std::fprintf(stderr, "  Pillow mismatch: %dx%d seed %d -> %dx%d\n", w, h, seed, ow, oh);
    }
  });
  CHECK(cases >= 40);
  CHECK_EQ(mismatches, 0);
}

REX_TEST(same_size_is_a_copy) {
  auto img = rex::make_synthetic_rgb(31, 17, 3);
  CHECK(img.ok());
  auto out = rex::resize_bicubic_rgb8(img->data(), 31, 17, 31, 17);
  CHECK(out.ok());
  CHECK(out.ok() && out.value() == img.value());
}

REX_TEST(constant_image_stays_constant) {
  // Normalised taps sum to ~1 in fixed point, so a flat image must stay flat.
  std::vector<uint8_t> flat(50 * 40 * 3);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<uint8_t>(i % 3 == 0 ? 200 : i % 3 == 1 ? 7 : 128);
  auto out = rex::resize_bicubic_rgb8(flat.data(), 50, 40, 113, 17);
  CHECK(out.ok());
  if (!out.ok()) return;
  bool ok = true;
  for (size_t i = 0; i < out->size(); ++i) ok = ok && out.value()[i] == flat[i % 3];
  CHECK(ok);
}

REX_TEST(bad_arguments_are_errors) {
  uint8_t px[3] = {1, 2, 3};
  auto a = rex::resize_bicubic_rgb8(nullptr, 1, 1, 28, 28);
  CHECK(!a.ok() && a.status().code() == rex::StatusCode::kInvalidArgument);
  auto b = rex::resize_bicubic_rgb8(px, 0, 1, 28, 28);
  CHECK(!b.ok() && b.status().code() == rex::StatusCode::kInvalidArgument);
  auto c = rex::resize_bicubic_rgb8(px, 1, 1, 0, 28);
  CHECK(!c.ok() && c.status().code() == rex::StatusCode::kInvalidArgument);
  CHECK(!rex::make_synthetic_rgb(0, 4, 1).ok());
}
