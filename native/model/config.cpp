// parse_model_config: reads a Qwen2.5-VL config.json in either layout.
//  - flat (transformers 4.x): text fields at the top level, "vision_config" beside them;
//  - nested (4.52 and some 5.x): text fields under "text_config".
// In the nested layout a text field missing from "text_config" is looked up at
// the top level too. Rope settings may sit in "rope_scaling" (4.x) or
// "rope_parameters" (5.x). Every error message starts with the file path.
#include "model/config.h"

#include <climits>
#include <cmath>

#include "common/json.h"

namespace rex {

namespace {

const char* kArchitecture = "Qwen2_5_VLForConditionalGeneration";
const char* kModelType = "qwen2_5_vl";

// Looks fields up in a JSON object and reports errors as "<path>: field '<prefix><key>' ...".
class FieldReader {
 public:
  FieldReader(const std::string& path, const json::Value* primary, std::string prefix,
              const json::Value* fallback = nullptr)
      : path_(path), primary_(primary), fallback_(fallback), prefix_(std::move(prefix)) {}

  // The member, or nullptr when absent or null in both objects.
  const json::Value* find(const char* key) const {
    const json::Value* v = primary_ ? primary_->get(key) : nullptr;
    if ((v == nullptr || v->is_null()) && fallback_ != nullptr) v = fallback_->get(key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }

  Status missing(const char* key) const {
    return Status(StatusCode::kBadHeader, path_ + ": required field '" + prefix_ + key + "' is missing");
  }
  Status ill_typed(const char* key, const char* expected, const json::Value& got) const {
    return Status(StatusCode::kBadHeader, path_ + ": field '" + prefix_ + key + "' must be " + expected +
                                              "; got " + got.type_name());
  }

  Status read_int(const char* key, bool required, int* out) const {
    const json::Value* v = find(key);
    if (v == nullptr) return required ? missing(key) : Status::Ok();
    if (!v->is_int() || v->as_int() < INT_MIN || v->as_int() > INT_MAX) {
      return ill_typed(key, "an integer", *v);
    }
    *out = static_cast<int>(v->as_int());
    return Status::Ok();
  }

  Status read_float(const char* key, bool required, float* out) const {
    const json::Value* v = find(key);
    if (v == nullptr) return required ? missing(key) : Status::Ok();
    if (!v->is_number()) return ill_typed(key, "a number", *v);
    *out = static_cast<float>(v->as_double());
    return Status::Ok();
  }

  Status read_bool(const char* key, bool* out) const {
    const json::Value* v = find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_bool()) return ill_typed(key, "true or false", *v);
    *out = v->as_bool();
    return Status::Ok();
  }

  Status read_string(const char* key, std::string* out) const {
    const json::Value* v = find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_string()) return ill_typed(key, "a string", *v);
    *out = v->as_string();
    return Status::Ok();
  }

  Status read_int_list(const char* key, std::vector<int>* out) const {
    const json::Value* v = find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_array()) return ill_typed(key, "a list of integers", *v);
    std::vector<int> values;
    for (const json::Value& item : v->items()) {
      if (!item.is_int() || item.as_int() < INT_MIN || item.as_int() > INT_MAX) {
        return ill_typed(key, "a list of integers", item);
      }
      values.push_back(static_cast<int>(item.as_int()));
    }
    *out = std::move(values);
    return Status::Ok();
  }

 private:
  const std::string& path_;
  const json::Value* primary_;
  const json::Value* fallback_;
  std::string prefix_;
};

