// Tests for Checkpoint::open, the safetensors reader and bind_model_weights.
// Each test writes a tiny checkpoint (config.json + safetensors) into its own
// temp dir with the small writer below, then opens it; malformed inputs must
// fail with the exact Status code and a message naming file and tensor.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/weights.h"
#include "test_harness.h"

using rex::Checkpoint;
using rex::StatusCode;

namespace {

// ------------------------------------------------------------------ temp dir

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rex_model_test_XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    path_ = made ? made : "";
    if (!made) rex_test::fail(__FILE__, __LINE__, "mkdtemp failed");
  }
  ~TempDir() {  // the test dirs are flat: remove the files, then the dir
    if (DIR* d = ::opendir(path_.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) rex_test::fail(__FILE__, __LINE__, "cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// ------------------------------------------------------------------ safetensors writer

struct FakeTensor {
  std::string name;
  std::string dtype = "BF16";
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian data
};

size_t fake_dtype_size(const std::string& dtype) { return dtype == "F32" ? 4 : dtype == "I8" ? 1 : 2; }

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// A tensor filled with value(i) = seed + i / 64, stored as `dtype` (BF16 by default).
FakeTensor make_tensor(const std::string& name, std::vector<int64_t> shape, float seed = 0.0f,
                       const std::string& dtype = "BF16") {
  FakeTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  int64_t n = numel_of(t.shape);
  for (int64_t i = 0; i < n; ++i) {
    float v = seed + static_cast<float>(i % 256) / 64.0f;
    if (dtype == "F32") {
      t.bytes.append(reinterpret_cast<const char*>(&v), 4);
    } else if (dtype == "BF16") {
      uint16_t b = rex::f32_to_bf16_bits(v);
      t.bytes.append(reinterpret_cast<const char*>(&b), 2);
    } else {
      t.bytes.append(fake_dtype_size(dtype), '\1');
    }
  }
  return t;
}

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// header length (u64 LE) + JSON header + data; offsets follow the order given.
std::string safetensors_bytes(const std::vector<FakeTensor>& tensors, bool with_metadata = true) {
  std::string header = "{";
  if (with_metadata) header += "\"__metadata__\":{\"format\":\"pt\"}";
  std::string data;
  for (const FakeTensor& t : tensors) {
    if (header.size() > 1) header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';  // padded as the reference writer does
  std::string out(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + header + data;
}

// A file with a hand-written header and `data_size` zero bytes of data.
std::string raw_safetensors(const std::string& header, size_t data_size) {
  std::string out(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + header + std::string(data_size, '\0');
}

// ------------------------------------------------------------------ a tiny model

// Text: hidden 16, 2 heads (head_dim 8), 1 kv head, 2 layers, inter 24, vocab 32.
// Vision: depth 2, hidden 8, 2 heads, inter 12, patch 2, merge 2 (merged 32), out 16.
std::string tiny_config(bool nested, bool tie = true, const std::string& arch = "Qwen2_5_VLForConditionalGeneration") {
  std::string text_fields =
      "\"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
      "\"num_key_value_heads\": 1, \"intermediate_size\": 24, \"vocab_size\": 32, "
      "\"rms_norm_eps\": 1e-06, \"max_position_embeddings\": 256";
  std::string vision =
      "\"vision_config\": {\"depth\": 2, \"hidden_size\": 8, \"num_heads\": 2, \"intermediate_size\": 12, "
      "\"out_hidden_size\": 16, \"in_chans\": 3, \"patch_size\": 2, \"temporal_patch_size\": 2, "
      "\"spatial_merge_size\": 2, \"window_size\": 8, \"fullatt_block_indexes\": [1]}";
  std::string tie_field = std::string("\"tie_word_embeddings\": ") + (tie ? "true" : "false");
  std::string head = "{\"architectures\": [\"" + arch + "\"], \"image_token_id\": 30, ";
  if (nested) {
    return head + "\"text_config\": {" + text_fields + ", " + tie_field +
           ", \"rope_parameters\": {\"rope_type\": \"default\", \"mrope_section\": [2, 1, 1], \"rope_theta\": 10000.0}}, " +
           vision + "}";
  }
  return head + text_fields + ", " + tie_field +
         ", \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 1, 1]}, " + vision +
         "}";
}

// Every tensor of the tiny model, under 4.x names or the nested ones.
std::vector<FakeTensor> tiny_tensors(bool nested, bool with_lm_head = false) {
  const std::string vp = nested ? "model.visual." : "visual.";
  const std::string tp = nested ? "model.language_model." : "model.";
  std::vector<FakeTensor> t;
  float seed = 0.0f;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    t.push_back(make_tensor(name, std::move(shape), seed));
    seed += 0.5f;
  };
  add(vp + "patch_embed.proj.weight", {8, 3, 2, 2, 2});
  for (int i = 0; i < 2; ++i) {
    std::string p = vp + "blocks." + std::to_string(i) + ".";
    add(p + "norm1.weight", {8});
    add(p + "norm2.weight", {8});
    add(p + "attn.qkv.weight", {24, 8});
    add(p + "attn.qkv.bias", {24});
    add(p + "attn.proj.weight", {8, 8});
    add(p + "attn.proj.bias", {8});
    add(p + "mlp.gate_proj.weight", {12, 8});
    add(p + "mlp.gate_proj.bias", {12});
    add(p + "mlp.up_proj.weight", {12, 8});
    add(p + "mlp.up_proj.bias", {12});
    add(p + "mlp.down_proj.weight", {8, 12});
    add(p + "mlp.down_proj.bias", {8});
  }
  add(vp + "merger.ln_q.weight", {8});
  add(vp + "merger.mlp.0.weight", {32, 32});
  add(vp + "merger.mlp.0.bias", {32});
  add(vp + "merger.mlp.2.weight", {16, 32});
  add(vp + "merger.mlp.2.bias", {16});
  add(tp + "embed_tokens.weight", {32, 16});
  for (int i = 0; i < 2; ++i) {
    std::string p = tp + "layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {16});
    add(p + "post_attention_layernorm.weight", {16});
    add(p + "self_attn.q_proj.weight", {16, 16});
    add(p + "self_attn.q_proj.bias", {16});
    add(p + "self_attn.k_proj.weight", {8, 16});
    add(p + "self_attn.k_proj.bias", {8});
    add(p + "self_attn.v_proj.weight", {8, 16});
    add(p + "self_attn.v_proj.bias", {8});
    add(p + "self_attn.o_proj.weight", {16, 16});
    add(p + "mlp.gate_proj.weight", {24, 16});
    add(p + "mlp.up_proj.weight", {24, 16});
    add(p + "mlp.down_proj.weight", {16, 24});
  }
  add(tp + "norm.weight", {16});
  if (with_lm_head) add("lm_head.weight", {32, 16});
  return t;
}
constexpr size_t kTinyTensorCount = 1 + 2 * 12 + 5 + 1 + 2 * 12 + 1;  // 56

FakeTensor* find_fake(std::vector<FakeTensor>& tensors, const std::string& name) {
  for (FakeTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  rex_test::fail(__FILE__, __LINE__, "fixture lacks " + name);
  return nullptr;
}

void remove_fake(std::vector<FakeTensor>& tensors, const std::string& name) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].name == name) {
      tensors.erase(tensors.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
  rex_test::fail(__FILE__, __LINE__, "fixture lacks " + name);
}

void write_single(const TempDir& dir, const std::string& config, const std::vector<FakeTensor>& tensors,
                  const std::string& file = "model.safetensors") {
  write_file(dir.file("config.json"), config);
  write_file(dir.file(file), safetensors_bytes(tensors));
}

// Two shards split at the vision/text boundary, plus the index.
void write_sharded(const TempDir& dir, const std::string& config, const std::vector<FakeTensor>& tensors) {
  const std::string shard1 = "model-00001-of-00002.safetensors", shard2 = "model-00002-of-00002.safetensors";
  std::vector<FakeTensor> a, b;
  std::string map;
  for (const FakeTensor& t : tensors) {
    bool vision = t.name.find("visual.") != std::string::npos;
    (vision ? a : b).push_back(t);
    if (!map.empty()) map += ", ";
    map += "\"" + t.name + "\": \"" + (vision ? shard1 : shard2) + "\"";
  }
  write_file(dir.file("config.json"), config);
  write_file(dir.file(shard1), safetensors_bytes(a));
  write_file(dir.file(shard2), safetensors_bytes(b, false));
  write_file(dir.file("model.safetensors.index.json"),
             "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {" + map + "}}");
}

// Opening must fail with `code` and a message containing every fragment.
void expect_open_error(const std::string& dir, StatusCode code, const std::vector<std::string>& fragments) {
  auto r = Checkpoint::open(dir);
  CHECK(!r.ok());
  if (r.ok()) return;
  CHECK_EQ(std::string(r.status().code_name()), std::string(rex::status_code_name(code)));
  for (const std::string& f : fragments) CHECK_CONTAINS(r.status().message(), f);
}

// Open must succeed, then binding must fail with `code` and the message fragments.
void expect_bind_error(const std::string& dir, StatusCode code, const std::vector<std::string>& fragments) {
  auto r = Checkpoint::open(dir);
  CHECK(r.ok());
  if (!r.ok()) {
    rex_test::fail(__FILE__, __LINE__, r.status().message());
    return;
  }
  auto w = rex::bind_model_weights(*r.value());
  CHECK(!w.ok());
  if (w.ok()) return;
  CHECK_EQ(std::string(w.status().code_name()), std::string(rex::status_code_name(code)));
  for (const std::string& f : fragments) CHECK_CONTAINS(w.status().message(), f);
}

std::unique_ptr<Checkpoint> open_ok(const std::string& dir) {
  auto r = Checkpoint::open(dir);
  if (!r.ok()) {
    rex_test::fail(__FILE__, __LINE__, "open failed: " + r.status().message());
    return nullptr;
  }
  return std::move(r).value();
}

bool is_mapped(const std::string& path) { return read_file("/proc/self/maps").find(path) != std::string::npos; }

}  // namespace

// ------------------------------------------------------------------ opening and binding

REX_TEST(single_file_flat_checkpoint_opens_and_binds) {
  TempDir dir;
  write_single(dir, tiny_config(false), tiny_tensors(false));
  auto ckpt = open_ok(dir.path() + "/");  // a trailing slash is fine
  if (!ckpt) return;
  CHECK_EQ(ckpt->dir(), dir.path());
  CHECK_EQ(ckpt->tensor_layout(), "flat");
  CHECK_EQ(ckpt->config().layout, "flat");
  CHECK_EQ(ckpt->config().text.hidden_size, 16);
  CHECK_EQ(ckpt->weight_files().size(), 1u);
  CHECK_EQ(ckpt->weight_files()[0], "model.safetensors");
  std::vector<std::string> names = ckpt->tensor_names();
  CHECK_EQ(names.size(), kTinyTensorCount);
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(ckpt->find("__metadata__") == nullptr);

  const rex::TensorView* qkv = ckpt->find("visual.blocks.0.attn.qkv.weight");
  CHECK(qkv != nullptr);
  if (!qkv) return;
  CHECK(qkv->dtype == rex::DType::kBF16);
  CHECK_EQ(qkv->shape_string(), "[24, 8]");
  CHECK_EQ(qkv->nbytes, 24u * 8u * 2u);
  CHECK_EQ(qkv->file, "model.safetensors");
  float seed = rex::tensor_element_f32(*qkv, 0);
  CHECK_NEAR(rex::tensor_element_f32(*qkv, 5), seed + 5.0f / 64.0f, 1e-2);

  size_t total = 0;
  for (const std::string& n : names) total += ckpt->find(n)->nbytes;
  CHECK_EQ(ckpt->total_bytes(), total);

  auto w = rex::bind_model_weights(*ckpt);
  CHECK(w.ok());
  if (!w.ok()) return;
  CHECK_EQ(w->vision.blocks.size(), 2u);
  CHECK_EQ(w->text.layers.size(), 2u);
  CHECK(w->vision.blocks[0].qkv_w == qkv);
  CHECK(w->vision.patch_embed != nullptr);
  CHECK_EQ(w->vision.merger_fc1_w->shape_string(), "[32, 32]");
  CHECK_EQ(w->vision.merger_fc2_w->shape_string(), "[16, 32]");
  CHECK_EQ(w->text.layers[1].k_w->shape_string(), "[8, 16]");
  CHECK_EQ(w->text.layers[1].o_w->name, "model.layers.1.self_attn.o_proj.weight");
  CHECK(w->text.final_norm != nullptr);
  CHECK(w->text.lm_head == w->text.embed_tokens);  // tied, no lm_head.weight
}

REX_TEST(sharded_nested_checkpoint_is_renamed_to_canonical_names) {
  TempDir dir;
  write_sharded(dir, tiny_config(true), tiny_tensors(true));
  auto ckpt = open_ok(dir.path());
  if (!ckpt) return;
  CHECK_EQ(ckpt->tensor_layout(), "nested");
  CHECK_EQ(ckpt->config().layout, "nested");
  CHECK_EQ(ckpt->weight_files().size(), 2u);
  CHECK_EQ(ckpt->tensor_names().size(), kTinyTensorCount);
  CHECK(ckpt->find("model.visual.merger.ln_q.weight") == nullptr);
  const rex::TensorView* ln_q = ckpt->find("visual.merger.ln_q.weight");
  const rex::TensorView* embed = ckpt->find("model.embed_tokens.weight");
  const rex::TensorView* norm = ckpt->find("model.norm.weight");
  CHECK(ln_q != nullptr && embed != nullptr && norm != nullptr);
  if (!ln_q || !embed || !norm) return;
  CHECK_EQ(ln_q->name, "visual.merger.ln_q.weight");
  CHECK_EQ(ln_q->file, "model-00001-of-00002.safetensors");
  CHECK_EQ(embed->file, "model-00002-of-00002.safetensors");
  auto w = rex::bind_model_weights(*ckpt);
  CHECK(w.ok());
  if (w.ok()) CHECK(w->text.lm_head == embed);
}

REX_TEST(flat_names_with_nested_config_and_the_reverse) {
  TempDir a, b;
  write_single(a, tiny_config(true), tiny_tensors(false));
  write_single(b, tiny_config(false), tiny_tensors(true));
  auto ca = open_ok(a.path());
  auto cb = open_ok(b.path());
  if (!ca || !cb) return;
  CHECK_EQ(ca->tensor_layout(), "flat");
  CHECK_EQ(ca->config().layout, "nested");
  CHECK_EQ(cb->tensor_layout(), "nested");
  CHECK_EQ(cb->config().layout, "flat");
  CHECK(rex::bind_model_weights(*ca).ok());
  CHECK(rex::bind_model_weights(*cb).ok());
}

REX_TEST(any_single_safetensors_file_is_used) {
  TempDir dir;
  write_single(dir, tiny_config(false), tiny_tensors(false), "rex_omni_bf16.safetensors");
  auto ckpt = open_ok(dir.path());
  if (!ckpt) return;
  CHECK_EQ(ckpt->weight_files()[0], "rex_omni_bf16.safetensors");
  CHECK(rex::bind_model_weights(*ckpt).ok());
}

REX_TEST(lm_head_weight_is_used_when_present) {
  TempDir dir;
  write_single(dir, tiny_config(false, /*tie=*/false), tiny_tensors(false, /*with_lm_head=*/true));
  auto ckpt = open_ok(dir.path());
  if (!ckpt) return;
  auto w = rex::bind_model_weights(*ckpt);
  CHECK(w.ok());
  if (!w.ok()) return;
  CHECK(w->text.lm_head != w->text.embed_tokens);
  CHECK_EQ(w->text.lm_head->name, "lm_head.weight");
}

REX_TEST(untied_checkpoint_without_lm_head_is_missing_a_tensor) {
  TempDir dir;
  write_single(dir, tiny_config(false, /*tie=*/false), tiny_tensors(false));
  expect_bind_error(dir.path(), StatusCode::kMissingTensor,
                    {"tensor 'lm_head.weight' is missing from " + dir.path() + " (looked in model.safetensors)",
                     "tie_word_embeddings"});
}

REX_TEST(f16_and_f32_tensors_are_accepted) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  *find_fake(tensors, "model.norm.weight") = make_tensor("model.norm.weight", {16}, 1.0f, "F32");
  FakeTensor f16;
  f16.name = "visual.merger.ln_q.weight";
  f16.dtype = "F16";
  f16.shape = {8};
  const uint16_t halves[8] = {0x3C00, 0x0001, 0x7C00, 0xC200, 0x0000, 0x8000, 0x3555, 0x7BFF};
  f16.bytes.assign(reinterpret_cast<const char*>(halves), sizeof halves);
  *find_fake(tensors, "visual.merger.ln_q.weight") = f16;
  write_single(dir, tiny_config(false), tensors);
  auto ckpt = open_ok(dir.path());
  if (!ckpt) return;
  const rex::TensorView* norm = ckpt->find("model.norm.weight");
  const rex::TensorView* ln_q = ckpt->find("visual.merger.ln_q.weight");
  CHECK(norm && norm->dtype == rex::DType::kF32);
  CHECK(ln_q && ln_q->dtype == rex::DType::kF16);
  if (!norm || !ln_q) return;
  CHECK_EQ(rex::tensor_element_f32(*norm, 3), 1.0f + 3.0f / 64.0f);
  std::vector<float> v = rex::tensor_to_f32(*ln_q);
  CHECK_EQ(v.size(), 8u);
  CHECK_EQ(v[1], std::ldexp(1.0f, -24));
  CHECK_EQ(v[3], -3.0f);
  CHECK_EQ(v[7], 65504.0f);
  CHECK(rex::bind_model_weights(*ckpt).ok());
}

REX_TEST(destructor_unmaps_the_files) {
  TempDir dir;
  write_single(dir, tiny_config(false), tiny_tensors(false));
  auto ckpt = open_ok(dir.path());
  if (!ckpt) return;
  const std::string file = dir.file("model.safetensors");
  CHECK(is_mapped(file));
  ckpt.reset();
  CHECK(!is_mapped(file));
}

// ------------------------------------------------------------------ bind errors

REX_TEST(missing_tensor_names_tensor_dir_and_files) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  remove_fake(tensors, "model.layers.1.mlp.up_proj.weight");
  write_single(dir, tiny_config(false), tensors);
  expect_bind_error(dir.path(), StatusCode::kMissingTensor,
                    {"tensor 'model.layers.1.mlp.up_proj.weight' is missing from " + dir.path() +
                     " (looked in model.safetensors)"});
}

REX_TEST(missing_tensor_in_sharded_checkpoint_lists_every_shard) {
  TempDir dir;
  auto tensors = tiny_tensors(true);
  remove_fake(tensors, "model.visual.blocks.1.attn.proj.bias");
  write_sharded(dir, tiny_config(true), tensors);
  expect_bind_error(dir.path(), StatusCode::kMissingTensor,
                    {"tensor 'visual.blocks.1.attn.proj.bias' is missing",
                     "(looked in model-00001-of-00002.safetensors, model-00002-of-00002.safetensors)"});
}

REX_TEST(wrong_shape_names_tensor_file_and_both_shapes) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  *find_fake(tensors, "visual.blocks.1.mlp.up_proj.weight") = make_tensor("visual.blocks.1.mlp.up_proj.weight", {8, 12});
  write_sharded(dir, tiny_config(false), tensors);
  expect_bind_error(dir.path(), StatusCode::kShapeMismatch,
                    {"tensor 'visual.blocks.1.mlp.up_proj.weight' in model-00001-of-00002.safetensors has shape "
                     "[8, 12]; expected [12, 8]"});
}

REX_TEST(wrong_shapes_derived_from_config) {
  struct Case { const char* name; std::vector<int64_t> bad; const char* expected; };
  const Case cases[] = {
      {"visual.patch_embed.proj.weight", {8, 3, 1, 2, 2}, "expected [8, 3, 2, 2, 2]"},
      {"visual.merger.mlp.0.weight", {8, 8}, "expected [32, 32]"},
      {"visual.merger.mlp.2.weight", {32, 16}, "expected [16, 32]"},
      {"model.layers.0.self_attn.k_proj.weight", {16, 16}, "expected [8, 16]"},
      {"model.layers.0.self_attn.o_proj.weight", {16, 8}, "expected [16, 16]"},
      {"model.layers.1.post_attention_layernorm.weight", {8}, "expected [16]"},
      {"model.embed_tokens.weight", {16, 32}, "expected [32, 16]"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    auto tensors = tiny_tensors(false);
    *find_fake(tensors, c.name) = make_tensor(c.name, c.bad);
    write_single(dir, tiny_config(false), tensors);
    expect_bind_error(dir.path(), StatusCode::kShapeMismatch, {std::string("tensor '") + c.name + "'", c.expected});
  }
}

REX_TEST(lm_head_of_wrong_shape_is_rejected) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  tensors.push_back(make_tensor("lm_head.weight", {31, 16}));
  write_single(dir, tiny_config(false), tensors);
  expect_bind_error(dir.path(), StatusCode::kShapeMismatch,
                    {"tensor 'lm_head.weight' in model.safetensors has shape [31, 16]; expected [32, 16]"});
}

// ------------------------------------------------------------------ malformed files

REX_TEST(unsupported_dtype_names_file_tensor_and_dtype) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  *find_fake(tensors, "visual.blocks.0.attn.qkv.weight") =
      make_tensor("visual.blocks.0.attn.qkv.weight", {24, 8}, 0.0f, "I8");
  write_single(dir, tiny_config(false), tensors);
  expect_open_error(dir.path(), StatusCode::kUnsupportedDtype,
                    {dir.file("model.safetensors") + ": tensor 'visual.blocks.0.attn.qkv.weight' has dtype I8; "
                                                     "expected BF16, F16 or F32"});
}

