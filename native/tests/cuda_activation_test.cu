// swiglu_bf16 and gelu_bf16 (native/cuda/activation.cuh) against the CPU
// twins (cpu::swiglu_inplace, cpu::gelu_inplace) on fresh random inputs
// (scale 4, so both tails of the nonlinearity are exercised): the text MLP
// (inter 11008, 16-byte path), the vision MLP (inter 3420, 8-byte path:
// 3420 % 8 = 4), small widths for the 4-, 2- and 1-wide paths, row counts 1,
// 3, 37, 1000 and the real 1200 / 3888, SiLU and GELU. Outputs are poisoned
// with NaN before each launch. Measures printed per case:
//  - rel.err against the fp32 CPU twin (the check; expect ~2e-3, the one
//    bf16 rounding);
//  - ulp distance against a double reference rounded once to bf16: for SiLU
//    at most 1 ulp (checked); GELU's 1 + erf cancels for x < -2, where fp32
//    erff (GPU and CPU alike) is a few bf16 ulps off, so it is reported only.
// Then gelu at the merger's size, the bad-argument paths and timings at the
// real decode (1 row) and prefill (1200 rows; vision 3888 rows) shapes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/activation.h"
#include "cpu/thread_pool.h"
#include "cuda/activation.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using namespace rex_test;

uint64_t g_seed = 0x41435456ull;  // advanced per draw: every check sees fresh inputs

double act_ref(double x, bool gelu) {
  return gelu ? 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))) : x / (1.0 + std::exp(-x));
}

// The chunk width the kernel should pick (same rule as activation.cu), for the log.
int expected_vec(int inter, int offset) {
  for (int v : {8, 4, 2})
    if (inter % v == 0 && offset % v == 0) return v;
  return 1;
}

// rows x inter; out_offset > 0 shifts out by that many elements (narrower path).
void check_swiglu(int rows, int inter, bool gelu, int out_offset = 0) {
  const size_t n = size_t(rows) * inter;
  const std::vector<float> gate_up = random_bf16_values(2 * n, ++g_seed, 4.0f);
  DeviceArray<uint16_t> dgu(to_bf16_bits(gate_up)), dout(n + 8);
  dout.poison();
  CHECK_OK(rex::cuda::swiglu_bf16(dgu.as<bf16>(), rows, inter, dout.as<bf16>() + out_offset, gelu, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> all = dout.download();
  const std::vector<float> out = from_bf16_bits(
      std::vector<uint16_t>(all.begin() + out_offset, all.begin() + out_offset + std::ptrdiff_t(n)));

  std::vector<float> gate(n), up(n), faithful(n);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < inter; ++i) {
      gate[size_t(r) * inter + i] = gate_up[size_t(r) * 2 * inter + i];
      up[size_t(r) * inter + i] = gate_up[size_t(r) * 2 * inter + inter + i];
    }
  for (size_t i = 0; i < n; ++i) faithful[i] = rex::round_to_bf16(float(act_ref(gate[i], gelu) * up[i]));
  rex::cpu::swiglu_inplace(pool(), gate.data(), up.data(), int64_t(n), gelu);  // gate := reference

  char what[160];
  std::snprintf(what, sizeof what, "swiglu_bf16<%s> rows=%d inter=%d (vec %d)%s", gelu ? "gelu" : "silu", rows, inter,
                expected_vec(inter, out_offset), out_offset ? " out+1" : "");
  CHECK_REL_ERROR(what, out, gate, kBf16Tolerance);
  const UlpStats u = ulp_stats(out, faithful);
  std::printf("    vs double rounded once: rel.err %.3e, max ulp %d, %zu of %zu > 1 ulp; max |out-ref| %.3e; "
              "non-finite %zu\n",
              relative_error(out, faithful), u.max_ulp, u.over1, n, max_abs_diff(out, gate), count_non_finite(out));
  if (!gelu) CHECK(u.max_ulp <= 1);
  // The poison beyond the output must be intact.
  size_t outside = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (i < size_t(out_offset) || i >= size_t(out_offset) + n) outside += all[i] != 0xFFFF;
  CHECK_EQ(outside, size_t(0));
}

REX_TEST(swiglu_matches_cpu_at_model_shapes) {
  if (skip_without_gpu()) return;
  for (int rows : {1, 3, 37, 1000}) {
    check_swiglu(rows, 11008, false);  // text MLP
    check_swiglu(rows, 3420, false);   // vision MLP (SiLU in Qwen2.5-VL)
  }
  check_swiglu(1200, 11008, false);  // text prefill
  check_swiglu(3888, 3420, false);   // vision tower
  check_swiglu(37, 11008, true);
  check_swiglu(37, 3420, true);
}

REX_TEST(swiglu_narrow_paths) {
  if (skip_without_gpu()) return;
  for (bool gelu : {false, true}) {
    check_swiglu(37, 8, gelu);       // vec 8, one chunk per row
    check_swiglu(37, 12, gelu);      // vec 4
    check_swiglu(37, 6, gelu);       // vec 2
    check_swiglu(37, 7, gelu);       // vec 1
    check_swiglu(3, 1, gelu);        // vec 1, one element per row
    check_swiglu(37, 11008, gelu, 1);  // out unaligned: vec 1
    check_swiglu(37, 3420, gelu, 2);   // out 4-byte aligned only: vec 2
  }
}

void check_gelu(int64_t count, int offset) {
  const size_t n = size_t(count);
  const std::vector<float> x = random_bf16_values(n, ++g_seed, 4.0f);
  std::vector<uint16_t> bits(n + 16, 0xFFFF);  // poison around the range
  const std::vector<uint16_t> xb = to_bf16_bits(x);
  std::copy(xb.begin(), xb.end(), bits.begin() + offset);
  DeviceArray<uint16_t> dx(bits);
  CHECK_OK(rex::cuda::gelu_bf16(dx.as<bf16>() + offset, count, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> all = dx.download();
  const std::vector<float> out =
      from_bf16_bits(std::vector<uint16_t>(all.begin() + offset, all.begin() + offset + std::ptrdiff_t(n)));
  std::vector<float> ref = x, faithful(n);
  rex::cpu::gelu_inplace(pool(), ref.data(), count);
  for (size_t i = 0; i < n; ++i) faithful[i] = rex::round_to_bf16(float(act_ref(x[i], true)));
  char what[160];
  std::snprintf(what, sizeof what, "gelu_bf16 count=%lld%s", (long long)count, offset ? " x+1 (scalar path)" : "");
  CHECK_REL_ERROR(what, out, ref, kBf16Tolerance);
  const UlpStats u = ulp_stats(out, faithful);
  // Unchanged: an element the kernel skipped stays the input; count those that are
  // not already a fixed point of gelu's rounding.
  size_t unchanged = 0, fixed_points = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool fp = rex::round_to_bf16(float(act_ref(x[i], true))) == x[i];
    fixed_points += fp;
    unchanged += !fp && out[i] == x[i];
  }
  std::printf("    vs double rounded once: rel.err %.3e, max ulp %d, %zu of %zu > 1 ulp; max |out-ref| %.3e; "
              "unchanged non-fixed-points %zu\n",
              relative_error(out, faithful), u.max_ulp, u.over1, n, max_abs_diff(out, ref), unchanged);
  CHECK_EQ(unchanged, size_t(0));
  size_t outside = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (i < size_t(offset) || i >= size_t(offset) + n) outside += all[i] != 0xFFFF;
  CHECK_EQ(outside, size_t(0));
}

REX_TEST(gelu_matches_cpu) {
  if (skip_without_gpu()) return;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(1000), int64_t(972) * 5120,
                        int64_t(1000) * 5120 + 3})
    for (int offset : {0, 1}) check_gelu(count, offset);
}

