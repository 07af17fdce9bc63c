// An owned device allocation of T (cudaMalloc/cudaFree), movable, never
// copied. allocate() reports failure as a Status (kOutOfMemory names the size
// and what it was for) instead of throwing.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <string>
#include <utility>

#include "cuda/cuda_check.h"

namespace rex::cuda {

// Bytes held by all DeviceBuffers of the process, and the most ever held.
inline std::atomic<size_t> g_device_bytes_live{0};
inline std::atomic<size_t> g_device_bytes_peak{0};
inline void note_device_bytes(size_t added) {
  const size_t now = g_device_bytes_live.fetch_add(added) + added;
  size_t peak = g_device_bytes_peak.load();
  while (now > peak && !g_device_bytes_peak.compare_exchange_weak(peak, now)) {
  }
}

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }

  // Replaces the contents with `count` uninitialised elements.
  Status allocate(size_t count, const std::string& what) {
    reset();
    if (count == 0) return Status::Ok();
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, count * sizeof(T));
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      return Status(err == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kCudaError,
                    "cudaMalloc of " + std::to_string(count * sizeof(T)) + " bytes for " + what + ": " +
                        cudaGetErrorString(err));
    }
    ptr_ = static_cast<T*>(p);
    count_ = count;
    note_device_bytes(count * sizeof(T));
    return Status::Ok();
  }
  // Grows (never shrinks) to at least `count` elements; contents are lost on growth.
  Status ensure(size_t count, const std::string& what) {
    return count <= count_ ? Status::Ok() : allocate(count, what);
  }
  Status upload(const T* host, size_t count, cudaStream_t stream, const std::string& what) {
    REX_RETURN_IF_ERROR(ensure(count, what));
    return cuda_status(cudaMemcpyAsync(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream),
                       "cudaMemcpyAsync upload of " + what);
  }
  void reset() {
    if (ptr_) {
      cudaFree(ptr_);
      g_device_bytes_live.fetch_sub(count_ * sizeof(T));
    }
    ptr_ = nullptr;
    count_ = 0;
  }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

}  // namespace rex::cuda
