// Rotary embeddings: vision 2D rotary on the packed qkv rows, and the text
// decoder's M-RoPE fused with the KV-cache write. Why it is shaped so:
//  - One block per token. Its head_dim/2 angles (pos * inv_freq, one fp32
//    product, __fmul_rn so no FMA contraction changes it) and their
//    sincosf are computed once into shared memory and shared by every head:
//    16 q + 16 k heads in vision, 16 q + 2 k heads in text. Recomputing
//    them per head would cost 18-32x the special-function work.
//  - Then the block's threads walk (head, 8-pair chunk) items: each loads
//    x[j..j+8) and x[j+half..j+half+8) (16 bytes each), rotates in fp32
//    (x1*c - x2*s, x2*c + x1*s, separate rounded products and sum, as the
//    CPU twin evaluates it, so only cos/sin ulps and the final bf16 rounding
//    differ) and stores 16 bytes. Vision head_dim 80 -> 5 chunks per half,
//    text 128 -> 8. Heads whose half is not a multiple of 8 (or unaligned
//    pointers) take a scalar path.
//  - Text: q is rotated in place; rotated k and plain v go straight to the
//    paged cache row dest_rows[r] (no rotated-k round trip through qkv), so
//    the kernel reads q|k|v once and writes q, k, v once. dest_rows[r] < 0
//    writes nothing for that row (a padded row of a captured decode graph);
//    q is still rotated. The k and v parts of qkv are left as they were.
//  - cosf/sinf (sincosf), not __cosf: text positions reach 10^4 and more,
//    where the fast forms lose all accuracy.
//  - Memory-bound: the sincos of head_dim/2 angles per token is a few
//    percent of the time; the bytes are q and k read and written (and v).
//    Measured at copy speed (cudaMemcpyAsync of the same bytes). Tried and
//    reverted: loading each thread's first item before the sincos phase, to
//    overlap the two latencies, was 6-10% slower (NOTES.md, elementwise).
#include "cuda/rope.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "cuda/elementwise.cuh"
#include "cuda/rope_rotate.cuh"

namespace rex::cuda {
namespace {

constexpr int kMaxHeadDim = 1024;

// Block = token t. Rotates the 2*heads heads q|k at the start of the row.
template <int VEC>
__global__ void vision_rope_kernel(bf16* __restrict__ qkv, int heads, int head_dim, const int32_t* __restrict__ pos_rows,
                                   const int32_t* __restrict__ pos_cols, const float* __restrict__ inv_freq) {
  extern __shared__ float angles[];  // cos[half], sin[half]
  const int half = head_dim / 2, quarter = head_dim / 4;
  float* cs = angles;
  float* sn = angles + half;
  const int t = blockIdx.x;
  const float pr = float(pos_rows[t]), pc = float(pos_cols[t]);
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const float a = j < quarter ? __fmul_rn(pr, inv_freq[j]) : __fmul_rn(pc, inv_freq[j - quarter]);
    sincosf(a, &sn[j], &cs[j]);
  }
  __syncthreads();
  bf16* row = qkv + size_t(t) * 3 * size_t(heads) * size_t(head_dim);
  const int per_head = half / VEC;
  const int items = 2 * heads * per_head;
  for (int it = threadIdx.x; it < items; it += blockDim.x) {
    const int h = it / per_head;  // 0..2*heads-1: q heads, then k heads
    const int j = (it - h * per_head) * VEC;
    bf16* p = row + size_t(h) * head_dim + j;
    rotate<VEC>(p, p, half, cs + j, sn + j);
  }
}

// Block = row r. Items: (q_heads + kv_heads) heads x half/VEC rotations, then
// kv_heads x head_dim/VEC copies of v.
template <int VEC>
__global__ void mrope_qkv_to_cache_kernel(bf16* __restrict__ qkv, int rows, int q_heads, int kv_heads, int head_dim,
                                          const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                                          int section_t, int section_th, const int32_t* __restrict__ dest_rows,
                                          bf16* __restrict__ k_cache, bf16* __restrict__ v_cache) {
  pdl_launch_dependents();  // lets the next kernel (a GEMV) start streaming its weights
  extern __shared__ float angles[];  // cos[half], sin[half]
  const int half = head_dim / 2;
  float* cs = angles;
  float* sn = angles + half;
  const int r = blockIdx.x;
  const float pos[3] = {float(positions[r]), float(positions[size_t(rows) + r]), float(positions[2 * size_t(rows) + r])};
  for (int j = threadIdx.x; j < half; j += blockDim.x) mrope_cos_sin(j, pos, section_t, section_th, inv_freq, &cs[j], &sn[j]);
  __syncthreads();
  const int dest = dest_rows[r];
  const size_t kv_row = size_t(kv_heads) * size_t(head_dim);
  bf16* row = qkv + size_t(r) * size_t(q_heads + 2 * kv_heads) * size_t(head_dim);
  const int per_half = half / VEC, per_head = head_dim / VEC;
  const int rot_items = (q_heads + kv_heads) * per_half;
  const int items = rot_items + kv_heads * per_head;
  for (int it = threadIdx.x; it < items; it += blockDim.x) {
    if (it < rot_items) {
      const int h = it / per_half;  // q heads, then k heads
      const int j = (it - h * per_half) * VEC;
      const bf16* src = row + size_t(h) * head_dim + j;
      if (h < q_heads) {
        rotate<VEC>(src, row + size_t(h) * head_dim + j, half, cs + j, sn + j);
      } else if (dest >= 0) {
        bf16* dst = k_cache + size_t(dest) * kv_row + size_t(h - q_heads) * head_dim + j;
        rotate<VEC>(src, dst, half, cs + j, sn + j);
      }
    } else if (dest >= 0) {
      const int i = it - rot_items;
      const int h = i / per_head;
      const int j = (i - h * per_head) * VEC;
      float v[VEC];
      load_bf16<VEC>(row + size_t(q_heads + kv_heads + h) * head_dim + j, v);
      store_bf16<VEC>(v_cache + size_t(dest) * kv_row + size_t(h) * head_dim + j, v);
    }
  }
}

// Threads per block: one per item, rounded to warps, 32..256.
unsigned block_threads(int items) { return unsigned(std::min(256, std::max(32, whole_warps(items)))); }

}  // namespace

