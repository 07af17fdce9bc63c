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

namespace {

using rex::cuda::bf16;
using namespace rex_test;

[[maybe_unused]] rex::cpu::ThreadPool& pool() {
  static rex::cpu::ThreadPool p(0);
  return p;
}

[[maybe_unused]] bool skip_without_gpu() {
  if (gpu_present()) return false;
  std::printf("  skipped: no CUDA device\n");
  return true;
}

uint64_t g_seed = 0x41435456ull;  // advanced per draw: every check sees fresh inputs

// Order-preserving key of a bf16 bit pattern, so |key(a) - key(b)| is the
// distance in ulps (0 and -0 coincide). NaN gets a far-away key.
[[maybe_unused]] int bf16_key(uint16_t b) {
  if ((b & 0x7f80) == 0x7f80 && (b & 0x7f)) return 1 << 20;
  return (b & 0x8000) ? -int(b & 0x7fff) : int(b & 0x7fff);
}

struct UlpStats {
  int max_ulp = 0;
  size_t over1 = 0;  // elements more than 1 ulp apart
};
// out (bf16 values as floats) against a reference rounded to bf16.
[[maybe_unused]] UlpStats ulp_stats(const std::vector<float>& out, const std::vector<float>& ref_rounded) {
  UlpStats s;
  for (size_t i = 0; i < out.size(); ++i) {
    const int d = std::abs(bf16_key(rex::float_to_bf16_bits(out[i])) - bf16_key(rex::float_to_bf16_bits(ref_rounded[i])));
    s.max_ulp = std::max(s.max_ulp, d);
    s.over1 += d > 1;
  }
  return s;
}

[[maybe_unused]] double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

[[maybe_unused]] size_t count_non_finite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}

// ---- timing: "cold" is the median of 50 single launches between cudaEvents,
// the L2 flushed before each by a kernel that reads 256 MB (so the L2 holds
// clean lines and the timed kernel pays no write-back of the flush; a memset
// flush would charge it). prepare() runs before each, outside the events
// (restores the inputs of in-place ops). "b2b" is the median over 9 trials of
// 20 launches back to back between one event pair, per launch, without
// prepare (repeating an in-place op is harmless for timing): what a stream
// or graph of kernels sees, inputs L2-resident when they fit (60 MB). Each op
// is shown beside a cudaMemcpyAsync moving the same bytes (half read, half
// written), timed as "cold": the practical floor at that size, launch
// latency included. (An idle stream's first launch is slow: a "warm" single
// launch without the flush kernel queued ahead measured 2.5 us MORE, even
// for an empty kernel, so it is not reported.)
constexpr double kCopyBandwidth = 4.3e12;  // H200, measured D2D copy, read + write bytes

__global__ void read_flush_kernel(const uint4* p, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // never (the buffer is constant): keeps the loads
}
__global__ void empty_kernel() {}

struct L2Flush {
  DeviceArray<uint4> buf{(size_t(256) << 20) / sizeof(uint4)};
  DeviceArray<unsigned> sink{1};
  L2Flush() { cudaMemset(buf.ptr, 1, buf.count * sizeof(uint4)); }
  void operator()(cudaStream_t s) { read_flush_kernel<<<1024, 256, 0, s>>>(buf.ptr, buf.count, sink.ptr); }
};
[[maybe_unused]] L2Flush& l2_flush() {
  static L2Flush f;
  return f;
}

