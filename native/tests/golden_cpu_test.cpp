// The CPU backend against transformers: every golden case of
// test/fixtures/golden (test/golden/FORMAT.md) that C++ can reproduce without
// an image decoder, i.e. every "synthetic:" image.
//  - preprocess cases: source / resized RGB sha256, pixel_values sha256_f32le,
//    sums, stored rows, grid_thw — all exact;
//  - model cases (tiny checkpoint): M-RoPE positions, window permutation,
//    vision output (max abs diff over the whole .vision.f32 <= 1e-3 x max|v|),
//    last-position logits (top-50 ids and values, the strided sample, <= 1e-3 x
//    max|logit|), every named intermediate of the backend tap (sum / abs_sum /
//    head, and all values for text.*), and the 32 greedy tokens with
//    repetition penalty 1.05 through Engine::generate_blocking — identical,
//    also when the first k of them are moved into the prompt (the penalty
//    must cover prompt ids);
//  - smart_resize of every case's source size, photos included;
//  - the decoder alone fed the golden .vision.f32 (photo cases too): logits,
//    text.* intermediates, greedy tokens and per-step penalised scores, at a
//    tighter tolerance.
// REX_GOLDEN_VERBOSE=1 prints every intermediate's difference (to localise one).
// "shared:" / "fixture:" images are JPEG/PNG files: the TypeScript side tests
// them through sharp. They are counted and listed as skipped. A missing or
// different tiny checkpoint fails the test with what to do about it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "cpu/vision.h"
#include "engine/backend.h"
#include "engine/mrope_positions.h"
#include "engine/reference_forward.h"
#include "golden_files.h"
#include "model/checkpoint.h"
#include "model/weights.h"
#include "preprocess/preprocess.h"
#include "preprocess/synthetic_image.h"
#include "rex/engine.h"
#include "sampling/rng.h"
#include "sampling/sampling.h"
#include "sha256.h"
#include "test_harness.h"

using rex::json::Value;
using namespace rex_golden;

namespace {

constexpr double kRelTol = 1e-3;  // of max|value|, for every float comparison against transformers
// The decoder alone, fed transformers' own vision output, stays within ~6e-6 of
// max|value| (fp32 rounding on both sides); 5e-5 still catches slips that 1e-3
// lets through (e.g. rms_norm_eps 1e-5 instead of 1e-6 gives 6e-5 .. 2e-4).
constexpr double kTextPathRelTol = 5e-5;

// REX_GOLDEN_VERBOSE=1 prints every intermediate's measured difference.
bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("REX_GOLDEN_VERBOSE");
    return e != nullptr && *e != '\0' && std::string(e) != "0";
  }();
  return v;
}

// ------------------------------------------------------------------ shared state

struct Golden {
  bool manifest_ok = false;
  Value manifest;
  std::string checkpoint;
  std::string checkpoint_error;  // empty when the checkpoint is there and matches the manifest
};

const Golden& golden() {
  static Golden g = [] {
    Golden g;
    const std::string path = std::string(golden_dir()) + "/manifest.json";
    auto m = load_json(path);
    if (!m.ok()) {
      rex_test::fail(__FILE__, __LINE__, "cannot read the golden manifest: " + m.status().message());
      g.checkpoint_error = "no golden manifest";
      return g;
    }
    g.manifest = std::move(m).value();
    g.manifest_ok = true;
    g.checkpoint = tiny_checkpoint_dir();
    if (!rex::is_regular_file(g.checkpoint + "/config.json") ||
        !rex::is_regular_file(g.checkpoint + "/model.safetensors")) {
      g.checkpoint_error = "the tiny checkpoint is missing (no config.json / model.safetensors in '" +
                           g.checkpoint + "'): " + kMakeCheckpointHint;
      return g;
    }
    for (const char* file : {"model.safetensors", "config.json"}) {
      const std::string want = str(at(g.manifest, {"checkpoint", file}));
      const std::string got = file_sha256(g.checkpoint + "/" + file);
      if (want.empty() || got != want) {
        g.checkpoint_error = "the tiny checkpoint's " + std::string(file) + " (" + g.checkpoint + ", sha256 " +
                             (got.empty() ? "unreadable" : got) + ") is not the one the golden files were made from (" +
                             (want.empty() ? "manifest has no hash" : want) +
                             "): regenerate the golden files (test/golden/README.md) for this checkpoint, "
                             "or regenerate the checkpoint the golden files expect";
        return g;
      }
    }
    return g;
  }();
  return g;
}

std::vector<std::string> case_names(const char* list) {
  std::vector<std::string> out;
  const Value* v = golden().manifest.get(list);
  if (v != nullptr && v->is_array())
    for (const auto& x : v->items()) out.push_back(x.as_string());
  return out;
}

// Every case of a kind ("preprocess" or "model"), loaded. An unreadable case
// fails the test and is left out.
std::vector<std::pair<std::string, Value>> golden_cases(const std::string& kind) {
  std::vector<std::pair<std::string, Value>> out;
  for (const std::string& name : case_names((kind + "_cases").c_str())) {
    auto c = load_json(std::string(golden_dir()) + "/" + kind + "/" + name + ".json");
    if (!c.ok()) {
      rex_test::fail(__FILE__, __LINE__, c.status().message());
      continue;
    }
    out.emplace_back(name, std::move(c).value());
  }
  return out;
}

// ------------------------------------------------------------------ preprocess

struct Image {
  std::vector<uint8_t> rgb;
  int width = 0, height = 0;
  rex::PreprocessOptions options;
};

