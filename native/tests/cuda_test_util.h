// Shared helpers of the CUDA kernel tests (native/tests/cuda_*_test.cu), the
// METHOD.md recipe: fresh random inputs per check (seeded PCG32, never zeros),
// outputs poisoned with NaN before each launch so an unwritten element fails,
// and the error measured as ||out - ref|| / ||ref|| in double against the CPU
// twin. Each test binary is one ctest executable labelled `gpu`. Kernel
// timing (L2 flush, cudaEvent medians, the timing table): cuda_timing.h.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/bf16_host.h"
#include "cpu/thread_pool.h"
#include "rex/status.h"
#include "sampling/rng.h"
#include "test_harness.h"

namespace rex_test {

// Tolerances by METHOD.md: bf16 operands land between 1e-3 and 1e-2.
constexpr double kBf16Tolerance = 1e-2;
constexpr double kFp32Tolerance = 1e-4;

// Uniform in [-scale, scale), never all zeros.
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  rex::Pcg32 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * float(2 * rng.next_double() - 1);
  return v;
}

// Values exactly representable in bf16 (so the CPU twin sees what the GPU sees).
inline std::vector<float> random_bf16_values(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v = random_floats(n, seed, scale);
  for (auto& x : v) x = rex::round_to_bf16(x);
  return v;
}

inline std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = rex::float_to_bf16_bits(v[i]);
  return out;
}
inline std::vector<float> from_bf16_bits(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = rex::bf16_bits_to_float(v[i]);
  return out;
}

// ||out - ref|| / ||ref||; infinity when any output is NaN/Inf or sizes differ.
inline double relative_error(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// A device copy of a host vector; freed by the destructor.
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t count = 0;
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : count(n) {
    if (cudaMalloc(&ptr, n * sizeof(T) + 16) != cudaSuccess) ptr = nullptr;
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (ptr) cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DeviceArray() { if (ptr) cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  // Fills every byte with 0xFF: NaN for bf16/fp32 data, -1 for ints.
  void poison() { if (ptr) cudaMemset(ptr, 0xFF, count * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> host(count);
    if (ptr) cudaMemcpy(host.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  template <typename U>
  U* as() const { return reinterpret_cast<U*>(ptr); }
};

inline bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// For a case's first line: true (and says so) when there is no CUDA device.
inline bool skip_without_gpu() {
  if (gpu_present()) return false;
  std::printf("  skipped: no CUDA device\n");
  return true;
}

// The CPU twins' thread pool (all cores), one per test binary.
inline rex::cpu::ThreadPool& pool() {
  static rex::cpu::ThreadPool p(0);
  return p;
}

// Order-preserving key of a bf16 bit pattern, so |key(a) - key(b)| is the
// distance in ulps (0 and -0 coincide). NaN gets a far-away key.
inline int bf16_key(uint16_t b) {
  if ((b & 0x7f80) == 0x7f80 && (b & 0x7f)) return 1 << 20;
  return (b & 0x8000) ? -int(b & 0x7fff) : int(b & 0x7fff);
}

struct UlpStats {
  int max_ulp = 0;
  size_t over1 = 0;  // elements more than 1 ulp apart
};
// out (bf16 values as floats) against a reference rounded to bf16.
inline UlpStats ulp_stats(const std::vector<float>& out, const std::vector<float>& ref_rounded) {
  UlpStats s;
  for (size_t i = 0; i < out.size(); ++i) {
    const int d = std::abs(bf16_key(rex::float_to_bf16_bits(out[i])) - bf16_key(rex::float_to_bf16_bits(ref_rounded[i])));
    s.max_ulp = std::max(s.max_ulp, d);
    s.over1 += d > 1;
  }
  return s;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

inline size_t count_non_finite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += !std::isfinite(x);
  return n;
}

// A bad-argument call must fail with kInvalidArgument and a message containing needle.
inline void expect_invalid(const rex::Status& st, const char* needle) {
  CHECK(!st.ok());
  CHECK(st.code() == rex::StatusCode::kInvalidArgument);
  CHECK_CONTAINS(st.message(), needle);
}

// Prints one line per compared tensor, so the device log doubles as the notebook's source.
inline void report_error(const std::string& what, double err, double tolerance) {
  std::printf("  %-60s rel.err %.3e (tol %.0e)\n", what.c_str(), err, tolerance);
}

}  // namespace rex_test

// Checks a Status and prints its message when it failed.
#define CHECK_OK(expr)                                                                         \
  do {                                                                                         \
    ::rex::Status rex_st_ = (expr);                                                            \
    if (!rex_st_.ok()) ::rex_test::fail(__FILE__, __LINE__, #expr ": " + rex_st_.message());   \
  } while (0)

// Synchronises and checks for an asynchronous kernel fault.
#define CHECK_CUDA_SYNC()                                                                      \
  do {                                                                                         \
    cudaError_t rex_e_ = cudaDeviceSynchronize();                                              \
    if (rex_e_ != cudaSuccess) ::rex_test::fail(__FILE__, __LINE__, cudaGetErrorString(rex_e_)); \
  } while (0)

// Compares and reports; fails above tolerance.
#define CHECK_REL_ERROR(what, out, ref, tol)                                                    \
  do {                                                                                         \
    double rex_err_ = ::rex_test::relative_error((out), (ref));                                \
    ::rex_test::report_error((what), rex_err_, (tol));                                         \
    if (!(rex_err_ <= (tol))) ::rex_test::fail(__FILE__, __LINE__, std::string(what) + " rel.err too large"); \
  } while (0)
