// GPU preprocessing (native/cuda/preprocess.cu) against the CPU path
// (native/preprocess), which is bit-exact with Pillow/transformers: the
// resized RGB bytes and the fp32 pixel values must be identical bit for bit
// (memcmp), the bf16 values must be round-to-nearest-even of the CPU fp32.
// Every size class the resampler distinguishes is covered: downscale both
// axes, upscale both, one axis unchanged (a pass skipped), unchanged size (no
// resize), very wide / very tall, max_pixels, and non-default options (odd
// row lengths, 3 frames, merge 3). Each image is also run into oversized
// buffers poisoned with 0xFF, so an unwritten element or a write past the end
// fails. Ends with the median device time (cudaEvent, 20 runs) and the bytes
// moved, for 1000x750 and 4000x3000 among others: the table is printed last.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/preprocess.cuh"
#include "cuda_test_util.h"
#include "preprocess/preprocess.h"
#include "preprocess/synthetic_image.h"

namespace {

using rex::cuda::DeviceBuffer;
using rex::cuda::DevicePreprocessed;
using rex::cuda::DevicePreprocessor;

std::string size_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

template <typename T>
bool download(const DeviceBuffer<T>& buf, size_t count, std::vector<T>* host) {
  host->assign(count, T());
  if (count == 0) return true;
  if (buf.size() < count) return false;
  return cudaMemcpy(host->data(), buf.get(), count * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess;
}

// Where value i of the pixel rows sits: row, channel, frame, py, px.
std::string value_position(size_t i, const rex::PreprocessOptions& o) {
  const size_t row_size = static_cast<size_t>(rex::patch_row_size(o));
  const size_t frame = static_cast<size_t>(o.patch_size) * o.patch_size;
  const size_t row = i / row_size, in_row = i % row_size;
  const size_t c = in_row / (o.temporal_patch_size * frame);
  const size_t t = (in_row / frame) % o.temporal_patch_size;
  const size_t py = (in_row % frame) / o.patch_size, px = in_row % o.patch_size;
  return "row " + std::to_string(row) + " c " + std::to_string(c) + " t " + std::to_string(t) + " py " +
         std::to_string(py) + " px " + std::to_string(px);
}

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Compares everything one GPU run produced with the CPU result; on a
// mismatch reports the first index, its position and both values.
void compare_with_cpu(const std::string& label, const rex::PreprocessedImage& ref, const DevicePreprocessed& got,
                      const rex::PreprocessOptions& o, bool want_f32) {
  bool ok = true;
  auto fail = [&](const std::string& what) {
    ok = false;
    rex_test::fail(__FILE__, __LINE__, label + ": " + what);
  };
  if (got.resized_width != ref.resized_width || got.resized_height != ref.resized_height ||
      got.grid_h != ref.grid_h || got.grid_w != ref.grid_w || got.grid_t != ref.grid_t) {
    fail("expected resized " + size_text(ref.resized_width, ref.resized_height) + " grid " +
         std::to_string(ref.grid_h) + "x" + std::to_string(ref.grid_w) + " but got " +
         size_text(got.resized_width, got.resized_height) + " grid " + std::to_string(got.grid_h) + "x" +
         std::to_string(got.grid_w));
    return;
  }
  if (got.values() != ref.pixel_values.size()) {
    fail("expected " + std::to_string(ref.pixel_values.size()) + " pixel values but got " +
         std::to_string(got.values()));
    return;
  }

  std::vector<uint8_t> rgb;
  if (!download(got.resized_rgb, ref.resized_rgb.size(), &rgb)) {
    fail("could not download resized_rgb");
    return;
  }
  if (std::memcmp(rgb.data(), ref.resized_rgb.data(), rgb.size()) != 0) {
    size_t i = 0, count = 0;
    for (size_t j = 0; j < rgb.size(); ++j) count += rgb[j] != ref.resized_rgb[j];
    while (rgb[i] == ref.resized_rgb[i]) ++i;
    const size_t px = i / 3, w = static_cast<size_t>(ref.resized_width);
    char buf[200];
    std::snprintf(buf, sizeof(buf), "resized RGB: %zu of %zu bytes differ; first at byte %zu (y %zu x %zu c %zu): gpu %d cpu %d",
                  count, rgb.size(), i, px / w, px % w, i % 3, rgb[i], ref.resized_rgb[i]);
    fail(buf);
  }

  const size_t n = ref.pixel_values.size();
  std::vector<rex::cuda::bf16> bf;
  if (!download(got.pixels_bf16, n, &bf)) {
    fail("could not download pixels_bf16");
    return;
  }
  size_t bf_bad = 0, bf_first = n;
  for (size_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, &bf[i], 2);
    if (bits != rex::float_to_bf16_bits(ref.pixel_values[i])) {
      if (bf_first == n) bf_first = i;
      ++bf_bad;
    }
  }
  if (bf_bad != 0) {
    uint16_t bits;
    std::memcpy(&bits, &bf[bf_first], 2);
    char buf[300];
    std::snprintf(buf, sizeof(buf), "bf16: %zu of %zu values differ; first at %zu (%s): gpu 0x%04x cpu rne 0x%04x (cpu fp32 %.9g)",
                  bf_bad, n, bf_first, value_position(bf_first, o).c_str(), bits,
                  rex::float_to_bf16_bits(ref.pixel_values[bf_first]), ref.pixel_values[bf_first]);
    fail(buf);
  }

  if (want_f32) {
    std::vector<float> f;
    if (!download(got.pixels_f32, n, &f)) {
      fail("could not download pixels_f32");
      return;
    }
    if (std::memcmp(f.data(), ref.pixel_values.data(), n * sizeof(float)) != 0) {
      size_t i = 0, count = 0;
      for (size_t j = 0; j < n; ++j) count += float_bits(f[j]) != float_bits(ref.pixel_values[j]);
      while (float_bits(f[i]) == float_bits(ref.pixel_values[i])) ++i;
      char buf[300];
      std::snprintf(buf, sizeof(buf), "fp32: %zu of %zu values differ; first at %zu (%s): gpu %.9g (0x%08x) cpu %.9g (0x%08x)",
                    count, n, i, value_position(i, o).c_str(), f[i], float_bits(f[i]), ref.pixel_values[i],
                    float_bits(ref.pixel_values[i]));
      fail(buf);
    }
  } else if (got.pixels_f32.size() != 0) {
    fail("expected no fp32 buffer without want_f32 but got " + std::to_string(got.pixels_f32.size()) + " values");
  }
  if (ok) {
    std::printf("  %-52s -> %-9s RGB bytes, %s bf16 identical\n", label.c_str(),
                size_text(ref.resized_width, ref.resized_height).c_str(), want_f32 ? "fp32 bits," : "(no fp32)");
  }
}

// Every byte of [from, size) of the buffer must still be 0xFF.
template <typename T>
void check_tail_poisoned(const std::string& label, const char* name, const DeviceBuffer<T>& buf, size_t from) {
  const size_t bytes = buf.bytes(), start = from * sizeof(T);
  if (start >= bytes) return;
  std::vector<uint8_t> host(bytes - start);
  if (cudaMemcpy(host.data(), reinterpret_cast<const uint8_t*>(buf.get()) + start, host.size(), cudaMemcpyDeviceToHost) !=
      cudaSuccess) {
    rex_test::fail(__FILE__, __LINE__, label + ": could not download the tail of " + name);
    return;
  }
  for (size_t i = 0; i < host.size(); ++i) {
    if (host[i] != 0xFF) {
      rex_test::fail(__FILE__, __LINE__, label + ": " + name + " written past its end, at byte " +
                                             std::to_string(start + i) + " (needed " + std::to_string(start) + ")");
      return;
    }
  }
}

struct Case {
  int width, height;
  uint32_t seed;
  const char* what;
};

rex::PreprocessOptions custom_options() {
  rex::PreprocessOptions o;
  o.patch_size = 7;
  o.merge_size = 3;  // factor 21: odd row lengths (3 * 21k bytes), so the 1-byte vertical path runs
  o.temporal_patch_size = 3;
  o.min_pixels = 0;
  o.max_pixels = 300000;
  o.mean[0] = 0.5f, o.mean[1] = 0.25f, o.mean[2] = 0.125f;
  o.std[0] = 0.3f, o.std[1] = 0.7f, o.std[2] = 0.1f;
  return o;
}

// One image through: a fresh preprocessor (run, fp32 and bf16; then without
// fp32), and a long-lived one reusing its scratch into poisoned, oversized
// output buffers.
void check_image(const Case& c, const rex::PreprocessOptions& o, DevicePreprocessor& shared, cudaStream_t stream) {
  const std::string label = std::string(c.what) + " " + size_text(c.width, c.height) + ":" + std::to_string(c.seed);
  auto img = rex::make_synthetic_rgb(c.width, c.height, c.seed);
  CHECK(img.ok());
  if (!img.ok()) return;
  auto ref = rex::preprocess_image(img->data(), c.width, c.height, o);
  CHECK_OK(ref.status());
  if (!ref.ok()) return;

  {
    DevicePreprocessor fresh;
    auto got = fresh.run(img->data(), c.width, c.height, o, /*want_f32=*/true, stream);
    CHECK_OK(got.status());
    if (!got.ok()) return;
    CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
    compare_with_cpu(label + " fresh", ref.value(), got.value(), o, true);

    auto no_f32 = fresh.run(img->data(), c.width, c.height, o, /*want_f32=*/false, stream);
    CHECK_OK(no_f32.status());
    if (!no_f32.ok()) return;
    CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
    compare_with_cpu(label + " bf16 only", ref.value(), no_f32.value(), o, false);
  }

  // Oversized, poisoned outputs: everything needed must be written, nothing past it.
  const size_t pad = 4099;
  DevicePreprocessed out;
  const size_t rgb_n = ref->resized_rgb.size(), val_n = ref->pixel_values.size();
  CHECK_OK(out.resized_rgb.allocate(rgb_n + pad, "test resized"));
  CHECK_OK(out.pixels_bf16.allocate(val_n + pad, "test bf16"));
  CHECK_OK(out.pixels_f32.allocate(val_n + pad, "test f32"));
  CHECK_OK(rex::cuda::cuda_status(cudaMemsetAsync(out.resized_rgb.get(), 0xFF, out.resized_rgb.bytes(), stream), "poison"));
  CHECK_OK(rex::cuda::cuda_status(cudaMemsetAsync(out.pixels_bf16.get(), 0xFF, out.pixels_bf16.bytes(), stream), "poison"));
  CHECK_OK(rex::cuda::cuda_status(cudaMemsetAsync(out.pixels_f32.get(), 0xFF, out.pixels_f32.bytes(), stream), "poison"));
  CHECK_OK(shared.run_into(out, img->data(), c.width, c.height, o, /*want_f32=*/true, stream));
  CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
  CHECK_EQ(out.resized_rgb.size(), rgb_n + pad);  // reused, not reallocated
  CHECK_EQ(out.pixels_bf16.size(), val_n + pad);
  compare_with_cpu(label + " reused+poisoned", ref.value(), out, o, true);
  check_tail_poisoned(label, "resized_rgb", out.resized_rgb, rgb_n);
  check_tail_poisoned(label, "pixels_bf16", out.pixels_bf16, val_n);
  check_tail_poisoned(label, "pixels_f32", out.pixels_f32, val_n);
}

struct StreamHolder {
  cudaStream_t s = nullptr;
  StreamHolder() { cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); }
  ~StreamHolder() { if (s) cudaStreamDestroy(s); }
};

