// gemv (native/cuda/gemv.cuh) against the CPU twin (cpu::matmul_bias, fp32
// accumulation over bf16-exact inputs, then the epilogue's rounding on the
// host) for each epilogue, at the decode shapes of the 3B model and of the
// tiny checkpoint, m = 1..64, on fresh random inputs with poisoned outputs.
// Then the properties the decoder relies on, bit for bit:
//  - row invariance: row r of an m-row call equals a 1-row call on row r;
//  - the restricted head (row_ids) equals the full head's rows;
//  - two runs give the same bits; a graph replay with programmatic dependent
//    launch (after a kernel that writes x) gives the eager result.
// Last, the timings at the decode shapes (L2 flushed, cold) beside cuBLASLt
// on the same shapes, one step's projections summed (36 layers + head), and
// the same projections chained as in a step (each layer's own weights,
// programmatic dependent launch, one CUDA graph), where the kernels overlap.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "cuda/gemm.cuh"
#include "cuda/gemv.cuh"
#include "cuda/norm.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using rex::cuda::GemvArgs;
using rex::cuda::GemvEpilogue;
using namespace rex_test;

uint64_t g_seed = 0x47454d56ull;

float silu(float x) { return x / (1.0f + std::exp(-x)); }

struct Problem {
  int m, k, n;
  GemvEpilogue epilogue;
  bool bias = false;
  bool norm = false;  // x is the fused RMSNorm of fp32 rows
};

// Random inputs of one problem, on host and device.
struct Inputs {
  Problem p;
  int weight_rows;
  std::vector<float> x, w, bias, residual, norm_in, norm_w;
  DeviceArray<uint16_t> dx, dw, dbias, dnorm_w;
  DeviceArray<float> dres, dnorm_in;
  explicit Inputs(const Problem& pr)
      : p(pr),
        weight_rows(pr.epilogue == GemvEpilogue::kSwiglu ? 2 * pr.n : pr.n),
        x(random_bf16_values(size_t(pr.m) * pr.k, ++g_seed, 1.0f)),
        w(random_bf16_values(size_t(weight_rows) * pr.k, ++g_seed, 0.05f)),
        bias(random_bf16_values(size_t(pr.n), ++g_seed, 0.5f)),
        residual(random_floats(size_t(pr.m) * pr.n, ++g_seed, 2.0f)),
        norm_in(random_floats(size_t(pr.m) * pr.k, ++g_seed, 3.0f)),
        norm_w(random_bf16_values(size_t(pr.k), ++g_seed, 1.0f)),
        dx(to_bf16_bits(x)),
        dw(to_bf16_bits(w)),
        dbias(to_bf16_bits(bias)),
        dnorm_w(to_bf16_bits(norm_w)),
        dres(residual),
        dnorm_in(norm_in) {
    if (pr.norm) {
      // The fused prologue's input, as the kernel rounds it: bf16(bf16(r * inv) * w).
      for (int r = 0; r < pr.m; ++r) {
        double ss = 0;
        for (int i = 0; i < pr.k; ++i) ss += double(norm_in[size_t(r) * pr.k + i]) * norm_in[size_t(r) * pr.k + i];
        const double inv = 1.0 / std::sqrt(ss / pr.k + 1e-6);
        for (int i = 0; i < pr.k; ++i)
          x[size_t(r) * pr.k + i] =
              rex::round_to_bf16(rex::round_to_bf16(float(norm_in[size_t(r) * pr.k + i] * inv)) * norm_w[size_t(i)]);
      }
    }
  }
};

