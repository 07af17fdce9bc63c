// GemmRunner (native/cuda/gemm.cuh) against the CPU twin (cpu::matmul_bias)
// at the model's shapes, on fresh random bf16-exact inputs, outputs poisoned
// with NaN before each checked launch. Also: a direct call vs. its CUDA-graph
// replay (bit for bit), lda > k, and the bad-argument paths. Prints, per
// shape, the median of 20 timed calls (cudaEvent, L2 flushed before each) and
// the achieved TFLOP/s and weight-stream GB/s; a table of them comes last.
// Tuning (set_tuning): the candidates' times per shape (TUNE lines), and the
// tuned choice's product against the CPU twin. Pins (set_pins, parse_pins):
// a candidate chosen by its configuration text, no timing.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/thread_pool.h"
#include "cuda/gemm.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using rex::cuda::GemmRunner;
using namespace rex_test;

GemmRunner* make_runner(bool tuning) {
  auto* g = new GemmRunner();
  rex::Status st = g->init();
  if (!st.ok()) {
    std::fprintf(stderr, "  GemmRunner::init failed: %s\n", st.message().c_str());
    delete g;
    return nullptr;
  }
  g->set_tuning(tuning);
  return g;
}

// One runner for the whole binary (the model has one per stream), and one that tunes.
GemmRunner* runner() {
  static GemmRunner* r = make_runner(false);
  return r;
}
GemmRunner* tuning_runner() {
  static GemmRunner* r = make_runner(true);
  return r;
}

struct Row {
  std::string name;
  int m, n, k;
  double err, tol, ms, tflops, gbs;
};
std::vector<Row>& table() {
  static std::vector<Row> rows;
  return rows;
}

uint64_t g_seed = 0x6e6d;  // advanced per draw: every check sees fresh inputs

// One weight matrix (with optional bias), checked against several M.
struct Weights {
  int n, k;
  std::vector<float> w, b;  // bf16-exact values
  std::unique_ptr<DeviceArray<uint16_t>> dw, db;
  int bias_offset = 0;  // elements: > 0 places the bias at a less aligned address
  Weights(int n_, int k_, bool bias, int bias_offset_ = 0) : n(n_), k(k_), bias_offset(bias_offset_) {
    w = random_bf16_values(size_t(n) * k, ++g_seed, 1.0f);
    dw = std::make_unique<DeviceArray<uint16_t>>(to_bf16_bits(w));
    if (bias) {
      b = random_bf16_values(size_t(n), ++g_seed, 1.0f);
      std::vector<uint16_t> bits(size_t(bias_offset), 0);
      std::vector<uint16_t> values = to_bf16_bits(b);
      bits.insert(bits.end(), values.begin(), values.end());
      db = std::make_unique<DeviceArray<uint16_t>>(bits);
    }
  }
  const bf16* wp() const { return dw->as<bf16>(); }
  const bf16* bp() const { return db ? db->as<bf16>() + bias_offset : nullptr; }
};

// Checks y = x w^T + b for one M (x with row stride lda >= k) and times it.
void check_shape(const std::string& name, const Weights& W, int m, bool f32_out, int lda = 0,
                 GemmRunner* with = nullptr) {
  GemmRunner* g = with ? with : runner();
  CHECK(g != nullptr);
  if (!g) return;
  const int n = W.n, k = W.k;
  if (lda == 0) lda = k;
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);

  // x: [m, lda] on the device, only the first k columns meaningful; the
  // padding holds random values too, so reading it would show.
  std::vector<float> x_dev_vals = random_bf16_values(size_t(m) * lda, ++g_seed, 1.0f);
  std::vector<float> x(size_t(m) * k);
  for (int r = 0; r < m; ++r)
    std::copy_n(x_dev_vals.begin() + size_t(r) * lda, k, x.begin() + size_t(r) * k);
  DeviceArray<uint16_t> dx(to_bf16_bits(x_dev_vals));
  DeviceArray<float> dy32(f32_out ? size_t(m) * n : 0);
  DeviceArray<uint16_t> dy16(f32_out ? 0 : size_t(m) * n);

  auto launch = [&]() -> rex::Status {
    return f32_out ? g->linear_f32(dx.as<bf16>(), m, k, lda, W.wp(), n, dy32.ptr, stream)
                   : g->linear_bf16(dx.as<bf16>(), m, k, lda, W.wp(), W.bp(), n, dy16.as<bf16>(), stream);
  };

  dy32.poison();
  dy16.poison();
  cudaDeviceSynchronize();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  std::vector<float> out = f32_out ? dy32.download() : from_bf16_bits(dy16.download());

  std::vector<float> ref(size_t(m) * n);
  auto t0 = std::chrono::steady_clock::now();
  rex::cpu::matmul_bias(pool(), x.data(), m, k, W.w.data(), W.b.empty() ? nullptr : W.b.data(), n, ref.data());
  const double cpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const double tol = f32_out ? kFp32Tolerance : kBf16Tolerance;
  char what[160];
  std::snprintf(what, sizeof what, "%s M=%d N=%d K=%d%s%s%s", name.c_str(), m, n, k,
                lda != k ? (" lda=" + std::to_string(lda)).c_str() : "", W.b.empty() ? "" : " +bias",
                W.bias_offset ? ("@+" + std::to_string(2 * W.bias_offset) + "B").c_str() : "");
  const double err = relative_error(out, ref);
  CHECK_REL_ERROR(what, out, ref, tol);

  // Median of 20 single-call times in ms (cuda_timing.h: L2 flushed before each).
  const double ms = median_of_sorted(launch_times_ms([] {}, [&] { (void)launch(); }, stream, true, 20));
  CHECK_CUDA_SYNC();
  const double flops = 2.0 * m * double(n) * k;
  const double weight_bytes = 2.0 * double(n) * k;
  const double tflops = flops / (ms * 1e-3) / 1e12;
  const double gbs = weight_bytes / (ms * 1e-3) / 1e9;
  std::printf("    median %.4f ms  %.1f TFLOP/s  %.0f GB/s weights  (cpu ref %.2f s)\n", ms, tflops, gbs, cpu_s);
  table().push_back({what, m, n, k, err, tol, ms, tflops, gbs});
  cudaStreamDestroy(stream);
}

