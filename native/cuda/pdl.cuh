// Programmatic dependent launch (sm_90): a kernel launched with it may start
// while the kernel before it on the stream is still running, once every block
// of that one has called pdl_launch_dependents(). It must call pdl_wait()
// before it reads anything the previous kernel writes: the wait returns when
// that kernel has finished and its memory is visible. Work that reads only
// constant data (the weights) can go before the wait. Both calls are no-ops
// when the kernel was launched the ordinary way, so every decode kernel calls
// pdl_launch_dependents() first thing, and the ones that gain from an early
// start (the weight-streaming GEMVs) are launched with launch_maybe_overlapped.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/cuda_check.h"

namespace rex::cuda {

#ifdef __CUDACC__
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream
// serialization allowed when overlap is true.
template <typename... KernelParams, typename... Args>
Status launch_maybe_overlapped(void (*kernel)(KernelParams...), dim3 grid, dim3 block, size_t smem,
                               cudaStream_t stream, bool overlap, const char* name, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = overlap ? &attribute : nullptr;
  config.numAttrs = overlap ? 1 : 0;
  return cuda_status(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), std::string("kernel ") + name);
}
#endif  // __CUDACC__

}  // namespace rex::cuda
