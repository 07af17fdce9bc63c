// Checkpoint::open: finds config.json and the weight files in a directory,
// maps every file once, normalises tensor names to the 4.x layout and keeps
// the views in a by-name table. The mappings live until the Checkpoint dies.
#include "model/checkpoint.h"

#include <dirent.h>

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "common/file_map.h"
#include "common/json.h"
#include "model/safetensors.h"
#include "model/tensor_names.h"

namespace rex {

struct Checkpoint::Impl {
  std::string dir;
  ModelConfig config;
  std::string tensor_layout = "flat";
  std::vector<SafetensorsFile> files;
  std::vector<std::string> file_names;                  // base names, as in messages
  std::unordered_map<std::string, TensorView> tensors;  // canonical name → view (node-stable)
  std::unordered_map<std::string, std::string> stored_names;  // canonical → as spelled in the file
  size_t total_bytes = 0;
};

namespace {

constexpr const char kConfigFile[] = "config.json";
constexpr const char kIndexFile[] = "model.safetensors.index.json";
constexpr const char kSingleFile[] = "model.safetensors";

std::string strip_trailing_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

// Every *.safetensors file directly in `dir`, sorted.
Result<std::vector<std::string>> list_safetensors(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status(StatusCode::kIoError, dir + ": cannot list the directory");
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (ends_with(name, ".safetensors") && is_regular_file(dir + "/" + name)) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// The index's weight_map: tensor name → shard file name, in file order.
Status read_index(const std::string& path, std::vector<std::pair<std::string, std::string>>* weight_map) {
  auto text = read_file_to_string(path);
  if (!text.ok()) return text.status();
  auto root = json::parse(text.value());
  if (!root.ok()) return Status(StatusCode::kBadHeader, path + ": " + root.status().message());
  const json::Value* map = root->get("weight_map");
  if (map == nullptr || !map->is_object()) {
    return Status(StatusCode::kBadHeader, path + ": required object 'weight_map' is missing");
  }
  for (const auto& [tensor, shard] : map->members()) {
    const std::string& file = shard.as_string();
    if (!shard.is_string() || file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      return Status(StatusCode::kBadHeader, path + ": weight_map entry for tensor '" + tensor +
                                                "' is not a file name in the checkpoint directory");
    }
    weight_map->emplace_back(tensor, file);
  }
  if (weight_map->empty()) return Status(StatusCode::kBadHeader, path + ": 'weight_map' lists no tensors");
  return Status::Ok();
}

// Which files to map: the index's shards, else model.safetensors, else the one *.safetensors.
Status choose_weight_files(const std::string& dir, std::vector<std::string>* files,
                           std::vector<std::pair<std::string, std::string>>* weight_map) {
  const std::string index_path = dir + "/" + kIndexFile;
  if (is_regular_file(index_path)) {
    REX_RETURN_IF_ERROR(read_index(index_path, weight_map));
    std::unordered_set<std::string> seen;
    for (const auto& entry : *weight_map) {
      if (seen.insert(entry.second).second) files->push_back(entry.second);
    }
    return Status::Ok();
  }
  if (is_regular_file(dir + "/" + kSingleFile)) {
    files->push_back(kSingleFile);
    return Status::Ok();
  }
  auto found = list_safetensors(dir);
  if (!found.ok()) return found.status();
  if (found->size() == 1) {
    files->push_back(found->front());
    return Status::Ok();
  }
  if (found->empty()) {
    return Status(StatusCode::kNotFound, dir + ": no weights found; expected " + kSingleFile + ", " + kIndexFile +
                                             " or one *.safetensors file");
  }
  return Status(StatusCode::kNotFound, dir + ": several *.safetensors files (" + join(found.value(), ", ") +
                                           ") but no " + kIndexFile + " to say which belong to the model");
}

// Adds one file's tensors under their canonical names.
Status add_tensors(Checkpoint::Impl& impl, const SafetensorsFile& file) {
  for (const TensorView& stored : file.tensors) {
    std::string canonical = canonical_tensor_name(stored.name);
    if (is_nested_tensor_name(stored.name)) impl.tensor_layout = "nested";
    auto existing = impl.tensors.find(canonical);
    if (existing != impl.tensors.end()) {
      return Status(StatusCode::kCorruptFile,
                    impl.dir + ": tensor '" + canonical + "' appears twice: as '" + impl.stored_names[canonical] +
                        "' in " + existing->second.file + " and as '" + stored.name + "' in " + stored.file);
    }
    TensorView view = stored;
    view.name = canonical;
    impl.total_bytes += view.nbytes;
    impl.stored_names.emplace(canonical, stored.name);
    impl.tensors.emplace(std::move(canonical), std::move(view));
  }
  return Status::Ok();
}

// Each tensor the index lists must be in the shard it names.
Status check_index(const Checkpoint::Impl& impl, const std::vector<std::pair<std::string, std::string>>& weight_map) {
  for (const auto& [stored_name, shard] : weight_map) {
    auto it = impl.tensors.find(canonical_tensor_name(stored_name));
    if (it == impl.tensors.end() || it->second.file != shard) {
      return Status(StatusCode::kCorruptFile, impl.dir + "/" + kIndexFile + ": lists tensor '" + stored_name +
                                                  "' in " + shard + ", which does not hold it");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Checkpoint>> Checkpoint::open(const std::string& dir_arg) {
  auto impl = std::make_unique<Impl>();
  impl->dir = strip_trailing_slashes(dir_arg);
  const std::string& dir = impl->dir;
  if (dir.empty() || !is_directory(dir)) {
    return Status(StatusCode::kNotFound, "checkpoint directory '" + dir_arg + "' does not exist");
  }

  const std::string config_path = dir + "/" + kConfigFile;
  auto config_text = read_file_to_string(config_path);
  if (!config_text.ok()) return config_text.status();
  auto config = parse_model_config(config_text.value(), config_path);
  if (!config.ok()) return config.status();
  impl->config = std::move(config).value();

  std::vector<std::pair<std::string, std::string>> weight_map;
  REX_RETURN_IF_ERROR(choose_weight_files(dir, &impl->file_names, &weight_map));
  for (const std::string& name : impl->file_names) {
    auto file = open_safetensors(dir + "/" + name);
    if (!file.ok()) {
      if (!weight_map.empty() && file.status().code() == StatusCode::kNotFound) {
        return Status(StatusCode::kNotFound, file.status().message() + " (a shard listed in " + kIndexFile + ")");
      }
      return file.status();
    }
    impl->files.push_back(std::move(file).value());
    REX_RETURN_IF_ERROR(add_tensors(*impl, impl->files.back()));
  }
  REX_RETURN_IF_ERROR(check_index(*impl, weight_map));
  return std::unique_ptr<Checkpoint>(new Checkpoint(std::move(impl)));
}

Checkpoint::Checkpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Checkpoint::~Checkpoint() = default;

const std::string& Checkpoint::dir() const { return impl_->dir; }
const ModelConfig& Checkpoint::config() const { return impl_->config; }
const std::string& Checkpoint::tensor_layout() const { return impl_->tensor_layout; }
size_t Checkpoint::total_bytes() const { return impl_->total_bytes; }
const std::vector<std::string>& Checkpoint::weight_files() const { return impl_->file_names; }

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(impl_->tensors.size());
  for (const auto& entry : impl_->tensors) names.push_back(entry.first);
  std::sort(names.begin(), names.end());
  return names;
}

const TensorView* Checkpoint::find(const std::string& canonical_name) const {
  auto it = impl_->tensors.find(canonical_name);
  return it == impl_->tensors.end() ? nullptr : &it->second;
}

Result<const TensorView*> Checkpoint::require(const std::string& canonical_name,
                                              const std::vector<int64_t>& expected_shape) const {
  const TensorView* t = find(canonical_name);
  if (t == nullptr) {
    return Status(StatusCode::kMissingTensor, "tensor '" + canonical_name + "' is missing from " + impl_->dir +
                                                  " (looked in " + join(impl_->file_names, ", ") + ")");
  }
  if (t->shape != expected_shape) {
    TensorView expected;
    expected.shape = expected_shape;
    return Status(StatusCode::kShapeMismatch, "tensor '" + canonical_name + "' in " + t->file + " has shape " +
                                                  t->shape_string() + "; expected " + expected.shape_string());
  }
  return t;
}

}  // namespace rex
