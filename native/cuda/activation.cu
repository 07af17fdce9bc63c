// SwiGLU product and exact-erf GELU. Why it is shaped so:
//  - Pure streaming: swiglu reads 2 bf16 and writes 1 bf16 per output (6
//    bytes), gelu reads and writes 1 bf16 (4 bytes). Each element is touched
//    once, with the widest access the row layout allows, one chunk per
//    thread (blocks of 256; a grid-stride loop beyond 2^16 blocks). Keeping
//    2 or 4 chunks in flight per thread on fewer blocks measured 15-80%
//    slower on an H200, so UNROLL stays 1.
//  - swiglu's input is the fused gate_up GEMM output, rows [gate | up] of
//    2*inter. A chunk of VEC outputs needs gate, up and out chunks that start
//    on a VEC-element boundary, so VEC is the largest of 8, 4, 2, 1 that
//    divides inter (and the pointers' alignment): 16-byte accesses for the
//    text MLP (inter 11008), 8-byte for the vision MLP (inter 3420 = 4 * 855:
//    its up half starts 6840 bytes into the row, 8- but not 16-byte aligned).
//  - The flat chunk index is split into (row, column) with one 32-bit
//    division; the host checks that the chunk count fits in 31 bits (so the
//    grid-stride index cannot wrap).
//  - Math in fp32, rounded once to bf16: silu(g) = g / (1 + expf(-g)) and
//    gelu(g) = 0.5 g (1 + erff(g / sqrt 2)), with g * (1/sqrt 2) exactly as the
//    CPU twin writes it. expf/erff are the accurate (not the __ fast) forms.
//    The SFU and FMA work (~30 instructions per element) is well under the
//    memory time at these sizes, but not by much for gelu (see
//    NOTES.md, elementwise).
#include "cuda/activation.cuh"

#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/elementwise.cuh"

namespace rex::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;
constexpr int kSwigluUnroll = 1;  // chunks in flight per thread
constexpr int kGeluUnroll = 1;

__device__ __forceinline__ float silu_f32(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float gelu_erf_f32(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

template <bool GELU>
__device__ __forceinline__ float act(float x) {
  if constexpr (GELU) return gelu_erf_f32(x);
  else return silu_f32(x);
}

// Flat chunk i of rows of chunks_per_row VEC-wide chunks: its row, and its
// first column (elements).
struct ChunkPos {
  uint32_t r, c;
};
template <int VEC>
__device__ __forceinline__ ChunkPos chunk_pos(uint32_t i, uint32_t chunks_per_row) {
  const uint32_t r = i / chunks_per_row;
  return {r, (i - r * chunks_per_row) * VEC};
}

// out[r, c..c+VEC) = act(gate_up[r, c..]) * gate_up[r, inter + c..], chunk by
// chunk; each thread loads UNROLL chunks (a grid-stride apart) before it
// computes and stores any, to keep more loads in flight.
template <int VEC, bool GELU, int UNROLL>
__global__ void __launch_bounds__(kThreads)
    swiglu_kernel(const bf16* __restrict__ gate_up, uint32_t chunks_per_row, uint32_t total_chunks, int inter,
                  bf16* __restrict__ out) {
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t first = blockIdx.x * blockDim.x + threadIdx.x; first < total_chunks; first += stride * UNROLL) {
    float gv[UNROLL][VEC], uv[UNROLL][VEC];
#pragma unroll
    for (int k = 0; k < UNROLL; ++k) {
      const uint32_t i = first + k * stride;
      if (i < total_chunks) {
        const ChunkPos p = chunk_pos<VEC>(i, chunks_per_row);
        const bf16* g = gate_up + size_t(p.r) * 2 * size_t(inter) + p.c;
        load_bf16<VEC>(g, gv[k]);
        load_bf16<VEC>(g + inter, uv[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < UNROLL; ++k) {
      const uint32_t i = first + k * stride;
      if (i < total_chunks) {
        const ChunkPos p = chunk_pos<VEC>(i, chunks_per_row);
        float o[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) o[e] = act<GELU>(gv[k][e]) * uv[k][e];
        store_bf16<VEC>(out + size_t(p.r) * size_t(inter) + p.c, o);
      }
    }
  }
}

// x[i] = gelu(x[i]): VEC-wide chunks over [0, count / VEC * VEC) (UNROLL per
// thread in flight, as above), the remainder one element per thread.
template <int VEC, int UNROLL>
__global__ void __launch_bounds__(kThreads) gelu_kernel(bf16* __restrict__ x, int64_t count) {
  const int64_t chunks = count / VEC;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t start = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t first = start; first < chunks; first += stride * UNROLL) {
    float v[UNROLL][VEC];
#pragma unroll
    for (int k = 0; k < UNROLL; ++k)
      if (first + k * stride < chunks) load_bf16<VEC>(x + (first + k * stride) * VEC, v[k]);
#pragma unroll
    for (int k = 0; k < UNROLL; ++k) {
      if (first + k * stride < chunks) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) v[k][e] = gelu_erf_f32(v[k][e]);
        store_bf16<VEC>(x + (first + k * stride) * VEC, v[k]);
      }
    }
  }
  const int64_t tail = chunks * VEC + start;
  if (tail < count) x[tail] = __float2bfloat16_rn(gelu_erf_f32(__bfloat162float(x[tail])));
}

template <int VEC, int UNROLL = kSwigluUnroll>
Status launch_swiglu(const bf16* gate_up, int rows, int inter, bf16* out, bool use_gelu, cudaStream_t stream) {
  const uint32_t per_row = uint32_t(inter / VEC);
  const uint32_t total = uint32_t(int64_t(rows) * per_row);
  const unsigned blocks = grid_stride_blocks(int64_t(total), kThreads * UNROLL, kMaxBlocks);
  if (use_gelu)
    swiglu_kernel<VEC, true, UNROLL><<<blocks, kThreads, 0, stream>>>(gate_up, per_row, total, inter, out);
  else
    swiglu_kernel<VEC, false, UNROLL><<<blocks, kThreads, 0, stream>>>(gate_up, per_row, total, inter, out);
  return check_launch(use_gelu ? "swiglu_kernel<gelu>" : "swiglu_kernel<silu>");
}

template <int UNROLL = kGeluUnroll>
Status launch_gelu(bf16* x, int64_t count, cudaStream_t stream) {
  const bool vec = aligned(x, 16);
  const int64_t work = vec ? (count + 7) / 8 : count;
  const unsigned blocks = grid_stride_blocks(work, kThreads * UNROLL, kMaxBlocks);
  if (vec)
    gelu_kernel<8, UNROLL><<<blocks, kThreads, 0, stream>>>(x, count);
  else
    gelu_kernel<1, UNROLL><<<blocks, kThreads, 0, stream>>>(x, count);
  return check_launch("gelu_kernel");
}

}  // namespace

