// Vision encoder: window planning (hand-worked plans, bijection, seqlens) and
// the whole encoder against a naive double-precision forward written
// straight from REXOMNI.md that never permutes: it keeps the preprocessor's
// block order and masks attention to "same 4x4 window of merged tokens".
// Attention is permutation-equivariant given the mask and per-token rotary
// angles, so equality checks the permutation, the seqlens and the reverse.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/random_model.h"
#include "cpu/vision.h"
#include "sampling/rng.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

static void check_plan_is_bijection(int mh, int mw) {
  WindowPlan p = plan_windows(mh, mw, 4, 4);
  std::set<int> seen(p.window_index.begin(), p.window_index.end());
  CHECK_EQ(int(p.window_index.size()), mh * mw);
  CHECK_EQ(int(seen.size()), mh * mw);
  CHECK(seen.empty() || (*seen.begin() == 0 && *seen.rbegin() == mh * mw - 1));
  CHECK_EQ(p.cu_seqlens.front(), 0);
  CHECK_EQ(p.cu_seqlens.back(), mh * mw * 4);
  for (size_t i = 1; i < p.cu_seqlens.size(); ++i) CHECK(p.cu_seqlens[i] > p.cu_seqlens[i - 1]);
  // Each window holds the tokens of one 4x4 cell, and the reverse permutation undoes it.
  for (size_t w = 0; w + 1 < p.cu_seqlens.size(); ++w) {
    std::set<std::pair<int, int>> cells;
    for (int q = p.cu_seqlens[w] / 4; q < p.cu_seqlens[w + 1] / 4; ++q) {
      int t = p.window_index[size_t(q)];
      cells.insert({t / mw / 4, t % mw / 4});
    }
    CHECK_EQ(int(cells.size()), 1);
  }
  std::vector<int> reverse(p.window_index.size());
  for (size_t q = 0; q < p.window_index.size(); ++q) reverse[size_t(p.window_index[q])] = int(q);
  for (int t = 0; t < mh * mw; ++t) CHECK_EQ(p.window_index[size_t(reverse[size_t(t)])], t);
}

REX_TEST(window_plan_8x8_multiple_still_pads_a_window) {
  // 8x8 merged: already a multiple of 4, transformers pads to 12x12; the
  // extra windows are empty and vanish: 4 windows of 16 tokens.
  WindowPlan p = plan_windows(8, 8, 4, 4);
  CHECK(p.cu_seqlens == std::vector<int>({0, 64, 128, 192, 256}));
  std::vector<int> first = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27, 4, 5};
  CHECK(std::equal(first.begin(), first.end(), p.window_index.begin()));
  check_plan_is_bijection(8, 8);
}

REX_TEST(window_plan_7x5) {
  // Windows (0,0) 4x4, (0,1) 4x1, (1,0) 3x4, (1,1) 3x1 tokens.
  WindowPlan p = plan_windows(7, 5, 4, 4);
  CHECK(p.cu_seqlens == std::vector<int>({0, 64, 80, 128, 140}));
  CHECK(std::vector<int>(p.window_index.begin() + 16, p.window_index.begin() + 20) == std::vector<int>({4, 9, 14, 19}));
  CHECK_EQ(p.window_index[20], 20);
  CHECK_EQ(p.window_index.back(), 34);
  check_plan_is_bijection(7, 5);
}

REX_TEST(window_plan_1x13) {
  WindowPlan p = plan_windows(1, 13, 4, 4);
  CHECK(p.cu_seqlens == std::vector<int>({0, 16, 32, 48, 52}));
  for (int i = 0; i < 13; ++i) CHECK_EQ(p.window_index[size_t(i)], i);
  check_plan_is_bijection(1, 13);
  check_plan_is_bijection(4, 4);
  check_plan_is_bijection(9, 2);
}

