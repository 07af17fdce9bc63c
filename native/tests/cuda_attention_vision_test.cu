// attention_vision_bf16 (native/cuda/attention_vision.cuh) against its CPU
// twin cpu::attention_varlen (fp32 on the same bf16-exact inputs):
//  - the real shapes: the window plan of a 54x72 patch grid (1000x750 input,
//    3888 patches, 16 heads x 80 dims) and full attention over those 3888 rows;
//    full attention over 10240 rows checked on a sample of rows;
//  - odd segment lengths (1, 17, 64, 65, 130, 7, ...), several images in one
//    call, every head_dim (64, 80, 128) with both query tiles (64 and 128 rows);
//  - outputs poisoned with NaN before each launch; a second launch must give
//    the same bits; bad arguments return a non-ok Status.
// Timing lines: median of 20 launches (cudaEvent, L2 flushed), with FLOPs
// (4 * heads * head_dim * sum of segment_len^2) and bytes (qkv read + out
// written once), TFLOP/s and GB/s; a table of them comes last.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "cpu/attention_row.h"
#include "cpu/attention_vision.h"
#include "cpu/vision.h"
#include "cuda/attention_vision.cuh"
#include "cuda_test_util.h"

namespace {

using rex::cuda::bf16;
using namespace rex_test;
using namespace rex_test::attn;

uint64_t g_seed = 0x7669;  // advanced per draw: every check sees fresh inputs

struct VisionInputs {
  int tokens = 0, heads = 0, hd = 0;
  std::vector<int> cu;
  std::vector<float> qkv;  // [tokens, 3*heads*hd], bf16-exact
  int hidden() const { return heads * hd; }
  int max_seqlen() const {
    int m = 0;
    for (size_t s = 0; s + 1 < cu.size(); ++s) m = std::max(m, cu[s + 1] - cu[s]);
    return m;
  }
  double flops() const {
    double f = 0;
    for (size_t s = 0; s + 1 < cu.size(); ++s) f += double(cu[s + 1] - cu[s]) * double(cu[s + 1] - cu[s]);
    return 4.0 * heads * hd * f;
  }
  double bytes() const { return double(tokens) * hidden() * 2.0 * 4.0; }  // q, k, v read + out written
};

// q and k uniform in [-qk_scale, qk_scale) (logits with a std of ~2 at 2.5:
// a peaked softmax), v in [-1, 1).
VisionInputs make_inputs(int heads, int hd, std::vector<int> cu, float qk_scale = 2.5f) {
  VisionInputs in;
  in.heads = heads;
  in.hd = hd;
  in.cu = std::move(cu);
  in.tokens = in.cu.back();
  const int hidden = heads * hd;
  const std::vector<float> q = random_bf16_values(size_t(in.tokens) * hidden, ++g_seed, qk_scale);
  const std::vector<float> k = random_bf16_values(size_t(in.tokens) * hidden, ++g_seed, qk_scale);
  const std::vector<float> v = random_bf16_values(size_t(in.tokens) * hidden, ++g_seed, 1.0f);
  in.qkv.resize(size_t(in.tokens) * 3 * hidden);
  for (int t = 0; t < in.tokens; ++t) {
    std::copy_n(&q[size_t(t) * hidden], hidden, &in.qkv[size_t(t) * 3 * hidden]);
    std::copy_n(&k[size_t(t) * hidden], hidden, &in.qkv[size_t(t) * 3 * hidden + hidden]);
    std::copy_n(&v[size_t(t) * hidden], hidden, &in.qkv[size_t(t) * 3 * hidden + 2 * hidden]);
  }
  return in;
}

std::string describe_index(const VisionInputs& in, size_t i) {
  const size_t hidden = size_t(in.hidden());
  const int t = int(i / hidden), h = int(i % hidden) / in.hd, d = int(i % hidden) % in.hd;
  const int seg = int(std::upper_bound(in.cu.begin(), in.cu.end(), t) - in.cu.begin()) - 1;
  return "token " + std::to_string(t) + " (segment " + std::to_string(seg) + ", row " +
         std::to_string(t - in.cu[size_t(seg)]) + ") head " + std::to_string(h) + " dim " + std::to_string(d);
}

struct DeviceVision {
  DeviceArray<uint16_t> qkv;
  DeviceArray<int32_t> cu;
  DeviceArray<uint16_t> out;
  explicit DeviceVision(const VisionInputs& in)
      : qkv(to_bf16_bits(in.qkv)), cu(std::vector<int32_t>(in.cu.begin(), in.cu.end())),
        out(size_t(in.tokens) * in.hidden()) {}
};

// query_rows 0: the public entry's own choice; 64/128: forced (detail entry).
rex::Status launch(const VisionInputs& in, DeviceVision& d, int query_rows, cudaStream_t stream) {
  const int segments = int(in.cu.size()) - 1;
  if (query_rows == 0)
    return rex::cuda::attention_vision_bf16(d.qkv.as<bf16>(), in.tokens, in.heads, in.hd, d.cu.ptr, segments,
                                            in.max_seqlen(), d.out.as<bf16>(), stream);
  return rex::cuda::detail::attention_vision_bf16_rows(d.qkv.as<bf16>(), in.tokens, in.heads, in.hd, d.cu.ptr,
                                                       segments, in.max_seqlen(), query_rows, d.out.as<bf16>(),
                                                       stream);
}

std::vector<float> cpu_reference(const VisionInputs& in, double* seconds) {
  std::vector<float> ref(size_t(in.tokens) * in.hidden());
  const int hidden = in.hidden();
  auto t0 = std::chrono::steady_clock::now();
  rex::cpu::attention_varlen(pool(), in.qkv.data(), in.qkv.data() + hidden, in.qkv.data() + 2 * hidden, 3 * hidden,
                             in.heads, in.hd, in.cu, ref.data());
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ref;
}

// Checks one input set at the given query tile(s); times it when asked.
void check_case(const std::string& name, const VisionInputs& in, const std::vector<int>& query_rows_list,
                bool time_it) {
  double cpu_s = 0;
  const std::vector<float> ref = cpu_reference(in, &cpu_s);
  DeviceVision d(in);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  for (int rows : query_rows_list) {
    char what[200];
    std::snprintf(what, sizeof what, "%s: tokens %d segs %zu max %d heads %d hd %d rows %s", name.c_str(), in.tokens,
                  in.cu.size() - 1, in.max_seqlen(), in.heads, in.hd, rows == 0 ? "auto" : std::to_string(rows).c_str());
    d.out.poison();
    CHECK_CUDA_SYNC();
    CHECK_OK(launch(in, d, rows, stream));
    CHECK_CUDA_SYNC();
    const std::vector<uint16_t> bits = d.out.download();
    const double err = check_close(what, from_bf16_bits(bits), ref, kBf16Tolerance,
                                   [&](size_t i) { return describe_index(in, i); });
    d.out.poison();
    CHECK_CUDA_SYNC();
    CHECK_OK(launch(in, d, rows, stream));
    CHECK_CUDA_SYNC();
    check_same_bits(what, bits, d.out.download());
    if (time_it && !quick()) {
      const Timing t = time_launch([&] { (void)launch(in, d, rows, stream); }, stream);
      CHECK_CUDA_SYNC();
      report_timing(name + (rows == 0 ? " auto" : " rows " + std::to_string(rows)), t, in.flops(), in.bytes(), err);
    }
  }
  std::printf("    (cpu reference %.2f s)\n", cpu_s);
  cudaStreamDestroy(stream);
}

std::vector<int> cu_from_lengths(const std::vector<int>& lens) {
  std::vector<int> cu = {0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

// The real window plan: a 1000x750 (w x h) input resizes to 1008x756, i.e.
// 54 x 72 patches (h x w), merged 27 x 36, windows of 4x4 merged tokens.
std::vector<int> real_window_cu() {
  return rex::cpu::plan_windows(54 / 2, 72 / 2, 4, 4).cu_seqlens;
}

REX_TEST(vision_windows_real_plan) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  const std::vector<int> cu = real_window_cu();
  CHECK_EQ(cu.back(), 3888);
  std::printf("  window plan of 54x72 patches: %zu windows, lengths", cu.size() - 1);
  for (size_t s = 0; s + 1 < cu.size() && s < 12; ++s) std::printf(" %d", cu[s + 1] - cu[s]);
  std::printf(" ...\n");
  check_case("windows 54x72", make_inputs(16, 80, cu), {0, 128}, /*time_it=*/true);
}

REX_TEST(vision_full_attention_3888) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  check_case("full 3888", make_inputs(16, 80, {0, 3888}), {0, 64}, /*time_it=*/true);
}

// 10240 rows x 16 heads: the CPU checks a sample of 192 rows (all heads).
REX_TEST(vision_full_attention_10240_sampled) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  const VisionInputs in = make_inputs(16, 80, {0, 10240});
  DeviceVision d(in);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  std::vector<int> rows;
  for (int i = 0; i < 64; ++i) rows.push_back(i);                // first tile, exactly
  for (int i = 0; i < 64; ++i) rows.push_back(in.tokens - 1 - i);  // last tile
  rex::Pcg32 rng(++g_seed);
  for (int i = 0; i < 64; ++i) rows.push_back(int(rng.next_u32() % uint32_t(in.tokens)));
  const int hidden = in.hidden(), stride = 3 * hidden;
  std::vector<float> ref(rows.size() * size_t(hidden));
  const float scale = 1.0f / std::sqrt(float(in.hd));
  pool().parallel_for(0, int64_t(rows.size()) * in.heads, [&](int64_t lo, int64_t hi) {
    std::vector<float> scores;
    for (int64_t item = lo; item < hi; ++item) {
      const int r = int(item / in.heads), h = int(item % in.heads), t = rows[size_t(r)];
      rex::cpu::attend_row(&in.qkv[size_t(t) * stride + size_t(h) * in.hd], &in.qkv[hidden + size_t(h) * in.hd],
                           &in.qkv[2 * size_t(hidden) + size_t(h) * in.hd], stride, 0, in.tokens, in.hd, scale, scores,
                           &ref[size_t(r) * hidden + size_t(h) * in.hd]);
    }
  });
  for (int qr : {0, 64}) {
    d.out.poison();
    CHECK_CUDA_SYNC();
    CHECK_OK(launch(in, d, qr, stream));
    CHECK_CUDA_SYNC();
    const std::vector<float> all = from_bf16_bits(d.out.download());
    std::vector<float> out(ref.size());
    for (size_t r = 0; r < rows.size(); ++r)
      std::copy_n(&all[size_t(rows[r]) * hidden], hidden, &out[r * hidden]);
    const std::string what = std::string("full 10240, 192 sampled rows, rows ") + (qr == 0 ? "auto" : "64");
    const double err = check_close(what, out, ref, kBf16Tolerance, [&](size_t i) {
      return "sampled token " + std::to_string(rows[i / size_t(hidden)]) + " head " +
             std::to_string(int(i % size_t(hidden)) / in.hd) + " dim " + std::to_string(int(i % size_t(hidden)) % in.hd);
    });
    size_t nonfinite = 0;
    for (float x : all) nonfinite += !std::isfinite(x);
    std::printf("    non-finite outputs over all 10240 rows: %zu\n", nonfinite);
    CHECK_EQ(nonfinite, size_t(0));
    const Timing t = time_launch([&] { (void)launch(in, d, qr, stream); }, stream);
    CHECK_CUDA_SYNC();
    report_timing(std::string("full 10240 ") + (qr == 0 ? "auto" : "rows 64"), t, in.flops(), in.bytes(), err);
  }
  cudaStreamDestroy(stream);
}

