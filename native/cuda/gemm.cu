// See gemm.cuh. Why it is shaped this way:
//  - cuBLASLt, not hand-written kernels: at every shape of this model the
//    library's Hopper kernels are at or near the floor (NOTES.md, GEMM), and
//    its bias epilogue fuses the vision blocks' bias add for free.
//  - Row-major Y[M,N] = X[M,K] W[N,K]^T is, read column-major, Y^T = W^T' X^T:
//    A = W (col-major K x N, ld K, op T), B = X (col-major K x M, ld lda,
//    op N), C = D = Y (col-major N x M, ld N). So cuBLAS sees m=N, n=M, k=K,
//    the "TN" case its kernels are best at, and the bias (length N) runs
//    along D's rows, i.e. one value per output feature.
//  - Everything the library allocates or decides (descriptor, three layouts,
//    heuristic algorithm) is made on a shape's first call and cached, keyed
//    by shape, output type, bias-or-not and the pointers' alignment (the
//    heuristic assumes 256-byte-aligned buffers unless told otherwise, and
//    reads the bias address, so the alignment it saw is part of the key). Afterwards a call is a map
//    lookup, one attribute write (the bias pointer) and the cublasLtMatmul
//    launch into the workspace from init(): no allocation, capturable in a
//    CUDA graph. Make a shape's first call outside capture.
//  - Not thread-safe: one runner per stream/thread (the cache and the
//    per-call bias attribute are unguarded).
//  - Tuning (set_tuning, an A/B tool: REX_OMNI_GEMM_TUNE): the heuristic's
//    first candidate is within 0-7% of the best at M = 1-8 (NOTES.md, GEMM),
//    but a cached image's question (M ~ 216) streamed its weights at half
//    the copy rate; timing the candidates on the real shape says whether a
//    better kernel exists there. Session 8: yes at M = 216 (gate_up 48 -> 32
//    us), but the choice depends on timings; the report also prints each
//    candidate's tile/stages/split-k/swizzle/cluster ids, so that a shape can
//    be pinned by configuration instead.
#include "cuda/gemm.cuh"

#include <cublasLt.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"

namespace rex::cuda {
namespace {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

enum class OutType : int { kBf16 = 0, kF32 = 1 };

// The largest power of two (capped at 256, the heuristic's default
// assumption) that divides the address.
uint32_t pointer_alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

struct PlanKey {
  int m, n, k, lda;
  OutType out;
  bool bias;
  uint32_t align_x, align_w, align_y, align_bias;  // align_bias: 0 without bias
  bool operator<(const PlanKey& o) const {
    return std::tie(m, n, k, lda, out, bias, align_x, align_w, align_y, align_bias) <
           std::tie(o.m, o.n, o.k, o.lda, o.out, o.bias, o.align_x, o.align_w, o.align_y, o.align_bias);
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;   // W
  cublasLtMatrixLayout_t b = nullptr;   // X
  cublasLtMatrixLayout_t cd = nullptr;  // Y (C and D)
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's usable ones, its order
  bool tuned = false;

  void destroy() {
    if (cd) cublasLtMatrixLayoutDestroy(cd);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
    cd = b = a = nullptr;
    desc = nullptr;
  }
};

// An algorithm's configuration as cuBLASLt numbers it (algorithm, tile,
// stages, split-k, reduction, swizzle, custom option, inner shape and cluster
// ids: the enums of cublasLt.h), for the tuning report and the pins; "?"
// where an attribute cannot be read.
std::string algo_config_text(const cublasLtMatmulAlgo_t& algo) {
  const std::pair<const char*, cublasLtMatmulAlgoConfigAttributes_t> fields[] = {
      {"id", CUBLASLT_ALGO_CONFIG_ID},
      {"tile", CUBLASLT_ALGO_CONFIG_TILE_ID},
      {"stages", CUBLASLT_ALGO_CONFIG_STAGES_ID},
      {"splitk", CUBLASLT_ALGO_CONFIG_SPLITK_NUM},
      {"reduction", CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME},
      {"swizzle", CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING},
      {"custom", CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION},
      {"inner", CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID},
      {"cluster", CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID}};
  std::string text;
  for (const auto& [name, attr] : fields) {
    size_t size = 0;
    uint64_t value = 0;
    const bool ok = cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, nullptr, 0, &size) == CUBLAS_STATUS_SUCCESS &&
                    size > 0 && size <= sizeof value &&
                    cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &value, size, &size) == CUBLAS_STATUS_SUCCESS;
    text += std::string(text.empty() ? "" : " ") + name + " " + (ok ? std::to_string(value) : "?");
  }
  return text;
}

std::string shape_text(const PlanKey& key) {
  return "(m=" + std::to_string(key.m) + ", n=" + std::to_string(key.n) + ", k=" + std::to_string(key.k) +
         ", lda=" + std::to_string(key.lda) + ", " + (key.out == OutType::kBf16 ? "bf16" : "fp32") + " out" +
         (key.bias ? ", bias" : "") + ")";
}

Status cublas_error(const char* call, const PlanKey& key, cublasStatus_t st) {
  return Status(StatusCode::kCudaError, std::string(call) + " " + shape_text(key) + ": " + cublas_status_name(st));
}

// Reads `n` 16-byte words (L2 flush before a tuning launch; a read leaves
// no dirty lines whose write-back a memset flush would charge to the launch).
__global__ void read_flush_kernel(const uint4* p, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    acc ^= p[i].x ^ p[i].w;
  if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads
}

}  // namespace