REX_TEST(text_decoder_shapes) {
  if (skip_without_gpu()) return;
  const int shapes[4][2] = {{2560, 2048}, {2048, 2048}, {22016, 2048}, {2048, 11008}};
  const char* names[4] = {"qkv", "o_proj", "gate_up", "down"};
  for (int s = 0; s < 4; ++s) {
    Weights W(shapes[s][0], shapes[s][1], /*bias=*/s == 0);  // Qwen2.5's q/k/v carry a bias
    for (int m : {1, 3, 8, 64, 216, 1200}) check_shape(std::string("text ") + names[s], W, m, false);
  }
}

// Tuning: every usable heuristic candidate timed on a shape's first call,
// the fastest kept; the product stays right (against the CPU twin), and the
// report says, per shape, whether a faster kernel than the heuristic's first
// exists: at the decode steps' 64 rows, a cached image's question (~216),
// a prompt (1200) and the vision encoder's patches (3888).
REX_TEST(tuned_candidates) {
  if (skip_without_gpu()) return;
  GemmRunner* tuned = tuning_runner();
  CHECK(tuned != nullptr);
  if (!tuned) return;
  const int shapes[4][2] = {{2560, 2048}, {2048, 2048}, {22016, 2048}, {2048, 11008}};
  const char* names[4] = {"qkv", "o_proj", "gate_up", "down"};
  for (int s = 0; s < 4; ++s) {
    Weights W(shapes[s][0], shapes[s][1], /*bias=*/s == 0);
    for (int m : {64, 216, 1200}) check_shape(std::string("tuned text ") + names[s], W, m, false, 0, tuned);
  }
  Weights vision_qkv(3840, 1280, true);
  check_shape("tuned vision qkv", vision_qkv, 3888, false, 0, tuned);
  const std::vector<std::string> report = tuned->tuning_report();
  for (const std::string& line : report) std::printf("  TUNE %s\n", line.c_str());
  CHECK(!report.empty());  // the shapes have several candidates each on the H200
}