// The epilogue's result on the host, from fp32 sums of the CPU twin.
std::vector<float> reference(const Inputs& in) {
  const Problem& p = in.p;
  std::vector<float> acc(size_t(p.m) * in.weight_rows);
  rex::cpu::matmul_bias(pool(), in.x.data(), p.m, p.k, in.w.data(), nullptr, in.weight_rows, acc.data());
  std::vector<float> out(size_t(p.m) * p.n);
  for (int r = 0; r < p.m; ++r)
    for (int j = 0; j < p.n; ++j) {
      const float a = acc[size_t(r) * in.weight_rows + j];
      float& o = out[size_t(r) * p.n + j];
      switch (p.epilogue) {
        case GemvEpilogue::kStoreBf16: o = rex::round_to_bf16(a + (p.bias ? in.bias[size_t(j)] : 0.0f)); break;
        case GemvEpilogue::kStoreF32: o = a; break;
        case GemvEpilogue::kAddResidual: o = in.residual[size_t(r) * p.n + j] + rex::round_to_bf16(a); break;
        case GemvEpilogue::kSwiglu:
          o = rex::round_to_bf16(silu(rex::round_to_bf16(a)) * rex::round_to_bf16(acc[size_t(r) * in.weight_rows + p.n + j]));
          break;
      }
    }
  return out;
}

bool float_out(GemvEpilogue e) { return e == GemvEpilogue::kStoreF32 || e == GemvEpilogue::kAddResidual; }

// Runs gemv on rows [row0, row0 + m) of the inputs; returns the m x n outputs as floats.
struct Runner {
  DeviceArray<uint16_t> out_bf16;
  DeviceArray<float> out_f32;
  explicit Runner(const Inputs& in) : out_bf16(size_t(in.p.m) * in.p.n), out_f32(size_t(in.p.m) * in.p.n) {}
  GemvArgs args(const Inputs& in, int row0, int m, const int32_t* row_ids = nullptr, int n = -1) {
    GemvArgs a;
    a.epilogue = in.p.epilogue;
    a.x = in.dx.as<bf16>() + size_t(row0) * in.p.k;
    if (in.p.norm) {
      a.x = nullptr;
      a.norm_input = in.dnorm_in.ptr + size_t(row0) * in.p.k;
      a.norm_weight = in.dnorm_w.as<bf16>();
    }
    a.lda = in.p.k;
    a.m = m;
    a.w = in.dw.as<bf16>();
    a.k = in.p.k;
    a.n = n > 0 ? n : in.p.n;
    a.row_ids = row_ids;
    a.pair_offset = in.p.epilogue == GemvEpilogue::kSwiglu ? in.p.n : 0;
    a.bias = in.p.bias ? in.dbias.as<bf16>() : nullptr;
    a.out_bf16 = out_bf16.as<bf16>();
    a.out_f32 = out_f32.ptr;
    a.residual = out_f32.ptr;
    return a;
  }
  // Resets the outputs (poison, or the residual's start values).
  void reset(const Inputs& in, int row0, int m) {
    out_bf16.poison();
    if (in.p.epilogue == GemvEpilogue::kAddResidual)
      cudaMemcpy(out_f32.ptr, in.residual.data() + size_t(row0) * in.p.n, size_t(m) * in.p.n * sizeof(float),
                 cudaMemcpyHostToDevice);
    else
      out_f32.poison();
  }
  std::vector<float> result(const Inputs& in, int m, int n = -1) {
    const size_t count = size_t(m) * (n > 0 ? n : in.p.n);
    if (float_out(in.p.epilogue)) {
      std::vector<float> all = out_f32.download();
      return std::vector<float>(all.begin(), all.begin() + std::ptrdiff_t(count));
    }
    std::vector<uint16_t> all = out_bf16.download();
    return from_bf16_bits(std::vector<uint16_t>(all.begin(), all.begin() + std::ptrdiff_t(count)));
  }
};

