// Warp-level building blocks shared by the three attention kernels
// (attention_vision.cu, attention_prefill.cu, attention_decode.cu): the
// FlashAttention-2 inner step on mma.sync m16n8k16 (bf16 in, fp32 out), and
// the CTA's tiles and cp.async schedule the vision and prefill kernels share
// (FlashPass, at the end).
//
// One warp owns 16 query rows. For a tile of KN keys held in shared memory
// (row-major, [key][head_dim], rows padded to head_dim + 8 elements so the 8
// row addresses of every ldmatrix fall in distinct 16-byte bank groups):
//   S = Q K^T        Q fragments in registers (A), K via ldmatrix (B);
//   online softmax   fp32, log2 domain (exp2f of scale*log2e-prescaled scores);
//   O += P V         P re-packed from S's accumulators straight into A
//                    fragments (the m16n8 C layout of two adjacent n-tiles is
//                    the m16k16 A layout), V via ldmatrix.trans (B).
//
// Fragment layouts (PTX ISA, mma.m16n8k16, lane = 4*g + t, g = lane/4, t = lane%4):
//   A (16x16): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16x8):  c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// ldmatrix.x4: lane i gives the address of row i%8 of matrix i/8; each lane
// receives (row g, elements 2t, 2t+1) of every matrix (.trans: the transposed
// matrix, i.e. rows 2t, 2t+1 of column g).
//
// Everything here is header-only and internal to native/cuda (no public API).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "cuda/bf16.cuh"

namespace rex::cuda::attn {

constexpr double kLog2e = 1.4426950408889634;

// Softmax scale folded with log2(e): p = exp2(s * scale_log2 - m).
inline float softmax_scale_log2(int head_dim) { return float(kLog2e / std::sqrt(double(head_dim))); }

inline bool aligned_to(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy (L2 only, .cg). When !valid, the 16 bytes are
// zero-filled and nothing is read (src-size 0); gmem must still be a valid
// address, so callers pass a clamped in-range row.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_size)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem))
               : "memory");
}

// d += a * b (m16n8k16, bf16 x bf16 -> fp32).
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Physical cache row of a sequence's token t (paged_row with block_size =
// 1 << shift, a power of two).
__device__ __forceinline__ int64_t paged_row_pow2(const int32_t* block_table, int shift, int t) {
  return int64_t(block_table[t >> shift]) * (int64_t(1) << shift) + (t & ((1 << shift) - 1));
}

// One warp's share of a flash-attention pass: 16 query rows, HD dims, keys
// in tiles of KN. Rows of this thread: g (index 0) and g + 8 (index 1).
template <int HD, int KN>
struct WarpFlash {
  static_assert(HD % 16 == 0 && KN % 16 == 0, "head_dim and key tile must be multiples of 16");
  static constexpr int kKSteps = HD / 16;  // k16 steps of Q K^T
  static constexpr int kSTiles = KN / 8;   // n8 tiles of S
  static constexpr int kOTiles = HD / 8;   // n8 tiles of O
  static constexpr int kLd = HD + 8;       // shared-memory row pitch (elements)

