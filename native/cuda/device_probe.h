// Finding out whether the CUDA backend can run here: a device, a driver new
// enough for our runtime, a kernel that launches, and a cuBLASLt handle.
#pragma once

#include <cstddef>
#include <string>

#include "rex/status.h"

namespace rex::cuda {

struct DeviceProbe {
  std::string name;            // "NVIDIA H100 80GB HBM3"
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;     // bytes
  int driver_version = 0;      // e.g. 13000
  int runtime_version = 0;
  bool cublaslt = false;       // a cuBLASLt handle was created
};

// Errors: kCudaError naming the call that failed ("cudaGetDeviceCount: no CUDA-capable device").
Result<DeviceProbe> probe_device(int device);

}  // namespace rex::cuda
