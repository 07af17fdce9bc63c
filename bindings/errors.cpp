#include "errors.h"

namespace rex_napi {

Napi::Error status_to_error(Napi::Env env, const rex::Status& status) {
  Napi::Error error = status.code() == rex::StatusCode::kInvalidArgument
                          ? Napi::TypeError::New(env, status.message())
                          : Napi::Error::New(env, status.message());
  error.Set("code", Napi::String::New(env, status.code_name()));
  return error;
}

Napi::Error invalid_argument(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  return error;
}

}  // namespace rex_napi
