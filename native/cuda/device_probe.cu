// Device probe. One tiny kernel writes a known pattern and the host reads it
// back: that proves the driver accepts our sm_90a code, not only that the
// runtime library loaded. It is launched once per process, at addon load.
#include "cuda/device_probe.h"

#include <cuda_runtime.h>

#include <vector>

#ifdef REX_HAVE_CUBLASLT
#include <cublasLt.h>
#endif

namespace rex::cuda {
namespace {

__global__ void write_index_pattern(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i * 3 + 1;
}

Status cuda_status(cudaError_t err, const char* call) {
  return Status(StatusCode::kCudaError, std::string(call) + ": " + cudaGetErrorString(err));
}

Status launch_self_test() {
  constexpr int kCount = 256;
  int* device_buffer = nullptr;
  cudaError_t err = cudaMalloc(&device_buffer, kCount * sizeof(int));
  if (err != cudaSuccess) return cuda_status(err, "cudaMalloc (probe)");
  write_index_pattern<<<1, kCount>>>(device_buffer, kCount);
  err = cudaGetLastError();
  std::vector<int> host(kCount, 0);
  if (err == cudaSuccess) err = cudaMemcpy(host.data(), device_buffer, kCount * sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(device_buffer);
  if (err != cudaSuccess) return cuda_status(err, "probe kernel write_index_pattern");
  for (int i = 0; i < kCount; ++i)
    if (host[i] != i * 3 + 1)
      return Status(StatusCode::kCudaError, "probe kernel write_index_pattern wrote a wrong value");
  return Status::Ok();
}

}  // namespace

Result<DeviceProbe> probe_device(int device) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return cuda_status(err, "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    return Status(StatusCode::kInvalidArgument,
                  "expected a CUDA device index below " + std::to_string(count) + " but got " + std::to_string(device));
  err = cudaSetDevice(device);
  if (err != cudaSuccess) return cuda_status(err, "cudaSetDevice");

  cudaDeviceProp props{};
  err = cudaGetDeviceProperties(&props, device);
  if (err != cudaSuccess) return cuda_status(err, "cudaGetDeviceProperties");
  DeviceProbe probe;
  probe.name = props.name;
  probe.compute_major = props.major;
  probe.compute_minor = props.minor;
  probe.multiprocessors = props.multiProcessorCount;
  probe.total_memory = props.totalGlobalMem;
  cudaDriverGetVersion(&probe.driver_version);
  cudaRuntimeGetVersion(&probe.runtime_version);

  REX_RETURN_IF_ERROR(launch_self_test());

#ifdef REX_HAVE_CUBLASLT
  cublasLtHandle_t handle = nullptr;
  cublasStatus_t st = cublasLtCreate(&handle);
  if (st != CUBLAS_STATUS_SUCCESS)
    return Status(StatusCode::kCudaError, "cublasLtCreate failed with status " + std::to_string(static_cast<int>(st)));
  cublasLtDestroy(handle);
  probe.cublaslt = true;
#endif
  return probe;
}

}  // namespace rex::cuda
