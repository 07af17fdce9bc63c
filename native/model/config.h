// The model description read from a checkpoint's config.json.
// Accepts Qwen2_5_VLForConditionalGeneration configs in both layouts:
//  - transformers 4.x "flat": text fields at the top level, plus "vision_config";
//  - the newer "nested" one: text fields under "text_config".
#pragma once

#include <array>
#include <string>
#include <vector>

#include "rex/status.h"

namespace rex {

struct VisionConfig {
  int depth = 0;                     // "depth"
  int hidden_size = 0;               // "hidden_size" (1280 on the 3B model)
  int num_heads = 0;                 // "num_heads"
  int intermediate_size = 0;         // "intermediate_size" (3420)
  int out_hidden_size = 0;           // "out_hidden_size" (= text hidden size)
  int in_channels = 3;               // "in_chans" or "in_channels"
  int patch_size = 14;
  int temporal_patch_size = 2;
  int spatial_merge_size = 2;
  int window_size = 112;
  std::vector<int> fullatt_block_indexes;
  std::string hidden_act = "silu";
  float rms_norm_eps = 1e-6f;
  int head_dim() const { return hidden_size / num_heads; }
};

struct TextConfig {
  int num_layers = 0;                // "num_hidden_layers"
  int hidden_size = 0;
  int num_heads = 0;                 // "num_attention_heads"
  int num_kv_heads = 0;              // "num_key_value_heads"
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 1e6f;
  std::array<int, 3> mrope_section{16, 24, 24};  // rope_scaling.mrope_section (or rope_parameters)
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";
  int head_dim() const { return hidden_size / num_heads; }
};

struct ModelConfig {
  std::string architecture;          // "Qwen2_5_VLForConditionalGeneration"
  std::string layout;                // "flat" or "nested"
  std::string torch_dtype;           // as written ("bfloat16"), informational
  TextConfig text;
  VisionConfig vision;
  int image_token_id = -1;           // "image_token_id" (151655 on the real model)
  int vision_start_token_id = -1;
  int vision_end_token_id = -1;
};

// Parses config.json text. `path` only names the file in error messages.
// Errors: kBadHeader (not JSON, missing/ill-typed field),
//         kUnsupportedArchitecture (architectures / model_type is not Qwen2.5-VL).
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& path);

}  // namespace rex