// The synthetic source image of a case, with its min/max pixels.
bool make_image(const Value& c, const std::string& name, Image* out) {
  auto spec = rex::parse_synthetic_name(str(c.get("image")));
  CHECK(spec.ok());
  if (!spec.ok()) return false;
  auto rgb = rex::make_synthetic_rgb(spec->width, spec->height, spec->seed);
  CHECK(rgb.ok());
  if (!rgb.ok()) return false;
  out->rgb = std::move(rgb).value();
  out->width = spec->width;
  out->height = spec->height;
  out->options.min_pixels = int(num(c.get("min_pixels")));
  out->options.max_pixels = int(num(c.get("max_pixels")));
  const auto size = ints(c.get("source_size"));
  CHECK(size.size() == 2 && size[0] == spec->width && size[1] == spec->height);
  const std::string src_sha = rex_test::sha256_hex(out->rgb.data(), out->rgb.size());
  if (src_sha != str(c.get("source_rgb_sha256")))
    rex_test::fail(__FILE__, __LINE__, name + ": synthetic source image differs from the golden one");
  return true;
}

// Checks everything FORMAT.md records about the preprocessing of one case; exact.
void check_preprocess(const Value& c, const std::string& name, const rex::PreprocessedImage& p) {
  auto fail = [&](const std::string& what) { rex_test::fail(__FILE__, __LINE__, name + ": " + what); };
  const auto resized = ints(c.get("resized_size"));
  const auto grid = ints(c.get("grid_thw"));
  if (resized.size() != 2 || resized[0] != p.resized_width || resized[1] != p.resized_height)
    fail("resized size " + std::to_string(p.resized_width) + "x" + std::to_string(p.resized_height) +
         " differs from the golden one");
  if (grid.size() != 3 || grid[0] != p.grid_t || grid[1] != p.grid_h || grid[2] != p.grid_w)
    fail("grid_thw (" + std::to_string(p.grid_t) + ", " + std::to_string(p.grid_h) + ", " + std::to_string(p.grid_w) +
         ") differs from the golden one");
  if (rex_test::sha256_hex(p.resized_rgb.data(), p.resized_rgb.size()) != str(c.get("resized_rgb_sha256")))
    fail("resized RGB sha256 differs (Pillow BICUBIC mismatch)");
  const auto idx = ints(at(c, {"resized_rgb_sample", "indices"}));
  const auto val = ints(at(c, {"resized_rgb_sample", "values"}));
  CHECK_EQ(idx.size(), val.size());
  for (size_t i = 0; i < idx.size() && i < val.size(); ++i)
    if (idx[i] < 0 || size_t(idx[i]) >= p.resized_rgb.size() || p.resized_rgb[size_t(idx[i])] != val[i]) {
      fail("resized RGB sample at byte " + std::to_string(idx[i]) + " differs");
      break;
    }

  const Value* pv = c.get("pixel_values");
  CHECK(pv != nullptr);
  if (pv == nullptr) return;
  const auto shape = ints(pv->get("shape"));
  const size_t width = 1176;
  if (shape.size() != 2 || size_t(shape[0]) * size_t(shape[1]) != p.pixel_values.size() || size_t(shape[1]) != width)
    fail("pixel_values shape differs: " + std::to_string(p.pixel_values.size()) + " values");
  if (sha256_f32le(p.pixel_values) != str(pv->get("sha256_f32le"))) fail("pixel_values sha256_f32le differs");
  const Stats s = stats(p.pixel_values.data(), p.pixel_values.size());
  const double abs_sum = num(pv->get("abs_sum"));
  CHECK_NEAR(s.sum, num(pv->get("sum")), 1e-9 * abs_sum);  // only float64 summation order may differ
  CHECK_NEAR(s.abs_sum, abs_sum, 1e-9 * abs_sum);
  CHECK_EQ(s.max_abs, num(pv->get("max_abs")));
  const Value* rows = pv->get("rows");
  if (rows != nullptr && rows->is_object()) {
    for (const auto& m : rows->members()) {
      const size_t r = size_t(std::stoul(m.first));
      const auto want = numbers(&m.second);
      if ((r + 1) * width > p.pixel_values.size() || want.size() != width ||
          max_abs_diff(&p.pixel_values[r * width], want.data(), width) != 0.0)
        fail("pixel_values row " + m.first + " differs");
    }
  }
}

// ------------------------------------------------------------------ model

// Named tensors from the backend tap: the first emission of each name.
struct TapStore {
  struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
  };
  std::map<std::string, Tensor> tensors;
  void clear() { tensors.clear(); }
  void add(const std::string& name, const float* d, const std::vector<int64_t>& shape) {
    if (tensors.count(name)) return;
    int64_t n = 1;
    for (int64_t x : shape) n *= x;
    tensors[name] = {shape, std::vector<float>(d, d + n)};
  }
};

struct ModelBundle {
  std::unique_ptr<rex::Checkpoint> checkpoint;
  rex::ModelWeights weights;
  std::unique_ptr<rex::Backend> backend;
  std::unique_ptr<rex::Engine> engine;
  std::shared_ptr<TapStore> taps = std::make_shared<TapStore>();
};

