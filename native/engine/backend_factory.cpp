// The single place that maps a backend name to an implementation. The CUDA
// backend will register here behind its compile-time flag.
#include "cpu/cpu_backend.h"
#include "engine/backend.h"

namespace rex {

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options) {
  if (options.name == "cpu") return std::unique_ptr<Backend>(new cpu::CpuBackend(options.threads));
  return Status(StatusCode::kInvalidArgument, "expected backend \"cpu\" but got \"" + options.name + "\"");
}

}  // namespace rex
