// Validation of one safetensors file (see safetensors.h). Everything the
// header claims is checked against the mapped bytes before a TensorView
// is handed out, so later code may trust data + nbytes.
#include "model/safetensors.h"

#include <algorithm>
#include <cstring>

#include "common/json.h"

namespace rex {

namespace {

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Status corrupt(const std::string& path, const std::string& what) {
  return Status(StatusCode::kCorruptFile, path + ": " + what);
}

Status bad_entry(const std::string& path, const std::string& tensor, const std::string& what) {
  return Status(StatusCode::kBadHeader, path + ": tensor '" + tensor + "' " + what);
}

// "shape" must be a list of non-negative integers whose product fits in int64.
Status read_shape(const std::string& path, const std::string& name, const json::Value* shape_json,
                  std::vector<int64_t>* shape) {
  if (shape_json == nullptr || !shape_json->is_array()) {
    return bad_entry(path, name, "has no \"shape\" list");
  }
  int64_t numel = 1;
  for (const json::Value& d : shape_json->items()) {
    if (!d.is_int() || d.as_int() < 0) {
      return bad_entry(path, name, "has a \"shape\" entry that is not a non-negative integer");
    }
    int64_t dim = d.as_int();
    if (dim != 0 && numel > INT64_MAX / dim) return corrupt(path, "tensor '" + name + "' has a shape too large to address");
    numel *= dim;
    shape->push_back(dim);
  }
  return Status::Ok();
}

Status read_offsets(const std::string& path, const std::string& name, const json::Value* offsets,
                    uint64_t* begin, uint64_t* end) {
  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 ||
      !offsets->items()[0].is_int() || !offsets->items()[1].is_int() ||
      offsets->items()[0].as_int() < 0 || offsets->items()[1].as_int() < 0) {
    return bad_entry(path, name, "has no \"data_offsets\" pair of non-negative integers");
  }
  *begin = static_cast<uint64_t>(offsets->items()[0].as_int());
  *end = static_cast<uint64_t>(offsets->items()[1].as_int());
  return Status::Ok();
}

// One header entry → a TensorView into the data section [data, data + data_size).
Status read_entry(const std::string& path, const std::string& name, const json::Value& entry,
                  const uint8_t* data, uint64_t data_size, TensorView* view) {
  if (!entry.is_object()) return bad_entry(path, name, "is not described by an object");
  const json::Value* dtype_json = entry.get("dtype");
  if (dtype_json == nullptr || !dtype_json->is_string()) return bad_entry(path, name, "has no \"dtype\" string");
  DType dtype;
  if (!parse_dtype(dtype_json->as_string(), &dtype)) {
    return Status(StatusCode::kUnsupportedDtype, path + ": tensor '" + name + "' has dtype " +
                                                     dtype_json->as_string() +
                                                     "; expected BF16, F16 or F32");
  }
  std::vector<int64_t> shape;
  REX_RETURN_IF_ERROR(read_shape(path, name, entry.get("shape"), &shape));
  uint64_t begin = 0, end = 0;
  REX_RETURN_IF_ERROR(read_offsets(path, name, entry.get("data_offsets"), &begin, &end));
  std::string range = "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  if (end < begin) return corrupt(path, "tensor '" + name + "' has data_offsets " + range + " with end before begin");
  if (end > data_size) {
    return corrupt(path, "tensor '" + name + "' has data_offsets " + range + " past the end of the data (" +
                             std::to_string(data_size) + " bytes; the file is truncated or the header is wrong)");
  }
  view->name = name;
  view->file = base_name(path);
  view->dtype = dtype;
  view->shape = std::move(shape);
  uint64_t expected = static_cast<uint64_t>(view->numel());
  if (expected > UINT64_MAX / dtype_size(dtype) || expected * dtype_size(dtype) != end - begin) {
    return corrupt(path, "tensor '" + name + "' has " + std::to_string(end - begin) + " bytes; shape " +
                             view->shape_string() + " in " + dtype_name(dtype) + " needs " +
                             std::to_string(expected * dtype_size(dtype)));
  }
  view->data = data + begin;
  view->nbytes = static_cast<size_t>(end - begin);
  return Status::Ok();
}

// Two tensors sharing bytes means the header is wrong.
Status check_no_overlap(const std::string& path, const std::vector<TensorView>& tensors) {
  std::vector<const TensorView*> order;
  for (const TensorView& t : tensors) {
    if (t.nbytes > 0) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < order.size(); ++i) {
    const uint8_t* prev_end = static_cast<const uint8_t*>(order[i - 1]->data) + order[i - 1]->nbytes;
    if (static_cast<const uint8_t*>(order[i]->data) < prev_end) {
      return corrupt(path, "tensors '" + order[i - 1]->name + "' and '" + order[i]->name + "' overlap");
    }
  }
  return Status::Ok();
}

}  // namespace

bool parse_dtype(const std::string& name, DType* out) {
  if (name == "BF16") { *out = DType::kBF16; return true; }
  if (name == "F16") { *out = DType::kF16; return true; }
  if (name == "F32") { *out = DType::kF32; return true; }
  return false;
}

Result<SafetensorsFile> open_safetensors(const std::string& path) {
  auto mapped = FileMap::open(path);
  if (!mapped.ok()) return mapped.status();
  SafetensorsFile file;
  file.map = std::move(mapped).value();
  const uint8_t* bytes = file.map->data();
  const uint64_t size = file.map->size();

  if (size < 8) {
    return corrupt(path, "truncated: the file is " + std::to_string(size) +
                             " bytes, shorter than the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len > size - 8) {
    return corrupt(path, "truncated: header length " + std::to_string(header_len) +
                             " runs past the end of the file (" + std::to_string(size) + " bytes)");
  }
  std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), static_cast<size_t>(header_len));
  auto header = json::parse(header_text);
  if (!header.ok()) {
    return Status(StatusCode::kBadHeader, path + ": header is not valid JSON: " + header.status().message());
  }
  if (!header->is_object()) {
    return Status(StatusCode::kBadHeader, path + ": header is a JSON " + std::string(header->type_name()) +
                                              "; expected an object of tensors");
  }

  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  file.tensors.reserve(header->size());
  for (const auto& [name, entry] : header->members()) {
    if (name == "__metadata__") continue;
    TensorView view;
    REX_RETURN_IF_ERROR(read_entry(path, name, entry, data, data_size, &view));
    file.tensors.push_back(std::move(view));
  }
  REX_RETURN_IF_ERROR(check_no_overlap(path, file.tensors));
  return file;
}

}  // namespace rex