struct GemmRunner::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer<unsigned char> workspace;
  std::map<PlanKey, Plan> plans;
  bool tune = false;
  std::vector<Pin> pins;
  std::vector<std::string> report;
  DeviceBuffer<uint4> l2_flush;  // allocated on the first tuning
  DeviceBuffer<unsigned> flush_sink;

  Status tune_plan(const PlanKey& key, Plan& plan, const bf16* w, const bf16* x, void* y, cudaStream_t stream);
  // y = x w^T (+ the plan's bias) with one of the plan's algorithms.
  cublasStatus_t matmul(const Plan& plan, const cublasLtMatmulAlgo_t& algo, const bf16* w, const bf16* x, void* y,
                        cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    return cublasLtMatmul(handle, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.cd, y, plan.cd, &algo,
                          workspace.get(), workspace.bytes(), stream);
  }

  ~Impl() {
    for (auto& entry : plans) entry.second.destroy();
    if (handle) cublasLtDestroy(handle);
  }

  Status make_plan(const PlanKey& key, const void* bias, Plan* plan_out);
  Status run(const char* api, const bf16* x, int m, int k, int lda, const bf16* w, const bf16* bias, int n,
             void* y, OutType out, cudaStream_t stream);
};

GemmRunner::GemmRunner() = default;
GemmRunner::~GemmRunner() = default;

Status GemmRunner::init(size_t workspace_bytes) {
  if (impl_) return Status(StatusCode::kInternal, "GemmRunner::init called twice");
  auto impl = std::make_unique<Impl>();
  cublasStatus_t st = cublasLtCreate(&impl->handle);
  if (st != CUBLAS_STATUS_SUCCESS) {
    impl->handle = nullptr;
    return Status(StatusCode::kCudaError, std::string("cublasLtCreate: ") + cublas_status_name(st));
  }
  REX_RETURN_IF_ERROR(impl->workspace.allocate(workspace_bytes, "the cuBLASLt workspace"));
  impl_ = std::move(impl);
  return Status::Ok();
}