bool require_gpu() {
  if (rex_test::gpu_present()) return true;
  rex_test::fail(__FILE__, __LINE__, "expected a CUDA device but found none (this test is labelled gpu)");
  return false;
}

}  // namespace

REX_TEST(matches_cpu_on_every_size_class) {
  if (!require_gpu()) return;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) std::printf("  device: %s\n", prop.name);
  StreamHolder stream;
  rex::PreprocessOptions o;
  DevicePreprocessor shared;
  const Case cases[] = {
      {4000, 3000, 1, "large, max_pixels"},        // -> 1624x1204, first so later cases reuse larger scratch
      {1000, 750, 2, "photo"},                     // -> 1008x756, slight upscale both
      {1010, 760, 3, "downscale both"},            // -> 1008x756
      {2000, 1500, 4, "downscale both, max_pixels"},
      {20, 30, 5, "tiny, upscale both to min_pixels"},
      {1008, 710, 6, "width unchanged (no horizontal)"},
      {1010, 700, 7, "height unchanged (no vertical)"},
      {1008, 756, 8, "exact size (no resize)"},
      {1000, 7, 9, "very wide"},
      {7, 1000, 10, "very tall"},
      {400, 2, 11, "aspect 200"},
      {28, 28, 12, "one unit, upscaled to min_pixels"},
      {333, 517, 13, "odd sizes"},
      {1920, 1080, 14, "1080p"},
      {1279, 719, 15, "odd 720p"},
      {641, 479, 16, "odd VGA"},
      {3000, 4000, 17, "large portrait"},
      {6000, 100, 18, "wide strip, max_pixels"},
  };
  for (const Case& c : cases) check_image(c, o, shared, stream.s);

  // Non-default options: factor 21 (odd row lengths: the 1-byte vertical
  // path), 3 frames, merge 3, other mean/std; the same preprocessor after the
  // default-option images.
  const rex::PreprocessOptions custom = custom_options();
  const Case custom_cases[] = {
      {105, 100, 21, "custom, width unchanged"},  // -> 105x105: vertical only, row_len 315
      {250, 190, 22, "custom, both"},
      {315, 315, 23, "custom, exact"},
      {1200, 900, 24, "custom, max_pixels"},
  };
  for (const Case& c : custom_cases) check_image(c, custom, shared, stream.s);
}

