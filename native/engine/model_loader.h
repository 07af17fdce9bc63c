// Checkpoint directory → a prepared backend. Shared by Engine::create and by
// tools that drive a backend directly (the reference forward used to compare
// with transformers), so both load the model exactly the same way.
#pragma once

#include <memory>
#include <string>

#include "engine/backend.h"
#include "model/config.h"

namespace rex {

struct LoadedBackend {
  ModelConfig config;
  std::unique_ptr<Backend> backend;
  std::shared_ptr<void> keepalive;  // the mapped checkpoint the backend's weights may point into
};

Result<LoadedBackend> load_backend(const std::string& checkpoint_dir, const BackendOptions& options);

}  // namespace rex
