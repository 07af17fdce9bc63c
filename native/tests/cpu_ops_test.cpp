// CPU op families against naive double-precision formulas: thread pool
// coverage, matmul, rmsnorm, activations, rotary (rotate_half, M-RoPE axis
// sections), varlen attention vs block-diagonal masked attention, causal GQA
// (and its varlen form vs one call per segment), batched decode attention vs
// causal GQA's last row, and bf16/f16 widening.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/activation.h"
#include "cpu/attention_decode.h"
#include "cpu/attention_prefill.h"
#include "cpu/attention_vision.h"
#include "cpu/embedding.h"
#include "common/bf16_host.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/rope.h"
#include "cpu/thread_pool.h"
#include "cpu/weights_f32.h"
#include "sampling/rng.h"
#include "test_harness.h"

using namespace rex;
using namespace rex::cpu;

static std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f) {
  Pcg32 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * float(2 * rng.next_double() - 1);
  return v;
}

REX_TEST(thread_pool_covers_range_once) {
  ThreadPool pool(3);
  for (int n : {0, 1, 7, 100, 1001}) {
    std::vector<int> hits(size_t(n), 0);
    pool.parallel_for(0, n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) hits[size_t(i)]++;
    });
    for (int i = 0; i < n; ++i) CHECK_EQ(hits[size_t(i)], 1);
  }
}

REX_TEST(matmul_matches_naive) {
  ThreadPool pool(2);
  const int rows = 5, in = 37, out = 19;
  auto x = random_vec(size_t(rows) * in, 1), w = random_vec(size_t(out) * in, 2), b = random_vec(size_t(out), 3);
  std::vector<float> y(size_t(rows) * out);
  matmul_bias(pool, x.data(), rows, in, w.data(), b.data(), out, y.data());
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o) {
      double s = b[size_t(o)];
      for (int k = 0; k < in; ++k) s += double(x[size_t(r * in + k)]) * w[size_t(o * in + k)];
      CHECK_NEAR(y[size_t(r * out + o)], s, 1e-5);
    }
}

REX_TEST(rmsnorm_matches_formula) {
  ThreadPool pool(2);
  auto x = random_vec(3 * 8, 4), w = random_vec(8, 5);
  std::vector<float> y(x.size());
  rmsnorm(pool, x.data(), 3, 8, w.data(), 1e-6f, y.data());
  for (int r = 0; r < 3; ++r) {
    double ss = 0;
    for (int i = 0; i < 8; ++i) ss += double(x[size_t(r * 8 + i)]) * x[size_t(r * 8 + i)];
    double inv = 1.0 / std::sqrt(ss / 8 + 1e-6);
    for (int i = 0; i < 8; ++i) CHECK_NEAR(y[size_t(r * 8 + i)], w[size_t(i)] * x[size_t(r * 8 + i)] * inv, 1e-6);
  }
}

// add_rmsnorm is the add loop followed by rmsnorm, bit for bit (the decoder
// and the vision tower switched to it; golden_cpu_test relies on this).
REX_TEST(add_rmsnorm_is_add_then_rmsnorm_bitwise) {
  ThreadPool pool(3);
  for (int dim : {8, 37, 1280}) {
    const int rows = 5;
    auto x = random_vec(size_t(rows) * dim, 6, 8.0f), d = random_vec(size_t(rows) * dim, 7), w = random_vec(size_t(dim), 8);
    std::vector<float> x_ref = x, y_ref(x.size()), y(x.size());
    for (size_t i = 0; i < x_ref.size(); ++i) x_ref[i] += d[i];
    rmsnorm(pool, x_ref.data(), rows, dim, w.data(), 1e-6f, y_ref.data());
    add_rmsnorm(pool, x.data(), d.data(), rows, dim, w.data(), 1e-6f, y.data());
    CHECK(x == x_ref);
    CHECK(y == y_ref);
  }
}

