// Kernel timing shared by the CUDA kernel tests (native/tests/cuda_*_test.cu),
// on top of cuda_test_util.h: the L2 flush, single-launch and back-to-back
// medians between cudaEvents, and, for the memory-bound kernels (activation,
// norm, embedding, rope), time_op's line per case and the table printed last.
//
// "cold" is the median of 50 single launches between cudaEvents (20 in the
// GEMM and attention tests), the L2 flushed before each by a kernel that
// reads 256 MB (so the L2 holds clean lines and the timed kernel pays no
// write-back of the flush; a memset flush would charge it). prepare() runs
// before each, outside the events (restores the inputs of in-place ops).
// "b2b" is the median over 9 trials of 20 launches back to back between one
// event pair, per launch, without prepare (repeating an in-place op is
// harmless for timing): what a stream or graph of kernels sees, inputs
// L2-resident when they fit (60 MB). Each op is shown beside a
// cudaMemcpyAsync moving the same bytes (half read, half written), timed as
// "cold": the practical floor at that size, launch latency included. (An
// idle stream's first launch is slow: a "warm" single launch without the
// flush kernel queued ahead measured 2.5 us MORE, even for an empty kernel,
// so it is not reported.)
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_test_util.h"

namespace rex_test {

constexpr double kCopyBandwidth = 4.3e12;  // H200, measured D2D copy, read + write bytes

// static: every test executable is one translation unit with its own copy.
static __global__ void read_flush_kernel(const uint4* p, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // never (the buffer is constant): keeps the loads
}
static __global__ void empty_kernel() {}

// A buffer larger than the H200's 60 MB L2, read through before each timed
// launch, so that the launch reads its inputs (a GEMM its weights) from HBM
// as in the model, where each layer's are different.
struct L2Flush {
  DeviceArray<uint4> buf{(size_t(256) << 20) / sizeof(uint4)};
  DeviceArray<unsigned> sink{1};
  L2Flush() { cudaMemset(buf.ptr, 1, buf.count * sizeof(uint4)); }
  void operator()(cudaStream_t s) { read_flush_kernel<<<1024, 256, 0, s>>>(buf.ptr, buf.count, sink.ptr); }
};
inline L2Flush& l2_flush() {
  static L2Flush f;
  return f;
}

// One cudaEvent pair for a series of measurements.
struct EventTimer {
  cudaEvent_t start, stop;
  EventTimer() {
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~EventTimer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  // Milliseconds between the events recorded on stream around body().
  template <typename Body>
  float ms(cudaStream_t stream, Body&& body) {
    cudaEventRecord(start, stream);
    body();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    return t;
  }
};

// The times in ms, sorted, of `reps` single launches after 3 warm-ups; before
// each: prepare() (untimed) and, when cold, the L2 flush.
template <typename Prepare, typename Launch>
std::vector<float> launch_times_ms(Prepare prepare, Launch launch, cudaStream_t stream, bool cold, int reps) {
  for (int i = 0; i < 3; ++i) {
    prepare();
    launch();
  }
  EventTimer timer;
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    prepare();
    if (cold) l2_flush()(stream);
    times.push_back(timer.ms(stream, launch));
  }
  std::sort(times.begin(), times.end());
  return times;
}

// The median of sorted times: the mean of the middle two.
inline double median_of_sorted(const std::vector<float>& times) {
  return 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
}

template <typename Prepare, typename Launch>
double median_us(Prepare prepare, Launch launch, cudaStream_t stream, bool cold, int reps = 50) {
  return 1e3 * median_of_sorted(launch_times_ms(prepare, launch, stream, cold, reps));
}

// Per-launch time of 20 back-to-back launches (median of 9 trials, each after a flush).
template <typename Launch>
double b2b_us(Launch launch, cudaStream_t stream, int k = 20) {
  launch();
  EventTimer timer;
  std::vector<float> times;
  for (int t = 0; t < 9; ++t) {
    l2_flush()(stream);
    times.push_back(timer.ms(stream, [&] {
      for (int i = 0; i < k; ++i) launch();
    }));
  }
  std::sort(times.begin(), times.end());
  return 1e3 * times[4] / k;
}

struct TimingRow {
  std::string op, shape;
  double bytes, cold_us, b2b_us, copy_us;
};
inline std::vector<TimingRow>& timings() {
  static std::vector<TimingRow> rows;
  return rows;
}

// The same bytes through cudaMemcpyAsync (device to device), cold.
inline double copy_us(double bytes, cudaStream_t stream) {
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

inline void print_timing_table() {
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

// time_op's prepare for ops that are not in place.
inline constexpr auto no_prepare = [](cudaStream_t) {};

}  // namespace rex_test