bool open_model(const std::string& dir, ModelBundle* m) {
  auto ckpt = rex::Checkpoint::open(dir);
  if (!ckpt.ok()) {
    rex_test::fail(__FILE__, __LINE__, "Checkpoint::open(" + dir + "): " + ckpt.status().message());
    return false;
  }
  m->checkpoint = std::move(ckpt).value();
  auto w = rex::bind_model_weights(*m->checkpoint);
  if (!w.ok()) {
    rex_test::fail(__FILE__, __LINE__, "bind_model_weights: " + w.status().message());
    return false;
  }
  m->weights = std::move(w).value();
  rex::BackendOptions bo;
  bo.name = "cpu";
  auto be = rex::make_backend(bo);
  if (!be.ok()) {
    rex_test::fail(__FILE__, __LINE__, "make_backend: " + be.status().message());
    return false;
  }
  m->backend = std::move(be).value();
  rex::Status st = m->backend->prepare(m->checkpoint->config(), m->weights);
  if (!st.ok()) {
    rex_test::fail(__FILE__, __LINE__, "prepare: " + st.message());
    return false;
  }
  std::shared_ptr<TapStore> taps = m->taps;
  m->backend->set_tap([taps](const std::string& name, const float* d, const std::vector<int64_t>& shape) {
    taps->add(name, d, shape);
  });
  rex::EngineOptions eo;
  eo.backend = "cpu";
  auto engine = rex::Engine::create(dir, eo);
  if (!engine.ok()) {
    rex_test::fail(__FILE__, __LINE__, "Engine::create(" + dir + "): " + engine.status().message());
    return false;
  }
  m->engine = std::move(engine).value();
  return true;
}

// One model (reference backend + engine) for every test of this file; null
// (after recording a failure) when it cannot be opened.
ModelBundle* shared_model() {
  static std::unique_ptr<ModelBundle> m = [] {
    auto b = std::make_unique<ModelBundle>();
    if (!open_model(golden().checkpoint, b.get())) b.reset();
    return b;
  }();
  return m.get();
}

// Measured differences of one model case, as fractions of the golden max|value|.
struct CaseReport {
  std::string name;
  double vision = NAN, vision_scale = NAN;
  double logits = NAN, logits_scale = NAN;
  double worst_intermediate = 0;  // relative
  std::string worst_intermediate_name;
  int greedy_match = 0, greedy_total = 0;
};

// One named intermediate against its golden entry; returns the worst relative diff.
double check_intermediate(const std::string& cname, const std::string& name, const Value& g, const TapStore& taps,
                          int prompt_len, double rel_tol = kRelTol) {
  auto fail = [&](const std::string& what) { rex_test::fail(__FILE__, __LINE__, cname + ": " + name + ": " + what); };
  // text.embed.first_image_token: one row of text.embed.
  const bool first_image = name == "text.embed.first_image_token";
  const std::string tap_name = first_image ? "text.embed" : name;
  auto it = taps.tensors.find(tap_name);
  if (it == taps.tensors.end()) {
    fail("the backend tap did not emit '" + tap_name + "'");
    return INFINITY;
  }
  const TapStore::Tensor& t = it->second;
  const int64_t width = t.shape.empty() ? 0 : t.shape.back();
  const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 0;
  if (width <= 0 || rows <= 0) {
    fail("unexpected tap shape");
    return INFINITY;
  }

  if (name.rfind("text.", 0) == 0) {
    // Golden text entries hold one position (the last prompt position, or the first image row).
    const int64_t pos = int64_t(num(g.get("position"), -1));
    if (!first_image && (pos != prompt_len - 1 || rows != prompt_len))
      fail("golden position " + std::to_string(pos) + " / tap rows " + std::to_string(rows) +
           " do not match the prompt length " + std::to_string(prompt_len));
    if (pos < 0 || pos >= rows) {
      fail("golden position outside the tap's rows");
      return INFINITY;
    }
    const float* row = &t.data[size_t(pos) * size_t(width)];
    std::vector<double> want = numbers(g.get("values"));
    if (want.empty()) want = numbers(g.get("head"));
    if (want.empty() || want.size() > size_t(width)) {
      fail("golden entry has no usable values");
      return INFINITY;
    }
    // Scale: max|values| (all values when stored, else the head).
    const double scale = std::max(max_abs_value(want), 1e-30);
    const double d = max_abs_diff(row, want.data(), want.size()) / scale;
    if (!(d <= rel_tol)) fail("max abs diff " + std::to_string(d) + " x max|v| over " + std::to_string(want.size()) + " values");
    if (!first_image && want.size() == size_t(width)) {
      const Stats s = stats(row, size_t(width));
      const double tol = rel_tol * scale * std::sqrt(double(width));
      if (!(std::fabs(s.sum - num(g.get("sum"))) <= tol)) fail("sum " + std::to_string(s.sum) + " vs " + std::to_string(num(g.get("sum"))));
      if (!(std::fabs(s.abs_sum - num(g.get("abs_sum"))) <= tol)) fail("abs_sum differs");
    }
    return d;
  }

  // Vision entries: the whole tensor, in the documented row order.
  const auto shape = ints(g.get("shape"));
  if (shape != std::vector<int64_t>(t.shape.begin(), t.shape.end())) {
    fail("shape differs from the golden one");
    return INFINITY;
  }
  const Stats s = stats(t.data.data(), t.data.size());
  const double scale = std::max(num(g.get("max_abs")), 1e-30);
  const auto head = numbers(g.get("head"));
  double d = std::fabs(s.max_abs - scale) / scale;
  if (head.size() <= t.data.size()) d = std::max(d, max_abs_diff(t.data.data(), head.data(), head.size()) / scale);
  if (!(d <= rel_tol)) fail("head / max_abs differ by " + std::to_string(d) + " x max|v|");
  // Sums: per-element errors of up to rel_tol * scale, which largely cancel.
  const double tol = rel_tol * scale * std::sqrt(double(t.data.size()));
  const double dsum = std::fabs(s.sum - num(g.get("sum"))), dabs = std::fabs(s.abs_sum - num(g.get("abs_sum")));
  if (!(dsum <= tol)) fail("sum " + std::to_string(s.sum) + " vs " + std::to_string(num(g.get("sum"))));
  if (!(dabs <= tol)) fail("abs_sum " + std::to_string(s.abs_sum) + " vs " + std::to_string(num(g.get("abs_sum"))));
  return std::max(d, std::max(dsum, dabs) / (scale * std::sqrt(double(t.data.size()))));
}