REX_TEST(truncated_file_names_file_and_tensor) {
  TempDir dir;
  std::string bytes = safetensors_bytes(tiny_tensors(false));
  write_file(dir.file("config.json"), tiny_config(false));
  write_file(dir.file("model.safetensors"), bytes.substr(0, bytes.size() - 10));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {dir.file("model.safetensors") + ": tensor 'model.norm.weight'", "truncated"});
}

REX_TEST(file_shorter_than_the_length_prefix_is_truncated) {
  TempDir dir;
  write_file(dir.file("config.json"), tiny_config(false));
  write_file(dir.file("model.safetensors"), std::string("\x10\0\0", 3));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {dir.file("model.safetensors") + ": truncated: the file is 3 bytes"});
}

REX_TEST(header_length_past_end_of_file_is_truncated) {
  TempDir dir;
  std::string bytes = safetensors_bytes(tiny_tensors(false));
  bytes[6] = '\x01';  // header length += 2^48
  write_file(dir.file("config.json"), tiny_config(false));
  write_file(dir.file("model.safetensors"), bytes);
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {dir.file("model.safetensors") + ": truncated: header length", "runs past the end of the file"});
}

REX_TEST(header_that_is_not_json_is_a_bad_header) {
  TempDir dir;
  write_file(dir.file("config.json"), tiny_config(false));
  write_file(dir.file("model.safetensors"), raw_safetensors("{\"a\": {\"dtype\": BF16}}", 16));
  expect_open_error(dir.path(), StatusCode::kBadHeader,
                    {dir.file("model.safetensors") + ": header is not valid JSON: invalid JSON at byte 16"});
  write_file(dir.file("model.safetensors"), raw_safetensors("[1, 2]", 0));
  expect_open_error(dir.path(), StatusCode::kBadHeader, {"header is a JSON array; expected an object"});
}