// Odd segment lengths through every instantiation (head_dim x query tile).
REX_TEST(vision_odd_segments_all_head_dims) {
  if (skip_without_gpu()) return;
  const std::vector<int> lens = {1, 17, 64, 65, 130, 7, 128, 129, 2, 63};
  for (int hd : {16, 32, 64, 80, 128}) check_case("odd segments", make_inputs(3, hd, cu_from_lengths(lens)), {0, 64, 128}, false);
}

REX_TEST(vision_small_window_plans) {
  if (skip_without_gpu()) return;
  // Merged grids that leave partial windows at the right and bottom edges.
  for (auto hw : {std::pair<int, int>{5, 7}, {3, 1}, {8, 8}, {1, 13}}) {
    const std::vector<int> cu = rex::cpu::plan_windows(hw.first, hw.second, 4, 4).cu_seqlens;
    check_case("plan " + std::to_string(hw.first) + "x" + std::to_string(hw.second), make_inputs(16, 80, cu), {0},
               false);
  }
}

REX_TEST(vision_full_attention_odd_and_multi_image) {
  if (skip_without_gpu()) return;
  check_case("full 200", make_inputs(16, 80, {0, 200}), {0, 64}, false);
  check_case("full 333", make_inputs(4, 80, {0, 333}), {0, 64}, false);
  check_case("full 1", make_inputs(2, 80, {0, 1}), {0, 64, 128}, false);
  check_case("two images 300+520", make_inputs(16, 80, {0, 300, 820}), {0, 64}, false);
  // A flatter and a sharper softmax.
  check_case("full 257 qk 1.0", make_inputs(16, 80, {0, 257}, 1.0f), {0}, false);
  check_case("full 257 qk 4.0", make_inputs(16, 80, {0, 257}, 4.0f), {0}, false);
}