REX_TEST(embed_rows_gathers_and_scatters_image_rows) {
  const int vocab = 6, hidden = 3, image_rows = 2;
  auto table = random_vec(size_t(vocab) * hidden, 9), image = random_vec(size_t(image_rows) * hidden, 10);
  const int32_t ids[4] = {5, 0, 3, 3};
  const int32_t image_index[4] = {-1, 1, 0, -1};  // rows 1 and 2 take image rows 1 and 0
  std::vector<float> out(4 * hidden);
  CHECK(embed_rows(ids, image_index, 4, table.data(), vocab, image.data(), image_rows, hidden, out.data()).ok());
  for (int e = 0; e < hidden; ++e) {
    CHECK_EQ(out[size_t(0 * hidden + e)], table[size_t(5 * hidden + e)]);
    CHECK_EQ(out[size_t(1 * hidden + e)], image[size_t(1 * hidden + e)]);
    CHECK_EQ(out[size_t(2 * hidden + e)], image[size_t(0 * hidden + e)]);
    CHECK_EQ(out[size_t(3 * hidden + e)], table[size_t(3 * hidden + e)]);
  }
  CHECK(embed_rows(ids, nullptr, 4, table.data(), vocab, nullptr, 0, hidden, out.data()).ok());
  CHECK_EQ(out[size_t(1 * hidden)], table[0]);
  const int32_t bad_id[2] = {1, 6};
  Status st = embed_rows(bad_id, nullptr, 2, table.data(), vocab, nullptr, 0, hidden, out.data());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(st.message(), "token id 6 at index 1 is outside the vocabulary (6)");
  const int32_t bad_image[2] = {-1, 2};
  st = embed_rows(ids, bad_image, 2, table.data(), vocab, image.data(), image_rows, hidden, out.data());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_CONTAINS(st.message(), "takes image row 2 but the image has 2");
  CHECK(!embed_rows(ids, image_index, 4, table.data(), vocab, nullptr, 0, hidden, out.data()).ok());
  CHECK(!embed_rows(ids, nullptr, -1, table.data(), vocab, nullptr, 0, hidden, out.data()).ok());
  CHECK(embed_rows(nullptr, nullptr, 0, nullptr, vocab, nullptr, 0, hidden, nullptr).ok());
}

REX_TEST(activations) {
  CHECK_NEAR(gelu_erf(1.0f), 0.8413447460685429, 1e-6);
  CHECK_NEAR(gelu_erf(-2.0f), -0.04550026389635842, 1e-6);
  CHECK_NEAR(silu(1.0f), 0.7310585786300049, 1e-6);
  CHECK_NEAR(silu(-3.0f), -0.14227761953270035, 1e-6);
}

REX_TEST(rotary_rotate_half_convention) {
  ThreadPool pool(1);
  // One token, one head of dim 4, angles a0, a1: out[j] = x[j] cos - x[j+2] sin; out[j+2] = x[j+2] cos + x[j] sin.
  RotaryTable t = vision_rotary_table({3}, {5}, 4, 10000.0f);  // quarter = 1 freq (1.0): angles 3, 5
  float x[4] = {1, 2, 3, 4};
  apply_rotary(pool, x, 1, 1, 4, t);
  CHECK_NEAR(x[0], 1 * std::cos(3.0) - 3 * std::sin(3.0), 1e-6);
  CHECK_NEAR(x[1], 2 * std::cos(5.0) - 4 * std::sin(5.0), 1e-6);
  CHECK_NEAR(x[2], 3 * std::cos(3.0) + 1 * std::sin(3.0), 1e-6);
  CHECK_NEAR(x[3], 4 * std::cos(5.0) + 2 * std::sin(5.0), 1e-6);
}

REX_TEST(mrope_sections_pick_axes) {
  // head_dim 8 -> 4 frequencies; section [1, 1, 2]: freq 0 from t, 1 from h, 2-3 from w.
  const int32_t pos[3] = {7, 11, 13};  // n = 1: t, h, w
  RotaryTable t = mrope_table(pos, 1, 8, 100.0f, {1, 1, 2});
  std::vector<float> inv = rotary_inv_freq(100.0f, 8);
  const int32_t axis_pos[4] = {7, 11, 13, 13};
  for (int j = 0; j < 4; ++j) {
    CHECK_NEAR(t.cos[size_t(j)], std::cos(double(float(axis_pos[j]) * inv[size_t(j)])), 1e-6);
    CHECK_NEAR(t.sin[size_t(j + 4)], std::sin(double(float(axis_pos[j]) * inv[size_t(j)])), 1e-6);
  }
  CHECK_NEAR(inv[1], 1.0 / std::pow(100.0, 2.0 / 8.0), 1e-7);
}

// Naive attention with a mask: token i sees j iff same segment.
static void naive_masked_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int n, int heads, int d,
                                   const std::vector<int>& segment_of, std::vector<double>& out) {
  out.assign(size_t(n) * heads * d, 0);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < n; ++i) {
      std::vector<double> s(size_t(n), -INFINITY);
      double mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        if (segment_of[size_t(j)] != segment_of[size_t(i)]) continue;
        double acc = 0;
        for (int e = 0; e < d; ++e) acc += double(q[size_t((i * heads + h) * d + e)]) * k[size_t((j * heads + h) * d + e)];
        s[size_t(j)] = acc / std::sqrt(double(d));
        mx = std::max(mx, s[size_t(j)]);
      }
      double z = 0;
      for (int j = 0; j < n; ++j) z += s[size_t(j)] == -INFINITY ? 0 : std::exp(s[size_t(j)] - mx);
      for (int j = 0; j < n; ++j) {
        if (s[size_t(j)] == -INFINITY) continue;
        double p = std::exp(s[size_t(j)] - mx) / z;
        for (int e = 0; e < d; ++e) out[size_t((i * heads + h) * d + e)] += p * v[size_t((j * heads + h) * d + e)];
      }
    }
}

