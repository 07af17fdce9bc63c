// Decode attention (one query row per sequence, GQA, paged KV cache):
// split over the KV length, then a combine pass.
//
// Why this shape:
//  - Decode attention is memory-bound: every key and value of every sequence
//    is read once per step (1 KB per token per layer at 2 kv heads x 128 dims),
//    against 8 FMA per K or V element (the 8 q heads of a group). The kernel's
//    job is to keep enough 16-byte loads in flight; the arithmetic only has to
//    stay off the critical path.
//  - A CTA per (split, kv head, sequence) takes all q heads of the group, so
//    K and V are read once per group, not once per q head. The arithmetic runs
//    on mma.sync m16n8k16 with the group's heads as the 16 rows of A (8 heads:
//    rows 8-15 are zero), which is the vision/prefill warp step
//    (attention_mma.cuh) with key tiles of 16.
//  - Each of the 4 warps walks its own 16-key groups of the split (group
//    i = warp, warp+4, ...) with its own double-buffered cp.async stages, so
//    the key loop has no CTA-wide barrier; the 4 warps' (max, sum, O) are
//    merged through shared memory at the end, and the CTA writes one fp32
//    partial per (sequence, q head, split).
//  - Launch shape: grid (num_splits, kv_heads, batch), fixed; each CTA reads
//    its sequence's length from device memory and takes keys
//    [split*chunk, min((split+1)*chunk, len)), chunk = ceil(len/num_splits)
//    rounded up to 16. A split with no keys writes the neutral partial
//    (max -inf, sum 0, O 0), which the combine skips. So the two launches can
//    be captured once in a CUDA graph and replayed at any length.
//  - The combine kernel: one warp per (sequence, q head); each lane owns 4
//    output dims (float4 loads of the partials), weights exp2(m_s - M).
//  - The merge stays a launch of its own. Session 8 measured the other way
//    (the last CTA of each sequence and kv head merging, counted with an
//    atomic) on the H200: b1 at 1300 keys, 16 splits, 13.0 -> 18.8 us, the
//    batch-1 step 2.63 -> 2.86 ms. That CTA's 128 threads walk every split's
//    partials from L2 in a chain of dependent loads, while the combine
//    launch spreads the same chains over a warp per q head (NOTES §5.3).
//  - DecodeMerge::kCluster (an A/B variant, session 9, not yet measured): the
//    num_splits CTAs of a (kv head, sequence) are one thread-block cluster.
//    Each keeps its partial in shared memory; after a cluster barrier a warp
//    per q head, spread over the first CTAs, merges the splits through
//    distributed shared memory with the combine's own code (merge_splits),
//    so one launch and no global round trip, still a warp per q head and
//    the same bits. Clusters of up to 16 CTAs (non-portable on Hopper).
//  - DecodeRope (with the cluster variant; an A/B variant, session 9, not yet
//    measured): the rotary launch before the attention removed for steps of
//    distinct sequences. Each CTA computes its row's 64 angles and rotates
//    its group's 8 q heads into shared memory (16x redundant over the
//    splits, a few hundred instructions); the split that holds the row's
//    newest key rotates and writes it and its value to the cache, then a
//    block barrier, then its copies read it. rope_rotate.cuh is the rotary
//    kernel's own arithmetic: the same bits.
#include "cuda/attention_decode.cuh"

#include <cooperative_groups.h>

#include <climits>
#include <string>

#include "cuda/attention_mma.cuh"
#include "cuda/cuda_check.h"
#include "cuda/decode_partials.cuh"
#include "cuda/pdl.cuh"
#include "cuda/rope_rotate.cuh"

