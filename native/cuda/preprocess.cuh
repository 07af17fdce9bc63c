// Image preprocessing on the GPU, bit for bit the CPU path of
// native/preprocess (test/golden/FORMAT.md, "Reference preprocessing"):
// smart_resize and the Pillow BICUBIC taps are computed on the host by the
// CPU functions themselves; the device runs the horizontal pass (over just the
// rows the vertical pass reads), the vertical pass (each skipped when its
// dimension is unchanged, as on the CPU), then normalize + patchify into rows
// in merge-block order, as bf16 for the patch-embed GEMM (and fp32 on request).
// CPU twin: preprocess_image (native/preprocess/preprocess.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/bf16.cuh"
#include "cuda/device_buffer.h"
#include "preprocess/preprocess.h"
#include "rex/status.h"

namespace rex::cuda {

struct DevicePreprocessed {
  int resized_width = 0, resized_height = 0, grid_h = 0, grid_w = 0;  // grid = resized / patch_size
  int grid_t = 1;                      // image_grid_thw = (grid_t, grid_h, grid_w)
  int row_size = 0;                    // patch_row_size(options): 1176 for Qwen2.5-VL
  DeviceBuffer<uint8_t> resized_rgb;   // resized_height * resized_width * 3
  DeviceBuffer<bf16> pixels_bf16;      // rows = grid_h*grid_w, each row_size values: what the patch embed GEMM reads
  DeviceBuffer<float> pixels_f32;      // same values in fp32; filled only when want_f32 (tests, parity), else empty

  int rows() const { return grid_t * grid_h * grid_w; }
  size_t values() const { return static_cast<size_t>(rows()) * row_size; }
};

// Device-memory traffic of the device part of the last run (each tensor read
// once and written once, as the kernels are laid out) and what was uploaded.
struct PreprocessTraffic {
  size_t upload_bytes = 0;        // host -> device: the RGB image plus the taps
  size_t device_read_bytes = 0;   // bytes the kernels read from device memory
  size_t device_write_bytes = 0;  // bytes they write
  bool horizontal = false;        // which resize passes ran (neither: the upload is the resized image)
  bool vertical = false;
};

// Host: smart_resize (the CPU function), Pillow taps per axis (the CPU
// coefficient builder, through resample_detail::plan_bicubic_resize), uploads
// the RGB bytes; device: the horizontal pass over just the rows the vertical
// pass reads, the vertical pass (each skipped when that dimension is
// unchanged, exactly as the CPU path), then normalize + patchify in
// merge-block row order. The scratch buffers are reused across calls (grow only).
//
// Stream semantics: everything is enqueued on `stream`; the returned buffers
// are complete when the stream reaches the end of the call (synchronise, or
// keep using the stream). The host image may be reused as soon as run()
// returns when it is pageable memory (the copy is staged); if it is pinned,
// keep it alive until the stream has passed this call. Each call makes its
// stream wait for the previous call's device work, so calls on different
// streams do not race on the shared scratch. Not thread-safe.
class DevicePreprocessor {
 public:
  DevicePreprocessor() = default;
  ~DevicePreprocessor();
  DevicePreprocessor(const DevicePreprocessor&) = delete;
  DevicePreprocessor& operator=(const DevicePreprocessor&) = delete;

  // Errors: kInvalidArgument (null/empty image, bad options, aspect ratio >
  // 200: the CPU path's checks and messages, prefixed "DevicePreprocessor: "),
  // kOutOfMemory, kCudaError (naming the call or kernel).
  Result<DevicePreprocessed> run(const uint8_t* rgb, int width, int height, const PreprocessOptions& options,
                                 bool want_f32, cudaStream_t stream);

  // run() into `out`, reusing its buffers (grow only: a reused buffer may be
  // larger than this image needs; use out's sizes, not the buffers'). The
  // caller must not have device work still reading `out` on another stream.
  Status run_into(DevicePreprocessed& out, const uint8_t* rgb, int width, int height,
                  const PreprocessOptions& options, bool want_f32, cudaStream_t stream);

  // The device part of the last successful run()/run_into() again, without
  // the host work and uploads: the resize passes and normalize + patchify,
  // from the image and taps that call left in the scratch, into `out` (the
  // DevicePreprocessed that call filled: when the size is unchanged the image
  // was uploaded straight into out.resized_rgb and only normalize runs).
  // Results are identical. For timing the device part and for poisoning
  // checks. Errors: kInvalidArgument when nothing is staged or out does not
  // match the staged image.
  Status relaunch(DevicePreprocessed& out, cudaStream_t stream);

  const PreprocessTraffic& last_traffic() const { return traffic_; }

 private:
  struct Staged {
    bool valid = false;
    int width = 0, height = 0, out_width = 0, out_height = 0;
    bool horizontal = false, vertical = false;
    int ybox_first = 0, ybox_rows = 0;
    int h_ksize = 0, v_ksize = 0;
    size_t h_first = 0, h_count = 0, h_weights = 0;  // offsets into taps_ (int32 elements)
    size_t v_first = 0, v_count = 0, v_weights = 0;
    int patch = 0, merge = 0, temporal = 0;
    NormalizeConstants norm;
    bool want_f32 = false;
  };
  Status launch(DevicePreprocessed& out, cudaStream_t stream);

  DeviceBuffer<uint8_t> src_;    // the uploaded source image (unless its size is unchanged)
  DeviceBuffer<uint8_t> temp_;   // horizontal pass output when the vertical pass follows
  DeviceBuffer<int32_t> taps_;   // first / count / weights of both axes, packed
  std::vector<int32_t> host_taps_;
  cudaEvent_t done_ = nullptr;   // recorded after each call's device work
  Staged staged_;
  PreprocessTraffic traffic_;
};

}  // namespace rex::cuda