// Pins: a candidate's configuration text from the tuning report picks that
// candidate with no timing, and the product stays right; a configuration the
// heuristic does not offer keeps its first; malformed specs fail.
REX_TEST(pinned_candidates) {
  std::vector<GemmRunner::Pin> pins;
  CHECK_OK(GemmRunner::parse_pins("216-256,22016,2048=id_1_tile 2;5,6,7=x;", &pins));
  CHECK_EQ(pins.size(), size_t(2));
  if (pins.size() == 2) {
    CHECK(pins[0].m_min == 216 && pins[0].m_max == 256 && pins[0].n == 22016 && pins[0].k == 2048);
    CHECK(pins[0].config == "id 1 tile 2");
    CHECK(pins[1].m_min == 5 && pins[1].m_max == 5 && pins[1].config == "x");
  }
  for (const char* spec : {"216,22016=x", "0-4,1,1=x", "9-3,1,1=x", "a,1,1=x", "1,1,1=", "1,1,1", "1,1,1,1=x"}) {
    const rex::Status st = GemmRunner::parse_pins(spec, &pins);
    std::printf("  pin %-12s -> %s\n", spec, st.ok() ? "ok (WRONG)" : st.message().c_str());
    CHECK(st.code() == rex::StatusCode::kInvalidArgument);
    CHECK_CONTAINS(st.message(), "expected");
  }
  if (skip_without_gpu()) return;
  // The gate_up shape at a cached question's 216 rows: its candidates from a tuning runner of its own.
  Weights W(22016, 2048, false);
  std::unique_ptr<GemmRunner> tuned(make_runner(true));
  CHECK(tuned != nullptr);
  if (!tuned) return;
  check_shape("pin: tuned gate_up", W, 216, false, 0, tuned.get());
  std::vector<std::string> configs;
  for (const std::string& line : tuned->tuning_report())
    if (line.rfind("    #", 0) == 0) configs.push_back(line.substr(line.find(": ") + 2));
  if (configs.size() < 2) {
    std::printf("  pin: the heuristic offered %zu candidate(s); nothing to pin\n", configs.size());
    return;
  }
  const size_t last = configs.size() - 1;
  std::unique_ptr<GemmRunner> pinned(make_runner(false));
  CHECK(pinned != nullptr);
  if (!pinned) return;
  pinned->set_pins({{200, 230, 22016, 2048, configs[last]}, {1, 8, 22016, 2048, "id 999999 tile 0"}});
  check_shape("pin: pinned gate_up", W, 216, false, 0, pinned.get());
  check_shape("pin: gate_up, a pin no candidate matches", W, 3, false, 0, pinned.get());
  const std::vector<std::string> report = pinned->tuning_report();
  for (const std::string& line : report) std::printf("  %s\n", line.c_str());
  CHECK_EQ(report.size(), size_t(2));
  if (report.size() == 2) {
    CHECK_CONTAINS(report[0], "PIN (m=216, n=22016, k=2048");
    CHECK_CONTAINS(report[0], configs[last]);
    CHECK_CONTAINS(report[1], "kept #0");
  }
}

REX_TEST(lm_head_fp32_logits) {
  if (skip_without_gpu()) return;
  Weights W(151936, 2048, false);
  for (int m : {1, 8}) check_shape("lm_head", W, m, true);
}

REX_TEST(vision_shapes) {
  if (skip_without_gpu()) return;
  constexpr int kPatches = 3888, kMerged = kPatches / 4;  // the merger sees 2x2-merged patches
  struct S { const char* name; int n, k, m; bool bias; };
  const S shapes[] = {
      {"vision patch_embed", 1280, 1176, kPatches, false},
      {"vision qkv", 3840, 1280, kPatches, true},
      {"vision proj", 1280, 1280, kPatches, true},
      {"vision gate_up", 6840, 1280, kPatches, true},
      {"vision down", 1280, 3420, kPatches, true},
      {"vision merger fc1", 5120, 5120, kMerged, true},
      {"vision merger fc2", 2048, 5120, kMerged, true},
  };
  for (const S& s : shapes) {
    Weights W(s.n, s.k, s.bias);
    check_shape(s.name, W, s.m, false);
  }
}

// x read through a row stride larger than k (a column slice of a wider buffer).
REX_TEST(strided_input) {
  if (skip_without_gpu()) return;
  Weights W(2048, 2048, false);
  check_shape("strided x", W, 8, false, 2560);
  check_shape("strided x", W, 1200, false, 2560);
  Weights V(1280, 3420, true);
  check_shape("strided x", V, 64, false, 3424);
}

// A bias that is only 2-, 4- or 8-byte aligned (a slice of a packed buffer):
// the plan is keyed by its alignment, so the heuristic's kernel can read it.
REX_TEST(less_aligned_bias) {
  if (skip_without_gpu()) return;
  for (int offset : {1, 2, 4}) {
    Weights W(1280, 1280, true, offset);
    check_shape("bias", W, 64, false);
    check_shape("bias", W, 3888, false);
  }
}