  uint32_t q[kKSteps][4];
  float o[kOTiles][4];
  float m[2];  // running max, log2 domain (-inf: nothing seen yet)
  float l[2];  // running sum of this thread's columns (quad-reduced at the end)

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int i = 0; i < kOTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
  }

  // Q fragments of the warp's 16 rows from shared memory (sq: row 0 of the warp).
  __device__ __forceinline__ void load_q_smem(const bf16* sq, int lane) {
    const int row = (lane & 7) + ((lane >> 3) & 1) * 8, col = (lane >> 4) * 8;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) ldmatrix_x4(q[ks], sq + row * kLd + ks * 16 + col);
  }

  // s = Q K^T for the KN keys at sk (raw dot products, unscaled).
  __device__ __forceinline__ void scores(float (&s)[kSTiles][4], const bf16* sk, int lane) const {
#pragma unroll
    for (int t = 0; t < kSTiles; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
    // Matrices: (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15).
    const int key = (lane & 7) + (lane >> 4) * 8, dim = ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
      for (int np = 0; np < kSTiles / 2; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, sk + (np * 16 + key) * kLd + ks * 16 + dim);
        mma_16816(s[2 * np], q[ks], b[0], b[1]);
        mma_16816(s[2 * np + 1], q[ks], b[2], b[3]);
      }
    }
  }

  // Sets s to -inf where key index (relative to the tile) is not allowed:
  // allowed iff key < key_end and key <= row_limit[r] (row_limit: the last key
  // row r may see, relative to the tile).
  __device__ __forceinline__ void mask(float (&s)[kSTiles][4], int key_end, int row_limit0, int row_limit1,
                                       int lane) const {
    const int t4 = lane & 3;
#pragma unroll
    for (int t = 0; t < kSTiles; ++t) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int key = t * 8 + 2 * t4 + c;
        if (key >= key_end || key > row_limit0) s[t][c] = -INFINITY;
        if (key >= key_end || key > row_limit1) s[t][2 + c] = -INFINITY;
      }
    }
  }

  // Online softmax: turns s into unnormalised probabilities p (fp32), and
  // rescales o and l by exp2(m_old - m_new).
  __device__ __forceinline__ void softmax(float (&s)[kSTiles][4], float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int t = 0; t < kSTiles; ++t) mx = fmaxf(mx, fmaxf(s[t][2 * r], s[t][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[r], mx * scale_log2);
      // A row that has seen no key yet keeps -inf; subtract 0 then (all p = 0).
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[r] - m_use);  // 0 when m[r] = -inf
      m[r] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int t = 0; t < kSTiles; ++t) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float p = exp2f(fmaf(s[t][2 * r + c], scale_log2, -m_use));
          s[t][2 * r + c] = p;
          sum += p;
        }
      }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int i = 0; i < kOTiles; ++i) {
        o[i][2 * r] *= alpha;
        o[i][2 * r + 1] *= alpha;
      }
    }
  }

  // o += P V for the KN values at sv; P (bf16) from s.
  __device__ __forceinline__ void accumulate(const float (&s)[kSTiles][4], const bf16* sv, int lane) {
    // Matrices (transposed on load): (keys 0-7, dims 0-7), (keys 8-15, dims 0-7),
    // (keys 0-7, dims 8-15), (keys 8-15, dims 8-15).
    const int key = (lane & 7) + ((lane >> 3) & 1) * 8, dim = (lane >> 4) * 8;
#pragma unroll
    for (int kk = 0; kk < KN / 16; ++kk) {
      uint32_t a[4];
      a[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < HD / 16; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, sv + (kk * 16 + key) * kLd + dp * 16 + dim);
        mma_16816(o[2 * dp], a, b[0], b[1]);
        mma_16816(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
  }

  // Quad-reduces l (after the last tile): afterwards every lane of a quad holds its rows' full sums.
  __device__ __forceinline__ void reduce_sums() {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
  }

  // Writes this pass's share of a split row (split keys, combined later by
  // attention_prefill's combine kernel): the unnormalised O (fp32) at
  // o_row[r], and {m, l} (log2-domain running max, sum) at ml[r], for the rows
  // whose flag is set (this thread's rows g and g+8). A row that saw no key
  // writes the neutral {-inf, 0} and O = 0. Call reduce_sums() first.
  __device__ __forceinline__ void store_partial(float* o_row0, float* o_row1, float2* ml0, float2* ml1, bool write0,
                                                bool write1, int lane) const {
    const int t4 = lane & 3;
#pragma unroll
    for (int i = 0; i < kOTiles; ++i) {
      const int dim = i * 8 + 2 * t4;
      if (write0) *reinterpret_cast<float2*>(o_row0 + dim) = make_float2(o[i][0], o[i][1]);
      if (write1) *reinterpret_cast<float2*>(o_row1 + dim) = make_float2(o[i][2], o[i][3]);
    }
    if (t4 == 0) {
      if (write0) *ml0 = make_float2(m[0], l[0]);
      if (write1) *ml1 = make_float2(m[1], l[1]);
    }
  }

  // Writes O / l as bf16 for the rows whose flag is set; out_row[r] points at
  // dim 0 of row r (this thread's rows g and g+8). Call reduce_sums() first.
  __device__ __forceinline__ void store(bf16* out_row0, bf16* out_row1, bool write0, bool write1, int lane) const {
    const int t4 = lane & 3;
    const float inv0 = l[0] > 0.0f ? 1.0f / l[0] : 0.0f;
    const float inv1 = l[1] > 0.0f ? 1.0f / l[1] : 0.0f;
#pragma unroll
    for (int i = 0; i < kOTiles; ++i) {
      const int dim = i * 8 + 2 * t4;
      if (write0)
        *reinterpret_cast<uint32_t*>(out_row0 + dim) = pack_bf16x2(o[i][0] * inv0, o[i][1] * inv0);
      if (write1)
        *reinterpret_cast<uint32_t*>(out_row1 + dim) = pack_bf16x2(o[i][2] * inv1, o[i][3] * inv1);
    }
  }
};

// Partial softmax results of one row merged (split keys, or warps that each
// saw part of the keys): partial i has its running max m_i (log2 domain), sum
// l_i and unnormalised O_i (4 of its dims here). The merge weights each by
// exp2(m_i - M), M the largest m_i, in index order, skipping partials that saw
// no key (m_i = -inf); its m is M and its l the weighted sum (O / l is the
// row's output, 0 when l is 0).
struct MergedPartials {
  float m, l;
  float4 o;
  // O / l as 4 bf16 (0 when no partial saw a key).
  __device__ __forceinline__ uint2 normalised_bf16() const {
    const float inv = l > 0.f ? 1.0f / l : 0.f;
    uint2 packed;
    packed.x = pack_bf16x2(o.x * inv, o.y * inv);
    packed.y = pack_bf16x2(o.z * inv, o.w * inv);
    return packed;
  }
};

template <typename MOf, typename LOf, typename OOf>
__device__ __forceinline__ MergedPartials merge_partials(int n, MOf m_of, LOf l_of, OOf o_of) {
  MergedPartials r{-INFINITY, 0.f, make_float4(0.f, 0.f, 0.f, 0.f)};
  // Unrolled by 4 when n is not a constant: four partials' loads in flight
  // before the first is used (from L2 each is a few hundred cycles).
#pragma unroll 4
  for (int i = 0; i < n; ++i) r.m = fmaxf(r.m, m_of(i));
#pragma unroll 4
  for (int i = 0; i < n; ++i) {
    const float mi = m_of(i);
    if (mi == -INFINITY) continue;  // that partial saw no key
    const float wt = exp2f(mi - r.m);
    const float4 o = o_of(i);
    r.o.x += wt * o.x;
    r.o.y += wt * o.y;
    r.o.z += wt * o.z;
    r.o.w += wt * o.w;
    r.l += wt * l_of(i);
  }
  return r;
}

// Copies ROWS rows of HD bf16 into shared memory (pitch HD + 8) with 16-byte
// cp.async, spread over THREADS threads. Each thread owns one 16-byte column
// chunk and walks the rows in passes of kRowsPerPass (threads past
// kRowsPerPass * kChunks idle), so it keeps one row index and one chunk
// index, not a table of addresses. Tile row r is the matrix row t = first + r,
// found at base + row_offset(t) elements; rows t >= end are zero-filled and
// read nothing (the address used is base itself, which must be valid).
template <int HD, int ROWS, int THREADS>
struct TileLoader {
  static constexpr int kChunks = HD / 8;
  static constexpr int kRowsPerPass = THREADS / kChunks;
  static constexpr int kPasses = (ROWS + kRowsPerPass - 1) / kRowsPerPass;
  static_assert(kRowsPerPass >= 1, "too few threads for one row");

  int row, chunk;
  __device__ __forceinline__ explicit TileLoader(int tid) : row(tid / kChunks), chunk(tid % kChunks) {}

  template <typename RowOffset>
  __device__ __forceinline__ void load(bf16* smem, const bf16* base, int first, int end, RowOffset row_offset) const {
    if (row >= kRowsPerPass) return;
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
      const int r = row + p * kRowsPerPass;
      if (kPasses * kRowsPerPass == ROWS || r < ROWS) {
        const int t = first + r;
        const bool ok = t < end;
        const bf16* src = base + (ok ? row_offset(t) : int64_t(0)) + chunk * 8;
        cp_async_16(smem + r * (HD + 8) + chunk * 8, src, ok);
      }
    }
  }
};

