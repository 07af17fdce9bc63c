// Engine::create from a checkpoint directory, and the shared loader behind it.
// Kept apart from engine.cpp so that the scheduler (and its tests over
// in-memory models) does not pull in the checkpoint loader.
#include "engine/model_loader.h"
#include "model/checkpoint.h"
#include "model/weights.h"
#include "rex/engine.h"

namespace rex {

namespace {
struct LoadedModel {
  std::unique_ptr<Checkpoint> checkpoint;
  ModelWeights weights;
};
}  // namespace

Result<LoadedBackend> load_backend(const std::string& checkpoint_dir, const BackendOptions& options) {
  auto ckpt = Checkpoint::open(checkpoint_dir);
  if (!ckpt.ok()) return ckpt.status();
  auto model = std::make_shared<LoadedModel>();
  model->checkpoint = std::move(ckpt).value();
  auto weights = bind_model_weights(*model->checkpoint);
  if (!weights.ok()) return weights.status();
  model->weights = std::move(weights).value();
  auto backend = make_backend(options);
  if (!backend.ok()) return backend.status();
  REX_RETURN_IF_ERROR(backend.value()->prepare(model->checkpoint->config(), model->weights));
  LoadedBackend loaded;
  loaded.config = model->checkpoint->config();
  loaded.backend = std::move(backend).value();
  loaded.keepalive = model;
  return loaded;
}

Result<std::unique_ptr<Engine>> Engine::create(const std::string& checkpoint_dir, const EngineOptions& options) {
  BackendOptions backend_options;
  backend_options.name = options.backend;
  backend_options.threads = options.threads;
  backend_options.device = options.device;
  backend_options.kv_cache_bytes = options.kv_cache_bytes;
  backend_options.gpu_memory_fraction = options.gpu_memory_fraction;
  backend_options.max_active_requests = options.max_active_requests;
  backend_options.emulate_bf16 = options.emulate_bf16;
  backend_options.batch_invariant = options.batch_invariant;
  backend_options.prefix_cache_bytes = options.prefix_cache_bytes;
  auto loaded = load_backend(checkpoint_dir, backend_options);
  if (!loaded.ok()) return loaded.status();
  LoadedBackend& l = loaded.value();
  return Engine::create_with_backend(l.config, std::move(l.backend), options, std::move(l.keepalive));
}

}  // namespace rex