REX_TEST(graph_replay_matches_direct_bit_for_bit) {
  if (skip_without_gpu()) return;
  GemmRunner* g = runner();
  CHECK(g != nullptr);
  if (!g) return;
  const int m = 8, n = 3840, k = 1280;
  Weights W(n, k, true);
  DeviceArray<uint16_t> dx(to_bf16_bits(random_bf16_values(size_t(m) * k, ++g_seed)));
  DeviceArray<uint16_t> y_direct(size_t(m) * n), y_graph(size_t(m) * n);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);

  y_direct.poison();
  CHECK_OK(g->linear_bf16(dx.as<bf16>(), m, k, k, W.wp(), W.bp(), n, y_direct.as<bf16>(), stream));
  CHECK_CUDA_SYNC();

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CHECK_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  rex::Status captured = g->linear_bf16(dx.as<bf16>(), m, k, k, W.wp(), W.bp(), n, y_graph.as<bf16>(), stream);
  CHECK_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  CHECK_OK(captured);
  CHECK_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int rep = 0; rep < 2; ++rep) {
    y_graph.poison();
    CHECK_CUDA_SYNC();
    CHECK_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    CHECK_CUDA_SYNC();
    std::vector<uint16_t> a = y_direct.download(), b = y_graph.download();
    size_t differing = 0;
    for (size_t i = 0; i < a.size(); ++i) differing += a[i] != b[i];
    CHECK_EQ(differing, size_t(0));
    std::printf("  graph replay %d: %zu of %zu outputs differ from the direct call\n", rep, differing, a.size());
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

REX_TEST(m_zero_is_a_no_op) {
  if (skip_without_gpu()) return;
  GemmRunner* g = runner();
  CHECK(g != nullptr);
  if (!g) return;
  DeviceArray<uint16_t> w(16 * 16);
  CHECK_OK(g->linear_bf16(nullptr, 0, 16, 16, w.as<bf16>(), nullptr, 16, nullptr, nullptr));
  CHECK_OK(g->linear_f32(nullptr, 0, 16, 16, w.as<bf16>(), 16, nullptr, nullptr));
}

REX_TEST(bad_arguments_return_status) {
  // Before init(): a Status, no GPU needed.
  {
    GemmRunner fresh;
    rex::Status st = fresh.linear_bf16(nullptr, 1, 16, 16, nullptr, nullptr, 16, nullptr, nullptr);
    CHECK(!st.ok());
    CHECK_CONTAINS(st.message(), "before init");
    rex::Status st32 = fresh.linear_f32(nullptr, 1, 16, 16, nullptr, 16, nullptr, nullptr);
    CHECK(!st32.ok());
    CHECK_CONTAINS(st32.message(), "before init");
  }
  if (skip_without_gpu()) return;
  GemmRunner* g = runner();
  CHECK(g != nullptr);
  if (!g) return;
  CHECK(!g->init().ok());  // twice
  DeviceArray<uint16_t> x(64 * 64), w(64 * 64), b(64 + 16), y(64 * 64);
  const bf16* xp = x.as<bf16>();
  const bf16* wp = w.as<bf16>();
  bf16* yp = y.as<bf16>();
  auto expect_invalid = [](rex::Status st, const char* needle) {
    CHECK(!st.ok());
    CHECK(st.code() == rex::StatusCode::kInvalidArgument);
    CHECK_CONTAINS(st.message(), needle);
  };
  expect_invalid(g->linear_bf16(xp, 4, 64, 32, wp, nullptr, 64, yp, nullptr), "expected lda >= k");
  expect_invalid(g->linear_bf16(xp, 4, 64, 64, nullptr, nullptr, 64, yp, nullptr), "expected a weight pointer");
  expect_invalid(g->linear_bf16(nullptr, 4, 64, 64, wp, nullptr, 64, yp, nullptr), "expected an input pointer");
  expect_invalid(g->linear_bf16(xp, 4, 64, 64, wp, nullptr, 64, nullptr, nullptr), "expected an output pointer");
  expect_invalid(g->linear_bf16(xp, -1, 64, 64, wp, nullptr, 64, yp, nullptr), "expected m >= 0");
  expect_invalid(g->linear_bf16(xp, 4, 0, 64, wp, nullptr, 64, yp, nullptr), "expected k > 0");
  expect_invalid(g->linear_bf16(xp, 4, 64, 64, wp, nullptr, 0, yp, nullptr), "expected n > 0");
  const bf16* odd_bias = reinterpret_cast<const bf16*>(reinterpret_cast<const char*>(b.ptr) + 1);
  expect_invalid(g->linear_bf16(xp, 4, 64, 64, wp, odd_bias, 64, yp, nullptr), "expected element-aligned");
  expect_invalid(g->linear_f32(xp, 4, 64, 32, wp, 64, reinterpret_cast<float*>(yp), nullptr), "expected lda >= k");
  expect_invalid(g->linear_f32(xp, 4, 64, 64, nullptr, 64, reinterpret_cast<float*>(yp), nullptr),
                 "expected a weight pointer");
  expect_invalid(g->linear_f32(xp, 4, 64, 64, wp, 64, reinterpret_cast<float*>(yp + 1), nullptr),
                 "expected element-aligned");
  rex::Status st = g->linear_bf16(xp, 4, 64, 32, wp, nullptr, 64, yp, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  CHECK_CUDA_SYNC();
}

// Last: the table the notes are written from.
REX_TEST(zz_summary_table) {
  if (table().empty()) return;
  std::printf("\n%-44s %8s %8s %10s %8s %8s\n", "shape", "rel.err", "tol", "median ms", "TFLOP/s", "GB/s(W)");
  for (const Row& r : table())
    std::printf("%-44s %8.2e %8.0e %10.4f %8.1f %8.0f\n", r.name.c_str(), r.err, r.tol, r.ms, r.tflops, r.gbs);
}

}  // namespace
