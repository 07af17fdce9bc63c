// Turning a core Status into a JavaScript Error that carries a `code`.
#pragma once

#include <napi.h>

#include "rex/status.h"

namespace rex_napi {

// An Error whose message is the Status message and whose `code` is the
// stable name (e.g. "ERR_REX_MISSING_TENSOR"). Invalid arguments become TypeError.
Napi::Error status_to_error(Napi::Env env, const rex::Status& status);

// A TypeError with code ERR_INVALID_ARG_TYPE, for arguments the binding rejects.
Napi::Error invalid_argument(Napi::Env env, const std::string& message);

}  // namespace rex_napi
