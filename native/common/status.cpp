#include "rex/status.h"

namespace rex {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "ERR_REX_INVALID_ARGUMENT";
    case StatusCode::kNotFound: return "ERR_REX_NOT_FOUND";
    case StatusCode::kIoError: return "ERR_REX_IO";
    case StatusCode::kCorruptFile: return "ERR_REX_CORRUPT_FILE";
    case StatusCode::kBadHeader: return "ERR_REX_BAD_HEADER";
    case StatusCode::kMissingTensor: return "ERR_REX_MISSING_TENSOR";
    case StatusCode::kShapeMismatch: return "ERR_REX_SHAPE_MISMATCH";
    case StatusCode::kUnsupportedDtype: return "ERR_REX_UNSUPPORTED_DTYPE";
    case StatusCode::kUnsupportedArchitecture: return "ERR_REX_UNSUPPORTED_ARCHITECTURE";
    case StatusCode::kOutOfMemory: return "ERR_REX_OUT_OF_MEMORY";
    case StatusCode::kCudaError: return "ERR_REX_CUDA";
    case StatusCode::kCancelled: return "ERR_REX_CANCELLED";
    case StatusCode::kDeadlineExceeded: return "ERR_REX_DEADLINE";
    case StatusCode::kResourceExhausted: return "ERR_REX_QUEUE_FULL";
    case StatusCode::kInternal: return "ERR_REX_INTERNAL";
  }
  return "ERR_REX_INTERNAL";
}

}  // namespace rex
