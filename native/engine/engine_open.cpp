// Engine::create from a checkpoint directory. Kept apart from engine.cpp so
// that the scheduler (and its tests over in-memory models) does not pull in
// the checkpoint loader.
#include "engine/backend.h"
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

Result<std::unique_ptr<Engine>> Engine::create(const std::string& checkpoint_dir, const EngineOptions& options) {
  auto ckpt = Checkpoint::open(checkpoint_dir);
  if (!ckpt.ok()) return ckpt.status();
  auto model = std::make_shared<LoadedModel>();
  model->checkpoint = std::move(ckpt).value();
  auto weights = bind_model_weights(*model->checkpoint);
  if (!weights.ok()) return weights.status();
  model->weights = std::move(weights).value();
  BackendOptions bo;
  bo.name = options.backend;
  bo.threads = options.threads;
  auto backend = make_backend(bo);
  if (!backend.ok()) return backend.status();
  REX_RETURN_IF_ERROR(backend.value()->prepare(model->checkpoint->config(), model->weights));
  const ModelConfig config = model->checkpoint->config();
  return Engine::create_with_backend(config, std::move(backend).value(), options, model);
}

}  // namespace rex
