// Batched vision on the CPU: several images of different sizes through one
// encoder pass (patch rows concatenated, windows offset, full attention
// within each image) give each image the bits it gets alone, since every op
// of the CPU encoder works row by row. Also: the batch plan's offsets, a bad
// image failing alone, and encode_rgb_batch against encode_rgb.
#include <cstring>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "cpu/vision.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

static std::vector<float> host(const ImageEmbeddings& e) {
  std::vector<float> out;
  CHECK(e.copy_to_host(&out).ok());
  return out;
}

static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

REX_TEST(batch_plan_offsets_each_image) {
  // 8x8 patches (4x4 merged: one window, then a padded empty one) and 4x12 (2x6 merged: windows of 4x2).
  const std::vector<PatchGrid> grids = {{8, 8}, {4, 12}};
  VisionBatchPlan b = plan_vision_batch(grids, 2, 4);
  CHECK(b.row_offset == std::vector<int>({0, 64, 112}));
  CHECK(b.full_seqlens == std::vector<int>({0, 64, 112}));
  WindowPlan p0 = plan_windows(4, 4, 4, 4), p1 = plan_windows(2, 6, 4, 4);
  std::vector<int> windows = p0.cu_seqlens;
  for (size_t i = 1; i < p1.cu_seqlens.size(); ++i) windows.push_back(64 + p1.cu_seqlens[i]);
  CHECK(b.window_seqlens == windows);
  CHECK(b.window_index[0] == p0.window_index);
  CHECK(b.window_index[1] == p1.window_index);
  CHECK_EQ(b.max_image, 64);
  CHECK_EQ(b.max_window, 64);
  CHECK_EQ(int(b.gather.size()), 112);
  // The second image's permuted rows read its own input rows, with its own rotary ids.
  std::vector<int32_t> r1, c1;
  patch_positions_block_order(4, 12, 2, &r1, &c1);
  for (int p = 64; p < 112; ++p) {
    const int src = b.gather[size_t(p)] - 64;
    CHECK(src >= 0 && src < 48);
    if (src < 0 || src >= 48) continue;
    CHECK_EQ(b.pos_rows[size_t(p)], r1[size_t(src)]);
    CHECK_EQ(b.pos_cols[size_t(p)], c1[size_t(src)]);
  }
}

static void check_batch_equals_alone(ActivationPrecision precision) {
  auto model = make_random_model();
  BackendOptions options;
  options.threads = 3;
  options.emulate_bf16 = precision == ActivationPrecision::kBf16;
  CpuBackend backend(options);
  CHECK(backend.prepare(model->config, model->weights).ok());
  // Different sizes: one window, several partial windows, a long thin image.
  const std::vector<PreprocessedImage> images = {make_random_image(8, 8, 1), make_random_image(14, 10, 2),
                                                 make_random_image(4, 26, 3)};
  std::vector<std::vector<float>> alone;
  for (const auto& im : images) {
    auto e = backend.encode_image(im);
    CHECK(e.ok());
    if (!e.ok()) return;
    alone.push_back(host(*e.value()));
  }
  std::vector<const PreprocessedImage*> refs = {&images[0], &images[1], &images[2]};
  auto batched = backend.encode_image_batch(refs);
  CHECK_EQ(batched.size(), size_t(3));
  for (size_t i = 0; i < batched.size() && i < 3; ++i) {
    CHECK(batched[i].ok());
    if (!batched[i].ok()) continue;
    CHECK_EQ(batched[i].value()->tokens(), images[i].grid_h * images[i].grid_w / 4);
    const std::vector<float> got = host(*batched[i].value());
    if (!same_bits(got, alone[i])) std::fprintf(stderr, "  image %zu: batched differs from alone\n", i);
    CHECK(same_bits(got, alone[i]));
  }
  // Another order, and two of the same image.
  auto reordered = backend.encode_image_batch({&images[2], &images[0], &images[2]});
  CHECK(reordered[0].ok() && reordered[1].ok() && reordered[2].ok());
  if (reordered[0].ok() && reordered[1].ok() && reordered[2].ok()) {
    CHECK(same_bits(host(*reordered[0].value()), alone[2]));
    CHECK(same_bits(host(*reordered[1].value()), alone[0]));
    CHECK(same_bits(host(*reordered[2].value()), alone[2]));
  }
}

