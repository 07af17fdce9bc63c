// Every tensor the model uses, bound by role and shape-checked against the
// config. Backends read weights only through this struct, never by name.
#pragma once

#include <vector>

#include "model/checkpoint.h"

namespace rex {

struct VisionBlockWeights {
  const TensorView* norm1 = nullptr;      // [hidden]            visual.blocks.N.norm1.weight
  const TensorView* norm2 = nullptr;      // [hidden]
  const TensorView* qkv_w = nullptr;      // [3*hidden, hidden]  attn.qkv.weight
  const TensorView* qkv_b = nullptr;      // [3*hidden]
  const TensorView* proj_w = nullptr;     // [hidden, hidden]    attn.proj.weight
  const TensorView* proj_b = nullptr;     // [hidden]
  const TensorView* gate_w = nullptr;     // [inter, hidden]     mlp.gate_proj.weight
  const TensorView* gate_b = nullptr;     // [inter]
  const TensorView* up_w = nullptr;       // [inter, hidden]
  const TensorView* up_b = nullptr;       // [inter]
  const TensorView* down_w = nullptr;     // [hidden, inter]
  const TensorView* down_b = nullptr;     // [hidden]
};

struct VisionWeights {
  const TensorView* patch_embed = nullptr;  // [hidden, 3, temporal, patch, patch] (Conv3d, no bias)
  std::vector<VisionBlockWeights> blocks;
  const TensorView* merger_norm = nullptr;  // [hidden]                        visual.merger.ln_q.weight
  const TensorView* merger_fc1_w = nullptr; // [4*hidden, 4*hidden]            visual.merger.mlp.0.weight
  const TensorView* merger_fc1_b = nullptr; // [4*hidden]
  const TensorView* merger_fc2_w = nullptr; // [out_hidden, 4*hidden]          visual.merger.mlp.2.weight
  const TensorView* merger_fc2_b = nullptr; // [out_hidden]
};

struct TextLayerWeights {
  const TensorView* input_norm = nullptr;  // [hidden]           input_layernorm.weight
  const TensorView* post_norm = nullptr;   // [hidden]           post_attention_layernorm.weight
  const TensorView* q_w = nullptr;         // [heads*hd, hidden] self_attn.q_proj.weight
  const TensorView* q_b = nullptr;         // [heads*hd]
  const TensorView* k_w = nullptr;         // [kv*hd, hidden]
  const TensorView* k_b = nullptr;         // [kv*hd]
  const TensorView* v_w = nullptr;         // [kv*hd, hidden]
  const TensorView* v_b = nullptr;         // [kv*hd]
  const TensorView* o_w = nullptr;         // [hidden, heads*hd] (no bias)
  const TensorView* gate_w = nullptr;      // [inter, hidden]    mlp.gate_proj.weight
  const TensorView* up_w = nullptr;        // [inter, hidden]
  const TensorView* down_w = nullptr;      // [hidden, inter]
};

struct TextWeights {
  const TensorView* embed_tokens = nullptr;  // [vocab, hidden]
  std::vector<TextLayerWeights> layers;
  const TensorView* final_norm = nullptr;    // [hidden]  model.norm.weight
  const TensorView* lm_head = nullptr;       // [vocab, hidden]; == embed_tokens when tied and absent
};

struct ModelWeights {
  VisionWeights vision;
  TextWeights text;
};

// Binds and shape-checks every tensor. Errors: kMissingTensor, kShapeMismatch
// (message names the tensor, its file, the expected and the actual shape).
Result<ModelWeights> bind_model_weights(const Checkpoint& checkpoint);

}  // namespace rex
