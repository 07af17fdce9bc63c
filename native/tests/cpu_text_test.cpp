// Text decoder on a random in-memory model: decoding with the KV cache gives
// the logits of a full recompute of the longer sequence; chunked prefill
// equals one prefill; a batched decode over two slots equals two single
// decodes; bf16 weights load and run; the named taps appear.
#include <cmath>
#include <map>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "engine/mrope_positions.h"
#include "engine/reference_forward.h"
#include "sampling/rng.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

static double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// A prompt with an image of merged grid mh x mw between some text.
static std::vector<int32_t> image_prompt(const RandomModel& m, int mh, int mw) {
  std::vector<int32_t> ids = {5, 17, 300, m.config.vision_start_token_id};
  for (int i = 0; i < mh * mw; ++i) ids.push_back(m.config.image_token_id);
  for (int32_t t : {m.config.vision_end_token_id, 42, 7, 811}) ids.push_back(t);
  return ids;
}

// Full recompute: a fresh slot prefilled with the whole sequence.
static std::vector<float> full_logits(CpuBackend& be, const RandomModel& m, const std::vector<int32_t>& ids,
                                      const ImageEmbeddings* img, int mh, int mw) {
  auto pos = mrope_positions(ids, m.config.image_token_id, mh, mw);
  auto slot = be.acquire_slot(int(ids.size()));
  std::vector<float> logits(size_t(be.vocab_size()));
  PrefillInput in{slot.value(), ids.data(), int(ids.size()), pos->ids.data(), img, m.config.image_token_id};
  Status st = be.prefill(in, logits.data());
  CHECK(st.ok());
  be.release(slot.value());
  return logits;
}

REX_TEST(kv_cache_decode_equals_full_recompute) {
  auto model = make_random_model();
  CpuBackend be(2);
  CHECK(be.prepare(model->config, model->weights).ok());
  const int mh = 3, mw = 2;
  auto emb = be.encode_image(make_random_image(2 * mh, 2 * mw, 9));
  CHECK(emb.ok());
  std::vector<int32_t> ids = image_prompt(*model, mh, mw);
  auto pos = mrope_positions(ids, model->config.image_token_id, mh, mw);
  auto slot = be.acquire_slot(64);
  std::vector<float> logits(size_t(be.vocab_size()));
  PrefillInput in{slot.value(), ids.data(), int(ids.size()), pos->ids.data(), emb.value().get(),
                  model->config.image_token_id};
  CHECK(be.prefill(in, logits.data()).ok());
  CHECK(rel_err(logits, full_logits(be, *model, ids, emb.value().get(), mh, mw)) < 1e-6);

  int32_t position = pos->next_position;
  for (int32_t token : {123, 456, 7, 999, 0}) {
    std::vector<DecodeRow> rows = {{slot.value(), token, position++}};
    CHECK(be.decode(rows, logits.data()).ok());
    ids.push_back(token);
    double e = rel_err(logits, full_logits(be, *model, ids, emb.value().get(), mh, mw));
    if (!(e < 1e-4)) std::fprintf(stderr, "  after %zu tokens: rel err %g\n", ids.size(), e);
    CHECK(e < 1e-4);
  }
  CHECK_EQ(be.slot_length(slot.value()), int(ids.size()));
}

REX_TEST(chunked_prefill_equals_one_prefill) {
  auto model = make_random_model();
  CpuBackend be(2);
  CHECK(be.prepare(model->config, model->weights).ok());
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  auto pos = mrope_positions(ids, model->config.image_token_id, 0, 0);
  const int n = int(ids.size()), first = 4;
  // Split the axis-major positions into two chunks.
  std::vector<int32_t> p1, p2;
  for (int a = 0; a < 3; ++a) {
    p1.insert(p1.end(), pos->ids.begin() + a * n, pos->ids.begin() + a * n + first);
    p2.insert(p2.end(), pos->ids.begin() + a * n + first, pos->ids.begin() + (a + 1) * n);
  }
  auto slot = be.acquire_slot(n);
  std::vector<float> logits(size_t(be.vocab_size()));
  CHECK(be.prefill({slot.value(), ids.data(), first, p1.data(), nullptr, -1}, logits.data()).ok());
  CHECK(be.prefill({slot.value(), ids.data() + first, n - first, p2.data(), nullptr, -1}, logits.data()).ok());
  CHECK(rel_err(logits, full_logits(be, *model, ids, nullptr, 0, 0)) < 1e-4);
}

