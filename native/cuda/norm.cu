// RMSNorm (optionally fused with the residual add before it) and the bare
// residual add. Why it is shaped so:
//  - Memory-bound: per row it reads 4*dim bytes of fp32 residual (plus 2*dim
//    of bf16 delta, and writes the residual back when fused) and writes
//    2*dim of bf16. Nothing to compute but a sum of squares, so the only goal
//    is to touch each byte once with wide, coalesced accesses.
//  - One block per row: the row is read once into registers (each thread
//    owns up to 4 chunks of 8 elements, each two float4 + one 16-byte bf16
//    load; the weight's raw bits are fetched at the same time), the sum of
//    squares is reduced with warp shuffles and one shared-memory step, then
//    the same registers are scaled and written. No second pass over global
//    memory. Chunks per thread: 1 (dim 2048 -> 256 threads, 1280 -> 160),
//    except the fused norm at >= 256 rows, where 4 measured faster (fewer,
//    fuller blocks: 64 threads per 2048-row).
//  - Rounding as transformers' Qwen2RMSNorm with a bf16 model:
//    x * rsqrt(mean(x^2) + eps) in fp32, rounded to bf16, times the bf16
//    weight in fp32, rounded to bf16 again. The fp32 sum is in a fixed order
//    (per thread, then warp tree, then warp sums), so results are
//    deterministic run to run; the CPU twin sums in double, so the two agree
//    to rounding (measured: at most 2 bf16 ulps from a double reference that
//    rounds the same way, a handful of elements per million).
//  - A scalar path (one element per chunk) takes any dim or alignment the
//    16-byte path cannot (dim % 8 != 0, or an unaligned pointer).
//  - Measured on an H200 at copy speed: a cudaMemcpyAsync of the same bytes
//    takes as long or longer (NOTES.md, elementwise).
#include "cuda/norm.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "cuda/elementwise.cuh"

namespace rex::cuda {
namespace {

constexpr int kMaxThreads = 1024;
constexpr int kVecChunks = 4;      // 8-wide chunks per thread: dim <= 4 * 1024 * 8 = 32768
constexpr int kScalarChunks = 16;  // 1-wide chunks per thread: dim <= 16 * 1024 = 16384

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the
// total. Called once per kernel, so the shared array needs no second barrier.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[kMaxThreads / 32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  v = lane < warps ? warp_sums[lane] : 0.0f;
  return warp_sum(v);
}

// The weight's raw bits, fetched before the reduction so the L2 round trip
// overlaps it (4 registers per 8-wide chunk instead of 8 floats).
template <int VEC>
struct RawBf16 {
  uint16_t u;
};
template <>
struct RawBf16<8> {
  uint4 u;
};
template <int VEC>
__device__ __forceinline__ RawBf16<VEC> load_raw(const bf16* p) {
  RawBf16<VEC> r;
  if constexpr (VEC == 8) {
    r.u = *reinterpret_cast<const uint4*>(p);
  } else {
    static_assert(VEC == 1, "raw weights are 1 or 8 wide");
    r.u = *reinterpret_cast<const uint16_t*>(p);
  }
  return r;
}
template <int VEC>
__device__ __forceinline__ void unpack_raw(const RawBf16<VEC>& r, float (&v)[VEC]) {
  if constexpr (VEC == 8) {
    v[0] = bf16_lo(r.u.x), v[1] = bf16_hi(r.u.x), v[2] = bf16_lo(r.u.y), v[3] = bf16_hi(r.u.y);
    v[4] = bf16_lo(r.u.z), v[5] = bf16_hi(r.u.z), v[6] = bf16_lo(r.u.w), v[7] = bf16_hi(r.u.w);
  } else {
    v[0] = __uint_as_float(uint32_t(r.u) << 16);
  }
}

// ADD: residual[row] += delta[row] (written back), then normalise it.
// Otherwise normalise x[row]. Each thread owns chunks threadIdx.x + k*blockDim.x,
// k < CHUNKS (blockDim.x * CHUNKS * VEC >= dim).
template <int VEC, int CHUNKS, bool ADD>
__global__ void __launch_bounds__(kMaxThreads)
    rmsnorm_kernel(const float* __restrict__ x, float* __restrict__ residual, const bf16* delta, int dim,
                   const bf16* __restrict__ weight, float eps, bf16* out) {
  pdl_launch_dependents();  // lets the next kernel (a GEMV) start streaming its weights
  const size_t base = size_t(blockIdx.x) * size_t(dim);
  const int chunks = dim / VEC;
  const float* src = ADD ? residual + base : x + base;
  float v[CHUNKS][VEC];
  RawBf16<VEC> w[CHUNKS];
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[k][i] = 0.0f;
    if (c < chunks) {
      load_f32<VEC>(src + size_t(c) * VEC, v[k]);
      w[k] = load_raw<VEC>(weight + size_t(c) * VEC);
      if constexpr (ADD) {
        float d[VEC];
        load_bf16<VEC>(delta + base + size_t(c) * VEC, d);
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[k][i] = __fadd_rn(v[k][i], d[i]);
        store_f32<VEC>(residual + base + size_t(c) * VEC, v[k]);
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) ss = fmaf(v[k][i], v[k][i], ss);
    }
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / float(dim) + eps);
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < chunks) {
      float wf[VEC], o[VEC];
      unpack_raw<VEC>(w[k], wf);
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const float normed = __bfloat162float(__float2bfloat16_rn(__fmul_rn(v[k][i], inv)));
        o[i] = __fmul_rn(normed, wf[i]);
      }
      store_bf16<VEC>(out + base + size_t(c) * VEC, o);
    }
  }
}