Status vision_rope_bf16(bf16* qkv, int tokens, int heads, int head_dim, const int32_t* pos_rows,
                        const int32_t* pos_cols, const float* inv_freq, cudaStream_t stream) {
  if (tokens < 0) return invalid("vision_rope_bf16: expected tokens >= 0 but got " + std::to_string(tokens));
  if (heads <= 0) return invalid("vision_rope_bf16: expected heads > 0 but got " + std::to_string(heads));
  if (head_dim <= 0 || head_dim % 4 != 0 || head_dim > kMaxHeadDim)
    return invalid("vision_rope_bf16: expected head_dim a positive multiple of 4 up to " + std::to_string(kMaxHeadDim) +
                   " but got " + std::to_string(head_dim));
  if (tokens == 0) return Status::Ok();
  if (!qkv) return invalid("vision_rope_bf16: expected a qkv pointer but got null");
  if (!pos_rows || !pos_cols) return invalid("vision_rope_bf16: expected pos_rows and pos_cols pointers but got null");
  if (!inv_freq) return invalid("vision_rope_bf16: expected an inv_freq pointer but got null");
  const int half = head_dim / 2;
  const bool vec = half % 8 == 0 && aligned16(qkv);
  const size_t smem = 2 * size_t(half) * sizeof(float);
  if (vec)
    vision_rope_kernel<8><<<unsigned(tokens), block_threads(2 * heads * half / 8), smem, stream>>>(
        qkv, heads, head_dim, pos_rows, pos_cols, inv_freq);
  else
    vision_rope_kernel<1><<<unsigned(tokens), block_threads(2 * heads * half), smem, stream>>>(
        qkv, heads, head_dim, pos_rows, pos_cols, inv_freq);
  return check_launch("vision_rope_kernel");
}

Status mrope_qkv_to_cache_bf16(bf16* qkv, int rows, int q_heads, int kv_heads, int head_dim,
                               const int32_t* positions, const float* inv_freq, MropeSection section,
                               const int32_t* dest_rows, KvPlane cache, cudaStream_t stream) {
  const std::string fn = "mrope_qkv_to_cache_bf16";
  if (rows < 0) return invalid(fn + ": expected rows >= 0 but got " + std::to_string(rows));
  if (q_heads <= 0 || kv_heads <= 0)
    return invalid(fn + ": expected q_heads > 0 and kv_heads > 0 but got " + std::to_string(q_heads) + " and " +
                   std::to_string(kv_heads));
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxHeadDim)
    return invalid(fn + ": expected head_dim a positive even number up to " + std::to_string(kMaxHeadDim) +
                   " but got " + std::to_string(head_dim));
  if (section.t < 0 || section.h < 0 || section.w < 0 || section.t + section.h + section.w != head_dim / 2)
    return invalid(fn + ": expected a section of non-negative sizes summing to head_dim/2 = " +
                   std::to_string(head_dim / 2) + " but got " + std::to_string(section.t) + "," +
                   std::to_string(section.h) + "," + std::to_string(section.w));
  if (rows == 0) return Status::Ok();
  if (!qkv) return invalid(fn + ": expected a qkv pointer but got null");
  if (!positions) return invalid(fn + ": expected a positions pointer but got null");
  if (!inv_freq) return invalid(fn + ": expected an inv_freq pointer but got null");
  if (!dest_rows) return invalid(fn + ": expected a dest_rows pointer but got null");
  if (!cache.k || !cache.v) return invalid(fn + ": expected cache.k and cache.v pointers but got null");
  const int half = head_dim / 2;
  const bool vec = half % 8 == 0 && aligned16(qkv) && aligned16(cache.k) && aligned16(cache.v);
  const size_t smem = 2 * size_t(half) * sizeof(float);
  const int section_th = section.t + section.h;
  if (vec) {
    const int items = (q_heads + kv_heads) * (half / 8) + kv_heads * (head_dim / 8);
    mrope_qkv_to_cache_kernel<8><<<unsigned(rows), block_threads(items), smem, stream>>>(
        qkv, rows, q_heads, kv_heads, head_dim, positions, inv_freq, section.t, section_th, dest_rows, cache.k, cache.v);
  } else {
    const int items = (q_heads + kv_heads) * half + kv_heads * head_dim;
    mrope_qkv_to_cache_kernel<1><<<unsigned(rows), block_threads(items), smem, stream>>>(
        qkv, rows, q_heads, kv_heads, head_dim, positions, inv_freq, section.t, section_th, dest_rows, cache.k, cache.v);
  }
  return check_launch("mrope_qkv_to_cache_kernel");
}

}  // namespace rex::cuda
