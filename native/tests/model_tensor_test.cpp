// Tests for TensorView helpers (native/model/tensor.h): dtype names, shapes,
// and bf16 / f16 / f32 widening, including f16 subnormals, inf and NaN.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "model/tensor.h"
#include "test_harness.h"

using rex::DType;
using rex::TensorView;

namespace {

TensorView view_of(DType dtype, const void* data, size_t nbytes, std::vector<int64_t> shape) {
  TensorView t;
  t.name = "t";
  t.dtype = dtype;
  t.data = data;
  t.nbytes = nbytes;
  t.shape = std::move(shape);
  return t;
}

}  // namespace

REX_TEST(dtype_names_and_sizes) {
  CHECK_EQ(std::string(rex::dtype_name(DType::kBF16)), "BF16");
  CHECK_EQ(std::string(rex::dtype_name(DType::kF16)), "F16");
  CHECK_EQ(std::string(rex::dtype_name(DType::kF32)), "F32");
  CHECK_EQ(rex::dtype_size(DType::kBF16), 2u);
  CHECK_EQ(rex::dtype_size(DType::kF16), 2u);
  CHECK_EQ(rex::dtype_size(DType::kF32), 4u);
}

REX_TEST(numel_and_shape_string) {
  TensorView t;
  t.shape = {2048, 1280};
  CHECK_EQ(t.numel(), 2048 * 1280);
  CHECK_EQ(t.shape_string(), "[2048, 1280]");
  t.shape = {};
  CHECK_EQ(t.numel(), 1);
  CHECK_EQ(t.shape_string(), "[]");
  t.shape = {3, 0};
  CHECK_EQ(t.numel(), 0);
}

REX_TEST(bf16_to_f32) {
  CHECK_EQ(rex::bf16_bits_to_f32(0x3F80), 1.0f);
  CHECK_EQ(rex::bf16_bits_to_f32(0xC000), -2.0f);
  CHECK_EQ(rex::bf16_bits_to_f32(0x3E20), 0.15625f);
  CHECK(std::isinf(rex::bf16_bits_to_f32(0x7F80)));
  CHECK(std::isnan(rex::bf16_bits_to_f32(0x7FC0)));
  CHECK(std::signbit(rex::bf16_bits_to_f32(0x8000)));
  CHECK_EQ(rex::bf16_bits_to_f32(0x0001), std::ldexp(1.0f, -133));  // bf16 subnormal
}

REX_TEST(f32_to_bf16_rounds_to_nearest_even) {
  CHECK_EQ(rex::f32_to_bf16_bits(1.0f), 0x3F80);
  CHECK_EQ(rex::f32_to_bf16_bits(-2.0f), 0xC000);
  CHECK_EQ(rex::f32_to_bf16_bits(1.00390625f), 0x3F80);  // tie, rounds to even
  CHECK_EQ(rex::f32_to_bf16_bits(1.01171875f), 0x3F82);  // tie, rounds up to even
  CHECK_EQ(rex::f32_to_bf16_bits(1.0040f), 0x3F81);      // above the tie
  CHECK_EQ(rex::f32_to_bf16_bits(std::numeric_limits<float>::infinity()), 0x7F80);
  CHECK(std::isnan(rex::bf16_bits_to_f32(rex::f32_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()))));
  uint32_t nan_bits = 0x7F800001;  // a NaN whose payload would round away
  float nan;
  std::memcpy(&nan, &nan_bits, 4);
  CHECK(std::isnan(rex::bf16_bits_to_f32(rex::f32_to_bf16_bits(nan))));
}

REX_TEST(f16_to_f32_normals) {
  CHECK_EQ(rex::f16_bits_to_f32(0x3C00), 1.0f);
  CHECK_EQ(rex::f16_bits_to_f32(0xC000), -2.0f);
  CHECK_EQ(rex::f16_bits_to_f32(0x3555), 0.333251953125f);
  CHECK_EQ(rex::f16_bits_to_f32(0x7BFF), 65504.0f);        // largest finite
  CHECK_EQ(rex::f16_bits_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
}

REX_TEST(f16_to_f32_subnormals_zero_inf_nan) {
  CHECK_EQ(rex::f16_bits_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK_EQ(rex::f16_bits_to_f32(0x03FF), 1023.0f * std::ldexp(1.0f, -24));
  CHECK_EQ(rex::f16_bits_to_f32(0x0200), std::ldexp(1.0f, -15));
  CHECK_EQ(rex::f16_bits_to_f32(0x8001), -std::ldexp(1.0f, -24));
  CHECK_EQ(rex::f16_bits_to_f32(0x0000), 0.0f);
  CHECK(!std::signbit(rex::f16_bits_to_f32(0x0000)));
  CHECK(std::signbit(rex::f16_bits_to_f32(0x8000)));
  CHECK_EQ(rex::f16_bits_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  CHECK_EQ(rex::f16_bits_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(rex::f16_bits_to_f32(0x7E00)));
  CHECK(std::isnan(rex::f16_bits_to_f32(0x7C01)));  // signalling NaN stays NaN, not inf
  CHECK(std::isnan(rex::f16_bits_to_f32(0xFE00)));
}

REX_TEST(tensor_element_and_to_f32_per_dtype) {
  const uint16_t bf16[3] = {0x3F80, 0xC000, 0x4040};
  TensorView b = view_of(DType::kBF16, bf16, sizeof bf16, {3});
  CHECK_EQ(rex::tensor_element_f32(b, 2), 3.0f);
  std::vector<float> bf = rex::tensor_to_f32(b);
  CHECK_EQ(bf.size(), 3u);
  CHECK_EQ(bf[1], -2.0f);

  const uint16_t f16[4] = {0x3C00, 0x0001, 0x7C00, 0xC200};
  TensorView h = view_of(DType::kF16, f16, sizeof f16, {2, 2});
  std::vector<float> hf = rex::tensor_to_f32(h);
  CHECK_EQ(hf.size(), 4u);
  CHECK_EQ(hf[0], 1.0f);
  CHECK_EQ(hf[1], std::ldexp(1.0f, -24));
  CHECK(std::isinf(hf[2]));
  CHECK_EQ(hf[3], -3.0f);
  CHECK_EQ(rex::tensor_element_f32(h, 3), -3.0f);

  const float f32[2] = {0.5f, -7.25f};
  TensorView f = view_of(DType::kF32, f32, sizeof f32, {2});
  CHECK_EQ(rex::tensor_element_f32(f, 1), -7.25f);
  CHECK_EQ(rex::tensor_to_f32(f)[0], 0.5f);
}

REX_TEST(unaligned_data_and_out_of_range_index) {
  unsigned char bytes[9] = {0};
  float value = 1.5f;
  std::memcpy(bytes + 1, &value, 4);  // misaligned on purpose
  TensorView f = view_of(DType::kF32, bytes + 1, 4, {1});
  CHECK_EQ(rex::tensor_element_f32(f, 0), 1.5f);
  CHECK(std::isnan(rex::tensor_element_f32(f, 1)));
  TensorView empty = view_of(DType::kBF16, nullptr, 0, {0});
  CHECK(rex::tensor_to_f32(empty).empty());
  CHECK(std::isnan(rex::tensor_element_f32(empty, 0)));
}
