// One safetensors file, memory-mapped and validated: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}} (plus an
// optional "__metadata__"), then the raw tensor bytes. Tensor names are kept
// as the file spells them; checkpoint.cpp normalises them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/file_map.h"
#include "model/tensor.h"
#include "rex/status.h"

namespace rex {

struct SafetensorsFile {
  std::unique_ptr<FileMap> map;      // owns the mapping the views point into
  std::vector<TensorView> tensors;   // header order; TensorView::file is the base name
};

// Maps and validates `path`. Every message starts with the path, and names
// the tensor where one is at fault. Errors: kNotFound, kIoError;
// kCorruptFile (truncated, header length past the end, offsets out of range,
// end < begin, overlapping tensors, byte count != numel * dtype size);
// kBadHeader (header not JSON, or not the safetensors schema);
// kUnsupportedDtype (anything but BF16, F16, F32).
Result<SafetensorsFile> open_safetensors(const std::string& path);

// Parses a dtype spelled as in safetensors ("BF16", "F16", "F32").
bool parse_dtype(const std::string& name, DType* out);

}  // namespace rex