REX_TEST(rows_zero_is_a_no_op) {
  if (skip_without_gpu()) return;
  CHECK_OK(rex::cuda::swiglu_bf16(nullptr, 0, 11008, nullptr, false, nullptr));
  CHECK_OK(rex::cuda::gelu_bf16(nullptr, 0, nullptr));
  CHECK_CUDA_SYNC();
}

REX_TEST(bad_arguments_return_status) {
  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> gu(4 * 2 * 64), out(4 * 64);
  const bf16* g = gu.as<bf16>();
  bf16* o = out.as<bf16>();
  using rex::cuda::gelu_bf16;
  using rex::cuda::swiglu_bf16;
  expect_invalid(swiglu_bf16(g, -1, 64, o, false, nullptr), "expected rows >= 0");
  expect_invalid(swiglu_bf16(g, 4, 0, o, false, nullptr), "expected inter > 0");
  expect_invalid(swiglu_bf16(g, 4, -8, o, true, nullptr), "expected inter > 0");
  expect_invalid(swiglu_bf16(nullptr, 4, 64, o, false, nullptr), "expected a gate_up pointer");
  expect_invalid(swiglu_bf16(g, 4, 64, nullptr, false, nullptr), "expected an out pointer");
  expect_invalid(swiglu_bf16(g, 4, 64, gu.as<bf16>() + 64, false, nullptr), "not to overlap");
  expect_invalid(gelu_bf16(o, -1, nullptr), "expected count >= 0");
  expect_invalid(gelu_bf16(nullptr, 5, nullptr), "expected an x pointer");
  rex::Status st = swiglu_bf16(g, 4, 0, o, false, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  CHECK_CUDA_SYNC();
}

REX_TEST(timing) {
  if (skip_without_gpu()) return;
  struct Shape { const char* name; int rows, inter; };
  const Shape shapes[] = {{"text decode", 1, 11008}, {"text prefill", 1200, 11008}, {"vision", 3888, 3420}};
  for (const Shape& s : shapes) {
    const size_t n = size_t(s.rows) * s.inter;
    DeviceArray<uint16_t> dgu(to_bf16_bits(random_bf16_values(2 * n, ++g_seed, 4.0f))), dout(n);
    const std::string shape = std::string(s.name) + " " + std::to_string(s.rows) + "x" + std::to_string(s.inter);
    time_op("swiglu_bf16<silu>", shape, double(n) * 6, no_prepare, [&](cudaStream_t st) {
      return rex::cuda::swiglu_bf16(dgu.as<bf16>(), s.rows, s.inter, dout.as<bf16>(), false, st);
    });
  }
  // The merger's GELU, in place on fc1's output: 972 tokens x 5120 (3888 patches / 4).
  const size_t n = size_t(972) * 5120;
  DeviceArray<uint16_t> x(to_bf16_bits(random_bf16_values(n, ++g_seed, 4.0f))), pristine(x.download());
  time_op("gelu_bf16", "vision merger 972x5120", double(n) * 4,
          [&](cudaStream_t st) { cudaMemcpyAsync(x.ptr, pristine.ptr, n * 2, cudaMemcpyDeviceToDevice, st); },
          [&](cudaStream_t st) { return rex::cuda::gelu_bf16(x.as<bf16>(), int64_t(n), st); });
}

REX_TEST(zz_summary_table) { print_timing_table(); }

}  // namespace