REX_TEST(batched_decode_equals_single_decodes) {
  auto model = make_random_model();
  CpuBackend be(2);
  CHECK(be.prepare(model->config, model->weights).ok());
  const int vocab = be.vocab_size();
  std::vector<int32_t> a = {3, 1, 4, 1, 5}, b = {2, 7, 1};
  auto pa = mrope_positions(a, model->config.image_token_id, 0, 0);
  auto pb = mrope_positions(b, model->config.image_token_id, 0, 0);
  std::vector<float> la(static_cast<size_t>(vocab)), lb(static_cast<size_t>(vocab)), both(2 * size_t(vocab));
  auto sa = be.acquire_slot(8).value(), sb = be.acquire_slot(8).value();
  CHECK(be.prefill({sa, a.data(), int(a.size()), pa->ids.data(), nullptr, -1}, la.data()).ok());
  CHECK(be.prefill({sb, b.data(), int(b.size()), pb->ids.data(), nullptr, -1}, lb.data()).ok());
  CHECK(be.decode({{sa, 9, 5}, {sb, 8, 3}}, both.data()).ok());
  a.push_back(9);
  b.push_back(8);
  std::vector<float> first(both.begin(), both.begin() + vocab), second(both.begin() + vocab, both.end());
  CHECK(rel_err(first, full_logits(be, *model, a, nullptr, 0, 0)) < 1e-4);
  CHECK(rel_err(second, full_logits(be, *model, b, nullptr, 0, 0)) < 1e-4);
  CHECK(!be.decode({{sa, 1, 6}, {sb, 8, 4}, {sa, 2, 7}}, both.data()).ok());  // one slot's rows apart
  CHECK(!be.decode({{77, 1, 6}}, both.data()).ok());              // unknown slot
}

REX_TEST(bf16_model_runs_and_taps_fire) {
  RandomModelSpec spec;
  spec.dtype = DType::kBF16;
  auto model = make_random_model(spec);
  CpuBackend be(2);
  CHECK(be.prepare(model->config, model->weights).ok());
  std::map<std::string, std::vector<int64_t>> taps;
  be.set_tap([&](const std::string& name, const float*, const std::vector<int64_t>& shape) { taps[name] = shape; });
  PreprocessedImage img = make_random_image(4, 6, 3);
  std::vector<int32_t> ids = image_prompt(*model, 2, 3);
  auto out = run_reference_forward(be, model->config, &img, ids);
  CHECK(out.ok());
  if (!out.ok()) return;
  CHECK_EQ(out->vision_tokens, 6);
  CHECK_EQ(out->vision.size(), size_t(6 * 128));
  CHECK_EQ(out->last_logits.size(), size_t(1000));
  bool finite = true;
  for (float v : out->last_logits) finite = finite && std::isfinite(v);
  CHECK(finite);
  const int64_t n = int64_t(ids.size());
  for (const char* name : {"vision.patch_embed", "vision.block.0", "vision.block.3", "vision.merger", "text.embed",
                           "text.layer.0", "text.layer.2", "text.final_norm"})
    CHECK(taps.count(name) == 1);
  CHECK(taps["text.layer.2"] == std::vector<int64_t>({n, 128}));
  CHECK(taps["vision.patch_embed"] == std::vector<int64_t>({24, 64}));
}

REX_TEST(prefill_checks_image_token_count) {
  auto model = make_random_model();
  CpuBackend be(1);
  CHECK(be.prepare(model->config, model->weights).ok());
  auto emb = be.encode_image(make_random_image(4, 4, 1));  // 4 tokens
  std::vector<int32_t> ids = image_prompt(*model, 2, 3);  // 6 pads
  std::vector<int32_t> pos(ids.size() * 3, 0);
  std::vector<float> logits(1000);
  auto slot = be.acquire_slot(0).value();
  Status st = be.prefill({slot, ids.data(), int(ids.size()), pos.data(), emb.value().get(), model->config.image_token_id},
                         logits.data());
  CHECK(!st.ok());
  CHECK_CONTAINS(st.message(), "6 image tokens");
  std::vector<int32_t> bad = {1, 5000};
  st = be.prefill({slot, bad.data(), 2, pos.data(), nullptr, -1}, logits.data());
  CHECK(!st.ok());
  CHECK_CONTAINS(st.message(), "5000");
}
