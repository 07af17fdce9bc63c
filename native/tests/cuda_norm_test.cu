// rmsnorm_bf16, add_rmsnorm_bf16 and add_residual (native/cuda/norm.cuh)
// against the CPU twins (cpu::rmsnorm, cpu::add_rmsnorm) on fresh random
// inputs: the model's widths (text 2048, vision 1280) at row counts 1, 3, 37,
// 1000 and the real prefill (1200) and vision (3888) rows, plus widths that
// take the scalar path (dim % 8 != 0, an unaligned pointer) and several
// chunks per thread. Outputs are poisoned with NaN before each launch.
// Measures printed per case:
//  - rel.err of out against the fp32 CPU twin (the check; expect ~3e-3,
//    the two bf16 roundings the GPU does and the twin does not);
//  - rel.err and ulp distance against a bf16-faithful double reference
//    (bf16(bf16(x * inv) * w), as the kernel rounds): max ulp <= 2 expected;
//  - the fused residual against x + delta in fp32: bit for bit;
//  - a second launch on the same inputs must give the same bits (no race).
// Then the bad-argument paths, and timings at the real decode (1 row) and
// prefill (1200 rows, vision 3888) shapes.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/norm.h"
#include "cpu/thread_pool.h"
#include "cuda/norm.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using namespace rex_test;

uint64_t g_seed = 0x4e4f524dull;  // advanced per draw: every check sees fresh inputs

constexpr float kEps = 1e-6f;

// bf16(bf16(x * inv) * w) with the mean of squares in double: the kernel's rounding.
std::vector<float> faithful_rmsnorm(const std::vector<float>& x, int rows, int dim, const std::vector<float>& w) {
  std::vector<float> out(x.size());
  for (int r = 0; r < rows; ++r) {
    const float* xr = &x[size_t(r) * dim];
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(ss / dim + double(kEps));
    for (int i = 0; i < dim; ++i) {
      const float t = rex::round_to_bf16(float(double(xr[i]) * inv));
      out[size_t(r) * dim + i] = rex::round_to_bf16(float(double(t) * w[size_t(i)]));
    }
  }
  return out;
}