std::string join_ints(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

Status check_architecture(const std::string& path, const json::Value& root, ModelConfig* config) {
  const json::Value* archs = root.get("architectures");
  const json::Value* model_type = root.get("model_type");
  std::string found;
  if (archs != nullptr && archs->is_array()) {
    for (const json::Value& a : archs->items()) {
      if (a.as_string() == kArchitecture) {
        config->architecture = kArchitecture;
        return Status::Ok();
      }
      if (found.empty() && a.is_string()) found = "architecture '" + a.as_string() + "'";
    }
  }
  if (model_type != nullptr && model_type->as_string() == kModelType) {
    config->architecture = kArchitecture;
    return Status::Ok();
  }
  if (found.empty() && model_type != nullptr && model_type->is_string()) {
    found = "model_type '" + model_type->as_string() + "'";
  }
  if (found.empty()) {
    return Status(StatusCode::kUnsupportedArchitecture,
                  path + ": neither \"architectures\" nor \"model_type\" names a model; expected " +
                      kArchitecture);
  }
  return Status(StatusCode::kUnsupportedArchitecture,
                path + ": " + found + " is not supported; expected " + kArchitecture);
}

// mrope_section and rope_theta: "rope_scaling" (4.x) or "rope_parameters" (5.x).
Status read_rope(const std::string& path, const FieldReader& text, const std::string& text_prefix,
                 TextConfig* t) {
  const json::Value* params = text.find("rope_parameters");
  const json::Value* scaling = text.find("rope_scaling");
  for (const json::Value* holder : {scaling, params}) {
    if (holder != nullptr && !holder->is_object()) {
      const char* name = holder == scaling ? "rope_scaling" : "rope_parameters";
      return text.ill_typed(name, "an object", *holder);
    }
  }
  if (params != nullptr && text.find("rope_theta") == nullptr) {
    FieldReader p(path, params, text_prefix + "rope_parameters.");
    REX_RETURN_IF_ERROR(p.read_float("rope_theta", false, &t->rope_theta));
  } else {
    REX_RETURN_IF_ERROR(text.read_float("rope_theta", false, &t->rope_theta));
  }
  const json::Value* holder = scaling != nullptr && scaling->get("mrope_section") != nullptr ? scaling : params;
  if (holder == nullptr || holder->get("mrope_section") == nullptr) return Status::Ok();  // default [16, 24, 24]
  std::string prefix = text_prefix + (holder == scaling ? "rope_scaling." : "rope_parameters.");
  FieldReader r(path, holder, prefix);
  std::vector<int> section;
  REX_RETURN_IF_ERROR(r.read_int_list("mrope_section", &section));
  if (section.size() != 3) {
    return Status(StatusCode::kBadHeader, path + ": field '" + prefix + "mrope_section' must hold 3 integers; got " +
                                              join_ints(section));
  }
  t->mrope_section = {section[0], section[1], section[2]};
  return Status::Ok();
}

Status read_text(const std::string& path, const json::Value& root, ModelConfig* config) {
  const json::Value* text_config = root.get("text_config");
  const bool nested = text_config != nullptr && text_config->is_object();
  config->layout = nested ? "nested" : "flat";
  const std::string prefix = nested ? "text_config." : "";
  FieldReader text(path, nested ? text_config : &root, prefix, nested ? &root : nullptr);
  TextConfig& t = config->text;
  REX_RETURN_IF_ERROR(text.read_int("num_hidden_layers", true, &t.num_layers));
  REX_RETURN_IF_ERROR(text.read_int("hidden_size", true, &t.hidden_size));
  REX_RETURN_IF_ERROR(text.read_int("num_attention_heads", true, &t.num_heads));
  REX_RETURN_IF_ERROR(text.read_int("num_key_value_heads", true, &t.num_kv_heads));
  REX_RETURN_IF_ERROR(text.read_int("intermediate_size", true, &t.intermediate_size));
  REX_RETURN_IF_ERROR(text.read_int("vocab_size", true, &t.vocab_size));
  REX_RETURN_IF_ERROR(text.read_int("max_position_embeddings", false, &t.max_position_embeddings));
  REX_RETURN_IF_ERROR(text.read_float("rms_norm_eps", false, &t.rms_norm_eps));
  REX_RETURN_IF_ERROR(text.read_string("hidden_act", &t.hidden_act));
  REX_RETURN_IF_ERROR(read_rope(path, text, prefix, &t));
  // tie_word_embeddings: the top level wins over text_config when both say something.
  FieldReader top(path, &root, "");
  if (top.find("tie_word_embeddings") != nullptr) {
    REX_RETURN_IF_ERROR(top.read_bool("tie_word_embeddings", &t.tie_word_embeddings));
  } else {
    REX_RETURN_IF_ERROR(text.read_bool("tie_word_embeddings", &t.tie_word_embeddings));
  }
  // Token ids and dtype live at the top level, sometimes only in text_config.
  FieldReader ids(path, &root, "", nested ? text_config : nullptr);
  REX_RETURN_IF_ERROR(ids.read_int("image_token_id", false, &config->image_token_id));
  REX_RETURN_IF_ERROR(ids.read_int("vision_start_token_id", false, &config->vision_start_token_id));
  REX_RETURN_IF_ERROR(ids.read_int("vision_end_token_id", false, &config->vision_end_token_id));
  REX_RETURN_IF_ERROR(ids.read_string("torch_dtype", &config->torch_dtype));
  if (config->torch_dtype.empty()) REX_RETURN_IF_ERROR(ids.read_string("dtype", &config->torch_dtype));
  return Status::Ok();
}

Status read_vision(const std::string& path, const json::Value& root, VisionConfig* v) {
  const json::Value* vision_config = root.get("vision_config");
  if (vision_config == nullptr || vision_config->is_null()) {
    return Status(StatusCode::kBadHeader, path + ": required field 'vision_config' is missing");
  }
  FieldReader top(path, &root, "");
  if (!vision_config->is_object()) return top.ill_typed("vision_config", "an object", *vision_config);
  FieldReader r(path, vision_config, "vision_config.");
  REX_RETURN_IF_ERROR(r.read_int("depth", true, &v->depth));
  REX_RETURN_IF_ERROR(r.read_int("hidden_size", true, &v->hidden_size));
  REX_RETURN_IF_ERROR(r.read_int("num_heads", true, &v->num_heads));
  REX_RETURN_IF_ERROR(r.read_int("intermediate_size", true, &v->intermediate_size));
  REX_RETURN_IF_ERROR(r.read_int("out_hidden_size", true, &v->out_hidden_size));
  if (r.find("in_chans") != nullptr) {
    REX_RETURN_IF_ERROR(r.read_int("in_chans", false, &v->in_channels));
  } else {
    REX_RETURN_IF_ERROR(r.read_int("in_channels", false, &v->in_channels));
  }
  REX_RETURN_IF_ERROR(r.read_int("patch_size", false, &v->patch_size));
  REX_RETURN_IF_ERROR(r.read_int("temporal_patch_size", false, &v->temporal_patch_size));
  REX_RETURN_IF_ERROR(r.read_int("spatial_merge_size", false, &v->spatial_merge_size));
  REX_RETURN_IF_ERROR(r.read_int("window_size", false, &v->window_size));
  v->fullatt_block_indexes = {7, 15, 23, 31};  // transformers' default when the field is absent
  REX_RETURN_IF_ERROR(r.read_int_list("fullatt_block_indexes", &v->fullatt_block_indexes));
  REX_RETURN_IF_ERROR(r.read_string("hidden_act", &v->hidden_act));
  REX_RETURN_IF_ERROR(r.read_float("rms_norm_eps", false, &v->rms_norm_eps));
  return Status::Ok();
}

Status invalid(const std::string& path, const std::string& what) {
  return Status(StatusCode::kBadHeader, path + ": " + what);
}

// Values that parse but describe no model we can run.
Status check_consistency(const std::string& path, const ModelConfig& c) {
  const TextConfig& t = c.text;
  const VisionConfig& v = c.vision;
  const std::string tp = c.layout == "nested" ? "text_config." : "";
  struct Positive { const char* name; int value; };
  for (const Positive& f : {Positive{"num_hidden_layers", t.num_layers}, {"hidden_size", t.hidden_size},
                            {"num_attention_heads", t.num_heads}, {"num_key_value_heads", t.num_kv_heads},
                            {"intermediate_size", t.intermediate_size}, {"vocab_size", t.vocab_size}}) {
    if (f.value <= 0) return invalid(path, "field '" + tp + f.name + "' must be positive; got " + std::to_string(f.value));
  }
  for (const Positive& f : {Positive{"depth", v.depth}, {"hidden_size", v.hidden_size}, {"num_heads", v.num_heads},
                            {"intermediate_size", v.intermediate_size}, {"out_hidden_size", v.out_hidden_size},
                            {"in_channels", v.in_channels}, {"patch_size", v.patch_size},
                            {"temporal_patch_size", v.temporal_patch_size},
                            {"spatial_merge_size", v.spatial_merge_size}, {"window_size", v.window_size}}) {
    if (f.value <= 0) {
      return invalid(path, "field 'vision_config." + std::string(f.name) + "' must be positive; got " +
                               std::to_string(f.value));
    }
  }
  if (t.hidden_size % t.num_heads != 0) {
    return invalid(path, tp + "hidden_size " + std::to_string(t.hidden_size) + " is not a multiple of " + tp +
                             "num_attention_heads " + std::to_string(t.num_heads));
  }
  if (t.num_heads % t.num_kv_heads != 0) {
    return invalid(path, tp + "num_attention_heads " + std::to_string(t.num_heads) + " is not a multiple of " + tp +
                             "num_key_value_heads " + std::to_string(t.num_kv_heads));
  }
  const auto& s = t.mrope_section;
  if (s[0] < 0 || s[1] < 0 || s[2] < 0 || 2 * (s[0] + s[1] + s[2]) != t.head_dim()) {
    return invalid(path, "mrope_section " + join_ints({s[0], s[1], s[2]}) + " must sum to head_dim / 2 = " +
                             std::to_string(t.head_dim() / 2) + " (default [16, 24, 24] when absent)");
  }
  if (v.hidden_size % v.num_heads != 0) {
    return invalid(path, "vision_config.hidden_size " + std::to_string(v.hidden_size) +
                             " is not a multiple of vision_config.num_heads " + std::to_string(v.num_heads));
  }
  if (v.out_hidden_size != t.hidden_size) {
    return invalid(path, "vision_config.out_hidden_size " + std::to_string(v.out_hidden_size) + " differs from " +
                             tp + "hidden_size " + std::to_string(t.hidden_size));
  }
  for (int index : v.fullatt_block_indexes) {
    if (index < 0 || index >= v.depth) {
      return invalid(path, "vision_config.fullatt_block_indexes " + join_ints(v.fullatt_block_indexes) +
                               " holds " + std::to_string(index) + ", outside depth " + std::to_string(v.depth) +
                               " (default [7, 15, 23, 31] when absent)");
    }
  }
  if (!(t.rms_norm_eps > 0.0f) || !(v.rms_norm_eps > 0.0f) || !(t.rope_theta > 0.0f) || !std::isfinite(t.rope_theta)) {
    return invalid(path, "rms_norm_eps and rope_theta must be positive");
  }
  return Status::Ok();
}

}  // namespace

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& path) {
  auto root = json::parse(json_text);
  if (!root.ok()) return Status(StatusCode::kBadHeader, path + ": " + root.status().message());
  if (!root->is_object()) {
    return Status(StatusCode::kBadHeader, path + ": expected a JSON object; got " + root->type_name());
  }
  ModelConfig config;
  REX_RETURN_IF_ERROR(check_architecture(path, root.value(), &config));
  REX_RETURN_IF_ERROR(read_text(path, root.value(), &config));
  REX_RETURN_IF_ERROR(read_vision(path, root.value(), &config.vision));
  REX_RETURN_IF_ERROR(check_consistency(path, config));
  return config;
}

}  // namespace rex
