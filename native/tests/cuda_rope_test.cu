// vision_rope_bf16 and mrope_qkv_to_cache_bf16 (native/cuda/rope.cuh) against
// the CPU twin (cpu::vision_rotary_table / cpu::mrope_table +
// cpu::apply_rotary) on fresh random qkv rows and positions:
//  - vision: 16 heads x 80 (20 row + 20 column frequencies, theta 1e4) at
//    1, 3, 37, 1000 and 3888 tokens; head_dim 20 and an unaligned qkv for the
//    scalar path. q and k are rotated in place; v must be untouched (bits).
//  - text: 16 q heads, 2 kv heads, head_dim 128, section 16,24,24, theta 1e6,
//    positions up to 3e4 with distinct t/h/w, at 1, 3, 37, 1000 and 1200
//    rows; also head_dim 64 (8,12,12) and 12 (2,2,2; scalar path). The cache
//    (2 rows + 7 per row, NaN-poisoned) gets k and v at a shuffled dest_rows,
//    one row at -1 (skipped). Checked: rotated q (in qkv), rotated k and the
//    exact v in their cache rows, every other cache row still all poison,
//    and the k|v part of qkv unchanged.
// Measures printed: rel.err against the fp32 twin (the check, expect ~2e-3),
// and ulp distance against a double reference rounded once (near-zero
// outputs, where x1 c - x2 s cancels, can be several ulps off: reported only).
// Then the bad-argument paths and timings at the real decode (1 row) and
// prefill (1200 rows; vision 3888 tokens) shapes.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/rope.h"
#include "cpu/thread_pool.h"
#include "cuda/rope.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using namespace rex_test;

uint64_t g_seed = 0x524f5045ull;  // advanced per draw: every check sees fresh inputs

// Rotation of x[tokens, heads, d] (row stride `stride`) in double from the
// table's fp32 angles' cos/sin, rounded once to bf16.
void rotate_faithful(std::vector<float>& x, int tokens, int heads, int stride, int d,
                     const std::vector<float>& angles /* tokens x d/2 */) {
  const int half = d / 2;
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < heads; ++h) {
      float* v = &x[size_t(t) * stride + size_t(h) * d];
      for (int j = 0; j < half; ++j) {
        const double a = angles[size_t(t) * half + j], c = std::cos(a), s = std::sin(a);
        const double x1 = v[j], x2 = v[j + half];
        v[j] = rex::round_to_bf16(float(x1 * c - x2 * s));
        v[j + half] = rex::round_to_bf16(float(x2 * c + x1 * s));
      }
    }
}