// The fields a model case must carry (FORMAT.md); records a failure per missing one.
bool has_model_fields(const Value& c, const std::string& name) {
  bool ok = true;
  const std::vector<std::vector<const char*>> fields = {
      {"input_ids"}, {"grid_thw"}, {"image_token_count"}, {"position_ids"},
      {"vision_output", "shape"}, {"vision_output", "max_abs"}, {"vision_output", "rows"},
      {"vision_window", "index"}, {"logits_last", "top"}, {"logits_last", "sample"},
      {"logits_last", "sample_stride"}, {"logits_last", "max_abs"}, {"intermediates"},
      {"greedy", "tokens"}, {"greedy", "gaps"}, {"greedy", "top1_scores"}};
  for (const auto& path : fields) {
    const Value* v = &c;
    std::string joined;
    for (const char* k : path) {
      joined += (joined.empty() ? "" : ".") + std::string(k);
      v = v != nullptr ? v->get(k) : nullptr;
    }
    if (v == nullptr) {
      rex_test::fail(__FILE__, __LINE__, name + ": golden file lacks '" + joined + "'");
      ok = false;
    }
  }
  return ok;
}

void check_model_case(ModelBundle& m, const Value& c, const std::string& name, CaseReport* rep) {
  auto fail = [&](const std::string& what) { rex_test::fail(__FILE__, __LINE__, name + ": " + what); };
  if (!has_model_fields(c, name)) return;
  const rex::ModelConfig& config = m.checkpoint->config();
  Image img;
  if (!make_image(c, name, &img)) return;
  auto pre = rex::preprocess_image(img.rgb.data(), img.width, img.height, img.options);
  CHECK(pre.ok());
  if (!pre.ok()) return;
  check_preprocess(c, name, pre.value());

  std::vector<int32_t> input_ids;
  for (int64_t id : ints(c.get("input_ids"))) input_ids.push_back(int32_t(id));
  const int n = int(input_ids.size());
  CHECK(n > 0);
  const int merge = config.vision.spatial_merge_size;
  const int mh = pre->grid_h / merge, mw = pre->grid_w / merge;
  CHECK_EQ(int64_t(mh) * mw, int64_t(num(c.get("image_token_count"))));

  // Window permutation (CPU planner) against transformers' get_window_index.
  {
    const int window = config.vision.window_size / merge / config.vision.patch_size;
    const rex::cpu::WindowPlan plan = rex::cpu::plan_windows(mh, mw, window, merge * merge);
    const auto index = ints(at(c, {"vision_window", "index"}));
    const auto valid = ints(at(c, {"vision_window", "valid_tokens_per_window"}));
    std::vector<int64_t> got_index(plan.window_index.begin(), plan.window_index.end()), got_valid;
    for (size_t i = 1; i < plan.cu_seqlens.size(); ++i)
      got_valid.push_back((plan.cu_seqlens[i] - plan.cu_seqlens[i - 1]) / (merge * merge));
    if (got_index != index) fail("window permutation differs from vision_window.index");
    if (got_valid != valid) fail("window lengths differ from vision_window.valid_tokens_per_window");
  }

  // One vision pass + one prefill, tap on.
  m.taps->clear();
  auto ref = rex::run_reference_forward(*m.backend, config, &pre.value(), input_ids);
  if (!ref.ok()) {
    fail("run_reference_forward: " + ref.status().message());
    return;
  }

  // M-RoPE positions.
  {
    const rex::MropePositions& p = ref->positions;
    const Value* gp = c.get("position_ids");
    CHECK(gp != nullptr);
    if (gp != nullptr) {
      const Value* first8 = gp->get("first8");
      const Value* last8 = gp->get("last8");
      bool ok = first8 && last8 && first8->size() == 3 && last8->size() == 3 && n >= 8;
      for (int a = 0; ok && a < 3; ++a) {
        const auto f = ints(&first8->items()[size_t(a)]);
        const auto l = ints(&last8->items()[size_t(a)]);
        for (size_t i = 0; i < f.size() && ok; ++i) ok = p.ids[size_t(a) * n + i] == f[i];
        for (size_t i = 0; i < l.size() && ok; ++i) ok = p.ids[size_t(a) * n + (n - l.size()) + i] == l[i];
      }
      if (!ok) fail("M-RoPE position ids differ from transformers' get_rope_index (first8 / last8)");
      const int32_t mx = *std::max_element(p.ids.begin(), p.ids.end());
      CHECK_EQ(int64_t(mx), int64_t(num(gp->get("max"))));
      // rope_delta = (max + 1) - sequence length: the first decode position is n + rope_delta.
      CHECK_EQ(int64_t(p.next_position), int64_t(n) + int64_t(num(gp->get("rope_delta"))));
      CHECK(gp->get("matches_expected") && gp->get("matches_expected")->as_bool());
    }
  }

  // Vision output: merged tokens in raster order.
  {
    const Value* vo = c.get("vision_output");
    const auto shape = ints(vo ? vo->get("shape") : nullptr);
    const size_t hidden = size_t(config.text.hidden_size);
    if (shape.size() != 2 || shape[0] != ref->vision_tokens || size_t(shape[1]) != hidden ||
        ref->vision.size() != size_t(ref->vision_tokens) * hidden) {
      fail("vision output shape differs");
    } else {
      const double scale = num(vo->get("max_abs"));
      double d = 0;
      const std::string file = str(vo->get("file"));
      if (!file.empty()) {
        auto want = read_f32_file(std::string(golden_dir()) + "/model/" + file, ref->vision.size());
        CHECK(want.ok());
        if (want.ok())
          for (size_t i = 0; i < ref->vision.size(); ++i)
            d = std::max(d, std::fabs(double(ref->vision[i]) - double(want.value()[i])));
      } else {
        for (const auto& r : vo->get("rows")->members()) {
          const size_t row = size_t(std::stoul(r.first));
          const auto want = numbers(&r.second);
          CHECK(row < size_t(ref->vision_tokens) && want.size() == hidden);
          if (row < size_t(ref->vision_tokens) && want.size() == hidden)
            d = std::max(d, max_abs_diff(&ref->vision[row * hidden], want.data(), hidden));
        }
      }
      const Stats s = stats(ref->vision.data(), ref->vision.size());
      const double tol = kRelTol * scale;
      CHECK_NEAR(s.max_abs, scale, tol);
      CHECK_NEAR(s.sum, num(vo->get("sum")), tol * std::sqrt(double(ref->vision.size())));
      rep->vision = d;
      rep->vision_scale = scale;
      if (!(d <= tol)) fail("vision output max abs diff " + std::to_string(d) + " > " + std::to_string(tol));
    }
  }

  // Last-position logits.
  {
    const Value* lg = c.get("logits_last");
    const std::vector<float>& L = ref->last_logits;
    const int vocab = int(L.size());
    const double scale = num(lg ? lg->get("max_abs") : nullptr);
    const double tol = kRelTol * scale;
    double d = 0;
    // Top-50: values at the golden ids, and the ranking (a swap only between near-equal logits).
    std::vector<int64_t> gid;
    std::vector<double> gval;
    for (const auto& e : lg->get("top")->items()) {
      gid.push_back(e.items()[0].as_int());
      gval.push_back(e.items()[1].as_double());
    }
    CHECK_EQ(gid.size(), size_t(50));
    std::vector<int> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::min<int>(vocab, int(gid.size())), order.end(),
                      [&](int a, int b) { return L[size_t(a)] > L[size_t(b)] || (L[size_t(a)] == L[size_t(b)] && a < b); });
    for (size_t i = 0; i < gid.size(); ++i) {
      if (gid[i] < 0 || gid[i] >= vocab) {
        fail("golden top id out of range");
        continue;
      }
      d = std::max(d, std::fabs(double(L[size_t(gid[i])]) - gval[i]));
      if (order[i] != gid[i] && !(std::fabs(double(L[size_t(order[i])]) - double(L[size_t(gid[i])])) <= 2 * tol))
        fail("top-50 rank " + std::to_string(i) + ": id " + std::to_string(order[i]) + " (" +
             std::to_string(L[size_t(order[i])]) + ") vs golden " + std::to_string(gid[i]) + " (" +
             std::to_string(gval[i]) + ")");
    }
    // The strided sample.
    const int stride = int(num(lg->get("sample_stride")));
    const auto sample = numbers(lg->get("sample"));
    CHECK(stride > 0 && sample.size() == size_t((vocab + stride - 1) / stride));
    for (size_t k = 0; stride > 0 && k < sample.size() && k * size_t(stride) < size_t(vocab); ++k)
      d = std::max(d, std::fabs(double(L[k * size_t(stride)]) - sample[k]));
    const Stats s = stats(L.data(), L.size());
    CHECK_NEAR(s.max_abs, scale, tol);
    rep->logits = d;
    rep->logits_scale = scale;
    if (!(d <= tol)) fail("logits max abs diff " + std::to_string(d) + " > " + std::to_string(tol));
  }

  // Named intermediates.
  {
    const Value* inter = c.get("intermediates");
    CHECK(inter != nullptr && inter->is_object() && inter->size() > 0);
    if (inter != nullptr)
      for (const auto& e : inter->members()) {
        const double d = check_intermediate(name, e.first, e.second, *m.taps, n);
        if (verbose()) std::printf("    %s %-32s %.2e of max\n", name.c_str(), e.first.c_str(), d);
        if (!(d <= rep->worst_intermediate)) {
          rep->worst_intermediate = d;
          rep->worst_intermediate_name = e.first;
        }
      }
    // Every block and layer is in the golden file.
    for (int b = 0; b < config.vision.depth; ++b)
      CHECK(inter && inter->get("vision.block." + std::to_string(b)) != nullptr);
    for (int l = 0; l < config.text.num_layers; ++l)
      CHECK(inter && inter->get("text.layer." + std::to_string(l)) != nullptr);
  }

  // Greedy generation through the engine (raw RGB in: preprocessing, vision,
  // prefill and decode all on the engine's path).
  {
    const Value* gr = c.get("greedy");
    const auto want = ints(gr ? gr->get("tokens") : nullptr);
    rex::GenerationRequest req;
    req.prompt_ids = input_ids;
    rex::RawImage raw;
    raw.rgb = img.rgb;
    raw.width = img.width;
    raw.height = img.height;
    raw.options = img.options;
    req.raw_image = std::move(raw);
    req.max_new_tokens = int(num(gr ? gr->get("max_new_tokens") : nullptr, 32));
    req.stop_token_ids = {int32_t(num(at(golden().manifest, {"constants", "eos_token_id"}), 151645))};
    req.sampling.temperature = 0.0f;
    req.sampling.repetition_penalty = float(num(gr ? gr->get("repetition_penalty") : nullptr, 1.05));
    CHECK_EQ(req.max_new_tokens, 32);
    CHECK_EQ(req.sampling.repetition_penalty, 1.05f);
    CHECK_EQ(req.stop_token_ids[0], 151645);
    auto res = m.engine->generate_blocking(std::move(req));
    if (!res.ok()) {
      fail("generate_blocking: " + res.status().message());
      return;
    }
    const std::vector<int32_t>& got = res->tokens;
    if (!res->finish.status.ok()) fail("generation failed: " + res->finish.status.message());
    rep->greedy_total = int(want.size());
    while (rep->greedy_match < int(std::min(want.size(), got.size())) &&
           got[size_t(rep->greedy_match)] == want[size_t(rep->greedy_match)])
      ++rep->greedy_match;
    if (got.size() != want.size() || rep->greedy_match != int(want.size())) {
      std::string msg = "greedy tokens differ from step " + std::to_string(rep->greedy_match) + " (got " +
                        std::to_string(got.size()) + " tokens)";
      if (size_t(rep->greedy_match) < got.size() && size_t(rep->greedy_match) < want.size())
        msg += ": " + std::to_string(got[size_t(rep->greedy_match)]) + " vs golden " +
               std::to_string(want[size_t(rep->greedy_match)]);
      fail(msg);
    }
    const std::string reason = rex::finish_reason_name(res->finish.reason);
    if (reason != str(gr ? gr->get("stop_reason") : nullptr))
      fail("finish reason " + reason + " vs golden " + str(gr ? gr->get("stop_reason") : nullptr));
    CHECK_EQ(res->finish.image_tokens, mh * mw);
    CHECK_EQ(res->finish.prompt_tokens, n);

    // Continuation: the prompt plus the first k golden tokens must continue
    // with the rest. The penalised ids are then the same set, but now some of
    // them come from the prompt, so this checks transformers' "prompt
    // included" rule (and prefill == decode) on transformers' own numbers.
    // k: the step right after a run of repeats with the smallest top-2 gap,
    // where an unpenalised repeat is most likely to win.
    const auto gaps = numbers(gr ? gr->get("gaps") : nullptr);
    size_t k = want.size() / 2;
    double best_gap = INFINITY;
    for (size_t j = 2; j < want.size() && j < gaps.size(); ++j)
      if (want[j - 1] == want[j - 2] && want[j] != want[j - 1] && gaps[j] < best_gap) {
        best_gap = gaps[j];
        k = j;
      }
    if (k > 0 && got.size() == want.size()) {
      rex::GenerationRequest cont;
      cont.prompt_ids = input_ids;
      for (size_t i = 0; i < k; ++i) cont.prompt_ids.push_back(int32_t(want[i]));
      cont.image = pre.value();
      cont.max_new_tokens = int(want.size() - k);
      cont.stop_token_ids = {151645};
      cont.sampling.temperature = 0.0f;
      cont.sampling.repetition_penalty = 1.05f;
      auto r2 = m.engine->generate_blocking(std::move(cont));
      if (!r2.ok()) {
        fail("generate_blocking (continuation): " + r2.status().message());
        return;
      }
      const std::vector<int64_t> tail(want.begin() + ptrdiff_t(k), want.end());
      const std::vector<int64_t> got_tail(r2->tokens.begin(), r2->tokens.end());
      if (got_tail != tail)
        fail("greedy continuation from prompt + " + std::to_string(k) +
             " golden tokens differs from the golden tail (repetition penalty must cover the prompt)");
    }
  }
}