REX_TEST(errors_are_statuses) {
  if (!require_gpu()) return;
  StreamHolder stream;
  rex::PreprocessOptions o;
  DevicePreprocessor pre;
  DevicePreprocessed none;
  auto r0 = pre.relaunch(none, stream.s);
  CHECK(!r0.ok() && r0.code() == rex::StatusCode::kInvalidArgument);
  uint8_t px[3] = {1, 2, 3};
  auto a = pre.run(px, 0, 5, o, false, stream.s);
  CHECK(!a.ok() && a.status().code() == rex::StatusCode::kInvalidArgument);
  if (!a.ok()) CHECK_CONTAINS(a.status().message(), "expected a non-empty RGB image but got 0x5");
  auto b = pre.run(nullptr, 4, 4, o, false, stream.s);
  CHECK(!b.ok() && b.status().code() == rex::StatusCode::kInvalidArgument);
  if (!b.ok()) CHECK_CONTAINS(b.status().message(), "a null pointer for 4x4");
  std::vector<uint8_t> wide(201 * 3, 9);
  auto c = pre.run(wide.data(), 201, 1, o, false, stream.s);
  CHECK(!c.ok());
  if (!c.ok()) CHECK_CONTAINS(c.status().message(), "expected an aspect ratio of at most 200 but got 201");
  rex::PreprocessOptions bad;
  bad.std[1] = 0.0f;
  auto d = pre.run(px, 1, 1, bad, false, stream.s);
  CHECK(!d.ok());
  if (!d.ok()) CHECK_CONTAINS(d.status().message(), "expected a non-zero std for channel 1");
  // Still usable after errors.
  auto img = rex::make_synthetic_rgb(64, 48, 3);
  CHECK(img.ok());
  if (!img.ok()) return;
  auto ref = rex::preprocess_image(img->data(), 64, 48, o);
  auto ok = pre.run(img->data(), 64, 48, o, true, stream.s);
  CHECK_OK(ok.status());
  CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream.s), "cudaStreamSynchronize"));
  if (ok.ok() && ref.ok()) compare_with_cpu("after errors 64x48", ref.value(), ok.value(), o, true);
}