REX_TEST(varlen_attention_is_block_diagonal_full_attention) {
  ThreadPool pool(2);
  const int n = 23, heads = 3, d = 8;
  const std::vector<int> cu = {0, 4, 5, 16, 23};
  auto q = random_vec(size_t(n) * heads * d, 10), k = random_vec(size_t(n) * heads * d, 11),
       v = random_vec(size_t(n) * heads * d, 12);
  std::vector<float> out(q.size());
  attention_varlen(pool, q.data(), k.data(), v.data(), heads * d, heads, d, cu, out.data());
  std::vector<int> seg(static_cast<size_t>(n));
  for (size_t s = 0; s + 1 < cu.size(); ++s)
    for (int i = cu[s]; i < cu[s + 1]; ++i) seg[size_t(i)] = int(s);
  std::vector<double> ref;
  naive_masked_attention(q, k, v, n, heads, d, seg, ref);
  for (size_t i = 0; i < out.size(); ++i) CHECK_NEAR(out[i], ref[i], 1e-5);
  // One segment = full attention.
  std::vector<float> full(q.size());
  attention_varlen(pool, q.data(), k.data(), v.data(), heads * d, heads, d, {0, n}, full.data());
  std::vector<int> one(static_cast<size_t>(n), 0);
  naive_masked_attention(q, k, v, n, heads, d, one, ref);
  for (size_t i = 0; i < full.size(); ++i) CHECK_NEAR(full[i], ref[i], 1e-5);
}

REX_TEST(causal_gqa_matches_naive) {
  ThreadPool pool(2);
  const int past = 3, n_new = 4, total = past + n_new, hq = 4, hkv = 2, d = 8;
  auto q = random_vec(size_t(n_new) * hq * d, 20), k = random_vec(size_t(total) * hkv * d, 21),
       v = random_vec(size_t(total) * hkv * d, 22);
  std::vector<float> out(q.size());
  attention_causal_gqa(pool, q.data(), n_new, past, k.data(), v.data(), hq, hkv, d, out.data());
  for (int i = 0; i < n_new; ++i)
    for (int h = 0; h < hq; ++h) {
      const int g = h / 2;
      std::vector<double> s;
      double mx = -INFINITY;
      for (int j = 0; j <= past + i; ++j) {
        double acc = 0;
        for (int e = 0; e < d; ++e) acc += double(q[size_t((i * hq + h) * d + e)]) * k[size_t((j * hkv + g) * d + e)];
        s.push_back(acc / std::sqrt(double(d)));
        mx = std::max(mx, s.back());
      }
      double z = 0;
      for (double x : s) z += std::exp(x - mx);
      for (int e = 0; e < d; ++e) {
        double o = 0;
        for (int j = 0; j <= past + i; ++j) o += std::exp(s[size_t(j)] - mx) / z * v[size_t((j * hkv + g) * d + e)];
        CHECK_NEAR(out[size_t((i * hq + h) * d + e)], o, 1e-5);
      }
    }
}

// attention_causal_gqa_varlen is attention_causal_gqa on each segment alone,
// bit for bit (segments of mixed lengths and pasts, each with its own cache,
// unused rows between them left unwritten), over pools of 1 and 3 threads.
REX_TEST(causal_gqa_varlen_is_per_segment_causal_gqa) {
  const int hq = 4, hkv = 2, d = 8, qd = hq * d, kvd = hkv * d;
  struct Seg { int row_start, n, past; };
  const std::vector<Seg> segs = {{0, 1, 0}, {1, 5, 3}, {8, 17, 0}, {25, 1, 9}, {26, 9, 40}};  // rows 6, 7 unused
  const int rows = 35;
  auto q = random_vec(size_t(rows) * qd, 50);
  std::vector<std::vector<float>> ks, vs;
  std::vector<CausalSegment> cs;
  for (size_t s = 0; s < segs.size(); ++s) {
    ks.push_back(random_vec(size_t(segs[s].past + segs[s].n) * kvd, 51 + 2 * s));
    vs.push_back(random_vec(size_t(segs[s].past + segs[s].n) * kvd, 52 + 2 * s));
  }
  for (size_t s = 0; s < segs.size(); ++s)
    cs.push_back({segs[s].row_start, segs[s].n, segs[s].past, ks[s].data(), vs[s].data()});
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    std::vector<float> out(q.size(), -7.0f);
    attention_causal_gqa_varlen(pool, q.data(), cs, hq, hkv, d, out.data());
    for (size_t s = 0; s < segs.size(); ++s) {
      std::vector<float> alone(size_t(segs[s].n) * qd);
      attention_causal_gqa(pool, &q[size_t(segs[s].row_start) * qd], segs[s].n, segs[s].past, ks[s].data(),
                           vs[s].data(), hq, hkv, d, alone.data());
      for (size_t e = 0; e < alone.size(); ++e) CHECK_EQ(out[size_t(segs[s].row_start) * qd + e], alone[e]);
    }
    for (int r : {6, 7})
      for (int e = 0; e < qd; ++e) CHECK_EQ(out[size_t(r) * qd + size_t(e)], -7.0f);
  }
}

