// Tests for parse_model_config (native/model/config.h): the published 4.x
// config of the 3B model, the nested 5.x layout, and malformed configs.
#include <string>

#include "model/config.h"
#include "test_harness.h"

using rex::ModelConfig;
using rex::StatusCode;

namespace {

// Shaped like the published Qwen2.5-VL-3B / Rex-Omni config.json (transformers 4.x, flat).
const char* kReal3BConfig = R"({
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "vision_start_token_id": 151652,
  "vision_end_token_id": 151653,
  "vision_token_id": 151654,
  "image_token_id": 151655,
  "video_token_id": 151656,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 128000,
  "max_window_layers": 70,
  "model_type": "qwen2_5_vl",
  "num_attention_heads": 16,
  "num_hidden_layers": 36,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.41.2",
  "use_cache": true,
  "use_sliding_window": false,
  "vision_config": {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "temporal_patch_size": 2
  },
  "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
  "vocab_size": 151936
})";

// The newer layout: text fields under text_config, rope under rope_parameters.
const char* kNestedConfig = R"({
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "model_type": "qwen2_5_vl",
  "dtype": "bfloat16",
  "image_token_id": 151655,
  "vision_start_token_id": 151652,
  "vision_end_token_id": 151653,
  "text_config": {
    "model_type": "qwen2_5_vl_text",
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "hidden_act": "silu",
    "tie_word_embeddings": true,
    "rope_parameters": {"rope_type": "default", "mrope_section": [8, 28, 28], "rope_theta": 500000.0}
  },
  "vision_config": {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
    "in_channels": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
    "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]
  }
})";

ModelConfig parse_ok(const std::string& text) {
  auto r = rex::parse_model_config(text, "/ckpt/config.json");
  if (!r.ok()) {
    rex_test::fail(__FILE__, __LINE__, "parse failed: " + r.status().message());
    return ModelConfig();
  }
  return std::move(r).value();
}

// Replaces the first `from` in `text` with `to` (the test fails if absent).
std::string edit(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  if (at == std::string::npos) {
    rex_test::fail(__FILE__, __LINE__, "test fixture lacks \"" + from + "\"");
    return text;
  }
  return text.replace(at, from.size(), to);
}

void expect_error(const std::string& text, StatusCode code, const std::string& fragment) {
  auto r = rex::parse_model_config(text, "/ckpt/config.json");
  CHECK(!r.ok());
  CHECK_EQ(std::string(r.status().code_name()), std::string(rex::status_code_name(code)));
  CHECK_CONTAINS(r.status().message(), "/ckpt/config.json: ");
  CHECK_CONTAINS(r.status().message(), fragment);
}

}  // namespace

REX_TEST(real_3b_config_parses_to_published_values) {
  ModelConfig c = parse_ok(kReal3BConfig);
  CHECK_EQ(c.architecture, "Qwen2_5_VLForConditionalGeneration");
  CHECK_EQ(c.layout, "flat");
  CHECK_EQ(c.torch_dtype, "bfloat16");
  CHECK_EQ(c.text.num_layers, 36);
  CHECK_EQ(c.text.hidden_size, 2048);
  CHECK_EQ(c.text.num_heads, 16);
  CHECK_EQ(c.text.num_kv_heads, 2);
  CHECK_EQ(c.text.head_dim(), 128);
  CHECK_EQ(c.text.intermediate_size, 11008);
  CHECK_EQ(c.text.vocab_size, 151936);
  CHECK_EQ(c.text.max_position_embeddings, 128000);
  CHECK_NEAR(c.text.rms_norm_eps, 1e-6, 1e-12);
  CHECK_NEAR(c.text.rope_theta, 1e6, 0.0);
  CHECK_EQ(c.text.mrope_section[0], 16);
  CHECK_EQ(c.text.mrope_section[1], 24);
  CHECK_EQ(c.text.mrope_section[2], 24);
  CHECK(c.text.tie_word_embeddings);
  CHECK_EQ(c.text.hidden_act, "silu");
  CHECK_EQ(c.vision.depth, 32);
  CHECK_EQ(c.vision.hidden_size, 1280);
  CHECK_EQ(c.vision.num_heads, 16);
  CHECK_EQ(c.vision.head_dim(), 80);
  CHECK_EQ(c.vision.intermediate_size, 3420);
  CHECK_EQ(c.vision.out_hidden_size, 2048);
  CHECK_EQ(c.vision.in_channels, 3);
  CHECK_EQ(c.vision.patch_size, 14);
  CHECK_EQ(c.vision.temporal_patch_size, 2);
  CHECK_EQ(c.vision.spatial_merge_size, 2);
  CHECK_EQ(c.vision.window_size, 112);
  CHECK_EQ(c.vision.fullatt_block_indexes.size(), 4u);
  CHECK_EQ(c.vision.fullatt_block_indexes[0], 7);
  CHECK_EQ(c.vision.fullatt_block_indexes[3], 31);
  CHECK_EQ(c.image_token_id, 151655);
  CHECK_EQ(c.vision_start_token_id, 151652);
  CHECK_EQ(c.vision_end_token_id, 151653);
}