REX_TEST(batched_embeddings_equal_alone_bit_for_bit) { check_batch_equals_alone(ActivationPrecision::kFp32); }
REX_TEST(batched_embeddings_equal_alone_bit_for_bit_bf16) { check_batch_equals_alone(ActivationPrecision::kBf16); }

REX_TEST(a_bad_image_fails_alone) {
  auto model = make_random_model();
  CpuBackend backend(2);
  CHECK(backend.prepare(model->config, model->weights).ok());
  PreprocessedImage good = make_random_image(8, 12, 7), odd = make_random_image(8, 12, 8), short_pixels = good;
  odd.grid_w = 7;  // not a multiple of the merge size
  short_pixels.pixel_values.resize(short_pixels.pixel_values.size() - 1);
  auto alone = backend.encode_image(good);
  CHECK(alone.ok());
  auto out = backend.encode_image_batch({&odd, &good, &short_pixels});
  CHECK_EQ(out.size(), size_t(3));
  CHECK(!out[0].ok() && out[0].status().code() == StatusCode::kInvalidArgument);
  CHECK(out[0].status().message().find("expected a grid divisible by 2 but got 8x7") != std::string::npos);
  CHECK(!out[2].ok() && out[2].status().code() == StatusCode::kInvalidArgument);
  CHECK(out[2].status().message().find("pixel values but got") != std::string::npos);
  CHECK(out[1].ok());
  if (out[1].ok() && alone.ok()) CHECK(same_bits(host(*out[1].value()), host(*alone.value())));
}

static std::vector<uint8_t> gradient_rgb(int w, int h, int salt) {
  std::vector<uint8_t> rgb(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) rgb[(size_t(y) * w + x) * 3 + c] = uint8_t((x * 7 + y * 13 + c * 50 + salt) & 255);
  return rgb;
}

REX_TEST(rgb_batch_equals_encode_rgb_and_keeps_errors_apart) {
  auto model = make_random_model();
  CpuBackend backend(2);
  CHECK(backend.prepare(model->config, model->weights).ok());
  PreprocessOptions options;
  options.min_pixels = 28 * 28 * 4;
  options.max_pixels = 28 * 28 * 64;
  const std::vector<std::pair<int, int>> sizes = {{120, 90}, {64, 200}, {300, 1}, {57, 57}};  // 300x1: aspect > 200
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<RgbImageRef> refs;
  for (size_t i = 0; i < sizes.size(); ++i) pixels.push_back(gradient_rgb(sizes[i].first, sizes[i].second, int(i)));
  for (size_t i = 0; i < sizes.size(); ++i)
    refs.push_back(RgbImageRef{pixels[i].data(), sizes[i].first, sizes[i].second, &options});
  auto batched = backend.encode_rgb_batch(refs);
  CHECK_EQ(batched.size(), sizes.size());
  for (size_t i = 0; i < sizes.size() && i < batched.size(); ++i) {
    auto alone = backend.encode_rgb(refs[i].rgb, refs[i].width, refs[i].height, options);
    CHECK_EQ(alone.ok(), batched[i].ok());
    if (!alone.ok() || !batched[i].ok()) {
      if (!alone.ok() && !batched[i].ok()) CHECK_EQ(alone.status().message(), batched[i].status().message());
      continue;
    }
    CHECK_EQ(alone->grid_h, batched[i]->grid_h);
    CHECK_EQ(alone->grid_w, batched[i]->grid_w);
    CHECK(same_bits(host(*alone->embeddings), host(*batched[i]->embeddings)));
    CHECK(batched[i]->vision_ms >= 0 && batched[i]->preprocess_ms >= 0);
  }
  CHECK(!batched[2].ok());
}
