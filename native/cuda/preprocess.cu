// GPU image preprocessing, bit-identical to native/preprocess (CPU).
//
// Why it is shaped this way:
// - Every decision (target size, taps, which passes run, the ybox crop, the
//   normalize constants) is made on the host by the CPU path's own functions
//   (smart_resize, resample_detail::plan_bicubic_resize, normalize_constants);
//   the device only does the arithmetic, so the two cannot drift apart. The
//   taps are ~tens of KB; building them on the host is ~µs.
// - Resize passes are integer arithmetic (22-bit fixed-point taps, 32-bit
//   accumulators starting at half a unit, >> 22, clip to 0..255), exactly as
//   bicubic_resample.cpp, hence exact by construction.
// - Horizontal pass: one thread per output pixel doing its 3 channels (as the
//   CPU loop and Pillow do), so each tap is loaded once for 3 MACs; a warp
//   covers 32 neighbouring output pixels, so its source bytes are one
//   contiguous run of a row (L1-served) and its 96 output bytes are contiguous.
//   The taps are uploaded transposed ([tap][pixel]) so a warp's tap load is one
//   line. blockIdx.y walks the rows.
// - Vertical pass: one thread per 4 output bytes of a row (1 when the row
//   length is not a multiple of 4): each output row is a weighted sum of whole
//   source rows, so loads and stores are fully coalesced 4-byte words and the
//   row's taps are uniform across the block (blockIdx.y = output row).
// - Normalize + patchify: one block per output patch row (merge-block order),
//   one thread per patch pixel (py, px) doing its 3 channels; each value is
//   written to every temporal frame, in bf16 (__float2bfloat16_rn, what
//   .to(bfloat16) does) and, on request, fp32. Consecutive threads write
//   consecutive addresses within each (channel, frame) run of p*p values; the
//   2-D block means no per-value index divisions (p = 14, merge 2 compiled in).
//   The arithmetic is the CPU LUT's, op for op, with explicit IEEE intrinsics
//   so nvcc cannot contract or reorder it: r = float(double(v) * rescale)
//   (__dmul_rn, __double2float_rn), (r - mean) (__fsub_rn), / std (__fdiv_rn).
// - Three launches, no fusion, no shared-memory staging: the device part is
//   predicted at ~10 µs (1000x750) to ~70 µs (4000x3000), against ~0.1 ms and
//   ~1-2.5 ms for the PCIe upload of the source RGB that precedes it (see
//   NOTES.md, preprocess), so simplicity wins for now.
#include "cuda/preprocess.cuh"

#include <cuda_bf16.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/cuda_check.h"
#include "preprocess/bicubic_coeffs.h"

