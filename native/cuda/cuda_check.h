// Every CUDA runtime return code becomes a Status that names the call (or the
// kernel) that failed. Nothing here aborts: callers propagate the Status with
// REX_RETURN_IF_ERROR. Out-of-memory gets its own code so the engine can tell
// "wait for memory" from "the device broke".
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "rex/status.h"

namespace rex::cuda {

inline Status cuda_status(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return Status::Ok();
  const StatusCode code = err == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kCudaError;
  return Status(code, what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// After a kernel launch: the launch's own error (bad configuration, no
// kernel image), named by the kernel. Asynchronous faults surface at the next
// synchronising call, which is checked the same way.
inline Status check_launch(const char* kernel) { return cuda_status(cudaGetLastError(), std::string("kernel ") + kernel); }

}  // namespace rex::cuda

// Returns the call's failure from the enclosing function, naming the call.
#define REX_CUDA_TRY(call) REX_RETURN_IF_ERROR(::rex::cuda::cuda_status((call), #call))