namespace rex::cuda {
namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kKeys = 16, kStages = 2;
constexpr int kMaxGroup = 16;  // q heads per kv head: the 16 rows of the MMA

// The cluster variant's shared memory past DecodeSmem: its split's partial;
// then, with the rotary step (kRope), the row's cos and sin and its group's
// rotated q heads.
template <int HD>
constexpr int kClusterPartialBytes = (kMaxGroup * HD + 2 * kMaxGroup) * int(sizeof(float));
template <int HD>
constexpr int kRopeBytes = HD * int(sizeof(float)) + kMaxGroup * HD * int(sizeof(bf16));

template <int HD>
struct DecodeSmem {
  static constexpr int kLd = HD + 8;                                                   // bf16 pitch of K/V rows
  static constexpr int kStageElems = kKeys * kLd;                                      // one K or V stage
  static constexpr int kStageBytes = kWarps * kStages * 2 * kStageElems * int(sizeof(bf16));
  static constexpr int kOLd = HD + 8;                                                  // float pitch of the merge
  static constexpr int kMergeBytes = kWarps * kMaxGroup * kOLd * int(sizeof(float));
  static constexpr int kUnionBytes = kStageBytes > kMergeBytes ? kStageBytes : kMergeBytes;
  static constexpr int kBytes = kUnionBytes + 2 * kWarps * kMaxGroup * int(sizeof(float));  // + max, sum
};

// A split kernel variant's dynamic shared memory: the stages and merge, then
// the cluster partial, then the rotary step's rows (the kernel's layout).
template <int HD, bool kCluster, bool kRope>
constexpr int split_smem_bytes() {
  return DecodeSmem<HD>::kBytes + (kCluster ? kClusterPartialBytes<HD> : 0) + (kRope ? kRopeBytes<HD> : 0);
}

// kCluster: the grid's num_splits CTAs of a (kv head, sequence) are one
// thread-block cluster; each keeps its partial in shared memory and, after a
// cluster barrier, warps of the first CTAs merge the splits through
// distributed shared memory (merge_splits, the combine's code) and write out
// (part_* unused). Otherwise the partials go to global memory for the
// combine launch (out unused).
// kRope (with kCluster): q is the raw qkv row; the CTA rotates its q heads
// into shared memory and, when its split holds the row's newest key, writes
// that key (rotated) and value to the cache first (DecodeRope).
template <int HD, bool kCluster, bool kRope>
__global__ void __launch_bounds__(kThreads)
    attention_decode_split_kernel(const bf16* __restrict__ q, int q_stride, int q_heads, int group, PagedKv cache,
                                  int block_shift, const int32_t* __restrict__ block_tables, int max_blocks,
                                  const int32_t* __restrict__ seq_lens, int num_splits, float scale_log2,
                                  float* __restrict__ part_o, float* __restrict__ part_m,
                                  float* __restrict__ part_l, bf16* __restrict__ out, const DecodeRope rope) {
  pdl_launch_dependents();  // lets the next kernel (a GEMV) start streaming its weights
  using Warp = attn::WarpFlash<HD, kKeys>;
  using Smem = DecodeSmem<HD>;
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int split = blockIdx.x, kv_head = blockIdx.y, seq = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;

  // This split's keys [kb, ke) of the sequence.
  const int len = max(0, min(seq_lens[seq], max_blocks << block_shift));
  const int per_split = ((len + num_splits - 1) / num_splits + kKeys - 1) / kKeys * kKeys;
  const int kb = min(split * per_split, len);
  const int ke = min(kb + per_split, len);
  const int num_groups = (ke - kb + kKeys - 1) / kKeys;

  const int32_t* block_table = block_tables + int64_t(seq) * max_blocks;
  const int64_t kv_row = int64_t(cache.kv_heads) * HD;
  const bf16* k_base = cache.k + int64_t(kv_head) * HD;
  const bf16* v_base = cache.v + int64_t(kv_head) * HD;
  auto kv_offset = [block_table, block_shift, kv_row](int t) {
    return attn::paged_row_pow2(block_table, block_shift, t) * kv_row;
  };

  // kRope: the row's angles, its group's rotated q heads (the fragments' source)
  // and, in the split that holds the newest key, that key and value into the cache.
  // Launched overlapped (programmatic dependent launch), everything above and
  // the angles run while the kernel before finishes; q and the cache's newest
  // rows come from it, so the wait comes first where they are read (a no-op
  // for an ordinary launch).
  const bf16* q_rows = q + int64_t(seq) * q_stride + int64_t(kv_head) * group * HD;
  if constexpr (kCluster && !kRope) pdl_wait();
  if constexpr (kRope) {
    constexpr int kHalf = HD / 2, kVecR = 8, kPerHalf = kHalf / kVecR;
    float* cs = reinterpret_cast<float*>(smem_raw + Smem::kBytes + kClusterPartialBytes<HD>);
    float* sn = cs + kHalf;
    bf16* q_rot = reinterpret_cast<bf16*>(sn + kHalf);  // [group][HD]
    const int rows = int(gridDim.z);
    const float pos[3] = {float(rope.positions[seq]), float(rope.positions[rows + seq]),
                          float(rope.positions[2 * rows + seq])};
    for (int j = tid; j < kHalf; j += kThreads)
      mrope_cos_sin(j, pos, rope.section_t, rope.section_t + rope.section_h, rope.inv_freq, &cs[j], &sn[j]);
    pdl_wait();  // the raw qkv rows are the previous kernel's
    __syncthreads();
    for (int it = tid; it < group * kPerHalf; it += kThreads) {
      const int h = it / kPerHalf, j = (it - h * kPerHalf) * kVecR;
      rotate<kVecR>(q_rows + int64_t(h) * HD + j, q_rot + h * HD + j, kHalf, cs + j, sn + j);
    }
    const int dest = rope.dest_rows[seq];
    if (dest >= 0 && len > 0 && kb <= len - 1 && len - 1 < ke) {
      const bf16* row = q + int64_t(seq) * q_stride;
      const bf16* k_new = row + int64_t(q_heads + kv_head) * HD;
      const bf16* v_new = row + int64_t(q_heads + cache.kv_heads + kv_head) * HD;
      bf16* k_dst = rope.k + int64_t(dest) * kv_row + int64_t(kv_head) * HD;
      bf16* v_dst = rope.v + int64_t(dest) * kv_row + int64_t(kv_head) * HD;
      for (int it = tid; it < kPerHalf + HD / kVecR; it += kThreads) {
        if (it < kPerHalf) {
          rotate<kVecR>(k_new + it * kVecR, k_dst + it * kVecR, kHalf, cs + it * kVecR, sn + it * kVecR);
        } else {
          const int j = (it - kPerHalf) * kVecR;
          float v[kVecR];
          load_bf16<kVecR>(v_new + j, v);
          store_bf16<kVecR>(v_dst + j, v);
        }
      }
      __threadfence();  // the cache rows reach L2, where the block's cp.async copies read them
    }
    __syncthreads();  // q_rot complete; the new key and value visible to the block's copies below
    q_rows = q_rot;
  }

  Warp w;
  w.init();
  // Q fragments, 4-byte loads, once (from global memory, or kRope's shared
  // rows): row r of A is q head kv_head*group + r, zero for r >= group.
  {
    const bool ok0 = g < group, ok1 = g + 8 < group;
#pragma unroll
    for (int ks = 0; ks < Warp::kKSteps; ++ks) {
      const int col = ks * 16 + 2 * t4;
      const bf16* p0 = q_rows + int64_t(g) * HD + col;
      const bf16* p1 = q_rows + int64_t(g + 8) * HD + col;
      w.q[ks][0] = ok0 ? *reinterpret_cast<const uint32_t*>(p0) : 0u;
      w.q[ks][1] = ok1 ? *reinterpret_cast<const uint32_t*>(p1) : 0u;
      w.q[ks][2] = ok0 ? *reinterpret_cast<const uint32_t*>(p0 + 8) : 0u;
      w.q[ks][3] = ok1 ? *reinterpret_cast<const uint32_t*>(p1 + 8) : 0u;
    }
  }

  // The warp's stages: [kStages][K, V][kKeys][kLd].
  bf16* stages = reinterpret_cast<bf16*>(smem_raw) + warp * kStages * 2 * Smem::kStageElems;
  auto stage_k = [&](int s) { return stages + (2 * s) * Smem::kStageElems; };
  auto stage_v = [&](int s) { return stages + (2 * s + 1) * Smem::kStageElems; };
  const attn::TileLoader<HD, kKeys, 32> loader(lane);
  auto load_group = [&](int s, int grp) {
    const int first = kb + grp * kKeys;
    loader.load(stage_k(s), k_base, first, ke, kv_offset);
    loader.load(stage_v(s), v_base, first, ke, kv_offset);
  };

  if (warp < num_groups) load_group(0, warp);
  attn::cp_async_commit();
  int it = 0;
  for (int grp = warp; grp < num_groups; grp += kWarps, ++it) {
    const int cur = it % kStages;
    if (grp + kWarps < num_groups) load_group((it + 1) % kStages, grp + kWarps);
    attn::cp_async_commit();  // possibly empty: keeps "all but the newest group" = the current stage
    attn::cp_async_wait<1>();
    __syncwarp();  // every lane's copies of the current stage are visible to the warp

    const int first = kb + grp * kKeys;
    float s[Warp::kSTiles][4];
    w.scores(s, stage_k(cur), lane);
    if (first + kKeys > ke) w.mask(s, ke - first, INT_MAX, INT_MAX, lane);
    w.softmax(s, scale_log2);
    w.accumulate(s, stage_v(cur), lane);
    __syncwarp();  // the warp is done reading this stage before it is refilled
  }
  attn::cp_async_wait<0>();
  w.reduce_sums();

  // Merge the 4 warps. The stage buffers are reused for their O (fp32, 34 KB).
  __syncthreads();
  float* merge_o = reinterpret_cast<float*>(smem_raw);  // [kWarps][kMaxGroup][kOLd]
  float* merge_m = reinterpret_cast<float*>(smem_raw + Smem::kUnionBytes);  // [kWarps][kMaxGroup]
  float* merge_l = merge_m + kWarps * kMaxGroup;
  {
    float* o0 = merge_o + (warp * kMaxGroup + g) * Smem::kOLd;
    float* o1 = o0 + 8 * Smem::kOLd;
#pragma unroll
    for (int i = 0; i < Warp::kOTiles; ++i) {
      const int dim = i * 8 + 2 * t4;
      *reinterpret_cast<float2*>(o0 + dim) = make_float2(w.o[i][0], w.o[i][1]);
      *reinterpret_cast<float2*>(o1 + dim) = make_float2(w.o[i][2], w.o[i][3]);
    }
    if (t4 == 0) {
      merge_m[warp * kMaxGroup + g] = w.m[0];
      merge_m[warp * kMaxGroup + g + 8] = w.m[1];
      merge_l[warp * kMaxGroup + g] = w.l[0];
      merge_l[warp * kMaxGroup + g + 8] = w.l[1];
    }
  }
  __syncthreads();

  constexpr int kVec = HD / 4;  // float4 per row
  // The cluster variant's partial of this split: [kMaxGroup][HD] O, then m, l.
  float* own_o = reinterpret_cast<float*>(smem_raw + Smem::kBytes);
  float* own_m = own_o + kMaxGroup * HD;
  float* own_l = own_m + kMaxGroup;
  for (int idx = tid; idx < group * kVec; idx += kThreads) {
    const int row = idx / kVec, d4 = idx % kVec;
    const attn::MergedPartials merged = attn::merge_partials(
        kWarps, [&](int wi) { return merge_m[wi * kMaxGroup + row]; },
        [&](int wi) { return merge_l[wi * kMaxGroup + row]; },
        [&](int wi) { return *reinterpret_cast<const float4*>(merge_o + (wi * kMaxGroup + row) * Smem::kOLd + d4 * 4); });
    if constexpr (kCluster) {
      *reinterpret_cast<float4*>(own_o + row * HD + d4 * 4) = merged.o;
      if (d4 == 0) {
        own_m[row] = merged.m;
        own_l[row] = merged.l;
      }
    } else {
      const int64_t part = (int64_t(seq) * q_heads + int64_t(kv_head) * group + row) * num_splits + split;
      *reinterpret_cast<float4*>(part_o + part * HD + d4 * 4) = merged.o;
      if (d4 == 0) {
        part_m[part] = merged.m;  // -inf with sum 0 and O 0: the neutral partial of an empty split
        part_l[part] = merged.l;
      }
    }
  }
  if constexpr (kCluster) {
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();  // every split's partial is in its CTA's shared memory (release / acquire)
    // Warp w of cluster rank r merges q head rows r * kWarps + w, then every
    // num_splits * kWarps rows further (a cluster of one CTA takes them all).
    for (int row = int(cluster.block_rank()) * kWarps + warp; row < group; row += num_splits * kWarps) {
      auto remote = [&](float* p, int s) { return cluster.map_shared_rank(p, unsigned(s)); };
      const uint2 packed = merge_splits<HD>(
          num_splits, lane, [&](int s) { return remote(own_m, s)[row]; }, [&](int s) { return remote(own_l, s)[row]; },
          [&](int s) { return *reinterpret_cast<const float4*>(remote(own_o, s) + row * HD + lane * 4); });
      const int64_t item = int64_t(seq) * q_heads + int64_t(kv_head) * group + row;
      if (lane * 4 < HD) *reinterpret_cast<uint2*>(out + item * HD + lane * 4) = packed;
    }
    cluster.sync();  // no CTA leaves while another still reads its shared memory
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreads) attention_decode_combine_kernel(const DecodeSplitPartials p, int items,
                                                                           bf16* __restrict__ out) {
  pdl_launch_dependents();  // lets the next kernel (a GEMV) start streaming its weights
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + warp;  // seq * q_heads + head
  if (item >= items) return;                    // the whole warp: the merge shuffles across it
  const uint2 packed = merge_decode_splits<HD>(p, item, lane);
  if (lane * 4 < HD) *reinterpret_cast<uint2*>(out + int64_t(item) * HD + lane * 4) = packed;
}

// 68 KB of stages at head_dim 128 (4 warps x 2 stages x K,V x 16 x 136 bf16):
// the dynamic shared-memory limit is raised once per process (and, for the
// cluster variant, clusters of up to 16 CTAs allowed), and the one call's
// result is kept and returned every time.
template <int HD, bool kCluster, bool kRope>
Status prepare_decode_kernel() {
  static const cudaError_t err = [] {
    cudaError_t e = cudaFuncSetAttribute(attention_decode_split_kernel<HD, kCluster, kRope>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         split_smem_bytes<HD, kCluster, kRope>());
    if (e == cudaSuccess && kCluster)
      e = cudaFuncSetAttribute(attention_decode_split_kernel<HD, kCluster, kRope>,
                               cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    return e;
  }();
  return cuda_status(err, "cudaFuncSetAttribute(attention_decode_split_kernel)");
}

// The cluster variants, with or without the rotary step: one launch.
template <int HD, bool kRope>
Status launch_cluster(const dim3& grid, const bf16* q, int q_stride, int q_heads, int group, const PagedKv& cache,
                      int block_shift, const int32_t* block_tables, int max_blocks, const int32_t* seq_lens,
                      int num_splits, float scale_log2, bf16* out, const DecodeRope& rope, bool overlap_previous,
                      cudaStream_t stream) {
  REX_RETURN_IF_ERROR((prepare_decode_kernel<HD, true, kRope>()));
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = size_t(split_smem_bytes<HD, true, kRope>());
  config.stream = stream;
  cudaLaunchAttribute attribute[2];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = unsigned(num_splits);
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  attribute[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[1].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = overlap_previous ? 2 : 1;
  float* unused = nullptr;
  return cuda_status(cudaLaunchKernelEx(&config, attention_decode_split_kernel<HD, true, kRope>, q, q_stride, q_heads,
                                        group, cache, block_shift, block_tables, max_blocks, seq_lens, num_splits,
                                        scale_log2, unused, unused, unused, out, rope),
                     kRope ? "attention_decode_split_kernel (cluster, rotary)" : "attention_decode_split_kernel (cluster)");
}

template <int HD>
Status launch_decode(const bf16* q, int q_stride, int batch, int q_heads, const PagedKv& cache, int block_shift,
                     const int32_t* block_tables, int max_blocks, const int32_t* seq_lens, int num_splits,
                     DecodeMerge merge, const DecodeRope* rope, bool overlap_previous, float* workspace, bf16* out,
                     cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(num_splits), static_cast<unsigned>(cache.kv_heads),
                  static_cast<unsigned>(batch));
  const int group = q_heads / cache.kv_heads;
  const float scale_log2 = attn::softmax_scale_log2(HD);
  if (merge == DecodeMerge::kCluster)  // one launch; the workspace unused
    return (rope ? launch_cluster<HD, true> : launch_cluster<HD, false>)(
        grid, q, q_stride, q_heads, group, cache, block_shift, block_tables, max_blocks, seq_lens, num_splits,
        scale_log2, out, rope ? *rope : DecodeRope{}, overlap_previous, stream);
  const int64_t parts = int64_t(batch) * q_heads * num_splits;
  float* part_o = workspace;
  float* part_m = workspace + parts * HD;
  float* part_l = part_m + parts;
  REX_RETURN_IF_ERROR((prepare_decode_kernel<HD, false, false>()));
  attention_decode_split_kernel<HD, false, false><<<grid, kThreads, split_smem_bytes<HD, false, false>(), stream>>>(
      q, q_stride, q_heads, group, cache, block_shift, block_tables, max_blocks, seq_lens, num_splits, scale_log2,
      part_o, part_m, part_l, out, DecodeRope{});
  REX_RETURN_IF_ERROR(check_launch("attention_decode_split_kernel"));
  const int items = batch * q_heads;
  const DecodeSplitPartials p{part_o, part_m, part_l, q_heads, HD, num_splits};
  attention_decode_combine_kernel<HD><<<ceil_div(size_t(items), kWarps), kThreads, 0, stream>>>(p, items, out);
  return check_launch("attention_decode_combine_kernel");
}

}  // namespace

size_t attention_decode_workspace_floats(int batch, int q_heads, int head_dim, int num_splits) {
  if (batch <= 0 || q_heads <= 0 || head_dim <= 0 || num_splits <= 0) return 0;
  return size_t(batch) * size_t(q_heads) * size_t(num_splits) * size_t(head_dim + 2);
}

Status attention_decode_bf16(const bf16* q, int q_stride, int batch, int q_heads, PagedKv cache,
                             const int32_t* block_tables, int max_blocks, const int32_t* seq_lens, int num_splits,
                             float* workspace, bf16* out, cudaStream_t stream, DecodeMerge merge,
                             const DecodeRope* rope, bool overlap_previous) {
  auto bad = [](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, "attention_decode_bf16: " + what);
  };
  const int hd = cache.head_dim;
  if (hd != 32 && hd != 64 && hd != 128) return bad("expected head_dim 32, 64 or 128 but got " + std::to_string(hd));
  if (batch < 0 || batch > 65535) return bad("expected batch in 0..65535 but got " + std::to_string(batch));
  if (cache.kv_heads <= 0 || cache.kv_heads > 65535)
    return bad("expected kv_heads in 1..65535 but got " + std::to_string(cache.kv_heads));
  if (q_heads <= 0 || q_heads % cache.kv_heads != 0 || q_heads / cache.kv_heads > kMaxGroup)
    return bad("expected q_heads a multiple of kv_heads " + std::to_string(cache.kv_heads) + " with at most " +
               std::to_string(kMaxGroup) + " q heads per kv head but got " + std::to_string(q_heads));
  const int bs = cache.block_size;
  if (bs <= 0 || (bs & (bs - 1)) != 0)
    return bad("expected block_size a power of two but got " + std::to_string(bs));
  if (max_blocks <= 0 || int64_t(max_blocks) * bs > INT_MAX)
    return bad("expected max_blocks >= 1 with max_blocks*block_size <= " + std::to_string(INT_MAX) + " but got " +
               std::to_string(max_blocks));
  if (num_splits <= 0 || num_splits > 65535)
    return bad("expected num_splits in 1..65535 but got " + std::to_string(num_splits));
  if (rope && merge != DecodeMerge::kCluster)
    return bad("expected DecodeMerge::kCluster with a DecodeRope (the rotary step runs in the cluster variant) but "
               "got the combine launch");
  if (rope && q_stride < (q_heads + 2 * cache.kv_heads) * hd)
    return bad("expected q_stride >= (q_heads + 2*kv_heads)*head_dim (" +
               std::to_string((q_heads + 2 * cache.kv_heads) * hd) + ") with a DecodeRope (q is the fused qkv row) but got " +
               std::to_string(q_stride));
  if (rope && (rope->section_t < 0 || rope->section_h < 0 || rope->section_t + rope->section_h > hd / 2))
    return bad("expected DecodeRope sections t, h >= 0 with t + h <= head_dim/2 (" + std::to_string(hd / 2) +
               ") but got " + std::to_string(rope->section_t) + ", " + std::to_string(rope->section_h));
  if (overlap_previous && merge != DecodeMerge::kCluster)
    return bad("expected DecodeMerge::kCluster with overlap_previous (the cluster launch is the one launched "
               "overlapped) but got the combine launch");
  if (merge == DecodeMerge::kCluster && num_splits > kMaxClusterSplits)
    return bad("expected num_splits <= " + std::to_string(kMaxClusterSplits) +
               " with DecodeMerge::kCluster (a cluster of that many CTAs) but got " + std::to_string(num_splits));
  if (q_stride < q_heads * hd || q_stride % 8 != 0)
    return bad("expected q_stride >= q_heads*head_dim (" + std::to_string(q_heads * hd) +
               ") and a multiple of 8 but got " + std::to_string(q_stride));
  if (batch == 0) return Status::Ok();
  if (rope && (!rope->positions || !rope->inv_freq || !rope->dest_rows || rope->k != cache.k || rope->v != cache.v))
    return bad("expected DecodeRope positions, inv_freq and dest_rows, and its k and v the cache's planes, but got a "
               "null or other pointer");
  if (!q || !cache.k || !cache.v || !block_tables || !seq_lens || !workspace || !out)
    return bad("expected non-null q, cache.k, cache.v, block_tables, seq_lens, workspace and out but got a null "
               "pointer");
  if (!attn::aligned_to(q, 16) || !attn::aligned_to(cache.k, 16) || !attn::aligned_to(cache.v, 16) ||
      !attn::aligned_to(workspace, 16) || !attn::aligned_to(out, 8))
    return bad("expected q, cache.k, cache.v, workspace 16-byte and out 8-byte aligned but got a misaligned pointer");
  int shift = 0;
  while ((1 << shift) < bs) ++shift;
  if (hd == 32)  // the small test checkpoints' decoder
    return launch_decode<32>(q, q_stride, batch, q_heads, cache, shift, block_tables, max_blocks, seq_lens,
                             num_splits, merge, rope, overlap_previous, workspace, out, stream);
  if (hd == 64)
    return launch_decode<64>(q, q_stride, batch, q_heads, cache, shift, block_tables, max_blocks, seq_lens,
                             num_splits, merge, rope, overlap_previous, workspace, out, stream);
  return launch_decode<128>(q, q_stride, batch, q_heads, cache, shift, block_tables, max_blocks, seq_lens,
                            num_splits, merge, rope, overlap_previous, workspace, out, stream);
}

}  // namespace rex::cuda