REX_TEST(patch_positions_follow_merge_blocks) {
  std::vector<int32_t> r, c;
  patch_positions_block_order(4, 6, 2, &r, &c);
  // Block (0,0): (0,0) (0,1) (1,0) (1,1); block (0,1): (0,2) (0,3) (1,2) (1,3) ...
  CHECK(std::vector<int32_t>(r.begin(), r.begin() + 8) == std::vector<int32_t>({0, 0, 1, 1, 0, 0, 1, 1}));
  CHECK(std::vector<int32_t>(c.begin(), c.begin() + 8) == std::vector<int32_t>({0, 1, 0, 1, 2, 3, 2, 3}));
  CHECK_EQ(r[12], 2);
  CHECK_EQ(c[12], 0);
}

// ---------------------------------------------------------------- naive reference
using Mat = std::vector<double>;
static const float* F(const TensorView* t) { return static_cast<const float*>(t->data); }

static Mat lin(const Mat& x, int rows, int in, const TensorView* w, const TensorView* b, int out) {
  Mat y(size_t(rows) * out);
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o) {
      double s = b ? F(b)[o] : 0.0;
      for (int k = 0; k < in; ++k) s += x[size_t(r * in + k)] * F(w)[size_t(o) * in + size_t(k)];
      y[size_t(r * out + o)] = s;
    }
  return y;
}
static Mat rms(const Mat& x, int rows, int d, const TensorView* w) {
  Mat y(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += x[size_t(r * d + i)] * x[size_t(r * d + i)];
    for (int i = 0; i < d; ++i) y[size_t(r * d + i)] = F(w)[i] * x[size_t(r * d + i)] / std::sqrt(ss / d + 1e-6);
  }
  return y;
}

static Mat naive_vision(const RandomModel& m, const std::vector<float>& pv, int gh, int gw) {
  const VisionConfig& c = m.config.vision;
  const VisionWeights& W = m.weights.vision;
  const int n = gh * gw, H = c.hidden_size, heads = c.num_heads, d = H / heads, I = c.intermediate_size;
  const int mw = gw / 2;
  Mat x = lin(Mat(pv.begin(), pv.end()), n, 1176, W.patch_embed, nullptr, H);
  std::vector<int> prow(static_cast<size_t>(n)), pcol(static_cast<size_t>(n)), window(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    int b = i / 4, br = b / mw, bc = b % mw;
    prow[size_t(i)] = 2 * br + (i % 4) / 2;
    pcol[size_t(i)] = 2 * bc + i % 2;
    window[size_t(i)] = (br / 4) * 1000 + bc / 4;
  }
  auto rope = [&](Mat& t, int i, int h) {  // rotate_half on one head of row i
    double* v = &t[size_t(i) * 3 * H + size_t(h * d)];
    std::vector<double> o(static_cast<size_t>(d));
    for (int j = 0; j < d / 2; ++j) {
      int q = j % (d / 4);
      double inv = 1.0 / std::pow(10000.0, 2.0 * q / (d / 2));
      double a = (j < d / 4 ? prow[size_t(i)] : pcol[size_t(i)]) * inv;
      o[size_t(j)] = v[j] * std::cos(a) - v[j + d / 2] * std::sin(a);
      o[size_t(j + d / 2)] = v[j + d / 2] * std::cos(a) + v[j] * std::sin(a);
    }
    for (int j = 0; j < d; ++j) v[j] = o[size_t(j)];
  };
  for (int bi = 0; bi < c.depth; ++bi) {
    const auto& B = W.blocks[size_t(bi)];
    const bool full = std::count(c.fullatt_block_indexes.begin(), c.fullatt_block_indexes.end(), bi) > 0;
    Mat qkv = lin(rms(x, n, H, B.norm1), n, H, B.qkv_w, B.qkv_b, 3 * H);
    // q heads are 0..heads-1 of the row; k heads sit H further on, i.e. heads..2*heads-1.
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < 2 * heads; ++h) rope(qkv, i, h);
    Mat attn(size_t(n) * H, 0.0);
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < n; ++i) {
        std::vector<double> s(static_cast<size_t>(n), -INFINITY);
        double mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          if (!full && window[size_t(j)] != window[size_t(i)]) continue;
          double acc = 0;
          for (int e = 0; e < d; ++e) acc += qkv[size_t(i) * 3 * H + size_t(h * d + e)] * qkv[size_t(j) * 3 * H + size_t(H + h * d + e)];
          s[size_t(j)] = acc / std::sqrt(double(d));
          mx = std::max(mx, s[size_t(j)]);
        }
        double z = 0;
        for (int j = 0; j < n; ++j) if (s[size_t(j)] > -INFINITY) z += std::exp(s[size_t(j)] - mx);
        for (int j = 0; j < n; ++j) {
          if (s[size_t(j)] == -INFINITY) continue;
          double p = std::exp(s[size_t(j)] - mx) / z;
          for (int e = 0; e < d; ++e) attn[size_t(i * H + h * d + e)] += p * qkv[size_t(j) * 3 * H + size_t(2 * H + h * d + e)];
        }
      }
    Mat o = lin(attn, n, H, B.proj_w, B.proj_b, H);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    Mat hn = rms(x, n, H, B.norm2);
    Mat g = lin(hn, n, H, B.gate_w, B.gate_b, I), u = lin(hn, n, H, B.up_w, B.up_b, I);
    for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    Mat dn = lin(g, n, I, B.down_w, B.down_b, H);
    for (size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
  }
  Mat hn = rms(x, n, H, W.merger_norm);
  Mat f1 = lin(hn, n / 4, 4 * H, W.merger_fc1_w, W.merger_fc1_b, 4 * H);
  for (auto& v : f1) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  return lin(f1, n / 4, 4 * H, W.merger_fc2_w, W.merger_fc2_b, c.out_hidden_size);
}

