// A small random-weight Qwen2.5-VL model built in memory: TensorViews over
// buffers this struct owns, bound into ModelWeights exactly as a checkpoint
// would be. Tests of the CPU backend, the engine and (later) CUDA kernels use
// it, so none of them needs a checkpoint on disk. Default shapes follow the
// tiny test checkpoint.
#pragma once

#include <array>
#include <deque>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "preprocess/preprocess.h"

namespace rex::cpu {

struct RandomModelSpec {
  int text_hidden = 128, text_layers = 3, text_heads = 4, text_kv_heads = 2, text_intermediate = 256;
  int vocab = 1000;
  std::array<int, 3> mrope_section{4, 6, 6};  // head_dim 32 -> 16 frequencies
  int vision_depth = 4, vision_hidden = 64, vision_heads = 4, vision_intermediate = 96;
  std::vector<int> fullatt{1, 3};
  int image_token_id = 990, vision_start_token_id = 988, vision_end_token_id = 989;
  DType dtype = DType::kF32;  // kBF16 / kF16 exercise the widening path
  uint64_t seed = 1234;
};

struct RandomModel {
  ModelConfig config;
  ModelWeights weights;
  std::deque<TensorView> views;                 // stable addresses for the weights' pointers
  std::deque<std::vector<uint8_t>> storage;
};

std::unique_ptr<RandomModel> make_random_model(const RandomModelSpec& spec = {});

// A preprocessed image of gh x gw patches with pixel values uniform in [-2, 2).
PreprocessedImage make_random_image(int grid_h, int grid_w, uint64_t seed);

}  // namespace rex::cpu