// One case: rows x dim, fused or not; out_offset > 0 shifts out by that many
// elements (unaligned: the scalar path); outliers puts a few +-300 values in.
void check_norm(int rows, int dim, bool fused, int out_offset = 0, bool outliers = false) {
  const size_t n = size_t(rows) * dim;
  std::vector<float> x = random_floats(n, ++g_seed, 4.0f);
  if (outliers)
    for (size_t i = 0; i < n; i += 997) x[i] = (i & 1) ? 300.0f : -300.0f;
  const std::vector<float> w = random_bf16_values(size_t(dim), ++g_seed, 1.0f);
  const std::vector<float> delta = random_bf16_values(n, ++g_seed, 2.0f);

  DeviceArray<float> dx(x);
  DeviceArray<uint16_t> dw(to_bf16_bits(w)), ddelta(to_bf16_bits(delta)), dout(n + 8);
  bf16* out_ptr = dout.as<bf16>() + out_offset;
  auto launch = [&]() {
    return fused ? rex::cuda::add_rmsnorm_bf16(dx.ptr, ddelta.as<bf16>(), rows, dim, dw.as<bf16>(), kEps, out_ptr, nullptr)
                 : rex::cuda::rmsnorm_bf16(dx.ptr, rows, dim, dw.as<bf16>(), kEps, out_ptr, nullptr);
  };
  dout.poison();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  auto download_out = [&]() {
    std::vector<uint16_t> all = dout.download();
    return std::vector<uint16_t>(all.begin() + out_offset, all.begin() + out_offset + std::ptrdiff_t(n));
  };
  const std::vector<uint16_t> bits = download_out();
  const std::vector<float> out = from_bf16_bits(bits);
  const std::vector<float> res_gpu = dx.download();

  // CPU twin (fp32 weights = the bf16 values).
  std::vector<float> x_ref = x, ref(n);
  if (fused)
    rex::cpu::add_rmsnorm(pool(), x_ref.data(), delta.data(), rows, dim, w.data(), kEps, ref.data());
  else
    rex::cpu::rmsnorm(pool(), x_ref.data(), rows, dim, w.data(), kEps, ref.data());
  const std::vector<float> faithful = faithful_rmsnorm(x_ref, rows, dim, w);

  char what[160];
  std::snprintf(what, sizeof what, "%s rows=%d dim=%d%s%s", fused ? "add_rmsnorm_bf16" : "rmsnorm_bf16", rows, dim,
                out_offset ? " out+1 (scalar path)" : "", outliers ? " outliers" : "");
  CHECK_REL_ERROR(what, out, ref, kBf16Tolerance);
  const UlpStats u = ulp_stats(out, faithful);
  std::printf("    vs bf16-faithful: rel.err %.3e, max ulp %d, %zu of %zu elements > 1 ulp; max |out-ref| %.3e; "
              "non-finite %zu\n",
              relative_error(out, faithful), u.max_ulp, u.over1, n, max_abs_diff(out, ref), count_non_finite(out));
  CHECK(u.max_ulp <= 2);
  if (fused) {
    size_t differing = 0;
    for (size_t i = 0; i < n; ++i) differing += res_gpu[i] != x_ref[i];
    std::printf("    residual x += delta: %zu of %zu fp32 values differ from the CPU (expect 0)\n", differing, n);
    CHECK_EQ(differing, size_t(0));
  }
  // Same inputs again: same bits.
  if (fused) cudaMemcpy(dx.ptr, x.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  dout.poison();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> again = download_out();
  size_t moved = 0;
  for (size_t i = 0; i < n; ++i) moved += again[i] != bits[i];
  if (moved) std::printf("    second launch: %zu outputs changed (a race?)\n", moved);
  CHECK_EQ(moved, size_t(0));
}

REX_TEST(rmsnorm_matches_cpu_at_model_widths) {
  if (skip_without_gpu()) return;
  for (bool fused : {false, true}) {
    for (int dim : {2048, 1280})
      for (int rows : {1, 3, 37, 1000}) check_norm(rows, dim, fused);
    check_norm(1200, 2048, fused);  // text prefill
    check_norm(3888, 1280, fused);  // vision tower
  }
}

REX_TEST(rmsnorm_odd_widths_and_paths) {
  if (skip_without_gpu()) return;
  for (bool fused : {false, true}) {
    check_norm(37, 8, fused);       // one chunk per row
    check_norm(37, 72, fused);      // 9 chunks, one warp
    check_norm(37, 100, fused);     // dim % 8 != 0: scalar path
    check_norm(3, 4100, fused);     // scalar path, 5 elements per thread
    check_norm(3, 11008, fused);    // 16-byte path, 2 chunks per thread
    check_norm(37, 32768, fused);   // 16-byte path at its limit, 4 chunks per thread
    check_norm(37, 2048, fused, 1); // unaligned out: scalar path, 2 per thread
    check_norm(37, 2048, fused, 0, true);
  }
}

REX_TEST(add_residual_matches_cpu) {
  if (skip_without_gpu()) return;
  for (int64_t count : {int64_t(1), int64_t(7), int64_t(8), int64_t(9), int64_t(1000) * 2048 + 5, int64_t(3888) * 1280}) {
    for (int offset : {0, 1}) {  // offset 1: delta unaligned, the scalar path
      const size_t n = size_t(count);
      std::vector<float> x = random_floats(n, ++g_seed, 4.0f);
      const std::vector<float> delta = random_bf16_values(n, ++g_seed, 2.0f);
      std::vector<uint16_t> dbits(n + 1, 0);
      const std::vector<uint16_t> b = to_bf16_bits(delta);
      std::copy(b.begin(), b.end(), dbits.begin() + offset);
      DeviceArray<float> dx(x);
      DeviceArray<uint16_t> dd(dbits);
      CHECK_OK(rex::cuda::add_residual(dx.ptr, dd.as<bf16>() + offset, count, nullptr));
      CHECK_CUDA_SYNC();
      const std::vector<float> got = dx.download();
      size_t differing = 0;
      for (size_t i = 0; i < n; ++i) differing += got[i] != x[i] + delta[i];
      std::printf("  add_residual count=%lld%s: %zu of %zu differ from x + delta (expect 0)\n", (long long)count,
                  offset ? " delta+1" : "", differing, n);
      CHECK_EQ(differing, size_t(0));
    }
  }
}

REX_TEST(rows_zero_is_a_no_op) {
  if (skip_without_gpu()) return;
  CHECK_OK(rex::cuda::rmsnorm_bf16(nullptr, 0, 2048, nullptr, kEps, nullptr, nullptr));
  CHECK_OK(rex::cuda::add_rmsnorm_bf16(nullptr, nullptr, 0, 2048, nullptr, kEps, nullptr, nullptr));
  CHECK_OK(rex::cuda::add_residual(nullptr, nullptr, 0, nullptr));
  CHECK_CUDA_SYNC();
}

REX_TEST(bad_arguments_return_status) {
  if (skip_without_gpu()) return;
  DeviceArray<float> x(4 * 64);
  DeviceArray<uint16_t> w(64), d(4 * 64 + 8), out(4 * 64 + 8);
  const bf16* wp = w.as<bf16>();
  bf16* op = out.as<bf16>();
  bf16* dp = d.as<bf16>();
  using rex::cuda::add_residual;
  using rex::cuda::add_rmsnorm_bf16;
  using rex::cuda::rmsnorm_bf16;
  expect_invalid(rmsnorm_bf16(x.ptr, -1, 64, wp, kEps, op, nullptr), "expected rows >= 0");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 0, wp, kEps, op, nullptr), "expected dim > 0");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 64, wp, -1.0f, op, nullptr), "expected eps >= 0");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 64, wp, NAN, op, nullptr), "expected eps >= 0");
  expect_invalid(rmsnorm_bf16(nullptr, 4, 64, wp, kEps, op, nullptr), "expected an x pointer");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 64, nullptr, kEps, op, nullptr), "expected a weight pointer");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 64, wp, kEps, nullptr, nullptr), "expected an out pointer");
  expect_invalid(rmsnorm_bf16(x.ptr, 4, 64, wp, kEps, reinterpret_cast<bf16*>(x.ptr) + 8, nullptr), "not to overlap");
  expect_invalid(rmsnorm_bf16(x.ptr, 1, 40000, wp, kEps, op, nullptr), "expected dim <= 32768");
  expect_invalid(rmsnorm_bf16(x.ptr, 1, 20001, wp, kEps, op, nullptr), "expected dim <= 16384");
  expect_invalid(add_rmsnorm_bf16(x.ptr, dp, -3, 64, wp, kEps, op, nullptr), "expected rows >= 0");
  expect_invalid(add_rmsnorm_bf16(nullptr, dp, 4, 64, wp, kEps, op, nullptr), "expected a residual pointer");
  expect_invalid(add_rmsnorm_bf16(x.ptr, nullptr, 4, 64, wp, kEps, op, nullptr), "expected a delta pointer");
  expect_invalid(add_rmsnorm_bf16(x.ptr, dp, 4, 64, wp, kEps, dp + 1, nullptr), "partly overlaps");
  expect_invalid(add_residual(x.ptr, dp, -1, nullptr), "expected count >= 0");
  expect_invalid(add_residual(nullptr, dp, 8, nullptr), "expected a residual pointer");
  expect_invalid(add_residual(x.ptr, nullptr, 8, nullptr), "expected a delta pointer");
  rex::Status st = rmsnorm_bf16(x.ptr, -1, 64, wp, kEps, op, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  // out == delta exactly is allowed (each thread reads its delta chunk before writing out there).
  std::vector<float> xs = random_floats(4 * 64, ++g_seed, 3.0f), ds = random_bf16_values(4 * 64, ++g_seed);
  std::vector<float> ws = random_bf16_values(64, ++g_seed);
  DeviceArray<float> x2(xs);
  DeviceArray<uint16_t> d2(to_bf16_bits(ds)), w2(to_bf16_bits(ws));
  CHECK_OK(add_rmsnorm_bf16(x2.ptr, d2.as<bf16>(), 4, 64, w2.as<bf16>(), kEps, d2.as<bf16>(), nullptr));
  CHECK_CUDA_SYNC();
  std::vector<float> ref(xs.size());
  rex::cpu::add_rmsnorm(pool(), xs.data(), ds.data(), 4, 64, ws.data(), kEps, ref.data());
  CHECK_REL_ERROR("add_rmsnorm_bf16 in place (out == delta) rows=4 dim=64", from_bf16_bits(d2.download()), ref,
                  kBf16Tolerance);
  CHECK_CUDA_SYNC();
}