static void check_against_naive(int gh, int gw) {
  auto model = make_random_model();
  CpuBackend backend(2);
  CHECK(backend.prepare(model->config, model->weights).ok());
  PreprocessedImage img = make_random_image(gh, gw, uint64_t(gh * 100 + gw));
  std::map<std::string, std::vector<int64_t>> taps;
  backend.set_tap([&](const std::string& name, const float*, const std::vector<int64_t>& shape) { taps[name] = shape; });
  auto out = backend.encode_image(img);
  CHECK(out.ok());
  if (!out.ok()) return;
  std::vector<float> got;
  CHECK(out.value()->copy_to_host(&got).ok());
  Mat ref = naive_vision(*model, img.pixel_values, gh, gw);
  CHECK_EQ(got.size(), ref.size());
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(ref[i]));
    max_err = std::max(max_err, std::fabs(ref[i] - got[i]));
  }
  if (!(max_err <= 1e-4 * max_ref)) std::fprintf(stderr, "  grid %dx%d: max err %g, max |ref| %g\n", gh, gw, max_err, max_ref);
  CHECK(max_err <= 1e-4 * max_ref);
  CHECK(taps.count("vision.patch_embed") && taps.count("vision.block.3") && taps.count("vision.merger"));
  CHECK(taps["vision.block.0"] == std::vector<int64_t>({gh * gw, 64}));
  CHECK(taps["vision.merger"] == std::vector<int64_t>({gh * gw / 4, 128}));
}

REX_TEST(encoder_matches_naive_8x8_merged) { check_against_naive(16, 16); }
REX_TEST(encoder_matches_naive_7x5_merged) { check_against_naive(14, 10); }
REX_TEST(encoder_matches_naive_1x13_merged) { check_against_naive(2, 26); }

REX_TEST(encoder_rejects_bad_sizes) {
  auto model = make_random_model();
  CpuBackend backend(1);
  CHECK(backend.prepare(model->config, model->weights).ok());
  PreprocessedImage img = make_random_image(4, 4, 1);
  img.pixel_values.pop_back();
  auto out = backend.encode_image(img);
  CHECK(!out.ok());
  if (!out.ok()) CHECK_CONTAINS(out.status().message(), "expected 16 x 1176");
}
