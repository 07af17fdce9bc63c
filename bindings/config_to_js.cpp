#include "config_to_js.h"

#include "js_arrays.h"

namespace rex_napi {
namespace {

Napi::Object text_to_js(Napi::Env env, const rex::TextConfig& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("numLayers", t.num_layers);
  o.Set("hiddenSize", t.hidden_size);
  o.Set("numHeads", t.num_heads);
  o.Set("numKvHeads", t.num_kv_heads);
  o.Set("headDim", t.head_dim());
  o.Set("intermediateSize", t.intermediate_size);
  o.Set("vocabSize", t.vocab_size);
  o.Set("maxPositionEmbeddings", t.max_position_embeddings);
  o.Set("rmsNormEps", t.rms_norm_eps);
  o.Set("ropeTheta", t.rope_theta);
  o.Set("mropeSection", number_array(env, std::vector<int>(t.mrope_section.begin(), t.mrope_section.end())));
  o.Set("tieWordEmbeddings", t.tie_word_embeddings);
  o.Set("hiddenAct", t.hidden_act);
  return o;
}

Napi::Object vision_to_js(Napi::Env env, const rex::VisionConfig& v) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("depth", v.depth);
  o.Set("hiddenSize", v.hidden_size);
  o.Set("numHeads", v.num_heads);
  o.Set("headDim", v.head_dim());
  o.Set("intermediateSize", v.intermediate_size);
  o.Set("outHiddenSize", v.out_hidden_size);
  o.Set("inChannels", v.in_channels);
  o.Set("patchSize", v.patch_size);
  o.Set("temporalPatchSize", v.temporal_patch_size);
  o.Set("spatialMergeSize", v.spatial_merge_size);
  o.Set("windowSize", v.window_size);
  o.Set("fullAttentionBlocks",
        number_array(env, v.fullatt_block_indexes));
  o.Set("hiddenAct", v.hidden_act);
  o.Set("rmsNormEps", v.rms_norm_eps);
  return o;
}

}  // namespace

Napi::Object config_to_js(Napi::Env env, const rex::ModelConfig& config) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("architecture", config.architecture);
  o.Set("configLayout", config.layout);
  o.Set("torchDtype", config.torch_dtype);
  o.Set("imageTokenId", config.image_token_id);
  o.Set("visionStartTokenId", config.vision_start_token_id);
  o.Set("visionEndTokenId", config.vision_end_token_id);
  o.Set("text", text_to_js(env, config.text));
  o.Set("vision", vision_to_js(env, config.vision));
  return o;
}

}  // namespace rex_napi