// attention_decode is attention_causal_gqa's last row, per sequence of a batch
// (each with its own cache and length), q rows read at a stride.
REX_TEST(decode_attention_is_causal_gqa_last_row) {
  ThreadPool pool(2);
  const int hq = 4, hkv = 2, d = 8, q_stride = hq * d + 5;
  const std::vector<int> lens = {1, 6, 3};
  const int batch = int(lens.size());
  auto q = random_vec(size_t(batch) * q_stride, 30);
  std::vector<std::vector<float>> ks, vs;
  std::vector<const float*> kp, vp;
  for (int b = 0; b < batch; ++b) {
    ks.push_back(random_vec(size_t(lens[size_t(b)]) * hkv * d, 31 + uint64_t(b)));
    vs.push_back(random_vec(size_t(lens[size_t(b)]) * hkv * d, 41 + uint64_t(b)));
  }
  for (int b = 0; b < batch; ++b) {
    kp.push_back(ks[size_t(b)].data());
    vp.push_back(vs[size_t(b)].data());
  }
  std::vector<float> out(size_t(batch) * hq * d);
  attention_decode(pool, q.data(), q_stride, batch, hq, hkv, d, kp, vp, lens, out.data());
  for (int b = 0; b < batch; ++b) {
    const int len = lens[size_t(b)];
    std::vector<float> rows(size_t(len) * hq * d, 0.0f);  // only the last row matters
    std::copy_n(&q[size_t(b) * q_stride], size_t(hq) * d, &rows[size_t(len - 1) * hq * d]);
    std::vector<float> ref(rows.size());
    attention_causal_gqa(pool, rows.data(), len, 0, kp[size_t(b)], vp[size_t(b)], hq, hkv, d, ref.data());
    for (int e = 0; e < hq * d; ++e)
      CHECK_EQ(out[size_t(b) * hq * d + size_t(e)], ref[size_t(len - 1) * hq * d + size_t(e)]);
  }
}

REX_TEST(half_precision_widening) {
  CHECK_EQ(bf16_to_f32(0x3f80), 1.0f);
  CHECK_EQ(bf16_to_f32(0xc040), -3.0f);
  CHECK_EQ(f16_to_f32(0x3c00), 1.0f);
  CHECK_EQ(f16_to_f32(0xc500), -5.0f);
  CHECK_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK_EQ(f16_to_f32(0x7bff), 65504.0f);
  CHECK(std::isinf(f16_to_f32(0x7c00)));
}

// ActivationPrecision::kBf16 rounds a GEMM's inputs and outputs to bf16 (the
// CUDA backend's activations), and nothing else: it equals the fp32 product of
// the rounded input, rounded once.
REX_TEST(linear_bf16_activations_round_inputs_and_outputs) {
  ThreadPool pool(2);
  const int rows = 3, in = 37, out = 11;
  Linear l;
  l.in = in;
  l.out = out;
  l.w = random_vec(size_t(out) * in, 91);
  l.b = random_vec(size_t(out), 92);
  const std::vector<float> x = random_vec(size_t(rows) * in, 93, 3.0f);
  std::vector<float> rounded_x(x), fp32(size_t(rows) * out), bf16(size_t(rows) * out), lm(size_t(rows) * out);
  for (auto& v : rounded_x) v = round_to_bf16(v);
  linear(pool, rounded_x.data(), rows, l, fp32.data());
  linear(pool, x.data(), rows, l, bf16.data(), ActivationPrecision::kBf16);
  matmul_bias(pool, x.data(), rows, in, l.w.data(), l.b.data(), out, lm.data(), ActivationPrecision::kBf16,
              ActivationPrecision::kFp32);
  int changed = 0;
  for (size_t i = 0; i < fp32.size(); ++i) {
    CHECK_EQ(bf16[i], round_to_bf16(fp32[i]));
    CHECK_EQ(lm[i], fp32[i]);  // bf16 input, fp32 output (the LM head)
    changed += bf16[i] != fp32[i];
  }
  CHECK(changed > 0);
}