namespace rex::cuda {
namespace {

using resample_detail::kAccumulatorHalf;
using resample_detail::kPrecisionBits;

constexpr int kMaxGridY = 65535;

// bicubic_resample.cpp's clip8: arithmetic shift (floor), clamp to 0..255.
__device__ __forceinline__ uint32_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return static_cast<uint32_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Rows [row0, row0 + rows) of src (src_w pixels wide) -> rows [0, rows) of dst
// (out_w wide). Taps of output pixel xx: first[xx], count[xx], and tap x at
// weights_t[x * out_w + xx]: transposed on upload, so a warp's 32 threads read
// one tap of 32 neighbouring pixels as one 128-byte line (the [xx][x] layout
// would touch ksize lines per load).
__global__ void resample_horizontal_kernel(const uint8_t* __restrict__ src, int src_w, int row0, int rows,
                                           const int32_t* __restrict__ first, const int32_t* __restrict__ count,
                                           const int32_t* __restrict__ weights_t, int out_w,
                                           uint8_t* __restrict__ dst) {
  const int xx = blockIdx.x * blockDim.x + threadIdx.x;
  if (xx >= out_w) return;
  const int xmin = first[xx];
  const int n = count[xx];
  const int32_t* k = weights_t + xx;
  const size_t in_stride = static_cast<size_t>(src_w) * 3;
  const size_t out_stride = static_cast<size_t>(out_w) * 3;
  for (int y = blockIdx.y; y < rows; y += gridDim.y) {
    const uint8_t* p = src + static_cast<size_t>(row0 + y) * in_stride + static_cast<size_t>(xmin) * 3;
    int32_t s0 = kAccumulatorHalf, s1 = kAccumulatorHalf, s2 = kAccumulatorHalf;
    for (int x = 0; x < n; ++x, p += 3) {
      const int32_t kx = k[static_cast<size_t>(x) * out_w];
      s0 += static_cast<int32_t>(p[0]) * kx;
      s1 += static_cast<int32_t>(p[1]) * kx;
      s2 += static_cast<int32_t>(p[2]) * kx;
    }
    uint8_t* o = dst + static_cast<size_t>(y) * out_stride + static_cast<size_t>(xx) * 3;
    o[0] = static_cast<uint8_t>(clip8(s0));
    o[1] = static_cast<uint8_t>(clip8(s1));
    o[2] = static_cast<uint8_t>(clip8(s2));
  }
}

// Output row yy = sum over y < count[yy] of source row first[yy] + y times
// weights[yy*ksize + y], per byte. Each thread owns V consecutive bytes of a
// row (row_len % V == 0, rows V-aligned).
template <int V>
__global__ void resample_vertical_kernel(const uint8_t* __restrict__ src, int row_len,
                                         const int32_t* __restrict__ first, const int32_t* __restrict__ count,
                                         const int32_t* __restrict__ weights, int ksize, int out_h,
                                         uint8_t* __restrict__ dst) {
  static_assert(V == 1 || V == 4, "1 or 4 bytes per thread");
  const int i = (blockIdx.x * blockDim.x + threadIdx.x) * V;
  if (i >= row_len) return;
  for (int yy = blockIdx.y; yy < out_h; yy += gridDim.y) {
    const int ymin = first[yy];
    const int n = count[yy];
    const int32_t* k = weights + static_cast<size_t>(yy) * ksize;
    const uint8_t* p = src + static_cast<size_t>(ymin) * row_len + i;
    int32_t s[V];
#pragma unroll
    for (int b = 0; b < V; ++b) s[b] = kAccumulatorHalf;
    for (int y = 0; y < n; ++y, p += row_len) {
      const int32_t ky = k[y];
      if constexpr (V == 4) {
        const uint32_t w = *reinterpret_cast<const uint32_t*>(p);
#pragma unroll
        for (int b = 0; b < 4; ++b) s[b] += static_cast<int32_t>((w >> (8 * b)) & 0xFFu) * ky;
      } else {
        s[0] += static_cast<int32_t>(p[0]) * ky;
      }
    }
    uint8_t* o = dst + static_cast<size_t>(yy) * row_len + i;
    if constexpr (V == 4) {
      *reinterpret_cast<uint32_t*>(o) = clip8(s[0]) | (clip8(s[1]) << 8) | (clip8(s[2]) << 16) | (clip8(s[3]) << 24);
    } else {
      o[0] = static_cast<uint8_t>(clip8(s[0]));
    }
  }
}

struct NormParams {
  double rescale;
  float mean[3];
  float std[3];
};

// normalize_patchify.cpp's LUT entry, the same IEEE operations in the same
// order, none fused: float32(double(v) * rescale), then (r - mean) / std in fp32.
__device__ __forceinline__ float normalize_value(uint32_t v, double rescale, float mean, float stdev) {
  const float r = __double2float_rn(__dmul_rn(static_cast<double>(v), rescale));
  return __fdiv_rn(__fsub_rn(r, mean), stdev);
}

// The value of one (channel, pixel) written to every frame of its row.
template <int C>
__device__ __forceinline__ void emit_channel(const uint8_t* px_src, const NormParams& prm, size_t base, int frames,
                                             int frame, bf16* __restrict__ out_bf16, float* __restrict__ out_f32) {
  const float val = normalize_value(px_src[C], prm.rescale, prm.mean[C], prm.std[C]);
  const bf16 hb = __float2bfloat16_rn(val);
  for (int t = 0; t < frames; ++t) {
    out_bf16[base + static_cast<size_t>(t) * frame] = hb;
    if (out_f32 != nullptr) out_f32[base + static_cast<size_t>(t) * frame] = val;
  }
}

// Block r = output row r in merge-block order (block row, block col, mh, mw);
// its values are (channel, frame, py, px). Thread (x, y) handles pixel
// (py, px) = (y, x) of the patch (looping when the patch exceeds the block),
// its 3 channels, each written to every frame: no per-value divisions, and a
// warp's stores are contiguous within each (channel, frame) run of p*p values.
// kP/kM: compile-time patch and merge size (0: the runtime argument).
template <int kP, int kM>
__global__ void normalize_patchify_kernel(const uint8_t* __restrict__ rgb, int width, int p_arg, int m_arg,
                                          int frames, int blocks_w, NormParams prm, bf16* __restrict__ out_bf16,
                                          float* __restrict__ out_f32) {
  const int p = kP != 0 ? kP : p_arg;
  const int m = kM != 0 ? kM : m_arg;
  const int r = blockIdx.x;
  const int mw = r % m;
  int q = r / m;
  const int mh = q % m;
  q /= m;
  const int bw = q % blocks_w;
  const int bh = q / blocks_w;
  const int y0 = (bh * m + mh) * p;
  const int x0 = (bw * m + mw) * p;
  const int frame = p * p;
  const size_t channel_size = static_cast<size_t>(frames) * frame;
  const size_t row_base = static_cast<size_t>(r) * 3 * channel_size;
  const size_t stride = static_cast<size_t>(width) * 3;
  for (int py = threadIdx.y; py < p; py += blockDim.y) {
    for (int px = threadIdx.x; px < p; px += blockDim.x) {
      const uint8_t* src = rgb + static_cast<size_t>(y0 + py) * stride + static_cast<size_t>(x0 + px) * 3;
      const size_t base = row_base + static_cast<size_t>(py) * p + px;
      emit_channel<0>(src, prm, base, frames, frame, out_bf16, out_f32);
      emit_channel<1>(src, prm, base + channel_size, frames, frame, out_bf16, out_f32);
      emit_channel<2>(src, prm, base + 2 * channel_size, frames, frame, out_bf16, out_f32);
    }
  }
}

std::string size_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

Status prefixed(const Status& st) {
  return st.ok() ? st : Status(st.code(), "DevicePreprocessor: " + st.message());
}

}  // namespace

DevicePreprocessor::~DevicePreprocessor() {
  if (done_ != nullptr) cudaEventDestroy(done_);
}

Result<DevicePreprocessed> DevicePreprocessor::run(const uint8_t* rgb, int width, int height,
                                                   const PreprocessOptions& options, bool want_f32,
                                                   cudaStream_t stream) {
  DevicePreprocessed out;
  Status st = run_into(out, rgb, width, height, options, want_f32, stream);
  if (!st.ok()) return st;
  return Result<DevicePreprocessed>(std::move(out));
}

Status DevicePreprocessor::run_into(DevicePreprocessed& out, const uint8_t* rgb, int width, int height,
                                    const PreprocessOptions& options, bool want_f32, cudaStream_t stream) {
  staged_.valid = false;
  REX_RETURN_IF_ERROR(prefixed(check_preprocess_input(rgb, width, height, options)));
  const int p = options.patch_size, m = options.merge_size, frames = options.temporal_patch_size;
  const int factor = p * m;
  Result<ResizeTarget> target = smart_resize(height, width, factor, options.min_pixels, options.max_pixels);
  if (!target.ok()) return prefixed(target.status());
  const int out_w = target->width, out_h = target->height;
  if (out_w <= 0 || out_h <= 0 || out_w % factor != 0 || out_h % factor != 0) {
    return Status(StatusCode::kInternal, "DevicePreprocessor: expected a smart_resize size that is a multiple of " +
                                             std::to_string(factor) + " but got " + size_text(out_w, out_h));
  }

  Staged s;
  s.width = width;
  s.height = height;
  s.out_width = out_w;
  s.out_height = out_h;
  s.patch = p;
  s.merge = m;
  s.temporal = frames;
  s.norm = normalize_constants(options);
  s.want_f32 = want_f32;
  try {
    const resample_detail::ResizePlan plan = resample_detail::plan_bicubic_resize(width, height, out_w, out_h);
    s.horizontal = plan.horizontal;
    s.vertical = plan.vertical;
    s.ybox_first = plan.ybox_first;
    s.ybox_rows = plan.ybox_rows;
    // Pack both axes' taps into one upload: [first | count | weights] per axis.
    host_taps_.clear();
    // An axis's ksize, its first and count arrays, and where its weights go.
    auto pack_axis = [this](const resample_detail::AxisCoeffs& a, int* ksize, size_t* first, size_t* count,
                            size_t* weights) {
      *ksize = a.ksize;
      *first = host_taps_.size();
      host_taps_.insert(host_taps_.end(), a.first.begin(), a.first.end());
      *count = host_taps_.size();
      host_taps_.insert(host_taps_.end(), a.count.begin(), a.count.end());
      *weights = host_taps_.size();
    };
    if (plan.horizontal) {
      // Horizontal taps go up transposed, [x][xx]: see resample_horizontal_kernel.
      const resample_detail::AxisCoeffs& h = plan.horiz;
      pack_axis(h, &s.h_ksize, &s.h_first, &s.h_count, &s.h_weights);
      host_taps_.resize(host_taps_.size() + static_cast<size_t>(out_w) * h.ksize);
      int32_t* wt = host_taps_.data() + s.h_weights;
      for (int xx = 0; xx < out_w; ++xx)
        for (int x = 0; x < h.ksize; ++x)
          wt[static_cast<size_t>(x) * out_w + xx] = h.weights[static_cast<size_t>(xx) * h.ksize + x];
    }
    if (plan.vertical) {
      // Vertical taps stay [yy][y]: a block shares one output row's taps.
      const resample_detail::AxisCoeffs& v = plan.vert;
      pack_axis(v, &s.v_ksize, &s.v_first, &s.v_count, &s.v_weights);
      host_taps_.insert(host_taps_.end(), v.weights.begin(), v.weights.end());
    }
    // The passes write exactly the output's rows; guard the invariant the CPU path relies on too.
    if (plan.horizontal && !plan.vertical && plan.ybox_rows != out_h) {
      return Status(StatusCode::kInternal, "DevicePreprocessor: expected the horizontal-only pass to cover " +
                                               std::to_string(out_h) + " rows but got " + std::to_string(plan.ybox_rows));
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "DevicePreprocessor: out of memory building the taps for " +
                                                size_text(width, height) + " -> " + size_text(out_w, out_h));
  } catch (const std::length_error&) {
    return Status(StatusCode::kOutOfMemory, "DevicePreprocessor: taps too large for " + size_text(width, height) +
                                                " -> " + size_text(out_w, out_h));
  }

  // The previous call's kernels may still read the scratch (on another stream).
  if (done_ != nullptr) REX_CUDA_TRY(cudaStreamWaitEvent(stream, done_, 0));

  out.resized_width = out_w;
  out.resized_height = out_h;
  out.grid_t = 1;
  out.grid_h = out_h / p;
  out.grid_w = out_w / p;
  out.row_size = patch_row_size(options);
  const size_t in_bytes = static_cast<size_t>(width) * height * 3;
  const size_t resized_bytes = static_cast<size_t>(out_w) * out_h * 3;
  const size_t values = out.values();
  const std::string what = " (" + size_text(width, height) + " -> " + size_text(out_w, out_h) + ")";
  REX_RETURN_IF_ERROR(out.resized_rgb.ensure(resized_bytes, "preprocess resized RGB" + what));
  REX_RETURN_IF_ERROR(out.pixels_bf16.ensure(values, "preprocess bf16 pixel values" + what));
  if (want_f32) {
    REX_RETURN_IF_ERROR(out.pixels_f32.ensure(values, "preprocess fp32 pixel values" + what));
  } else {
    out.pixels_f32.reset();
  }

  if (!s.horizontal && !s.vertical) {
    // Unchanged size: the upload is the resized image (the CPU path copies).
    REX_CUDA_TRY(cudaMemcpyAsync(out.resized_rgb.get(), rgb, in_bytes, cudaMemcpyHostToDevice, stream));
  } else {
    REX_RETURN_IF_ERROR(src_.upload(rgb, in_bytes, stream, "preprocess source RGB" + what));
    REX_RETURN_IF_ERROR(taps_.upload(host_taps_.data(), host_taps_.size(), stream, "preprocess taps" + what));
    if (s.horizontal && s.vertical) {
      REX_RETURN_IF_ERROR(temp_.ensure(static_cast<size_t>(out_w) * s.ybox_rows * 3,
                                       "preprocess horizontal-pass rows" + what));
    }
  }

  PreprocessTraffic t;
  t.horizontal = s.horizontal;
  t.vertical = s.vertical;
  t.upload_bytes = in_bytes + (s.horizontal || s.vertical ? host_taps_.size() * sizeof(int32_t) : 0);
  const size_t taps_bytes = host_taps_.size() * sizeof(int32_t);
  if (s.horizontal) {
    t.device_read_bytes += static_cast<size_t>(width) * s.ybox_rows * 3;
    t.device_write_bytes += static_cast<size_t>(out_w) * s.ybox_rows * 3;
  }
  if (s.vertical) {
    t.device_read_bytes += static_cast<size_t>(out_w) * (s.horizontal ? s.ybox_rows : height) * 3;
    t.device_write_bytes += resized_bytes;
  }
  if (s.horizontal || s.vertical) t.device_read_bytes += taps_bytes;
  t.device_read_bytes += resized_bytes;
  t.device_write_bytes += values * (sizeof(bf16) + (want_f32 ? sizeof(float) : 0));
  traffic_ = t;

  s.valid = true;
  staged_ = s;
  return launch(out, stream);
}

Status DevicePreprocessor::relaunch(DevicePreprocessed& out, cudaStream_t stream) {
  const Staged& s = staged_;
  if (!s.valid) {
    return Status(StatusCode::kInvalidArgument,
                  "DevicePreprocessor::relaunch: expected a staged image from a successful run but got none");
  }
  const size_t values = static_cast<size_t>(s.out_width / s.patch) * (s.out_height / s.patch) *
                        (3 * s.temporal * s.patch * s.patch);
  if (out.resized_width != s.out_width || out.resized_height != s.out_height ||
      out.resized_rgb.size() < static_cast<size_t>(s.out_width) * s.out_height * 3 ||
      out.pixels_bf16.size() < values || (s.want_f32 && out.pixels_f32.size() < values)) {
    return Status(StatusCode::kInvalidArgument,
                  "DevicePreprocessor::relaunch: expected the output of the staged " +
                      size_text(s.out_width, s.out_height) + " image but got " +
                      size_text(out.resized_width, out.resized_height) + " with buffers too small or missing");
  }
  if (done_ != nullptr) REX_CUDA_TRY(cudaStreamWaitEvent(stream, done_, 0));
  return launch(out, stream);
}

Status DevicePreprocessor::launch(DevicePreprocessed& out, cudaStream_t stream) {
  const Staged& s = staged_;
  const int out_w = s.out_width, out_h = s.out_height;
  const int32_t* taps = taps_.get();

  if (s.horizontal) {
    uint8_t* dst = s.vertical ? temp_.get() : out.resized_rgb.get();
    constexpr int kThreads = 128;
    const dim3 grid(ceil_div(static_cast<size_t>(out_w), kThreads), static_cast<unsigned>(std::min(s.ybox_rows, kMaxGridY)));
    resample_horizontal_kernel<<<grid, kThreads, 0, stream>>>(src_.get(), s.width, s.ybox_first, s.ybox_rows,
                                                               taps + s.h_first, taps + s.h_count,
                                                               taps + s.h_weights, out_w, dst);
    REX_RETURN_IF_ERROR(check_launch("resample_horizontal_kernel"));
  }
  if (s.vertical) {
    // Its source rows are out_w pixels wide either way: the horizontal pass's
    // output, or the input when the width is unchanged.
    const uint8_t* src = s.horizontal ? temp_.get() : src_.get();
    const int row_len = out_w * 3;
    constexpr int kThreads = 256;
    const unsigned grid_y = static_cast<unsigned>(std::min(out_h, kMaxGridY));
    if (row_len % 4 == 0) {
      const dim3 grid(ceil_div(static_cast<size_t>(row_len / 4), kThreads), grid_y);
      resample_vertical_kernel<4><<<grid, kThreads, 0, stream>>>(src, row_len, taps + s.v_first, taps + s.v_count,
                                                                 taps + s.v_weights, s.v_ksize, out_h,
                                                                 out.resized_rgb.get());
    } else {
      const dim3 grid(ceil_div(static_cast<size_t>(row_len), kThreads), grid_y);
      resample_vertical_kernel<1><<<grid, kThreads, 0, stream>>>(src, row_len, taps + s.v_first, taps + s.v_count,
                                                                 taps + s.v_weights, s.v_ksize, out_h,
                                                                 out.resized_rgb.get());
    }
    REX_RETURN_IF_ERROR(check_launch("resample_vertical_kernel"));
  }

  NormParams prm;
  prm.rescale = s.norm.rescale;
  for (int c = 0; c < 3; ++c) {
    prm.mean[c] = s.norm.mean[c];
    prm.std[c] = s.norm.std[c];
  }
  const int grid_h = out_h / s.patch, grid_w = out_w / s.patch;
  const int rows = grid_h * grid_w;
  const int blocks_w = grid_w / s.merge;
  const dim3 block(std::min(s.patch, 32), std::min(s.patch, std::max(1, 1024 / std::min(s.patch, 32))));
  bf16* out_bf16 = out.pixels_bf16.get();
  float* out_f32 = s.want_f32 ? out.pixels_f32.get() : nullptr;
  if (s.patch == 14 && s.merge == 2) {  // Qwen2.5-VL
    normalize_patchify_kernel<14, 2><<<rows, block, 0, stream>>>(out.resized_rgb.get(), out_w, s.patch, s.merge,
                                                                  s.temporal, blocks_w, prm, out_bf16, out_f32);
  } else {
    normalize_patchify_kernel<0, 0><<<rows, block, 0, stream>>>(out.resized_rgb.get(), out_w, s.patch, s.merge,
                                                                 s.temporal, blocks_w, prm, out_bf16, out_f32);
  }
  REX_RETURN_IF_ERROR(check_launch("normalize_patchify_kernel"));

  if (done_ == nullptr) REX_CUDA_TRY(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  REX_CUDA_TRY(cudaEventRecord(done_, stream));
  return Status::Ok();
}

}  // namespace rex::cuda
