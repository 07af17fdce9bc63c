// C++ sequences → JS arrays of numbers (shapes, id lists, config lists).
#pragma once

#include <napi.h>

#include <vector>

namespace rex_napi {

template <typename T>
Napi::Array number_array(Napi::Env env, const std::vector<T>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) array.Set(static_cast<uint32_t>(i), static_cast<double>(values[i]));
  return array;
}

}  // namespace rex_napi