// Image embeddings given on the host (the golden vision output).
class HostImageEmbeddings final : public rex::ImageEmbeddings {
 public:
  HostImageEmbeddings(std::vector<float> data, int tokens, int hidden)
      : data_(std::move(data)), tokens_(tokens), hidden_(hidden) {}
  int tokens() const override { return tokens_; }
  int hidden() const override { return hidden_; }
  rex::Status copy_to_host(std::vector<float>* out) const override {
    *out = data_;
    return rex::Status::Ok();
  }

 private:
  std::vector<float> data_;
  int tokens_, hidden_;
};

struct TextReport {
  std::string name;
  double logits = NAN, logits_scale = NAN, worst = 0;
  double score = 0;  // max abs diff of the greedy steps' processed top-1 scores and top-2 gaps
  std::string worst_name;
  int greedy_match = 0, greedy_total = 0;
};

// The decoder alone, fed transformers' own vision output (.vision.f32) instead
// of ours: last-position logits, text.* intermediates and the greedy tokens
// (prefill, then batched decode with the engine's sampler), on the backend
// directly. This separates text-side error from inherited vision error, and
// covers the photo cases whose pixels C++ cannot decode.
void check_text_path(ModelBundle& m, const Value& c, const std::string& name, TextReport* rep) {
  auto fail = [&](const std::string& what) { rex_test::fail(__FILE__, __LINE__, name + " (text path): " + what); };
  if (!has_model_fields(c, name)) return;
  const rex::ModelConfig& config = m.checkpoint->config();
  const int hidden = config.text.hidden_size;
  std::vector<int32_t> ids;
  for (int64_t id : ints(c.get("input_ids"))) ids.push_back(int32_t(id));
  const int n = int(ids.size());
  const auto grid = ints(c.get("grid_thw"));
  const int merge = config.vision.spatial_merge_size;
  CHECK(grid.size() == 3);
  if (grid.size() != 3 || n == 0) return;
  const int mh = int(grid[1]) / merge, mw = int(grid[2]) / merge;
  auto vis = read_f32_file(std::string(golden_dir()) + "/model/" + str(at(c, {"vision_output", "file"})),
                           size_t(mh) * mw * hidden);
  CHECK(vis.ok());
  if (!vis.ok()) return;
  HostImageEmbeddings emb(std::move(vis).value(), mh * mw, hidden);
  auto pos = rex::mrope_positions(ids, config.image_token_id, mh, mw);
  CHECK(pos.ok());
  if (!pos.ok()) return;

  rex::Backend& be = *m.backend;
  auto slot = be.acquire_slot(n + 32);
  CHECK(slot.ok());
  if (!slot.ok()) return;
  const int vocab = be.vocab_size();
  std::vector<float> logits(static_cast<size_t>(vocab));
  m.taps->clear();
  rex::PrefillInput in;
  in.slot = slot.value();
  in.token_ids = ids.data();
  in.n = n;
  in.positions = pos->ids.data();
  in.image = &emb;
  in.image_token_id = config.image_token_id;
  rex::Status st = be.prefill(in, logits.data());
  if (!st.ok()) {
    fail("prefill: " + st.message());
    be.release(slot.value());
    return;
  }

  // Logits at the golden top-50 ids and the strided sample.
  const Value* lg = c.get("logits_last");
  rep->logits_scale = num(lg->get("max_abs"));
  double d = 0;
  for (const auto& e : lg->get("top")->items())
    d = std::max(d, std::fabs(double(logits[size_t(e.items()[0].as_int())]) - e.items()[1].as_double()));
  const int stride = int(num(lg->get("sample_stride")));
  const auto sample = numbers(lg->get("sample"));
  for (size_t k = 0; stride > 0 && k < sample.size() && k * size_t(stride) < size_t(vocab); ++k)
    d = std::max(d, std::fabs(double(logits[k * size_t(stride)]) - sample[k]));
  rep->logits = d;
  if (!(d <= kTextPathRelTol * rep->logits_scale)) fail("logits max abs diff " + std::to_string(d));
  for (const auto& e : c.get("intermediates")->members()) {
    if (e.first.rfind("text.", 0) != 0) continue;
    const double di = check_intermediate(name + " (text path)", e.first, e.second, *m.taps, n, kTextPathRelTol);
    if (verbose()) std::printf("    %s (text path) %-32s %.2e of max\n", name.c_str(), e.first.c_str(), di);
    if (!(di <= rep->worst)) {
      rep->worst = di;
      rep->worst_name = e.first;
    }
  }

  // Greedy: repetition penalty over prompt + generated, argmax, stop at <|im_end|>.
  const Value* gr = c.get("greedy");
  const auto want = ints(gr->get("tokens"));
  rex::SamplingParams sp;
  sp.temperature = 0.0f;
  sp.repetition_penalty = float(num(gr->get("repetition_penalty")));
  rex::TokenHistory history(vocab);
  history.add(ids);
  rex::Pcg32 rng;
  std::vector<int32_t> got;
  const auto top1 = numbers(gr->get("top1_scores"));
  const auto gaps = numbers(gr->get("gaps"));
  CHECK(top1.size() == want.size() && gaps.size() == want.size());
  int32_t position = pos->next_position;
  const int max_new = int(num(gr->get("max_new_tokens")));
  for (int step = 0; step < max_new; ++step) {
    const rex::SampledToken t = rex::sample_token(logits.data(), vocab, sp, history, rng);
    got.push_back(t.id);
    // The processed (penalised) score of the chosen token and its lead over the
    // runner-up, as generate() saw them: checks the penalty's values, not just the argmax.
    if (size_t(step) < top1.size() && size_t(step) < gaps.size()) {
      float second = -INFINITY;
      for (int i = 0; i < vocab; ++i)
        if (i != t.id) second = std::max(second, logits[size_t(i)]);
      rep->score = std::max(rep->score, std::fabs(double(logits[size_t(t.id)]) - top1[size_t(step)]));
      rep->score = std::max(rep->score, std::fabs(double(logits[size_t(t.id)] - second) - gaps[size_t(step)]));
    }
    history.add(t.id);
    if (t.id == 151645 || step + 1 == max_new) break;
    st = be.decode({{slot.value(), t.id, position++}}, logits.data());
    if (!st.ok()) {
      fail("decode: " + st.message());
      break;
    }
  }
  be.release(slot.value());
  if (!(rep->score <= kTextPathRelTol * rep->logits_scale))
    fail("processed scores / top-2 gaps of the greedy steps differ by " + std::to_string(rep->score));
  rep->greedy_total = int(want.size());
  while (rep->greedy_match < int(std::min(want.size(), got.size())) &&
         got[size_t(rep->greedy_match)] == want[size_t(rep->greedy_match)])
    ++rep->greedy_match;
  if (got.size() != want.size() || rep->greedy_match != int(want.size()))
    fail("greedy tokens differ from step " + std::to_string(rep->greedy_match));
}

}  // namespace