Status swiglu_bf16(const bf16* gate_up, int rows, int inter, bf16* out, bool use_gelu, cudaStream_t stream) {
  if (rows < 0) return invalid("swiglu_bf16: expected rows >= 0 but got " + std::to_string(rows));
  if (inter <= 0) return invalid("swiglu_bf16: expected inter > 0 but got " + std::to_string(inter));
  if (rows == 0) return Status::Ok();
  if (!gate_up) return invalid("swiglu_bf16: expected a gate_up pointer but got null");
  if (!out) return invalid("swiglu_bf16: expected an out pointer but got null");
  const size_t n = size_t(rows) * size_t(inter);
  if (overlaps(gate_up, 2 * n * sizeof(bf16), out, n * sizeof(bf16)))
    return invalid("swiglu_bf16: expected out not to overlap gate_up but it does");
  // The widest chunk every row boundary and both pointers allow.
  int vec = 1;
  for (int v : {8, 4, 2})
    if (inter % v == 0 && aligned(gate_up, 2u * v) && aligned(out, 2u * v)) {
      vec = v;
      break;
    }
  if (int64_t(rows) * (inter / vec) > int64_t(INT32_MAX))
    return invalid("swiglu_bf16: expected rows * inter / " + std::to_string(vec) + " < 2^31 but got rows " +
                   std::to_string(rows) + ", inter " + std::to_string(inter));
  switch (vec) {
    case 8: return launch_swiglu<8>(gate_up, rows, inter, out, use_gelu, stream);
    case 4: return launch_swiglu<4>(gate_up, rows, inter, out, use_gelu, stream);
    case 2: return launch_swiglu<2>(gate_up, rows, inter, out, use_gelu, stream);
    default: return launch_swiglu<1>(gate_up, rows, inter, out, use_gelu, stream);
  }
}

Status gelu_bf16(bf16* x, int64_t count, cudaStream_t stream) {
  if (count < 0) return invalid("gelu_bf16: expected count >= 0 but got " + std::to_string(count));
  if (count == 0) return Status::Ok();
  if (!x) return invalid("gelu_bf16: expected an x pointer but got null");
  return launch_gelu(x, count, stream);
}

}  // namespace rex::cuda