namespace {

struct Timing {
  std::string name;
  double device_us = 0, device_min_us = 0, device_max_us = 0;
  size_t read_bytes = 0, write_bytes = 0;
  size_t upload_bytes = 0;
  double upload_pageable_us = 0, upload_pinned_us = 0, end_to_end_us = 0;
  std::string passes;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Median of `runs` event-timed calls of fn on stream, after 3 warm-up calls.
template <typename Fn>
std::vector<double> time_events(cudaStream_t stream, int runs, Fn fn, bool* ok) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> us;
  for (int i = 0; i < 3 + runs && *ok; ++i) {
    cudaEventRecord(a, stream);
    rex::Status st = fn();
    cudaEventRecord(b, stream);
    if (!st.ok() || cudaEventSynchronize(b) != cudaSuccess) {
      rex_test::fail(__FILE__, __LINE__, "timed call failed: " + st.message());
      *ok = false;
      break;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    if (i >= 3) us.push_back(1000.0 * ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return us;
}

Timing time_case(const Case& c, cudaStream_t stream) {
  constexpr int kRuns = 20;
  Timing t;
  t.name = size_text(c.width, c.height);
  rex::PreprocessOptions o;
  auto img = rex::make_synthetic_rgb(c.width, c.height, c.seed);
  CHECK(img.ok());
  if (!img.ok()) return t;
  auto ref = rex::preprocess_image(img->data(), c.width, c.height, o);
  CHECK_OK(ref.status());
  if (!ref.ok()) return t;
  t.name += " -> " + size_text(ref->resized_width, ref->resized_height);

  // Production configuration: bf16 only.
  DevicePreprocessor pre;
  DevicePreprocessed out;
  CHECK_OK(pre.run_into(out, img->data(), c.width, c.height, o, /*want_f32=*/false, stream));
  CHECK_OK(rex::cuda::cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
  const rex::cuda::PreprocessTraffic& tr = pre.last_traffic();
  t.read_bytes = tr.device_read_bytes;
  t.write_bytes = tr.device_write_bytes;
  t.upload_bytes = tr.upload_bytes;
  t.passes = std::string(tr.horizontal ? "H" : "-") + (tr.vertical ? "V" : "-") + "N";

  bool ok = true;
  std::vector<double> dev = time_events(stream, kRuns, [&] { return pre.relaunch(out, stream); }, &ok);
  if (!ok) return t;
  t.device_us = median(dev);
  t.device_min_us = *std::min_element(dev.begin(), dev.end());
  t.device_max_us = *std::max_element(dev.begin(), dev.end());
  compare_with_cpu("timed " + t.name, ref.value(), out, o, false);  // the relaunches' results

  // The upload alone: pageable (what run() gets from a std::vector) and pinned.
  const size_t bytes = img->size();
  DeviceBuffer<uint8_t> dst;
  CHECK_OK(dst.allocate(bytes, "upload timing"));
  t.upload_pageable_us = median(time_events(stream, kRuns, [&] {
    return rex::cuda::cuda_status(cudaMemcpyAsync(dst.get(), img->data(), bytes, cudaMemcpyHostToDevice, stream), "copy");
  }, &ok));
  uint8_t* pinned = nullptr;
  if (cudaMallocHost(&pinned, bytes) == cudaSuccess) {
    std::memcpy(pinned, img->data(), bytes);
    t.upload_pinned_us = median(time_events(stream, kRuns, [&] {
      return rex::cuda::cuda_status(cudaMemcpyAsync(dst.get(), pinned, bytes, cudaMemcpyHostToDevice, stream), "copy");
    }, &ok));
    cudaFreeHost(pinned);
  }

  // The whole call on the host clock: smart_resize, taps, upload, kernels, sync.
  std::vector<double> e2e;
  for (int i = 0; i < 3 + kRuns; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    rex::Status st = pre.run_into(out, img->data(), c.width, c.height, o, false, stream);
    cudaError_t e = cudaStreamSynchronize(stream);
    const auto t1 = std::chrono::steady_clock::now();
    if (!st.ok() || e != cudaSuccess) {
      CHECK_OK(st);
      break;
    }
    if (i >= 3) e2e.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  t.end_to_end_us = median(e2e);
  return t;
}

}  // namespace

// Runs last (registration order): its table ends the output.
REX_TEST(device_time_table) {
  if (!require_gpu()) return;
  StreamHolder stream;
  const Case cases[] = {
      {1000, 750, 2, "photo"},
      {4000, 3000, 1, "large"},
      {1008, 756, 8, "normalize only"},
      {1010, 756, 7, "horizontal + normalize"},
      {1008, 760, 6, "vertical + normalize"},
      {2000, 1500, 4, "downscale"},
  };
  std::vector<Timing> rows;
  for (const Case& c : cases) rows.push_back(time_case(c, stream.s));
  std::printf("\n  device part = relaunch(): resize passes + normalize/patchify (bf16 only), cudaEvent median of 20\n");
  std::printf("  %-24s %-4s %9s %9s %9s %8s %8s | %8s %10s %10s %10s\n", "image", "pass", "dev us", "min", "max",
              "MB r+w", "GB/s", "upload MB", "pageable us", "pinned us", "run() us");
  for (const Timing& t : rows) {
    const double mb = (t.read_bytes + t.write_bytes) / 1e6;
    std::printf("  %-24s %-4s %9.1f %9.1f %9.1f %8.2f %8.0f | %8.2f %10.1f %10.1f %10.1f\n", t.name.c_str(),
                t.passes.c_str(), t.device_us, t.device_min_us, t.device_max_us, mb,
                t.device_us > 0 ? mb * 1e6 / t.device_us / 1e3 : 0.0, t.upload_bytes / 1e6, t.upload_pageable_us,
                t.upload_pinned_us, t.end_to_end_us);
  }
}