// The manifest is readable and the tiny checkpoint is the one the goldens were made from.
REX_TEST(checkpoint_matches_manifest) {
  const Golden& g = golden();
  if (!g.checkpoint_error.empty()) rex_test::fail(__FILE__, __LINE__, g.checkpoint_error);
  if (!g.manifest_ok) return;
  CHECK_EQ(str(at(g.manifest, {"versions", "transformers"})).empty(), false);
  CHECK(!case_names("preprocess_cases").empty());
  CHECK(!case_names("model_cases").empty());
}

// smart_resize is pure arithmetic on the source size, so it is checked for
// every case, photos included (cafe_detect sits exactly on a floor boundary:
// 810 / beta / 28 == 6.0).
REX_TEST(smart_resize_matches_every_case) {
  if (!golden().manifest_ok) return;
  int checked = 0;
  for (const char* kind : {"preprocess", "model"}) {
    for (const auto& [name, loaded] : golden_cases(kind)) {
      const Value* c = &loaded;
      const auto src = ints(c->get("source_size"));
      const auto dst = ints(c->get("resized_size"));
      CHECK(src.size() == 2 && dst.size() == 2);
      if (src.size() != 2 || dst.size() != 2) continue;
      auto t = rex::smart_resize(int(src[1]), int(src[0]), 28, int(num(c->get("min_pixels"))),
                                 int(num(c->get("max_pixels"))));
      if (!t.ok() || t->width != dst[0] || t->height != dst[1])
        rex_test::fail(__FILE__, __LINE__, std::string(kind) + "/" + name + ": smart_resize of " +
                       std::to_string(src[0]) + "x" + std::to_string(src[1]) + " gives " +
                       (t.ok() ? std::to_string(t->width) + "x" + std::to_string(t->height) : t.status().message()) +
                       ", golden " + std::to_string(dst[0]) + "x" + std::to_string(dst[1]));
      ++checked;
    }
  }
  std::printf("  smart_resize: %d cases (all sources)\n", checked);
  CHECK(checked > 0);
}