REX_TEST(nested_config_reads_text_config_and_rope_parameters) {
  ModelConfig c = parse_ok(kNestedConfig);
  CHECK_EQ(c.layout, "nested");
  CHECK_EQ(c.torch_dtype, "bfloat16");  // from "dtype"
  CHECK_EQ(c.text.num_layers, 36);
  CHECK_EQ(c.text.num_kv_heads, 2);
  CHECK_EQ(c.text.vocab_size, 151936);
  CHECK_NEAR(c.text.rope_theta, 5e5, 0.0);
  CHECK_EQ(c.text.mrope_section[0], 8);
  CHECK_EQ(c.text.mrope_section[1], 28);
  CHECK(c.text.tie_word_embeddings);  // only in text_config
  CHECK_EQ(c.vision.in_channels, 3);  // "in_channels" spelling
  CHECK_EQ(c.image_token_id, 151655);
}

REX_TEST(top_level_tie_word_embeddings_wins) {
  std::string text = edit(kNestedConfig, "\"dtype\"", "\"tie_word_embeddings\": false, \"dtype\"");
  CHECK(!parse_ok(text).text.tie_word_embeddings);
}

REX_TEST(nested_falls_back_to_top_level_fields_and_ids_in_text_config) {
  std::string text = edit(kNestedConfig, "\"vocab_size\": 151936,", "\"image_token_id\": 7,");
  text = edit(text, "\"image_token_id\": 151655,", "\"vocab_size\": 1000,");
  ModelConfig c = parse_ok(text);
  CHECK_EQ(c.text.vocab_size, 1000);
  CHECK_EQ(c.image_token_id, 7);
}

REX_TEST(defaults_when_rope_and_optional_fields_are_absent) {
  std::string text = edit(kReal3BConfig, "\"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},", "");
  text = edit(text, "\"rope_theta\": 1000000.0,", "");
  text = edit(text, "\"tie_word_embeddings\": true,", "");
  ModelConfig c = parse_ok(text);
  CHECK_EQ(c.text.mrope_section[0], 16);
  CHECK_EQ(c.text.mrope_section[2], 24);
  CHECK_NEAR(c.text.rope_theta, 1e6, 0.0);
  CHECK(!c.text.tie_word_embeddings);
  CHECK(parse_ok(edit(kReal3BConfig, "\"rope_scaling\": {", "\"rope_scaling\": null, \"x\": {")).text.mrope_section[0] == 16);
}