REX_TEST(vision_bad_arguments) {
  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> qkv(size_t(64) * 3 * 1280);
  DeviceArray<int32_t> cu(std::vector<int32_t>{0, 64});
  DeviceArray<uint16_t> out(size_t(64) * 1280);
  const bf16* q = qkv.as<bf16>();
  bf16* o = out.as<bf16>();
  auto expect_bad = [](const rex::Status& st, const char* what) {
    std::printf("  %-40s -> %s\n", what, st.ok() ? "ok (WRONG)" : st.message().c_str());
    CHECK(!st.ok());
    CHECK(st.code() == rex::StatusCode::kInvalidArgument);
    CHECK_CONTAINS(st.message(), "expected");
  };
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 16, 72, cu.ptr, 1, 64, o, 0), "head_dim 72");
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 16, 96, cu.ptr, 1, 64, o, 0), "head_dim 96");
  expect_bad(rex::cuda::attention_vision_bf16(q, -1, 16, 80, cu.ptr, 1, 64, o, 0), "tokens -1");
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 0, 80, cu.ptr, 1, 64, o, 0), "heads 0");
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 16, 80, cu.ptr, -1, 64, o, 0), "num_segments -1");
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 16, 80, cu.ptr, 1, -1, o, 0), "max_seqlen -1");
  expect_bad(rex::cuda::attention_vision_bf16(q, 64, 16, 80, cu.ptr, 1, 65, o, 0), "max_seqlen > tokens");
  expect_bad(rex::cuda::attention_vision_bf16(nullptr, 64, 16, 80, cu.ptr, 1, 64, o, 0), "null qkv");
  expect_bad(rex::cuda::attention_vision_bf16(q + 1, 64, 16, 80, cu.ptr, 1, 64, o, 0), "misaligned qkv");
  expect_bad(rex::cuda::detail::attention_vision_bf16_rows(q, 64, 16, 80, cu.ptr, 1, 64, 96, o, 0), "query_rows 96");
  // Empty work is fine and writes nothing.
  CHECK_OK(rex::cuda::attention_vision_bf16(q, 0, 16, 80, cu.ptr, 0, 0, o, 0));
  CHECK_CUDA_SYNC();
}

REX_TEST(vision_summary) {
  if (skip_without_gpu()) return;
  print_table("attention_vision_bf16");
}

}  // namespace
