// Dense GEMMs through cuBLASLt, in the row-major nn.Linear convention the
// model uses: Y[M, N] = X[M, K] * W[N, K]^T (+ bias[N]), bf16 operands with
// fp32 accumulation; Y in bf16, or in fp32 for the LM head's logits. One
// handle and workspace per runner; matmul descriptors and the heuristic's
// chosen algorithm are cached per shape, so the steady state does no
// allocation and every call can be captured in a CUDA graph.
// CPU twin: native/cpu/gemm.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

class GemmRunner {
 public:
  GemmRunner();
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Creates the cuBLASLt handle and a workspace (bytes). Call once.
  Status init(size_t workspace_bytes = 32u << 20);

  // y = x w^T + bias (bias may be null). x: [m, k] with row stride lda
  // (elements, >= k), w: [n, k] contiguous, y: [m, n] contiguous.
  Status linear_bf16(const bf16* x, int m, int k, int lda, const bf16* w, const bf16* bias, int n, bf16* y,
                     cudaStream_t stream);
  // Same with fp32 output and no bias (the LM head).
  Status linear_f32(const bf16* x, int m, int k, int lda, const bf16* w, int n, float* y, cudaStream_t stream);

  // Tuning (off by default): a shape's first call outside graph capture
  // times each usable heuristic candidate (3 launches each, L2 flushed before
  // each, on the call's own buffers) and keeps the fastest for the shape's
  // later calls. The first call then takes ~candidates x 4 launches longer,
  // and the choice can differ between processes (timing noise).
  void set_tuning(bool on);
  // One line per tuned shape: each candidate's microseconds and the choice
  // (and one per pinned shape: the candidate it took).
  std::vector<std::string> tuning_report() const;

  // Pins (none here; the backend sets its defaults, or REX_OMNI_GEMM_PIN's): a shape whose m
  // lies in [m_min, m_max] with this n and k takes the heuristic's candidate
  // whose configuration reads `config`, the tuning report's text ("id A tile
  // T stages S splitk K reduction R swizzle W custom C inner I cluster C"),
  // when the heuristic offers it,
  // else its first candidate as without. No timing: every process that
  // sees the same heuristic list picks the same kernel, so the same bits.
  struct Pin {
    int m_min = 0, m_max = 0, n = 0, k = 0;
    std::string config;
  };
  // Before a pinned shape's first call (plans are cached).
  void set_pins(std::vector<Pin> pins);
  // "M0-M1,N,K=CONFIG" pins separated by ';' (M0 alone: M1 = M0; '_' in
  // CONFIG reads as a space) into `pins`; InvalidArgument ("expected ...
  // but got ...") otherwise.
  static Status parse_pins(const std::string& spec, std::vector<Pin>* pins);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rex::cuda