// residual[i] += delta[i]: VEC-wide chunks over [0, count / VEC * VEC), the
// remainder one element per thread.
template <int VEC>
__global__ void add_residual_kernel(float* __restrict__ residual, const bf16* __restrict__ delta, int64_t count) {
  const int64_t chunks = count / VEC;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t c = first; c < chunks; c += stride) {
    float r[VEC], d[VEC];
    load_f32<VEC>(residual + c * VEC, r);
    load_bf16<VEC>(delta + c * VEC, d);
#pragma unroll
    for (int i = 0; i < VEC; ++i) r[i] = __fadd_rn(r[i], d[i]);
    store_f32<VEC>(residual + c * VEC, r);
  }
  const int64_t tail = chunks * VEC + first;
  if (tail < count) residual[tail] = __fadd_rn(residual[tail], __bfloat162float(delta[tail]));
}

// One block per row; each thread takes `per` chunks (at least what 1024
// threads need, at most CHUNKS of the kernel picked), so the block is
// ceil(chunks / per) threads rounded up to whole warps.
template <int VEC, bool ADD>
Status launch_rmsnorm(const char* name, const float* x, float* residual, const bf16* delta, int rows, int dim,
                      const bf16* weight, float eps, bf16* out, int per_thread, cudaStream_t stream) {
  const int chunks = dim / VEC;
  const int max_per = VEC == 8 ? kVecChunks : kScalarChunks;
  const int per = std::min(max_per, std::max(per_thread, (chunks + kMaxThreads - 1) / kMaxThreads));
  const unsigned threads = unsigned(whole_warps((chunks + per - 1) / per));
  const unsigned grid = unsigned(rows);
  if constexpr (VEC == 8) {
    if (per <= 1)
      rmsnorm_kernel<8, 1, ADD><<<grid, threads, 0, stream>>>(x, residual, delta, dim, weight, eps, out);
    else if (per <= 2)
      rmsnorm_kernel<8, 2, ADD><<<grid, threads, 0, stream>>>(x, residual, delta, dim, weight, eps, out);
    else
      rmsnorm_kernel<8, kVecChunks, ADD><<<grid, threads, 0, stream>>>(x, residual, delta, dim, weight, eps, out);
  } else {
    rmsnorm_kernel<1, kScalarChunks, ADD><<<grid, threads, 0, stream>>>(x, residual, delta, dim, weight, eps, out);
  }
  return check_launch(name);
}