REX_TEST(header_entries_must_follow_the_schema) {
  TempDir dir;
  write_file(dir.file("config.json"), tiny_config(false));
  const std::string file = dir.file("model.safetensors");
  write_file(file, raw_safetensors("{\"x\": {\"shape\": [2], \"data_offsets\": [0, 4]}}", 4));
  expect_open_error(dir.path(), StatusCode::kBadHeader, {file + ": tensor 'x' has no \"dtype\" string"});
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"BF16\", \"shape\": [-2], \"data_offsets\": [0, 4]}}", 4));
  expect_open_error(dir.path(), StatusCode::kBadHeader, {"tensor 'x' has a \"shape\" entry"});
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0]}}", 4));
  expect_open_error(dir.path(), StatusCode::kBadHeader, {"tensor 'x' has no \"data_offsets\""});
}

REX_TEST(bad_offsets_are_corrupt_and_name_the_tensor) {
  TempDir dir;
  write_file(dir.file("config.json"), tiny_config(false));
  const std::string file = dir.file("model.safetensors");
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [4, 0]}}", 4));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {file + ": tensor 'x' has data_offsets [4, 0) with end before begin"});
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {file + ": tensor 'x' has data_offsets [0, 8) past the end of the data (4 bytes"});
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {file + ": tensor 'x' has 4 bytes; shape [2] in F32 needs 8"});
  write_file(file, raw_safetensors("{\"x\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}, "
                                   "\"y\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [2, 6]}}",
                                   8));
  expect_open_error(dir.path(), StatusCode::kCorruptFile, {file + ": tensors 'x' and 'y' overlap"});
}