template <typename Prepare, typename Launch>
double median_us(Prepare prepare, Launch launch, cudaStream_t stream, bool cold, int reps = 50) {
  for (int i = 0; i < 3; ++i) {
    prepare();
    launch();
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    prepare();
    if (cold) l2_flush()(stream);
    cudaEventRecord(start, stream);
    launch();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return 1e3 * 0.5 * (times[size_t(reps / 2 - 1)] + times[size_t(reps / 2)]);
}

// Per-launch time of 20 back-to-back launches (median of 9 trials, each after a flush).
template <typename Launch>
double b2b_us(Launch launch, cudaStream_t stream, int k = 20) {
  launch();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int t = 0; t < 9; ++t) {
    l2_flush()(stream);
    cudaEventRecord(start, stream);
    for (int i = 0; i < k; ++i) launch();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return 1e3 * times[4] / k;
}

struct TimingRow {
  std::string op, shape;
  double bytes, cold_us, b2b_us, copy_us;
};
[[maybe_unused]] std::vector<TimingRow>& timings() {
  static std::vector<TimingRow> rows;
  return rows;
}

// The same bytes through cudaMemcpyAsync (device to device), cold.
[[maybe_unused]] double copy_us(double bytes, cudaStream_t stream) {
  const size_t half = std::max<size_t>(size_t(bytes / 2) / 256 * 256, 256);
  DeviceArray<unsigned char> src(half), dst(half);
  cudaMemset(src.ptr, 1, half);
  return median_us([] {}, [&] { cudaMemcpyAsync(dst.ptr, src.ptr, half, cudaMemcpyDeviceToDevice, stream); }, stream,
                   true);
}

// Times launch() (which returns a Status; the first failure is reported) and
// prints one line: cold and back-to-back times, achieved GB/s, the copy of the same
// bytes, the floor.
template <typename Prepare, typename Launch>
void time_op(const std::string& op, const std::string& shape, double bytes, Prepare prepare, Launch launch) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  rex::Status first = rex::Status::Ok();
  auto run = [&] {
    rex::Status st = launch(stream);
    if (first.ok() && !st.ok()) first = st;
  };
  auto prep = [&] { prepare(stream); };
  const double cold = median_us(prep, run, stream, true);
  const double b2b = b2b_us(run, stream);
  const double copy = copy_us(bytes, stream);
  CHECK_OK(first);
  CHECK_CUDA_SYNC();
  const double floor_us = bytes / kCopyBandwidth * 1e6;
  std::printf("  TIME %-20s %-30s cold %7.2f us %5.0f GB/s | b2b %7.2f us %5.0f GB/s | copy %7.2f us | %.3f MB, "
              "floor %.2f us\n",
              op.c_str(), shape.c_str(), cold, bytes / (cold * 1e-6) / 1e9, b2b, bytes / (b2b * 1e-6) / 1e9, copy,
              bytes / 1e6, floor_us);
  timings().push_back({op, shape, bytes, cold, b2b, copy});
  cudaStreamDestroy(stream);
}

[[maybe_unused]] void print_timing_table() {
  if (timings().empty()) return;
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  auto empty = [&] { empty_kernel<<<1, 32, 0, stream>>>(); };
  const double empty_cold = median_us([] {}, empty, stream, true), empty_b2b = b2b_us(empty, stream);
  cudaStreamDestroy(stream);
  std::printf("\n(an empty kernel timed the same way: cold %.2f us, b2b %.2f us; copy = cudaMemcpyAsync of the same "
              "bytes, cold)\n",
              empty_cold, empty_b2b);
  std::printf("%-20s %-30s %9s %9s %9s %7s %9s %7s %9s\n", "op", "shape", "MB", "floor us", "cold us", "GB/s", "b2b us",
              "GB/s", "copy us");
  for (const TimingRow& r : timings())
    std::printf("%-20s %-30s %9.3f %9.2f %9.2f %7.0f %9.2f %7.0f %9.2f\n", r.op.c_str(), r.shape.c_str(), r.bytes / 1e6,
                r.bytes / kCopyBandwidth * 1e6, r.cold_us, r.bytes / (r.cold_us * 1e-6) / 1e9, r.b2b_us,
                r.bytes / (r.b2b_us * 1e-6) / 1e9, r.copy_us);
}

[[maybe_unused]] auto no_prepare = [](cudaStream_t) {};

// A bad-argument call must fail with kInvalidArgument and a message containing needle.
[[maybe_unused]] void expect_invalid(const rex::Status& st, const char* needle) {
  CHECK(!st.ok());
  CHECK(st.code() == rex::StatusCode::kInvalidArgument);
  CHECK_CONTAINS(st.message(), needle);
}

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