REX_TEST(preprocess_cases_match_reference) {
  if (!golden().manifest_ok) return;  // already failed
  SkipLog skipped;
  int checked = 0;
  for (const auto& [name, loaded] : golden_cases("preprocess")) {
    const Value* c = &loaded;
    const std::string source = image_source(str(c->get("image")));
    if (source != "synthetic") {
      skipped.add(skip_reason(source), name);
      continue;
    }
    CHECK(!(c->get("exif_transpose") && c->get("exif_transpose")->as_bool()));
    Image img;
    if (!make_image(*c, name, &img)) continue;
    auto pre = rex::preprocess_image(img.rgb.data(), img.width, img.height, img.options);
    if (!pre.ok()) {
      rex_test::fail(__FILE__, __LINE__, name + ": preprocess_image: " + pre.status().message());
      continue;
    }
    check_preprocess(*c, name, pre.value());
    ++checked;
  }
  skipped.print("preprocess cases", checked);
  CHECK(checked > 0);
}

REX_TEST(model_cases_match_transformers) {
  const Golden& g = golden();
  if (!g.manifest_ok) return;  // already failed
  CHECK_EQ(str(g.manifest.get("mode")), std::string("full"));
  if (!g.checkpoint_error.empty()) {
    rex_test::fail(__FILE__, __LINE__, "model cases not run: " + g.checkpoint_error);
    return;
  }
  ModelBundle* model = shared_model();
  if (model == nullptr) return;  // already failed
  ModelBundle& m = *model;
  SkipLog skipped;
  std::vector<CaseReport> reports;
  for (const auto& [name, loaded] : golden_cases("model")) {
    const Value* c = &loaded;
    const std::string source = image_source(str(c->get("image")));
    if (source != "synthetic") {
      skipped.add(skip_reason(source), name);
      continue;
    }
    CaseReport rep;
    rep.name = name;
    check_model_case(m, *c, name, &rep);
    reports.push_back(rep);
  }
  for (const CaseReport& r : reports)
    std::printf("  %-28s vision %.2e (%.1e of max %.3g)  logits %.2e (%.1e of max %.3g)  "
                "worst intermediate %.1e of max (%s)  greedy %d/%d\n",
                r.name.c_str(), r.vision, r.vision / r.vision_scale, r.vision_scale, r.logits,
                r.logits / r.logits_scale, r.logits_scale, r.worst_intermediate, r.worst_intermediate_name.c_str(),
                r.greedy_match, r.greedy_total);
  skipped.print("model cases", int(reports.size()));
  CHECK(!reports.empty());
}

