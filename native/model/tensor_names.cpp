// Name normalisation from the nested layout to the canonical 4.x names (see tensor_names.h).
#include "model/tensor_names.h"

namespace rex {

namespace {

constexpr const char kNestedVisual[] = "model.visual.";
constexpr const char kNestedText[] = "model.language_model.";

bool starts_with(const std::string& s, const char* prefix, size_t n) {
  return s.size() >= n && s.compare(0, n, prefix) == 0;
}

}  // namespace

bool is_nested_tensor_name(const std::string& stored_name) {
  return starts_with(stored_name, kNestedVisual, sizeof kNestedVisual - 1) ||
         starts_with(stored_name, kNestedText, sizeof kNestedText - 1);
}

std::string canonical_tensor_name(const std::string& stored_name) {
  if (starts_with(stored_name, kNestedVisual, sizeof kNestedVisual - 1)) {
    return "visual." + stored_name.substr(sizeof kNestedVisual - 1);
  }
  if (starts_with(stored_name, kNestedText, sizeof kNestedText - 1)) {
    return "model." + stored_name.substr(sizeof kNestedText - 1);
  }
  return stored_name;
}

}  // namespace rex