// Shared-memory bytes of FlashPass: one Q tile of ROWS rows and one K and
// one V tile of KN rows, HD + 8 bf16 each.
template <int HD, int ROWS, int KN>
constexpr int flash_smem_bytes() {
  return (ROWS + 2 * KN) * (HD + 8) * int(sizeof(bf16));
}

// The shared-memory tiles and the cp.async schedule of one CTA's
// FlashAttention-2 pass, as the vision and prefill kernels run it: THREADS /
// 32 warps, warp i owning query rows q0 + 16i .. q0 + 16i + 15 of the
// ROWS-row tile at q0 (rows >= q_end zero-filled), against the keys
// [0, kv_end) in tiles of KN, through one Q, one K and one V buffer
// (flash_smem_bytes). FA2's schedule: V_j is fetched while S = Q K_j^T is
// computed, K_{j+1} while O += P V_j. Matrix row t of Q is at q_base +
// q_offset(t), of K and V at k_base / v_base + kv_offset(t). The kernel
// owns the key loop (tile j: keys k0 = j * KN .., from j_first, 0 unless the
// keys are split among CTAs):
//   prologue(...);
//   for each tile j: begin_tile(...); S, mask, softmax; end_tile(...); O += P V
template <int HD, int KN, int ROWS, int THREADS>
struct FlashPass {
  static constexpr int kLd = HD + 8;
  bf16* sq;  // [ROWS][kLd]
  bf16* sk;  // [KN][kLd]
  bf16* sv;  // [KN][kLd]
  TileLoader<HD, ROWS, THREADS> q_loader;
  TileLoader<HD, KN, THREADS> kv_loader;