REX_TEST(model_type_alone_identifies_the_model) {
  ModelConfig c = parse_ok(edit(kReal3BConfig, "\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"],", ""));
  CHECK_EQ(c.architecture, "Qwen2_5_VLForConditionalGeneration");
}

REX_TEST(another_architecture_is_rejected_by_name) {
  std::string llama = edit(kReal3BConfig, "Qwen2_5_VLForConditionalGeneration", "LlamaForCausalLM");
  llama = edit(llama, "\"model_type\": \"qwen2_5_vl\"", "\"model_type\": \"llama\"");
  expect_error(llama, StatusCode::kUnsupportedArchitecture,
               "config.json: architecture 'LlamaForCausalLM' is not supported; expected "
               "Qwen2_5_VLForConditionalGeneration");
  std::string no_arch = edit(llama, "\"architectures\": [\"LlamaForCausalLM\"],", "");
  expect_error(no_arch, StatusCode::kUnsupportedArchitecture, "model_type 'llama' is not supported");
  expect_error("{}", StatusCode::kUnsupportedArchitecture, "neither \"architectures\" nor \"model_type\"");
}

REX_TEST(missing_required_fields_are_named) {
  expect_error(edit(kReal3BConfig, "\"hidden_size\": 2048,", ""), StatusCode::kBadHeader,
               "required field 'hidden_size' is missing");
  expect_error(edit(kNestedConfig, "\"num_key_value_heads\": 2,", ""), StatusCode::kBadHeader,
               "required field 'text_config.num_key_value_heads' is missing");
  expect_error(edit(kReal3BConfig, "\"depth\": 32,", ""), StatusCode::kBadHeader,
               "required field 'vision_config.depth' is missing");
  std::string no_vision = edit(kReal3BConfig, "\"vision_config\": {", "\"other\": {");
  expect_error(no_vision, StatusCode::kBadHeader, "required field 'vision_config' is missing");
}

REX_TEST(ill_typed_fields_are_named) {
  expect_error(edit(kReal3BConfig, "\"hidden_size\": 2048", "\"hidden_size\": \"2048\""), StatusCode::kBadHeader,
               "field 'hidden_size' must be an integer; got string");
  expect_error(edit(kReal3BConfig, "\"num_hidden_layers\": 36", "\"num_hidden_layers\": 36.5"),
               StatusCode::kBadHeader, "field 'num_hidden_layers' must be an integer; got number");
  expect_error(edit(kReal3BConfig, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1"),
               StatusCode::kBadHeader, "field 'tie_word_embeddings' must be true or false");
  expect_error(edit(kReal3BConfig, "[16, 24, 24]", "[16, 24]"), StatusCode::kBadHeader,
               "field 'rope_scaling.mrope_section' must hold 3 integers; got [16, 24]");
  expect_error(edit(kReal3BConfig, "[7, 15, 23, 31]", "[7, \"x\"]"), StatusCode::kBadHeader,
               "field 'vision_config.fullatt_block_indexes' must be a list of integers");
}

REX_TEST(inconsistent_values_are_rejected) {
  expect_error(edit(kReal3BConfig, "[16, 24, 24]", "[16, 24, 25]"), StatusCode::kBadHeader,
               "mrope_section [16, 24, 25] must sum to head_dim / 2 = 64");
  expect_error(edit(kReal3BConfig, "\"out_hidden_size\": 2048", "\"out_hidden_size\": 1024"),
               StatusCode::kBadHeader, "vision_config.out_hidden_size 1024 differs from hidden_size 2048");
  expect_error(edit(kReal3BConfig, "[7, 15, 23, 31]", "[7, 32]"), StatusCode::kBadHeader,
               "holds 32, outside depth 32");
  expect_error(edit(kReal3BConfig, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
               StatusCode::kBadHeader, "num_attention_heads 16 is not a multiple of num_key_value_heads 3");
  expect_error(edit(kReal3BConfig, "\"vocab_size\": 151936", "\"vocab_size\": 0"), StatusCode::kBadHeader,
               "field 'vocab_size' must be positive; got 0");
}

REX_TEST(not_json_is_a_bad_header) {
  expect_error("{\"architectures\": [", StatusCode::kBadHeader, "invalid JSON at byte 19");
  expect_error("[]", StatusCode::kBadHeader, "expected a JSON object; got array");
}