void check_vision(int tokens, int heads, int hd, int offset = 0) {
  rex::Pcg32 rng(++g_seed);
  const int width = 3 * heads * hd;
  const std::vector<float> qkv = random_bf16_values(size_t(tokens) * width, ++g_seed);
  std::vector<int32_t> rows(static_cast<size_t>(tokens)), cols(static_cast<size_t>(tokens));
  for (int t = 0; t < tokens; ++t) {
    rows[size_t(t)] = int32_t(1 + rng.next_u32() % 200);
    cols[size_t(t)] = int32_t(1 + rng.next_u32() % 200);
  }
  const std::vector<float> inv = rex::cpu::rotary_inv_freq(10000.0f, hd / 2);
  std::vector<uint16_t> bits(size_t(tokens) * width + 8, 0);
  const std::vector<uint16_t> qb = to_bf16_bits(qkv);
  std::copy(qb.begin(), qb.end(), bits.begin() + offset);
  DeviceArray<uint16_t> dqkv(bits);
  DeviceArray<int32_t> drows(rows), dcols(cols);
  DeviceArray<float> dinv(inv);
  CHECK_OK(rex::cuda::vision_rope_bf16(dqkv.as<bf16>() + offset, tokens, heads, hd, drows.ptr, dcols.ptr, dinv.ptr, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> all = dqkv.download();
  const std::vector<uint16_t> got_bits(all.begin() + offset, all.begin() + offset + std::ptrdiff_t(qkv.size()));
  const std::vector<float> got = from_bf16_bits(got_bits);

  // CPU twin on q and k.
  std::vector<float> ref = qkv, faithful = qkv;
  const rex::cpu::RotaryTable table = rex::cpu::vision_rotary_table(rows, cols, hd);
  rex::cpu::apply_rotary(pool(), ref.data(), tokens, heads, width, table);
  rex::cpu::apply_rotary(pool(), ref.data() + size_t(heads) * hd, tokens, heads, width, table);
  std::vector<float> angles(size_t(tokens) * hd / 2);
  for (int t = 0; t < tokens; ++t)
    for (int j = 0; j < hd / 4; ++j) {
      angles[size_t(t) * hd / 2 + j] = float(rows[size_t(t)]) * inv[size_t(j)];
      angles[size_t(t) * hd / 2 + hd / 4 + j] = float(cols[size_t(t)]) * inv[size_t(j)];
    }
  rotate_faithful(faithful, tokens, 2 * heads, width, hd, angles);

  std::vector<float> g_qk, r_qk, f_qk;
  size_t v_changed = 0;
  for (int t = 0; t < tokens; ++t)
    for (int e = 0; e < width; ++e) {
      const size_t i = size_t(t) * width + e;
      if (e < 2 * heads * hd) {
        g_qk.push_back(got[i]);
        r_qk.push_back(ref[i]);
        f_qk.push_back(faithful[i]);
      } else {
        v_changed += got_bits[i] != qb[i];
      }
    }
  char what[160];
  std::snprintf(what, sizeof what, "vision_rope_bf16 q,k tokens=%d heads=%d head_dim=%d%s", tokens, heads, hd,
                offset ? " qkv+1 (scalar path)" : "");
  CHECK_REL_ERROR(what, g_qk, r_qk, kBf16Tolerance);
  const UlpStats u = ulp_stats(g_qk, f_qk);
  std::printf("    vs double rounded once: rel.err %.3e, max ulp %d, %zu of %zu > 1 ulp; max |out-ref| %.3e; "
              "v values changed %zu (expect 0)\n",
              relative_error(g_qk, f_qk), u.max_ulp, u.over1, g_qk.size(), max_abs_diff(g_qk, r_qk), v_changed);
  CHECK_EQ(v_changed, size_t(0));
  size_t outside = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (i < size_t(offset) || i >= size_t(offset) + qkv.size()) outside += all[i] != 0;
  CHECK_EQ(outside, size_t(0));
}

REX_TEST(vision_rope_matches_cpu) {
  if (skip_without_gpu()) return;
  for (int tokens : {1, 3, 37, 1000, 3888}) check_vision(tokens, 16, 80);
  check_vision(37, 2, 20);     // half 10: scalar path
  check_vision(37, 16, 80, 1); // qkv unaligned: scalar path
  check_vision(5, 1, 128);     // one head of 128 (half 64: 16-byte path)
}

struct TextShape {
  int q_heads, kv_heads, hd;
  rex::cuda::MropeSection section;
  float theta;
};

void check_text(int rows, const TextShape& s, int offset = 0) {
  rex::Pcg32 rng(++g_seed);
  const int hd = s.hd, qd = s.q_heads * hd, kvd = s.kv_heads * hd, width = qd + 2 * kvd;
  const std::vector<float> qkv = random_bf16_values(size_t(rows) * width, ++g_seed);
  // Positions: distinct t/h/w (an image-like spread), some text-like rows equal on all axes.
  std::vector<int32_t> pos(3 * size_t(rows));
  for (int r = 0; r < rows; ++r) {
    const int32_t t = int32_t(rng.next_u32() % 30000);
    const bool text = rng.next_u32() % 3 == 0;
    pos[size_t(r)] = t;
    pos[size_t(rows) + r] = text ? t : t + int32_t(rng.next_u32() % 64);
    pos[2 * size_t(rows) + r] = text ? t : t + int32_t(rng.next_u32() % 64);
  }
  // Physical cache rows: 2 per row + 7, dest a shuffled subset; row 1 skipped (-1).
  const int physical = 2 * rows + 7;
  std::vector<int32_t> perm(static_cast<size_t>(physical));
  for (int i = 0; i < physical; ++i) perm[size_t(i)] = i;
  for (int i = physical - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(rng.next_u32() % uint32_t(i + 1))]);
  std::vector<int32_t> dest(perm.begin(), perm.begin() + rows);
  if (rows >= 3) dest[1] = -1;
  const std::vector<float> inv = rex::cpu::rotary_inv_freq(s.theta, hd);

  std::vector<uint16_t> bits(size_t(rows) * width + 8, 0);
  const std::vector<uint16_t> qb = to_bf16_bits(qkv);
  std::copy(qb.begin(), qb.end(), bits.begin() + offset);
  DeviceArray<uint16_t> dqkv(bits), kc(size_t(physical) * kvd), vc(size_t(physical) * kvd);
  kc.poison();
  vc.poison();
  DeviceArray<int32_t> dpos(pos), ddest(dest);
  DeviceArray<float> dinv(inv);
  rex::cuda::KvPlane plane;
  plane.k = kc.as<bf16>();
  plane.v = vc.as<bf16>();
  CHECK_OK(rex::cuda::mrope_qkv_to_cache_bf16(dqkv.as<bf16>() + offset, rows, s.q_heads, s.kv_heads, hd, dpos.ptr,
                                              dinv.ptr, s.section, ddest.ptr, plane, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> all = dqkv.download();
  const std::vector<uint16_t> got_bits(all.begin() + offset, all.begin() + offset + std::ptrdiff_t(qkv.size()));
  const std::vector<float> got = from_bf16_bits(got_bits);
  const std::vector<uint16_t> kbits = kc.download(), vbits = vc.download();

  // CPU twin: rotate q and k of a copy.
  std::vector<float> ref = qkv, faithful = qkv;
  const std::array<int, 3> section = {s.section.t, s.section.h, s.section.w};
  const rex::cpu::RotaryTable table = rex::cpu::mrope_table(pos.data(), rows, hd, s.theta, section);
  rex::cpu::apply_rotary(pool(), ref.data(), rows, s.q_heads, width, table);
  rex::cpu::apply_rotary(pool(), ref.data() + qd, rows, s.kv_heads, width, table);
  std::vector<float> angles(size_t(rows) * hd / 2);
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < hd / 2; ++j) {
      const int axis = j < s.section.t ? 0 : (j < s.section.t + s.section.h ? 1 : 2);
      angles[size_t(r) * hd / 2 + j] = float(pos[size_t(axis) * rows + r]) * inv[size_t(j)];
    }
  rotate_faithful(faithful, rows, s.q_heads + s.kv_heads, width, hd, angles);

  std::vector<float> gq, rq, fq, gk, rk, fk;
  size_t kv_in_qkv_changed = 0, v_wrong = 0, written_rows = 0;
  std::vector<bool> is_dest(size_t(physical), false);
  for (int r = 0; r < rows; ++r) {
    for (int e = 0; e < width; ++e) {
      const size_t i = size_t(r) * width + e;
      if (e < qd) {
        gq.push_back(got[i]);
        rq.push_back(ref[i]);
        fq.push_back(faithful[i]);
      } else {
        kv_in_qkv_changed += got_bits[i] != qb[i];
      }
    }
    const int p = dest[size_t(r)];
    if (p < 0) continue;
    is_dest[size_t(p)] = true;
    ++written_rows;
    for (int e = 0; e < kvd; ++e) {
      gk.push_back(rex::bf16_bits_to_float(kbits[size_t(p) * kvd + e]));
      rk.push_back(ref[size_t(r) * width + qd + e]);
      fk.push_back(faithful[size_t(r) * width + qd + e]);
      v_wrong += vbits[size_t(p) * kvd + e] != qb[size_t(r) * width + qd + kvd + e];
    }
  }
  size_t untouched_bad = 0;
  for (int p = 0; p < physical; ++p)
    if (!is_dest[size_t(p)])
      for (int e = 0; e < kvd; ++e)
        untouched_bad += (kbits[size_t(p) * kvd + e] != 0xFFFF) + (vbits[size_t(p) * kvd + e] != 0xFFFF);

  char what[200];
  std::snprintf(what, sizeof what, "mrope q rows=%d heads=%d/%d head_dim=%d sec=%d,%d,%d%s", rows, s.q_heads, s.kv_heads,
                hd, s.section.t, s.section.h, s.section.w, offset ? " qkv+1 (scalar path)" : "");
  CHECK_REL_ERROR(what, gq, rq, kBf16Tolerance);
  UlpStats u = ulp_stats(gq, fq);
  std::printf("    q vs double rounded once: rel.err %.3e, max ulp %d, %zu of %zu > 1 ulp; max |out-ref| %.3e\n",
              relative_error(gq, fq), u.max_ulp, u.over1, gq.size(), max_abs_diff(gq, rq));
  std::snprintf(what, sizeof what, "mrope k in cache (%zu rows written)", written_rows);
  CHECK_REL_ERROR(what, gk, rk, kBf16Tolerance);
  u = ulp_stats(gk, fk);
  std::printf("    k vs double rounded once: rel.err %.3e, max ulp %d, %zu of %zu > 1 ulp; max |out-ref| %.3e\n",
              relative_error(gk, fk), u.max_ulp, u.over1, gk.size(), max_abs_diff(gk, rk));
  std::printf("    v values wrong in cache %zu, values in other cache rows not poison %zu, k|v values changed in qkv "
              "%zu (all expect 0)\n",
              v_wrong, untouched_bad, kv_in_qkv_changed);
  CHECK_EQ(v_wrong, size_t(0));
  CHECK_EQ(untouched_bad, size_t(0));
  CHECK_EQ(kv_in_qkv_changed, size_t(0));
  size_t outside = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (i < size_t(offset) || i >= size_t(offset) + qkv.size()) outside += all[i] != 0;
  CHECK_EQ(outside, size_t(0));
}

const TextShape kQwen = {16, 2, 128, {16, 24, 24}, 1e6f};

REX_TEST(mrope_to_cache_matches_cpu) {
  if (skip_without_gpu()) return;
  for (int rows : {1, 3, 37, 1000, 1200}) check_text(rows, kQwen);
  check_text(3, {8, 2, 64, {8, 12, 12}, 1e6f});   // half 32: 16-byte path
  check_text(37, {4, 2, 12, {2, 2, 2}, 1e4f});    // half 6: scalar path
  check_text(37, {4, 4, 32, {16, 0, 0}, 1e4f});   // one axis only
  check_text(37, kQwen, 1);                       // qkv unaligned: scalar path
}

REX_TEST(rows_zero_is_a_no_op) {
  if (skip_without_gpu()) return;
  CHECK_OK(rex::cuda::vision_rope_bf16(nullptr, 0, 16, 80, nullptr, nullptr, nullptr, nullptr));
  CHECK_OK(rex::cuda::mrope_qkv_to_cache_bf16(nullptr, 0, 16, 2, 128, nullptr, nullptr, {16, 24, 24}, nullptr, {}, nullptr));
  CHECK_CUDA_SYNC();
}

REX_TEST(bad_arguments_return_status) {
  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> qkv(4 * 3 * 16 * 128), kc(64 * 256), vc(64 * 256);
  DeviceArray<int32_t> pos(12), dest(4);
  DeviceArray<float> inv(64);
  bf16* q = qkv.as<bf16>();
  rex::cuda::KvPlane plane;
  plane.k = kc.as<bf16>();
  plane.v = vc.as<bf16>();
  const rex::cuda::MropeSection sec = {16, 24, 24};
  using rex::cuda::mrope_qkv_to_cache_bf16;
  using rex::cuda::vision_rope_bf16;
  expect_invalid(vision_rope_bf16(q, -1, 16, 80, pos.ptr, pos.ptr, inv.ptr, nullptr), "expected tokens >= 0");
  expect_invalid(vision_rope_bf16(q, 4, 0, 80, pos.ptr, pos.ptr, inv.ptr, nullptr), "expected heads > 0");
  expect_invalid(vision_rope_bf16(q, 4, 16, 82, pos.ptr, pos.ptr, inv.ptr, nullptr), "positive multiple of 4");
  expect_invalid(vision_rope_bf16(q, 4, 16, 2048, pos.ptr, pos.ptr, inv.ptr, nullptr), "positive multiple of 4");
  expect_invalid(vision_rope_bf16(nullptr, 4, 16, 80, pos.ptr, pos.ptr, inv.ptr, nullptr), "expected a qkv pointer");
  expect_invalid(vision_rope_bf16(q, 4, 16, 80, nullptr, pos.ptr, inv.ptr, nullptr), "pos_rows and pos_cols");
  expect_invalid(vision_rope_bf16(q, 4, 16, 80, pos.ptr, pos.ptr, nullptr, nullptr), "expected an inv_freq pointer");
  expect_invalid(mrope_qkv_to_cache_bf16(q, -2, 16, 2, 128, pos.ptr, inv.ptr, sec, dest.ptr, plane, nullptr),
                 "expected rows >= 0");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 0, 2, 128, pos.ptr, inv.ptr, sec, dest.ptr, plane, nullptr),
                 "expected q_heads > 0 and kv_heads > 0");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 127, pos.ptr, inv.ptr, sec, dest.ptr, plane, nullptr),
                 "positive even number");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, inv.ptr, {16, 24, 23}, dest.ptr, plane, nullptr),
                 "summing to head_dim/2 = 64");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, inv.ptr, {-8, 48, 24}, dest.ptr, plane, nullptr),
                 "non-negative");
  expect_invalid(mrope_qkv_to_cache_bf16(nullptr, 4, 16, 2, 128, pos.ptr, inv.ptr, sec, dest.ptr, plane, nullptr),
                 "expected a qkv pointer");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, nullptr, inv.ptr, sec, dest.ptr, plane, nullptr),
                 "expected a positions pointer");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, nullptr, sec, dest.ptr, plane, nullptr),
                 "expected an inv_freq pointer");
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, inv.ptr, sec, nullptr, plane, nullptr),
                 "expected a dest_rows pointer");
  rex::cuda::KvPlane no_v = plane;
  no_v.v = nullptr;
  expect_invalid(mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, inv.ptr, sec, dest.ptr, no_v, nullptr),
                 "expected cache.k and cache.v");
  rex::Status st = mrope_qkv_to_cache_bf16(q, 4, 16, 2, 128, pos.ptr, inv.ptr, {16, 24, 23}, dest.ptr, plane, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  CHECK_CUDA_SYNC();
}