// The real shapes: decode (1 row), text prefill (1200 rows), vision (3888 rows).
REX_TEST(timing) {
  if (skip_without_gpu()) return;
  struct Shape { const char* name; int rows, dim; };
  const Shape shapes[] = {{"text decode", 1, 2048}, {"text prefill", 1200, 2048}, {"vision", 3888, 1280}};
  for (const Shape& s : shapes) {
    const size_t n = size_t(s.rows) * s.dim;
    const std::vector<float> x = random_floats(n, ++g_seed, 4.0f);
    DeviceArray<float> dx(x), pristine(x);
    DeviceArray<uint16_t> dw(to_bf16_bits(random_bf16_values(size_t(s.dim), ++g_seed)));
    DeviceArray<uint16_t> dd(to_bf16_bits(random_bf16_values(n, ++g_seed))), dout(n);
    const std::string shape = std::string(s.name) + " " + std::to_string(s.rows) + "x" + std::to_string(s.dim);
    time_op("rmsnorm_bf16", shape, double(n) * (4 + 2) + 2.0 * s.dim, no_prepare, [&](cudaStream_t st) {
      return rex::cuda::rmsnorm_bf16(dx.ptr, s.rows, s.dim, dw.as<bf16>(), kEps, dout.as<bf16>(), st);
    });
    time_op("add_rmsnorm_bf16", shape, double(n) * (4 + 2 + 4 + 2) + 2.0 * s.dim,
            [&](cudaStream_t st) { cudaMemcpyAsync(dx.ptr, pristine.ptr, n * sizeof(float), cudaMemcpyDeviceToDevice, st); },
            [&](cudaStream_t st) {
              return rex::cuda::add_rmsnorm_bf16(dx.ptr, dd.as<bf16>(), s.rows, s.dim, dw.as<bf16>(), kEps,
                                                 dout.as<bf16>(), st);
            });
    time_op("add_residual", shape, double(n) * (4 + 2 + 4),
            [&](cudaStream_t st) { cudaMemcpyAsync(dx.ptr, pristine.ptr, n * sizeof(float), cudaMemcpyDeviceToDevice, st); },
            [&](cudaStream_t st) { return rex::cuda::add_residual(dx.ptr, dd.as<bf16>(), int64_t(n), st); });
  }
}

// Last: the table the notes are written from.
REX_TEST(zz_summary_table) { print_timing_table(); }

}  // namespace