// Shared by both entry points: x (rmsnorm) or residual + delta (fused).
Status rmsnorm_common(const char* name, bool fused, const float* x, float* residual, const bf16* delta, int rows,
                      int dim, const bf16* weight, float eps, bf16* out, cudaStream_t stream) {
  const std::string fn(name);
  if (rows < 0) return invalid(fn + ": expected rows >= 0 but got " + std::to_string(rows));
  if (dim <= 0) return invalid(fn + ": expected dim > 0 but got " + std::to_string(dim));
  if (!(eps >= 0.0f)) return invalid(fn + ": expected eps >= 0 but got " + std::to_string(eps));
  if (rows == 0) return Status::Ok();
  const float* in = fused ? residual : x;
  if (!in) return invalid(fn + (fused ? ": expected a residual pointer but got null" : ": expected an x pointer but got null"));
  if (fused && !delta) return invalid(fn + ": expected a delta pointer but got null");
  if (!weight) return invalid(fn + ": expected a weight pointer but got null");
  if (!out) return invalid(fn + ": expected an out pointer but got null");
  const bool vec = dim % 8 == 0 && aligned16(in) && aligned16(weight) && aligned16(out) && (!fused || aligned16(delta));
  const int max_dim = vec ? kVecChunks * kMaxThreads * 8 : kScalarChunks * kMaxThreads;
  if (dim > max_dim)
    return invalid(fn + ": expected dim <= " + std::to_string(max_dim) +
                   (vec ? "" : " (the scalar path: dim % 8 != 0 or a pointer not 16-byte aligned)") + " but got " +
                   std::to_string(dim));
  const size_t n = size_t(rows) * size_t(dim);
  if (overlaps(out, n * sizeof(bf16), in, n * sizeof(float)) || overlaps(out, n * sizeof(bf16), weight, dim * sizeof(bf16)))
    return invalid(fn + ": expected out not to overlap the input or the weight but it does");
  if (fused && delta != out && overlaps(out, n * sizeof(bf16), delta, n * sizeof(bf16)))
    return invalid(fn + ": expected out to be delta itself or disjoint from it but it partly overlaps");
  // Measured on an H200 (NOTES.md, elementwise): four chunks per thread make
  // the fused norm 3-15% faster at prefill sizes; one is best for decode and
  // for the plain norm.
  const int per = fused && rows >= 256 ? 4 : 1;
  if (fused)
    return vec ? launch_rmsnorm<8, true>(name, nullptr, residual, delta, rows, dim, weight, eps, out, per, stream)
               : launch_rmsnorm<1, true>(name, nullptr, residual, delta, rows, dim, weight, eps, out, per, stream);
  return vec ? launch_rmsnorm<8, false>(name, x, nullptr, nullptr, rows, dim, weight, eps, out, per, stream)
             : launch_rmsnorm<1, false>(name, x, nullptr, nullptr, rows, dim, weight, eps, out, per, stream);
}

}  // namespace

Status rmsnorm_bf16(const float* x, int rows, int dim, const bf16* weight, float eps, bf16* out,
                    cudaStream_t stream) {
  return rmsnorm_common("rmsnorm_bf16", false, x, nullptr, nullptr, rows, dim, weight, eps, out, stream);
}

Status add_rmsnorm_bf16(float* residual, const bf16* delta, int rows, int dim, const bf16* weight, float eps,
                        bf16* out, cudaStream_t stream) {
  return rmsnorm_common("add_rmsnorm_bf16", true, nullptr, residual, delta, rows, dim, weight, eps, out, stream);
}

Status add_residual(float* residual, const bf16* delta, int64_t count, cudaStream_t stream) {
  if (count < 0) return invalid("add_residual: expected count >= 0 but got " + std::to_string(count));
  if (count == 0) return Status::Ok();
  if (!residual) return invalid("add_residual: expected a residual pointer but got null");
  if (!delta) return invalid("add_residual: expected a delta pointer but got null");
  if (overlaps(residual, size_t(count) * sizeof(float), delta, size_t(count) * sizeof(bf16)))
    return invalid("add_residual: expected residual and delta not to overlap but they do");
  constexpr int kThreads = 256;
  const bool vec = aligned16(residual) && aligned16(delta);
  const int64_t work = vec ? (count + 7) / 8 : count;  // threads needed (chunks, or elements)
  const unsigned blocks = grid_stride_blocks(work, kThreads, int64_t(1) << 16);
  if (vec)
    add_residual_kernel<8><<<blocks, kThreads, 0, stream>>>(residual, delta, count);
  else
    add_residual_kernel<1><<<blocks, kThreads, 0, stream>>>(residual, delta, count);
  return check_launch("add_residual");
}

}  // namespace rex::cuda