REX_TEST(duplicate_tensor_after_renaming_is_corrupt) {
  TempDir dir;
  auto tensors = tiny_tensors(false);
  tensors.push_back(make_tensor("model.language_model.norm.weight", {16}));
  write_single(dir, tiny_config(false), tensors);
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {"tensor 'model.norm.weight' appears twice", "'model.language_model.norm.weight'"});
}

// ------------------------------------------------------------------ config and directory errors

REX_TEST(config_of_another_architecture_is_unsupported) {
  TempDir dir;
  write_single(dir, tiny_config(false, true, "LlamaForCausalLM"), tiny_tensors(false));
  expect_open_error(dir.path(), StatusCode::kUnsupportedArchitecture,
                    {dir.file("config.json") + ": architecture 'LlamaForCausalLM' is not supported; expected "
                                               "Qwen2_5_VLForConditionalGeneration"});
}

REX_TEST(missing_config_json_is_not_found) {
  TempDir dir;
  write_file(dir.file("model.safetensors"), safetensors_bytes(tiny_tensors(false)));
  expect_open_error(dir.path(), StatusCode::kNotFound, {dir.file("config.json") + ": file not found"});
}

REX_TEST(missing_directory_is_not_found) {
  expect_open_error("/nonexistent/rex/checkpoint", StatusCode::kNotFound,
                    {"checkpoint directory '/nonexistent/rex/checkpoint' does not exist"});
}

