// Reading the golden files of test/fixtures/golden (layout: test/golden/FORMAT.md)
// from C++ tests: JSON loading, number lists, float32 side files, the stats
// the golden files record (sum / abs_sum in float64, max_abs), file hashes,
// and where the tiny checkpoint lives. Backend-agnostic and header-only, so a
// CUDA golden test can include it too. Paths are relative to the repository
// root (ctest runs the tests there).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/file_map.h"
#include "common/json.h"
#include "rex/status.h"
#include "sha256.h"

namespace rex_golden {

inline const char* golden_dir() { return "test/fixtures/golden"; }

// REX_TINY_CHECKPOINT, else test/.cache/tiny-rex-omni (repo-relative).
inline std::string tiny_checkpoint_dir() {
  const char* env = std::getenv("REX_TINY_CHECKPOINT");
  if (env != nullptr && *env != '\0') return env;
  return "test/.cache/tiny-rex-omni";
}

inline const char* kMakeCheckpointHint =
    "generate it with `cd <repo> && npx vitest run test/tiny-checkpoint.test.ts` "
    "(writes test/.cache/tiny-rex-omni), or point REX_TINY_CHECKPOINT at one";

inline rex::Result<rex::json::Value> load_json(const std::string& path) {
  auto text = rex::read_file_to_string(path);
  if (!text.ok()) return text.status();
  auto v = rex::json::parse(text.value());
  if (!v.ok()) return rex::Status(v.status().code(), path + ": " + v.status().message());
  return v;
}

// A member path like {"logits_last", "top"}; nullptr when any step is absent.
inline const rex::json::Value* at(const rex::json::Value& root, std::initializer_list<const char*> keys) {
  const rex::json::Value* v = &root;
  for (const char* k : keys) {
    v = v->get(k);
    if (v == nullptr) return nullptr;
  }
  return v;
}

inline std::vector<double> numbers(const rex::json::Value* v) {
  std::vector<double> out;
  if (v == nullptr || !v->is_array()) return out;
  out.reserve(v->size());
  for (const auto& x : v->items()) out.push_back(x.as_double());
  return out;
}

inline std::vector<int64_t> ints(const rex::json::Value* v) {
  std::vector<int64_t> out;
  if (v == nullptr || !v->is_array()) return out;
  out.reserve(v->size());
  for (const auto& x : v->items()) out.push_back(x.as_int());
  return out;
}

inline std::string str(const rex::json::Value* v) { return v != nullptr && v->is_string() ? v->as_string() : ""; }
inline double num(const rex::json::Value* v, double fallback = NAN) {
  return v != nullptr && v->is_number() ? v->as_double() : fallback;
}

// Stats as the golden files define them: float64 accumulation over float32 values.
struct Stats {
  double sum = 0, abs_sum = 0, max_abs = 0;
};
inline Stats stats(const float* x, size_t n) {
  Stats s;
  for (size_t i = 0; i < n; ++i) {
    s.sum += double(x[i]);
    s.abs_sum += std::fabs(double(x[i]));
    s.max_abs = std::max(s.max_abs, std::fabs(double(x[i])));
  }
  return s;
}

inline double max_abs_diff(const float* a, const double* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

inline double max_abs_value(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// A little-endian float32 file of exactly `count` values.
inline rex::Result<std::vector<float>> read_f32_file(const std::string& path, size_t count) {
  auto bytes = rex::read_file_to_string(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != count * 4)
    return rex::Status(rex::StatusCode::kCorruptFile, path + ": expected " + std::to_string(count * 4) +
                       " bytes (" + std::to_string(count) + " floats) but found " + std::to_string(bytes->size()));
  std::vector<float> out(count);
  for (size_t i = 0; i < count; ++i) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes->data()) + 4 * i;
    const uint32_t u = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    std::memcpy(&out[i], &u, 4);
  }
  return out;
}

// sha256 of float32 values written little-endian (FORMAT.md's sha256_f32le).
inline std::string sha256_f32le(const std::vector<float>& v) {
  rex_test::Sha256 h;
  uint8_t buf[4096];
  size_t used = 0;
  for (float f : v) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    buf[used++] = uint8_t(u);
    buf[used++] = uint8_t(u >> 8);
    buf[used++] = uint8_t(u >> 16);
    buf[used++] = uint8_t(u >> 24);
    if (used == sizeof(buf)) {
      h.update(buf, used);
      used = 0;
    }
  }
  h.update(buf, used);
  return h.hex_digest();
}

// sha256 of a file's bytes; empty string when it cannot be read.
inline std::string file_sha256(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  rex_test::Sha256 h;
  std::vector<uint8_t> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  return bad ? "" : h.hex_digest();
}

// "synthetic:…", "shared:…", "fixture:…" -> the part before the colon.
inline std::string image_source(const std::string& image) {
  const size_t colon = image.find(':');
  return colon == std::string::npos ? image : image.substr(0, colon);
}

// Cases a C++ test cannot reproduce, grouped by reason, printed at the end.
class SkipLog {
 public:
  void add(const std::string& reason, const std::string& name) { by_reason_[reason].push_back(name); }
  int count() const {
    int n = 0;
    for (const auto& r : by_reason_) n += int(r.second.size());
    return n;
  }
  void print(const char* what, int checked) const {
    std::printf("  %s: %d checked, %d skipped\n", what, checked, count());
    for (const auto& r : by_reason_) {
      std::printf("    skipped %zu (%s):", r.second.size(), r.first.c_str());
      for (const auto& n : r.second) std::printf(" %s", n.c_str());
      std::printf("\n");
    }
  }

 private:
  std::map<std::string, std::vector<std::string>> by_reason_;
};

inline std::string skip_reason(const std::string& source) {
  if (source == "shared")
    return "shared: JPEG/PNG photo; needs an image decoder, tested on the TypeScript side through sharp";
  if (source == "fixture")
    return "fixture: JPEG/PNG file (EXIF/alpha); needs an image decoder, tested on the TypeScript side through sharp";
  return "unknown image source '" + source + "'";
}

}  // namespace rex_golden