// `bias` (null without one) is set before the heuristic runs: the heuristic
// reads its address and leaves out kernels that need a more aligned bias (seen
// with cuBLAS 13.1: a 2-byte-aligned bias left 1 of 8 candidates). Later calls
// with the same key have a bias of the same alignment.
Status GemmRunner::Impl::make_plan(const PlanKey& key, const void* bias, Plan* plan_out) {
  Plan plan;
  auto fail = [&](const char* call, cublasStatus_t st) {
    plan.destroy();
    return cublas_error(call, key, st);
  };
  const cudaDataType_t out_type = key.out == OutType::kBf16 ? CUDA_R_16BF : CUDA_R_32F;

  cublasStatus_t st = cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  if (st != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulDescCreate", st);
  const int32_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  st = cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  if (st == CUBLAS_STATUS_SUCCESS && key.bias) {
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CUDA_R_16BF;
    st = cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                          sizeof(bias_type));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  }
  if (st != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulDescSetAttribute", st);

  // Column-major views (see the note at the top).
  st = cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, uint64_t(key.k), uint64_t(key.n), int64_t(key.k));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, uint64_t(key.k), uint64_t(key.m), int64_t(key.lda));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.cd, out_type, uint64_t(key.n), uint64_t(key.m), int64_t(key.n));
  if (st != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatrixLayoutCreate", st);

  cublasLtMatmulPreference_t pref = nullptr;
  st = cublasLtMatmulPreferenceCreate(&pref);
  if (st != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulPreferenceCreate", st);
  const uint64_t max_workspace = workspace.bytes();
  const uint32_t align_a = key.align_w, align_b = key.align_x, align_cd = key.align_y;
  st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace,
                                            sizeof(max_workspace));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                              sizeof(align_a));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                              sizeof(align_b));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_cd,
                                              sizeof(align_cd));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_cd,
                                              sizeof(align_cd));
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulPreferenceDestroy(pref);
    return fail("cublasLtMatmulPreferenceSetAttribute", st);
  }

  constexpr int kRequested = 8;
  cublasLtMatmulHeuristicResult_t results[kRequested];
  std::memset(results, 0, sizeof(results));
  int returned = 0;
  st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.cd, plan.cd, pref, kRequested, results,
                                      &returned);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS) return fail("cublasLtMatmulAlgoGetHeuristic", st);
  for (int i = 0; i < returned && i < kRequested; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= max_workspace)
      plan.candidates.push_back(results[i].algo);
  if (plan.candidates.empty()) {
    plan.destroy();
    return Status(StatusCode::kCudaError, "cublasLtMatmulAlgoGetHeuristic " + shape_text(key) +
                                              ": no usable algorithm among " + std::to_string(returned) +
                                              " returned (CUBLAS_STATUS_NOT_SUPPORTED)");
  }
  plan.algo = plan.candidates.front();
  for (const Pin& pin : pins) {
    if (key.m < pin.m_min || key.m > pin.m_max || key.n != pin.n || key.k != pin.k) continue;
    const auto chosen = std::find_if(plan.candidates.begin(), plan.candidates.end(),
                                     [&](const cublasLtMatmulAlgo_t& algo) { return algo_config_text(algo) == pin.config; });
    if (chosen != plan.candidates.end()) plan.algo = *chosen;
    report.push_back("PIN " + shape_text(key) + ": " +
                     (chosen != plan.candidates.end()
                          ? "#" + std::to_string(chosen - plan.candidates.begin()) + " (" + pin.config + ")"
                          : "no candidate is (" + pin.config + "), kept #0"));
    break;
  }
  *plan_out = plan;
  return Status::Ok();
}