REX_TEST(missing_shard_is_not_found) {
  TempDir dir;
  write_sharded(dir, tiny_config(false), tiny_tensors(false));
  ::unlink(dir.file("model-00002-of-00002.safetensors").c_str());
  expect_open_error(dir.path(), StatusCode::kNotFound,
                    {dir.file("model-00002-of-00002.safetensors") + ": file not found",
                     "listed in model.safetensors.index.json"});
}

REX_TEST(index_must_match_its_shards) {
  TempDir dir;
  write_sharded(dir, tiny_config(false), tiny_tensors(false));
  std::string index = read_file(dir.file("model.safetensors.index.json"));
  const std::string from = "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"";
  size_t at = index.find(from);
  CHECK(at != std::string::npos);
  if (at == std::string::npos) return;
  write_file(dir.file("model.safetensors.index.json"),
             index.replace(at, from.size(), "\"model.norm.weight\": \"model-00001-of-00002.safetensors\""));
  expect_open_error(dir.path(), StatusCode::kCorruptFile,
                    {"model.safetensors.index.json: lists tensor 'model.norm.weight' in "
                     "model-00001-of-00002.safetensors, which does not hold it"});
  write_file(dir.file("model.safetensors.index.json"), "{\"weight_map\": [");
  expect_open_error(dir.path(), StatusCode::kBadHeader, {"model.safetensors.index.json: invalid JSON at byte"});
  write_file(dir.file("model.safetensors.index.json"), "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
  expect_open_error(dir.path(), StatusCode::kBadHeader, {"weight_map entry for tensor 'a'"});
}

REX_TEST(no_weights_or_ambiguous_weights_are_not_found) {
  TempDir dir;
  write_file(dir.file("config.json"), tiny_config(false));
  expect_open_error(dir.path(), StatusCode::kNotFound, {dir.path() + ": no weights found"});
  write_file(dir.file("a.safetensors"), safetensors_bytes({}));
  write_file(dir.file("b.safetensors"), safetensors_bytes({}));
  expect_open_error(dir.path(), StatusCode::kNotFound,
                    {"several *.safetensors files (a.safetensors, b.safetensors)"});
}
