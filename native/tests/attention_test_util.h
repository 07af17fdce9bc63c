// Helpers shared by the three attention tests (cuda_attention_{vision,
// prefill,decode}_test.cu), on top of cuda_test_util.h and cuda_timing.h:
//  - check_close: the rel.err check of CHECK_REL_ERROR plus every other
//    measure a device log should carry (max |diff| against max |ref|, where
//    the worst element sits, how many outputs are not finite), so one run
//    says what went wrong, not only that it did;
//  - check_same_bits: a second launch on the same inputs must give the same
//    bits (a moving result is a race);
//  - time_launch: median (and min) of 20 single-launch times (cudaEvent),
//    L2 flushed before each (cuda_timing.h) so inputs come from HBM as they
//    would in the model;
//  - a summary table printed last (the device reply carries the end of the log);
//  - REX_ATTN_QUICK=1 in the environment: small cases only and no timing, for
//    a pass under compute-sanitizer (memcheck, racecheck, synccheck).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace rex_test::attn {

inline bool quick() {
  static const bool q = std::getenv("REX_ATTN_QUICK") != nullptr;
  return q;
}
// For the large / timing-only cases: true (and says so) in quick mode.
inline bool skip_in_quick_mode() {
  if (!quick()) return false;
  std::printf("  skipped: REX_ATTN_QUICK\n");
  return true;
}

// Every measure of out against ref; fails (through CHECK_REL_ERROR) above tol.
// where(i) names element i (e.g. "token 17 head 3 dim 5").
inline double check_close(const std::string& what, const std::vector<float>& out, const std::vector<float>& ref,
                          double tol, const std::function<std::string(size_t)>& where) {
  size_t nonfinite = 0, first_nonfinite = 0, worst = 0;
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(ref[i])));
    if (!std::isfinite(out[i])) {
      if (nonfinite++ == 0) first_nonfinite = i;
      continue;
    }
    const double d = std::fabs(double(out[i]) - double(ref[i]));
    if (d > max_diff) {
      max_diff = d;
      worst = i;
    }
  }
  const double err = relative_error(out, ref);
  CHECK_REL_ERROR(what, out, ref, tol);
  std::printf("    max|diff| %.3e (max|ref| %.3e) at %s: out %.6g ref %.6g; non-finite %zu/%zu", max_diff, max_ref,
              where(worst).c_str(), out.empty() ? 0.0 : double(out[worst]), ref.empty() ? 0.0 : double(ref[worst]),
              nonfinite, out.size());
  if (nonfinite) std::printf(" (first at %s)", where(first_nonfinite).c_str());
  std::printf("\n");
  return err;
}

// Two launches on the same inputs must agree bit for bit.
inline void check_same_bits(const std::string& what, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (a[i] != b[i] && differ++ == 0) first = i;
  if (a.size() != b.size() || differ) {
    std::printf("    %s: second launch differs in %zu elements (first %zu)\n", what.c_str(), differ, first);
    ::rex_test::fail(__FILE__, __LINE__, what + ": second launch on the same inputs gave other bits (a race?)");
  }
}

// Median (and min) of `reps` single-launch times in ms, after 3 warm-ups.
struct Timing {
  double median_ms = 0, min_ms = 0;
};
template <typename Launch>
Timing time_launch(Launch launch, cudaStream_t stream, int reps = 20) {
  const std::vector<float> times = launch_times_ms([] {}, launch, stream, true, reps);
  return {median_of_sorted(times), times.front()};
}

struct Row {
  std::string name;
  double err = 0, ms = 0, min_ms = 0, tflops = 0, gbs = 0;
};
inline std::vector<Row>& table() {
  static std::vector<Row> rows;
  return rows;
}

// Prints one timing line and records it for the summary.
inline void report_timing(const std::string& name, const Timing& t, double flops, double bytes, double err) {
  const double s = t.median_ms * 1e-3;
  const double tflops = flops / s / 1e12, gbs = bytes / s / 1e9;
  std::printf("    time %-44s median %9.4f ms (min %9.4f)  %.3f GFLOP %8.1f TFLOP/s  %.2f MB %8.1f GB/s\n",
              name.c_str(), t.median_ms, t.min_ms, flops / 1e9, tflops, bytes / 1e6, gbs);
  table().push_back({name, err, t.median_ms, t.min_ms, tflops, gbs});
}

inline void print_table(const char* title) {
  std::printf("\n%s (median of 20, L2 flushed; H200 floors: 790 TFLOP/s bf16 mma via cuBLAS, 4.3 TB/s copy)\n",
              title);
  std::printf("  %-46s %10s %10s %10s %10s %10s\n", "case", "rel.err", "ms", "min ms", "TFLOP/s", "GB/s");
  for (const Row& r : table())
    std::printf("  %-46s %10.2e %10.4f %10.4f %10.1f %10.1f\n", r.name.c_str(), r.err, r.ms, r.min_ms, r.tflops,
                r.gbs);
}

}  // namespace rex_test::attn