Status GemmRunner::Impl::tune_plan(const PlanKey& key, Plan& plan, const bf16* w, const bf16* x, void* y,
                                   cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  REX_CUDA_TRY(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return Status::Ok();  // a later call outside capture tunes it
  plan.tuned = true;
  if (plan.candidates.size() < 2) return Status::Ok();
  constexpr size_t kFlushBytes = size_t(128) << 20;  // past the H200's 60 MB of L2
  constexpr int kRuns = 3;
  REX_RETURN_IF_ERROR(l2_flush.ensure(kFlushBytes / sizeof(uint4), "the GEMM tuning's L2 flush buffer"));
  REX_RETURN_IF_ERROR(flush_sink.ensure(1, "the GEMM tuning's flush sink"));
  cudaEvent_t start = nullptr, stop = nullptr;
  REX_CUDA_TRY(cudaEventCreate(&start));
  cudaError_t made = cudaEventCreate(&stop);
  if (made != cudaSuccess) {
    cudaEventDestroy(start);
    return cuda_status(made, "cudaEventCreate");
  }
  std::string line = shape_text(key) + ", " + std::to_string(plan.candidates.size()) + " candidates, us:";
  double best_us = 1e30;
  size_t best = 0;  // the heuristic's first, should none run
  bool timing_failed = false;
  for (size_t i = 0; i < plan.candidates.size() && !timing_failed; ++i) {
    auto launch = [&] { return matmul(plan, plan.candidates[i], w, x, y, stream); };
    if (launch() != CUBLAS_STATUS_SUCCESS) {  // its first launch also warms it
      line += " #" + std::to_string(i) + " fails";
      continue;
    }
    double us = 1e30;
    for (int r = 0; r < kRuns && !timing_failed; ++r) {
      read_flush_kernel<<<1024, 256, 0, stream>>>(l2_flush.get(), l2_flush.size(), flush_sink.get());
      float ms = 0;
      timing_failed = cudaEventRecord(start, stream) != cudaSuccess || launch() != CUBLAS_STATUS_SUCCESS ||
                      cudaEventRecord(stop, stream) != cudaSuccess || cudaEventSynchronize(stop) != cudaSuccess ||
                      cudaEventElapsedTime(&ms, start, stop) != cudaSuccess;
      us = std::min(us, 1000.0 * ms);
    }
    char text[32];
    std::snprintf(text, sizeof text, " %.1f", us);
    line += text;
    if (us < best_us) {
      best_us = us;
      best = i;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (timing_failed)
    return Status(StatusCode::kCudaError, "GemmRunner tuning " + shape_text(key) + ": a timed launch failed");
  plan.algo = plan.candidates[best];
  report.push_back(line + " -> #" + std::to_string(best));
  for (size_t i = 0; i < plan.candidates.size(); ++i)  // what each candidate is (a pin by config needs it)
    report.push_back("    #" + std::to_string(i) + ": " + algo_config_text(plan.candidates[i]));
  return Status::Ok();
}

Status GemmRunner::Impl::run(const char* api, const bf16* x, int m, int k, int lda, const bf16* w, const bf16* bias,
                             int n, void* y, OutType out, cudaStream_t stream) {
  const std::string where = std::string("GemmRunner::") + api + ": ";
  auto bad = [&](const std::string& what) { return Status(StatusCode::kInvalidArgument, where + what); };
  if (m < 0) return bad("expected m >= 0 but got m=" + std::to_string(m));
  if (n <= 0) return bad("expected n > 0 but got n=" + std::to_string(n));
  if (k <= 0) return bad("expected k > 0 but got k=" + std::to_string(k));
  if (lda < k)
    return bad("expected lda >= k but got lda=" + std::to_string(lda) + " with k=" + std::to_string(k));
  if (!w) return bad("expected a weight pointer w but got null");
  if (m == 0) return Status::Ok();
  if (!x) return bad("expected an input pointer x but got null");
  if (!y) return bad("expected an output pointer y but got null");
  const uint32_t align_x = pointer_alignment(x), align_w = pointer_alignment(w), align_y = pointer_alignment(y);
  const uint32_t align_bias = bias ? pointer_alignment(bias) : 0;
  const uint32_t out_elem = out == OutType::kBf16 ? 2 : 4;
  if (align_x < 2 || align_w < 2 || align_y < out_elem || (bias && align_bias < 2))
    return bad("expected element-aligned x, w, y and bias but got addresses aligned to " + std::to_string(align_x) +
               ", " + std::to_string(align_w) + ", " + std::to_string(align_y) + " and " +
               std::to_string(align_bias) + " bytes");

  const PlanKey key{m, n, k, lda, out, bias != nullptr, align_x, align_w, align_y, align_bias};
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan plan;
    REX_RETURN_IF_ERROR(make_plan(key, bias, &plan));
    it = plans.emplace(key, plan).first;
  }
  Plan& plan = it->second;

  if (bias) {
    const void* bias_ptr = bias;
    cublasStatus_t st =
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr));
    if (st != CUBLAS_STATUS_SUCCESS) return cublas_error("cublasLtMatmulDescSetAttribute(BIAS_POINTER)", key, st);
  }
  if (tune && !plan.tuned) REX_RETURN_IF_ERROR(tune_plan(key, plan, w, x, y, stream));
  const cublasStatus_t st = matmul(plan, plan.algo, w, x, y, stream);
  if (st != CUBLAS_STATUS_SUCCESS) return cublas_error("cublasLtMatmul", key, st);
  return Status::Ok();
}