const char* epilogue_name(GemvEpilogue e) {
  switch (e) {
    case GemvEpilogue::kStoreBf16: return "store_bf16";
    case GemvEpilogue::kStoreF32: return "store_f32";
    case GemvEpilogue::kAddResidual: return "add_residual";
    case GemvEpilogue::kSwiglu: return "swiglu";
  }
  return "?";
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Parity against the twin, then row invariance against 1-row calls.
void check_problem(const Problem& p) {
  Inputs in(p);
  Runner run(in);
  run.reset(in, 0, p.m);
  CHECK_OK(rex::cuda::gemv(run.args(in, 0, p.m), nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<float> out = run.result(in, p.m), ref = reference(in);
  const double err = relative_error(out, ref);
  const double tol = p.epilogue == GemvEpilogue::kStoreF32 ? kFp32Tolerance : kBf16Tolerance;
  std::printf("  %-12s%s m %2d k %5d n %6d  rel.err %.2e (tol %.0e)\n", epilogue_name(p.epilogue),
              p.norm ? "+norm" : "     ", p.m, p.k, p.n, err, tol);
  CHECK(err < tol);
  // The same call again: the same bits.
  run.reset(in, 0, p.m);
  CHECK_OK(rex::cuda::gemv(run.args(in, 0, p.m), nullptr));
  CHECK(same_bits(run.result(in, p.m), out));
  // Rows alone: the same bits as inside the batch.
  for (int r : {0, p.m / 2, p.m - 1}) {
    run.reset(in, r, 1);
    CHECK_OK(rex::cuda::gemv(run.args(in, r, 1), nullptr));
    const std::vector<float> alone = run.result(in, 1);
    const std::vector<float> in_batch(out.begin() + std::ptrdiff_t(r) * p.n, out.begin() + std::ptrdiff_t(r + 1) * p.n);
    if (!same_bits(alone, in_batch)) std::printf("  row %d alone differs from the %d-row batch\n", r, p.m);
    CHECK(same_bits(alone, in_batch));
  }
}

REX_TEST(decode_shapes_against_the_twin) {
  if (skip_without_gpu()) return;
  for (int m : {1, 3, 8, 13, 64}) {
    check_problem({m, 2048, 2560, GemvEpilogue::kStoreBf16, true});  // qkv with bias
    check_problem({m, 2048, 2048, GemvEpilogue::kAddResidual});     // o_proj
    check_problem({m, 2048, 11008, GemvEpilogue::kSwiglu});         // gate_up
    check_problem({m, 11008, 2048, GemvEpilogue::kAddResidual});    // down_proj
  }
  for (int m : {1, 8}) check_problem({m, 2048, 151936, GemvEpilogue::kStoreF32});  // LM head
  // The fused RMSNorm prologue (qkv, gate_up and the head read the residual stream).
  for (int m : {1, 5, 64}) {
    check_problem({m, 2048, 2560, GemvEpilogue::kStoreBf16, true, true});
    check_problem({m, 2048, 11008, GemvEpilogue::kSwiglu, false, true});
  }
  check_problem({2, 2048, 151936, GemvEpilogue::kStoreF32, false, true});
  check_problem({3, 128, 256, GemvEpilogue::kStoreBf16, true, true});
  // The norm's scales reused across x's segments (k 11008 at 5 rows: x in two segments).
  check_problem({5, 11008, 2048, GemvEpilogue::kAddResidual, false, true});
}

REX_TEST(tiny_and_ragged_shapes) {
  if (skip_without_gpu()) return;
  for (int m : {1, 5, 9, 33}) {
    check_problem({m, 128, 256, GemvEpilogue::kStoreBf16, true});
    check_problem({m, 128, 128, GemvEpilogue::kAddResidual});
    check_problem({m, 128, 256, GemvEpilogue::kSwiglu});
    check_problem({m, 256, 128, GemvEpilogue::kAddResidual});
    check_problem({m, 96, 37, GemvEpilogue::kStoreF32});   // n not a multiple of 16, k of 128
    check_problem({m, 160, 1000, GemvEpilogue::kStoreBf16, false});
  }
}

// The restricted LM head: the coordinate rows plus a few others, against the
// full head's rows, bit for bit.
REX_TEST(restricted_head_equals_full_head_rows) {
  if (skip_without_gpu()) return;
  for (int m : {1, 4}) {
    Inputs in({m, 2048, 151936, GemvEpilogue::kStoreF32});
    Runner full(in);
    full.reset(in, 0, m);
    CHECK_OK(rex::cuda::gemv(full.args(in, 0, m), nullptr));
    const std::vector<float> all = full.result(in, m);
    std::vector<int32_t> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(151665 + 4 + i - 1000);  // a contiguous block
    for (int id : {151643, 151645, 7, 151935}) ids.push_back(id);
    DeviceArray<int32_t> dids(ids);
    Runner part(in);
    part.reset(in, 0, m);
    CHECK_OK(rex::cuda::gemv(part.args(in, 0, m, dids.ptr, int(ids.size())), nullptr));
    const std::vector<float> sub = part.result(in, m, int(ids.size()));
    size_t mismatches = 0;
    for (int r = 0; r < m; ++r)
      for (size_t j = 0; j < ids.size(); ++j) {
        const float a = sub[size_t(r) * ids.size() + j], b = all[size_t(r) * in.p.n + size_t(ids[j])];
        mismatches += std::memcmp(&a, &b, sizeof(float)) != 0;
      }
    std::printf("  m %d: %zu restricted rows, %zu differ from the full head\n", m, ids.size(), mismatches);
    CHECK_EQ(mismatches, size_t(0));
  }
}

// x written by a kernel (rmsnorm), then gemv launched with programmatic
// dependent launch, eagerly and as a captured graph: both equal the plain run.
REX_TEST(overlapped_launch_waits_for_its_input) {
  if (skip_without_gpu()) return;
  const int m = 2, k = 2048, n = 2048;
  Inputs in({m, k, n, GemvEpilogue::kStoreBf16, true});
  const std::vector<float> pre = random_floats(size_t(m) * k, ++g_seed, 3.0f);
  const std::vector<float> norm_w = random_bf16_values(size_t(k), ++g_seed, 1.0f);
  DeviceArray<float> dpre(pre);
  DeviceArray<uint16_t> dnorm(to_bf16_bits(norm_w));
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  Runner run(in);
  auto step = [&](bool overlap) {
    in.dx.poison();
    CHECK_OK(rex::cuda::rmsnorm_bf16(dpre.ptr, m, k, dnorm.as<bf16>(), 1e-6f, in.dx.as<bf16>(), s));
    GemvArgs a = run.args(in, 0, m);
    a.overlap_previous = overlap;
    CHECK_OK(rex::cuda::gemv(a, s));
  };
  run.reset(in, 0, m);
  step(false);
  cudaStreamSynchronize(s);
  const std::vector<float> plain = run.result(in, m);
  CHECK(relative_error(plain, std::vector<float>(plain.size(), 0.0f)) > 0);  // not all zeros
  run.reset(in, 0, m);
  step(true);
  cudaStreamSynchronize(s);
  CHECK(same_bits(run.result(in, m), plain));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  step(true);
  CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess);
  CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (int rep = 0; rep < 3; ++rep) {
    run.reset(in, 0, m);
    in.dx.poison();
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess);
    cudaStreamSynchronize(s);
    CHECK(same_bits(run.result(in, m), plain));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  CHECK_CUDA_SYNC();
}

REX_TEST(bad_arguments) {
  if (skip_without_gpu()) return;
  Inputs in({1, 128, 128, GemvEpilogue::kStoreBf16});
  Runner run(in);
  auto expect_invalid = [](GemvArgs a, const char* needle) {
    rex::Status st = rex::cuda::gemv(a, nullptr);
    CHECK(!st.ok());
    CHECK_CONTAINS(st.message(), needle);
  };
  GemvArgs a = run.args(in, 0, 1);
  GemvArgs bad = a;
  bad.m = 65;
  expect_invalid(bad, "expected 1 <= m <= 64");
  bad = a;
  bad.k = 100;
  expect_invalid(bad, "multiple of 32");
  bad = a;
  bad.lda = 64;
  expect_invalid(bad, "lda >= k");
  bad = a;
  bad.epilogue = GemvEpilogue::kSwiglu;
  expect_invalid(bad, "pair_offset");
  bad = a;
  bad.w = reinterpret_cast<const bf16*>(reinterpret_cast<const char*>(a.w) + 2);
  expect_invalid(bad, "16-byte aligned");
  CHECK_CUDA_SYNC();
}

// Cold times (L2 flushed) at the decode shapes beside cuBLASLt, and a step's sum.
REX_TEST(zz_timing) {
  if (skip_without_gpu()) return;
  rex::cuda::GemmRunner gemm;
  CHECK_OK(gemm.init());
  struct Shape {
    const char* name;
    int k, n, weight_rows;
    GemvEpilogue e;
    int per_step;  // times per decode step
  };
  const Shape shapes[] = {{"qkv", 2048, 2560, 2560, GemvEpilogue::kStoreBf16, 36},
                          {"o_proj", 2048, 2048, 2048, GemvEpilogue::kAddResidual, 36},
                          {"gate_up+swiglu", 2048, 11008, 22016, GemvEpilogue::kSwiglu, 36},
                          {"down", 11008, 2048, 2048, GemvEpilogue::kAddResidual, 36},
                          {"lm_head", 2048, 151936, 151936, GemvEpilogue::kStoreF32, 1}};
  for (int m : {1, 8, 64}) {
    double step_us = 0, step_cublas_us = 0, step_bytes = 0;
    for (const Shape& sh : shapes) {
      Inputs in({m, sh.k, sh.n, sh.e, sh.e == GemvEpilogue::kStoreBf16});
      Runner run(in);
      run.reset(in, 0, m);
      const double bytes = double(sh.weight_rows) * sh.k * 2;
      GemvArgs a = run.args(in, 0, m);
      cudaStream_t s;
      cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
      const double ours = median_us([] {}, [&] { (void)rex::cuda::gemv(a, s); }, s, true);
      DeviceArray<uint16_t> y(size_t(m) * sh.weight_rows);
      DeviceArray<float> yf(size_t(m) * sh.weight_rows);
      const double theirs = median_us(
          [] {},
          [&] {
            if (sh.e == GemvEpilogue::kStoreF32)
              (void)gemm.linear_f32(in.dx.as<bf16>(), m, sh.k, sh.k, in.dw.as<bf16>(), sh.weight_rows, yf.ptr, s);
            else
              (void)gemm.linear_bf16(in.dx.as<bf16>(), m, sh.k, sh.k, in.dw.as<bf16>(), nullptr, sh.weight_rows, y.as<bf16>(), s);
          },
          s, true);
      cudaStreamDestroy(s);
      std::printf("  TIME gemv %-15s m %2d: %7.2f us %5.0f GB/s | cuBLASLt %7.2f us %5.0f GB/s | floor %6.2f us\n", sh.name,
                  m, ours, bytes / (ours * 1e-6) / 1e9, theirs, bytes / (theirs * 1e-6) / 1e9, bytes / kCopyBandwidth * 1e6);
      step_us += ours * sh.per_step;
      step_cublas_us += theirs * sh.per_step;
      step_bytes += bytes * sh.per_step;
    }
    std::printf("  STEP m %2d: projections %.3f ms (cuBLASLt %.3f ms), %.3f GB, floor %.3f ms -> %.0f%% of the floor\n", m,
                step_us / 1e3, step_cublas_us / 1e3, step_bytes / 1e9, step_bytes / kCopyBandwidth * 1e3,
                100.0 * step_bytes / kCopyBandwidth * 1e6 / step_us);
  }
  CHECK_CUDA_SYNC();
}

// One step's projections as the decode step chains them (norm into qkv and
// gate_up, residual adds, SwiGLU, the head), each layer with its own weights so nothing stays in L2, captured once
// with programmatic dependent launch and replayed: the time a graphed step
// spends in its GEMVs, overlaps between kernels included (attention and rope
// left out). Then subsets of the chain, to place the time.
REX_TEST(zz_timing_chain) {
  if (skip_without_gpu()) return;
  const int layers = 36, hidden = 2048, inter = 11008, qkv = 2560, vocab = 151936;
  const size_t sizes[5] = {size_t(qkv) * hidden, size_t(hidden) * hidden, size_t(2 * inter) * hidden,
                           size_t(inter) * hidden, size_t(vocab) * hidden};
  const size_t layer_elems = sizes[0] + sizes[1] + sizes[2] + sizes[3];
  DeviceArray<uint16_t> weights{layer_elems * layers + sizes[4]};
  cudaMemset(weights.ptr, 0x3c, weights.count * sizeof(uint16_t));  // 0x3c3c: a small bf16
  enum Part { kQkv = 1, kO = 2, kGateUp = 4, kDown = 8, kHead = 16, kAll = 31 };
  struct Subset {
    const char* name;
    int mask;
  };
  const Subset subsets[] = {
      {"all", kAll}, {"qkv+o", kQkv | kO}, {"gate_up+down", kGateUp | kDown}, {"gate_up", kGateUp}, {"down", kDown}};
  for (int m : {1, 8}) {
    DeviceArray<float> residual{size_t(m) * hidden}, logits{size_t(m) * vocab};
    DeviceArray<uint16_t> norm_w{size_t(hidden)}, qkv_out{size_t(m) * qkv}, attn{size_t(m) * hidden},
        act{size_t(m) * inter};
    cudaMemset(residual.ptr, 0, residual.count * sizeof(float));
    cudaMemset(norm_w.ptr, 0x3c, norm_w.count * sizeof(uint16_t));
    cudaMemset(attn.ptr, 0x3c, attn.count * sizeof(uint16_t));
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    for (const Subset& subset : subsets) {
      const char* name = subset.name;
      const int mask = subset.mask;
      if (m == 8 && mask != kAll) continue;
      rex::Status first = rex::Status::Ok();
      bool first_launch = true;
      double bytes = 0;
      auto launch = [&](GemvArgs a, int part, size_t elems) {
        if (!(mask & part)) return;
        a.overlap_previous = !first_launch;
        first_launch = false;
        bytes += 2.0 * double(elems);
        const rex::Status st = rex::cuda::gemv(a, s);
        if (first.ok() && !st.ok()) first = st;
      };
      auto args_of = [&](int l) {
        const bf16* w = weights.as<bf16>() + layer_elems * size_t(l);
        std::array<GemvArgs, 4> p{};
        GemvArgs& a = p[0];
        a.norm_input = residual.ptr, a.norm_weight = norm_w.as<bf16>(), a.lda = hidden, a.k = hidden;
        a.w = w, a.n = qkv, a.out_bf16 = qkv_out.as<bf16>();
        w += sizes[0];
        GemvArgs& o = p[1];
        o.epilogue = GemvEpilogue::kAddResidual, o.x = attn.as<bf16>(), o.lda = hidden, o.k = hidden;
        o.w = w, o.n = hidden, o.residual = residual.ptr;
        w += sizes[1];
        GemvArgs& g = p[2];
        g.epilogue = GemvEpilogue::kSwiglu, g.norm_input = residual.ptr, g.norm_weight = norm_w.as<bf16>();
        g.lda = hidden, g.k = hidden, g.w = w, g.n = inter, g.pair_offset = inter, g.out_bf16 = act.as<bf16>();
        w += sizes[2];
        GemvArgs& d = p[3];
        d.epilogue = GemvEpilogue::kAddResidual, d.x = act.as<bf16>(), d.lda = inter, d.k = inter;
        d.w = w, d.n = hidden, d.residual = residual.ptr;
        for (GemvArgs& x : p) x.m = m;
        return p;
      };
      GemvArgs h;
      h.epilogue = GemvEpilogue::kStoreF32, h.norm_input = residual.ptr, h.norm_weight = norm_w.as<bf16>();
      h.lda = hidden, h.k = hidden, h.w = weights.as<bf16>() + layer_elems * layers, h.n = vocab, h.m = m;
      h.out_f32 = logits.ptr;
      auto chain = [&] {
        for (int l = 0; l < layers; ++l) {
          std::array<GemvArgs, 4> p = args_of(l);
          const int parts[4] = {kQkv, kO, kGateUp, kDown};
          for (int i = 0; i < 4; ++i) launch(p[size_t(i)], parts[i], sizes[i]);
        }
        launch(h, kHead, sizes[4]);
      };
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
      chain();
      CHECK(cudaStreamEndCapture(s, &graph) == cudaSuccess);
      CHECK_OK(first);
      CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
      const double us = median_us([] {}, [&] { cudaGraphLaunch(exec, s); }, s, true, 20);
      std::printf("  CHAIN m %d %-12s: graphed %.3f ms, %.3f GB, %.0f GB/s, floor %.3f ms -> %.0f%% of the floor\n", m,
                  name, us / 1e3, bytes / 1e9, bytes / (us * 1e-6) / 1e9, bytes / kCopyBandwidth * 1e3,
                  100.0 * bytes / kCopyBandwidth * 1e6 / us);
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
    cudaStreamDestroy(s);
  }
  CHECK_CUDA_SYNC();
}

}  // namespace
