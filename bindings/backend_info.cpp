#include "backend_info.h"

#include <thread>

#ifdef REX_WITH_CUDA_BACKEND
#include "cuda/device_probe.h"
#endif

namespace rex_napi {

Napi::Value backend_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("cpuThreads", static_cast<double>(std::thread::hardware_concurrency()));
#ifdef REX_WITH_CUDA_BACKEND
  result.Set("backend", "cuda");
  rex::Result<rex::cuda::DeviceProbe> probe = rex::cuda::probe_device(0);
  if (!probe.ok()) {
    result.Set("available", false);
    result.Set("error", probe.status().message());
    return result;
  }
  Napi::Object device = Napi::Object::New(env);
  device.Set("name", probe->name);
  device.Set("computeCapability", std::to_string(probe->compute_major) + "." + std::to_string(probe->compute_minor));
  device.Set("multiprocessors", probe->multiprocessors);
  device.Set("totalMemory", static_cast<double>(probe->total_memory));
  device.Set("driverVersion", probe->driver_version);
  device.Set("runtimeVersion", probe->runtime_version);
  device.Set("cublasLt", probe->cublaslt);
  result.Set("available", true);
  result.Set("device", device);
#else
  result.Set("backend", "cpu");
  result.Set("available", true);
#endif
  return result;
}

Napi::Object backend_info_to_js(Napi::Env env, const rex::BackendInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", info.backend);
  if (!info.device_name.empty()) {
    Napi::Object device = Napi::Object::New(env);
    device.Set("name", info.device_name);
    device.Set("computeCapability", info.compute_capability);
    device.Set("totalMemory", static_cast<double>(info.memory.device_total_bytes));
    device.Set("driverVersion", info.driver_version);
    device.Set("runtimeVersion", info.runtime_version);
    o.Set("device", device);
  }
  if (info.threads > 0) o.Set("threads", info.threads);
  Napi::Object memory = Napi::Object::New(env);
  memory.Set("weightsBytes", static_cast<double>(info.memory.weights_bytes));
  memory.Set("kvCacheBytes", static_cast<double>(info.memory.kv_cache_bytes));
  memory.Set("kvCacheUsedBytes", static_cast<double>(info.memory.kv_cache_used_bytes));
  memory.Set("workspaceBytes", static_cast<double>(info.memory.workspace_bytes));
  memory.Set("deviceUsedBytes", static_cast<double>(info.memory.device_used_bytes));
  memory.Set("peakBytes", static_cast<double>(info.memory.peak_bytes));
  o.Set("memory", memory);
  Napi::Object cache = Napi::Object::New(env);
  cache.Set("capacityBytes", static_cast<double>(info.prefix_cache_bytes));
  cache.Set("heldBytes", static_cast<double>(info.prefix_cache_held_bytes));
  cache.Set("entries", info.prefix_cache.entries);
  cache.Set("hits", static_cast<double>(info.prefix_cache.hits));
  cache.Set("misses", static_cast<double>(info.prefix_cache.misses));
  cache.Set("insertions", static_cast<double>(info.prefix_cache.insertions));
  cache.Set("evictions", static_cast<double>(info.prefix_cache.evictions));
  o.Set("prefixCache", cache);
  return o;
}

}  // namespace rex_napi