Status GemmRunner::linear_bf16(const bf16* x, int m, int k, int lda, const bf16* w, const bf16* bias, int n, bf16* y,
                               cudaStream_t stream) {
  if (!impl_) return Status(StatusCode::kInternal, "GemmRunner::linear_bf16 called before init()");
  return impl_->run("linear_bf16", x, m, k, lda, w, bias, n, y, OutType::kBf16, stream);
}

void GemmRunner::set_tuning(bool on) {
  if (impl_) impl_->tune = on;
}

void GemmRunner::set_pins(std::vector<Pin> pins) {
  if (impl_) impl_->pins = std::move(pins);
}

Status GemmRunner::parse_pins(const std::string& spec, std::vector<Pin>* pins) {
  auto bad = [](const std::string& part, const std::string& why) {
    return Status(StatusCode::kInvalidArgument, "GEMM pin: expected M0-M1,N,K=CONFIG (" + why + ") but got \"" + part + "\"");
  };
  // A whole decimal number > 0, or -1.
  auto number = [](const std::string& text) {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return -1;
    const int v = std::stoi(text);
    return v > 0 ? v : -1;
  };
  std::vector<Pin> out;
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t end = std::min(spec.find(';', start), spec.size());
    const std::string part = spec.substr(start, end - start);
    start = end + 1;
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (eq == std::string::npos) return bad(part, "no '='");
    const std::string shape = part.substr(0, eq);
    Pin pin;
    pin.config = part.substr(eq + 1);
    std::replace(pin.config.begin(), pin.config.end(), '_', ' ');  // "id_1_tile_2": no spaces, for A/B lists
    if (pin.config.empty()) return bad(part, "an empty configuration");
    const size_t c1 = shape.find(','), c2 = c1 == std::string::npos ? c1 : shape.find(',', c1 + 1);
    if (c2 == std::string::npos || shape.find(',', c2 + 1) != std::string::npos) return bad(part, "three numbers before '='");
    const std::string ms = shape.substr(0, c1);
    const size_t dash = ms.find('-');
    pin.m_min = number(ms.substr(0, dash));
    pin.m_max = dash == std::string::npos ? pin.m_min : number(ms.substr(dash + 1));
    pin.n = number(shape.substr(c1 + 1, c2 - c1 - 1));
    pin.k = number(shape.substr(c2 + 1));
    if (pin.m_min < 0 || pin.m_max < pin.m_min || pin.n < 0 || pin.k < 0)
      return bad(part, "whole numbers above 0, M0 <= M1");
    out.push_back(std::move(pin));
  }
  *pins = std::move(out);
  return Status::Ok();
}

std::vector<std::string> GemmRunner::tuning_report() const { return impl_ ? impl_->report : std::vector<std::string>{}; }

Status GemmRunner::linear_f32(const bf16* x, int m, int k, int lda, const bf16* w, int n, float* y,
                              cudaStream_t stream) {
  if (!impl_) return Status(StatusCode::kInternal, "GemmRunner::linear_f32 called before init()");
  return impl_->run("linear_f32", x, m, k, lda, w, nullptr, n, y, OutType::kF32, stream);
}

}  // namespace rex::cuda