  __device__ __forceinline__ FlashPass(unsigned char* smem, int tid)
      : sq(reinterpret_cast<bf16*>(smem)), sk(sq + ROWS * kLd), sv(sk + KN * kLd), q_loader(tid), kv_loader(tid) {}

  // Q tile and the first key tile (one group), then its V tile (a second
  // group, in flight while the first is consumed). The pass walks key tiles
  // from j_first (keys j_first * KN ..; 0 unless the keys are split).
  template <typename QOffset, typename KvOffset>
  __device__ __forceinline__ void prologue(const bf16* q_base, int q0, int q_end, QOffset q_offset,
                                           const bf16* k_base, const bf16* v_base, int kv_end,
                                           KvOffset kv_offset, int j_first = 0) const {
    q_loader.load(sq, q_base, q0, q_end, q_offset);
    kv_loader.load(sk, k_base, j_first * KN, kv_end, kv_offset);
    cp_async_commit();
    kv_loader.load(sv, v_base, j_first * KN, kv_end, kv_offset);
    cp_async_commit();
  }

  // Tile j begins: waits for K_j (at the first tile for Q too, whose
  // fragments w then loads for the warp's 16 rows), then issues V_j (the
  // first tile's V came with the prologue).
  template <typename KvOffset>
  __device__ __forceinline__ void begin_tile(WarpFlash<HD, KN>& w, int j, int k0, int warp, int lane,
                                             const bf16* v_base, int kv_end, KvOffset kv_offset,
                                             int j_first = 0) const {
    if (j == j_first)
      cp_async_wait<1>();  // Q and the first K (its V may still be in flight)
    else
      cp_async_wait<0>();  // K_j
    __syncthreads();  // K_j (and Q) visible; every warp is done with V_{j-1}
    if (j == j_first) {
      w.load_q_smem(sq + warp * 16 * kLd, lane);
    } else {
      kv_loader.load(sv, v_base, k0, kv_end, kv_offset);
      cp_async_commit();
    }
  }

  // After S = Q K_j^T: waits for V_j, then issues K_{j+1} when there is one.
  template <typename KvOffset>
  __device__ __forceinline__ void end_tile(int j, int num_tiles, int k0, const bf16* k_base, int kv_end,
                                           KvOffset kv_offset) const {
    cp_async_wait<0>();
    __syncthreads();  // V_j visible; every warp is done with K_j
    if (j + 1 < num_tiles) {
      kv_loader.load(sk, k_base, k0 + KN, kv_end, kv_offset);
      cp_async_commit();
    }
  }
};

}  // namespace rex::cuda::attn