REX_TEST(timing) {
  if (skip_without_gpu()) return;
  {  // vision: 3888 tokens, 16 heads x 80
    const int tokens = 3888, heads = 16, hd = 80, width = 3 * heads * hd;
    rex::Pcg32 rng(++g_seed);
    std::vector<int32_t> rows(tokens), cols(tokens);
    for (int t = 0; t < tokens; ++t) {
      rows[size_t(t)] = int32_t(rng.next_u32() % 100);
      cols[size_t(t)] = int32_t(rng.next_u32() % 100);
    }
    DeviceArray<uint16_t> qkv(to_bf16_bits(random_bf16_values(size_t(tokens) * width, ++g_seed))), pristine(qkv.download());
    DeviceArray<int32_t> drows(rows), dcols(cols);
    DeviceArray<float> dinv(rex::cpu::rotary_inv_freq(10000.0f, hd / 2));
    time_op("vision_rope_bf16", "vision 3888 tok x 16x80", double(tokens) * 2 * heads * hd * 2 * 2 + tokens * 8.0,
            [&](cudaStream_t st) { cudaMemcpyAsync(qkv.ptr, pristine.ptr, qkv.count * 2, cudaMemcpyDeviceToDevice, st); },
            [&](cudaStream_t st) {
              return rex::cuda::vision_rope_bf16(qkv.as<bf16>(), tokens, heads, hd, drows.ptr, dcols.ptr, dinv.ptr, st);
            });
  }
  for (int rows : {1, 1200}) {  // text decode and prefill
    const TextShape& s = kQwen;
    const int width = (s.q_heads + 2 * s.kv_heads) * s.hd, kvd = s.kv_heads * s.hd, physical = 4096;
    rex::Pcg32 rng(++g_seed);
    std::vector<int32_t> pos(3 * size_t(rows)), dest(static_cast<size_t>(rows));
    for (auto& p : pos) p = int32_t(rng.next_u32() % 4000);
    for (int r = 0; r < rows; ++r) dest[size_t(r)] = 1000 + r;  // a sequence's consecutive slots
    DeviceArray<uint16_t> qkv(to_bf16_bits(random_bf16_values(size_t(rows) * width, ++g_seed))), pristine(qkv.download());
    DeviceArray<uint16_t> kc(size_t(physical) * kvd), vc(size_t(physical) * kvd);
    DeviceArray<int32_t> dpos(pos), ddest(dest);
    DeviceArray<float> dinv(rex::cpu::rotary_inv_freq(s.theta, s.hd));
    rex::cuda::KvPlane plane;
    plane.k = kc.as<bf16>();
    plane.v = vc.as<bf16>();
    const double bytes = double(rows) * width * 2 /* read q|k|v */ + double(rows) * width * 2 /* write q, k, v */ +
                         double(rows) * 16 /* positions, dest */;
    time_op("mrope_qkv_to_cache", std::string(rows == 1 ? "text decode " : "text prefill ") + std::to_string(rows) +
                                      " x 16/2x128",
            bytes,
            [&](cudaStream_t st) { cudaMemcpyAsync(qkv.ptr, pristine.ptr, qkv.count * 2, cudaMemcpyDeviceToDevice, st); },
            [&](cudaStream_t st) {
              return rex::cuda::mrope_qkv_to_cache_bf16(qkv.as<bf16>(), rows, s.q_heads, s.kv_heads, s.hd, dpos.ptr,
                                                        dinv.ptr, s.section, ddest.ptr, plane, st);
            });
  }
}

REX_TEST(zz_summary_table) { print_timing_table(); }

}  // namespace