REX_TEST(text_path_from_golden_vision_output) {
  const Golden& g = golden();
  if (!g.manifest_ok) return;
  if (!g.checkpoint_error.empty()) {
    rex_test::fail(__FILE__, __LINE__, "text path not run: " + g.checkpoint_error);
    return;
  }
  ModelBundle* model = shared_model();
  if (model == nullptr) return;  // already failed
  ModelBundle& m = *model;
  SkipLog skipped;
  std::vector<TextReport> reports;
  for (const auto& [name, loaded] : golden_cases("model")) {
    const Value* c = &loaded;
    if (str(at(*c, {"vision_output", "file"})).empty()) {
      skipped.add("no .vision.f32 file (over 400 image tokens)", name);
      continue;
    }
    TextReport rep;
    rep.name = name;
    check_text_path(m, *c, name, &rep);
    reports.push_back(rep);
  }
  for (const TextReport& r : reports)
    std::printf("  %-28s logits %.2e (%.1e of max %.3g)  worst text intermediate %.1e of max (%s)  "
                "greedy %d/%d, step scores %.2e\n",
                r.name.c_str(), r.logits, r.logits / r.logits_scale, r.logits_scale, r.worst, r.worst_name.c_str(),
                r.greedy_match, r.greedy_total, r.score);
  skipped.print("text path (golden vision output in)", int(reports.size()));
  CHECK(!reports.empty());
}
