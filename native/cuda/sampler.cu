// Token choice on the GPU (sampler.cuh): sample_token's rules
// (native/sampling/sampling.cpp) over logits that stay on the device. Why it
// is shaped so:
//  - Two launches. Sampled rows: one block of 1024 threads per row (the row
//    kernel). A row is at most one vocabulary (151936 floats, 0.6 MB,
//    L2-resident right after the LM head), and the work is a chain of
//    row-wide decisions (max, k-th value, top-p cut, the draw), each a block
//    reduction: one block keeps every step in shared memory and barriers (no
//    inter-block sync), and a row's result cannot depend on the other rows.
//  - Greedy rows (the detection default) need one pass only: the penalty,
//    argmax (lowest id on ties), float log-sum-exps of the penalised
//    candidates and of the raw row over the whole vocabulary (masked-out ids
//    too). On one SM that pass is a chain of dependent L2 loads (91 us at
//    151936, measured), so it is split: the first launch (greedy_chunks_kernel,
//    kMaxChunks = 128 blocks of 256 threads per row, the host not knowing
//    which rows are greedy) gives each greedy row C = ceil(elements / 2048)
//    chunks, elements = vocab for a full row and the candidate count
//    otherwise, so a restricted row of 1000 candidates is one block and the
//    full vocabulary 75; every other block returns at once. Chunk j takes the
//    candidates [n*j/C, n*(j+1)/C) (at most 2048: 8 loads in flight per
//    thread, one pass) and, on a full row, the ids [vocab*j/C, ...) for the
//    raw normaliser (the same slice, read once, when the row is unmasked),
//    and writes a 32-byte partial (best value, id, raw logit; two (max, sum)
//    pairs) after every row's workspace arrays; block 0 adds a header (n,
//    the fallback id and its logit, C). The row kernel's warp 0 merges the C
//    partials in a fixed tree over the chunk index (so the bits are the same
//    on every run, in every batch) and writes the result; floats, as before
//    (the log-probs need 1e-4; float gives ~1e-6). A greedy row with more
//    than 1024 segments (staged in the chunk's shared memory) stays on the
//    one-block path: a pass over the candidates and one over the masked-out
//    ids ("gaps").
//  - Sampled rows first write their processed logits (penalty, temperature)
//    to the workspace, densely in candidate order (= ascending id), so that
//    every later pass reads 16-byte vectors and never walks the segments.
//    Each later pass goes tile by tile (8192 elements: 8 consecutive per
//    thread), so "in id order" is (tile, thread, item).
//      top-k: a count histogram over 2048 buckets of (max - x) at 1/32 nat
//      (values spread over many buckets; the top bits of their float keys
//      would pile into a few and serialise the shared-memory atomics) finds
//      the bucket holding the k-th value; the members down to that bucket
//      are compacted, in id order (a block scan per tile), and a 3-level
//      radix select (11+11+10 bits) over the order-preserving keys of that
//      short list gives the exact k-th value. Ties at it stay, as the CPU.
//      top-p: the same with probability mass instead of counts; the cut's
//      ties are split by id with a radix select on the inverted id (lower id
//      = more probable, as the CPU's sort).
//      draw: per-tile masses, the tile where the running sum passes
//      uniform * total, a block scan of that tile, then the thread's 8 items.
//  - Masses are fixed point, round(exp(x - max) * 2^46) in uint64: sums are
//    exact, so histograms built with atomics, scans and totals agree in any
//    order, pass with pass and run with run (determinism without ordering
//    any float sum). exp is taken in double as the CPU does, except more
//    than 24 nats under the max, where float's error is below the quantum.
//    Against the CPU's double sums a cumulative sum differs by at most
//    n * 2^-47 of the top token's mass (1.1e-9 at 151936 candidates); the
//    test treats draws that close to a boundary as ambiguous.
//  - Nothing allocates, waits or reads back: both launches are
//    graph-capturable. A row the workspace cannot hold (more than
//    max_candidates) reports id -1.
// Costs and floors per row: NOTES.md, "sampler".
#include "cuda/sampler.cuh"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/elementwise.cuh"

namespace rex::cuda {
namespace {

using u64 = unsigned long long;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 8;                       // consecutive elements per thread in a tile
constexpr int kTile = kThreads * kItems;        // 8192
constexpr int kBins = 2 * kThreads;             // histogram bins (2 per thread in the scan)
constexpr float kBucketsPerNat = 32.0f;         // first-level buckets: 1/32 nat below the max each
constexpr int kRangeChunk = kThreads;           // segments staged in shared memory at once
constexpr int kMaxCandidates = (1 << 18) - 1;   // masses: n * 2^46 < 2^64
constexpr int kMaxTiles = (kMaxCandidates + kTile - 1) / kTile;
constexpr double kMassScale = 70368744177664.0; // 2^46: the top token's mass
constexpr double kFarTail = -24.0;              // below max - 24 nats, float exp suffices
constexpr int kNone = 0x7fffffff;

// ------------------------------------------------------------ block helpers

struct RangeStage {
  int begin[kRangeChunk];
  int offset[kRangeChunk];
  int pre[kRangeChunk + 1];  // exclusive prefix of the lengths; pre[K] = the chunk's total
};

struct CrossingSlot {
  int bin;
  u64 above, weight;
};

struct Shared {
  union {
    RangeStage ranges;  // gather passes
    u64 hist[kBins];    // histogram passes
  };
  alignas(16) unsigned char scratch[kWarps * 16];  // block_reduce / block_excl_scan
  u64 tile_mass[kMaxTiles];
  CrossingSlot cross;
  int pick;
};

template <typename T>
__device__ __forceinline__ T shfl_xor_any(T v, int mask) {
  static_assert(sizeof(T) % 4 == 0 && sizeof(T) <= 16, "shuffled types are 4..16 bytes");
  constexpr int kWords = int(sizeof(T) / 4);
  int w[kWords];
  memcpy(w, &v, sizeof(T));
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = __shfl_xor_sync(0xffffffffu, w[i], mask);
  memcpy(&v, w, sizeof(T));
  return v;
}

// Every thread gets op over the block, combined in a fixed order (butterfly
// in each warp, then warp 0..31 in sequence): the same bits on every run.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, Shared& sh) {
  static_assert(sizeof(T) <= 16, "scratch holds 16 bytes per warp");
  T* slots = reinterpret_cast<T*>(sh.scratch);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor_any(v, o));
  if ((threadIdx.x & 31) == 0) slots[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = slots[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, slots[w]);
  __syncthreads();
  return r;
}

// Exclusive prefix over the block in thread order; *total gets the sum. Integers: exact.
__device__ __forceinline__ u64 block_excl_scan(u64 v, u64* total, Shared& sh) {
  u64* slots = reinterpret_cast<u64*>(sh.scratch);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  u64 inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const u64 y = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += y;
  }
  if (lane == 31) slots[warp] = inc;
  __syncthreads();
  u64 before = 0, all = 0;
  for (int w = 0; w < kWarps; ++w) {
    const u64 s = slots[w];
    before += w < warp ? s : 0;
    all += s;
  }
  __syncthreads();
  *total = all;
  return before + inc - v;
}

struct SumOp {
  __device__ u64 operator()(u64 a, u64 b) const { return a + b; }
};
struct MinOp {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct MaxOp {
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
};
struct MaxFloatOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// The best candidate: larger value, then lower id.
struct Best {
  float v;
  int id;
};
struct BestOp {
  __device__ Best operator()(Best a, Best b) const {
    return (b.v > a.v || (b.v == a.v && b.id < a.id)) ? b : a;
  }
};

// Online log-sum-exp of two rows at once: the raw logits (model_logprob) and
// the penalised candidates (greedy logprob), each with its own running max.
struct Lse {
  float m_raw, s_raw, m_pen, s_pen;
};
__device__ __forceinline__ Lse lse_empty() { return {-INFINITY, 0.0f, -INFINITY, 0.0f}; }
// Adds exp(x - m) to (m, s), moving m up when x is larger; -inf adds nothing.
__device__ __forceinline__ float lse_term(float& m, float& s, float x) {
  if (!(x > -INFINITY)) return 0.0f;
  if (x > m) {
    s *= __expf(m - x);  // m = -inf: s is 0 and stays 0
    m = x;
  }
  const float e = __expf(x - m);
  s += e;
  return e;
}
__device__ __forceinline__ void lse_merge_one(float& m, float& s, float mb, float sb) {
  const float hi = fmaxf(m, mb);
  if (hi == -INFINITY) return;
  s = s * __expf(m - hi) + sb * __expf(mb - hi);
  m = hi;
}
struct LseOp {
  __device__ Lse operator()(Lse a, Lse b) const {
    lse_merge_one(a.m_raw, a.s_raw, b.m_raw, b.s_raw);
    lse_merge_one(a.m_pen, a.s_pen, b.m_pen, b.s_pen);
    return a;
  }
};

// ------------------------------------------------------------ element math

// Order-preserving key of a float (larger value, larger key); -0 counts as +0
// so that the keys' order is the values' order, ties included.
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// round(exp(x - mx) * 2^46): the top token weighs 2^46, -inf weighs 0.
__device__ __forceinline__ u64 mass_of(float x, float mx) {
  const double d = double(x) - double(mx);
  const double q = d >= kFarTail ? exp(d) : double(expf(float(d)));
  return __double2ull_rn(q * kMassScale);
}

// First-level bucket, 0 = within 1/32 nat of the max; monotone in x (a larger
// value never lands in a later bucket); -inf and anything 64 nats down: the last.
__device__ __forceinline__ int bucket_of(float x, float mx) {
  const float b = (mx - x) * kBucketsPerNat;
  return b < float(kBins - 1) ? int(b) : kBins - 1;
}

__device__ __forceinline__ bool seen_bit(const uint32_t* seen, int id) {
  return (__ldg(seen + (id >> 5)) >> (id & 31)) & 1u;
}

// apply_repetition_penalty on one value.
__device__ __forceinline__ float penalised(float x, float p) { return x < 0.0f ? __fmul_rn(x, p) : __fdiv_rn(x, p); }

// ------------------------------------------------------------ gather passes

// Calls fn(c, id, raw) for every element of a row's ranges, c counting
// elements from 0 in range order. GAPS false: the segments (candidates),
// raw = logits[logit_offset + id - id_begin]. GAPS true (full layout): the ids
// between the segments over [0, vocab), raw = logits[id]. Each thread takes
// c = t, t + 1024, ... (coalesced), four loads in flight; its order is fixed.
template <bool GAPS, typename Fn>
__device__ __forceinline__ void for_each_element(Shared& sh, const SamplerSegment* seg, int segments, int vocab,
                                                 const float* logits, Fn&& fn) {
  const int ranges = GAPS ? segments + 1 : segments;
  int cbase = 0;
  for (int r0 = 0; r0 < ranges; r0 += kRangeChunk) {
    const int k = min(kRangeChunk, ranges - r0);
    int begin = 0, len = 0, offset = 0;
    if (int(threadIdx.x) < k) {
      const int r = r0 + int(threadIdx.x);
      if (GAPS) {
        begin = r > 0 ? __ldg(&seg[r - 1].id_end) : 0;
        const int end = r < segments ? __ldg(&seg[r].id_begin) : vocab;
        len = max(0, end - begin);
        offset = begin;
      } else {
        begin = __ldg(&seg[r].id_begin);
        len = max(0, __ldg(&seg[r].id_end) - begin);
        offset = __ldg(&seg[r].logit_offset);
      }
    }
    u64 total = 0;
    const int pre = int(block_excl_scan(u64(len), &total, sh));  // its barriers also retire the last chunk
    if (int(threadIdx.x) < k) {
      sh.ranges.begin[threadIdx.x] = begin;
      sh.ranges.offset[threadIdx.x] = offset;
      sh.ranges.pre[threadIdx.x] = pre;
    }
    if (threadIdx.x == 0) sh.ranges.pre[k] = int(total);
    __syncthreads();
    const int n = int(total);
    int s = 0;  // this thread's range; its c only grow
    for (int c0 = int(threadIdx.x); c0 < n; c0 += 4 * kThreads) {
      float raw[4];
      int id[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int c = c0 + u * kThreads;
        raw[u] = 0.0f;
        id[u] = 0;
        if (c < n) {
          if (sh.ranges.pre[s + 1] <= c) {  // the last range starting at or before c (non-empty)
            int lo = s + 1, hi = k - 1;
            while (lo < hi) {
              const int mid = (lo + hi + 1) >> 1;
              if (sh.ranges.pre[mid] <= c) lo = mid;
              else hi = mid - 1;
            }
            s = lo;
          }
          const int local = c - sh.ranges.pre[s];
          id[u] = sh.ranges.begin[s] + local;
          raw[u] = __ldg(logits + size_t(sh.ranges.offset[s]) + size_t(local));
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + u * kThreads < n) fn(cbase + c0 + u * kThreads, id[u], raw[u]);
    }
    cbase += n;
  }
  __syncthreads();  // the staged ranges share memory with the histograms
}

// ------------------------------------------------------------ tile passes

// A set of processed logits: candidates (list null: element e is candidate e)
// or a compacted list of candidate indices in ascending order, filtered:
// members are x >= lo, less the ties x == tie with index above cut.
struct Source {
  const int* list;
  int count;
  float lo, tie;
  int cut;
};
__device__ __forceinline__ Source all_of(const int* list, int count) { return {list, count, -INFINITY, NAN, kNone}; }
__device__ __forceinline__ bool is_member(const Source& s, float x, int idx) {
  return x >= s.lo && !(x == s.tie && idx > s.cut);
}

struct Items {
  float x[kItems];
  int idx[kItems];
  bool in[kItems];
};

// This thread's 8 consecutive elements of tile `tile`. xs and the lists are
// padded to a multiple of 8, so the two 16-byte loads stay inside them. Plain
// loads: this block wrote them earlier in the launch.
__device__ __forceinline__ void load_items(const Source& s, const float* xs, int tile, Items& it) {
  const int e0 = tile * kTile + int(threadIdx.x) * kItems;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    it.x[j] = -INFINITY;
    it.idx[j] = 0;
    it.in[j] = false;
  }
  if (e0 >= s.count) return;
  if (s.list) {
    const int4 a = *reinterpret_cast<const int4*>(s.list + e0);
    const int4 b = *reinterpret_cast<const int4*>(s.list + e0 + 4);
    it.idx[0] = a.x, it.idx[1] = a.y, it.idx[2] = a.z, it.idx[3] = a.w;
    it.idx[4] = b.x, it.idx[5] = b.y, it.idx[6] = b.z, it.idx[7] = b.w;
#pragma unroll
    for (int j = 0; j < kItems; ++j)
      if (e0 + j < s.count) it.x[j] = xs[it.idx[j]];
  } else {
    const float4 a = *reinterpret_cast<const float4*>(xs + e0);
    const float4 b = *reinterpret_cast<const float4*>(xs + e0 + 4);
    it.x[0] = a.x, it.x[1] = a.y, it.x[2] = a.z, it.x[3] = a.w;
    it.x[4] = b.x, it.x[5] = b.y, it.x[6] = b.z, it.x[7] = b.w;
#pragma unroll
    for (int j = 0; j < kItems; ++j) it.idx[j] = e0 + j;
  }
#pragma unroll
  for (int j = 0; j < kItems; ++j) it.in[j] = e0 + j < s.count && is_member(s, it.x[j], it.idx[j]);
}

__device__ __forceinline__ int tiles_of(int count) { return (count + kTile - 1) / kTile; }

// hist[bin_of(x, idx)] += weight_of(x) over the members (bin < 0: skipped).
// A thread's run of equal bins is one atomic (ties, narrow rows).
template <typename BinFn, typename WeightFn>
__device__ __forceinline__ void histogram(Shared& sh, const Source& s, const float* xs, BinFn bin_of,
                                          WeightFn weight_of) {
  for (int i = int(threadIdx.x); i < kBins; i += kThreads) sh.hist[i] = 0;
  __syncthreads();
  const int tiles = tiles_of(s.count);
  for (int t = 0; t < tiles; ++t) {
    Items it;
    load_items(s, xs, t, it);
    int run_bin = -1;
    u64 run = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      if (!it.in[j]) continue;
      const int b = bin_of(it.x[j], it.idx[j]);
      if (b < 0) continue;
      if (b != run_bin) {
        if (run_bin >= 0 && run) atomicAdd(&sh.hist[run_bin], run);
        run_bin = b;
        run = 0;
      }
      run += weight_of(it.x[j]);
    }
    if (run_bin >= 0 && run) atomicAdd(&sh.hist[run_bin], run);
  }
  __syncthreads();
}

struct Crossing {
  int bin;        // -1: the histogram is empty
  u64 above;      // weight of the bins before it
  u64 weight;     // its own weight
  u64 total;
  u64 target;
};

// The bin where the running weight, bins taken in order (bin 0 first, or the
// highest bin first when descending), first reaches target_of(total),
// clamped to [1, total]: above < target <= above + weight.
template <typename TargetFn>
__device__ __forceinline__ Crossing find_crossing(Shared& sh, int nbins, bool descending, TargetFn target_of) {
  const int p0 = 2 * int(threadIdx.x), p1 = p0 + 1;
  auto bin_at = [&](int p) { return descending ? nbins - 1 - p : p; };
  const u64 w0 = p0 < nbins ? sh.hist[bin_at(p0)] : 0, w1 = p1 < nbins ? sh.hist[bin_at(p1)] : 0;
  Crossing c;
  const u64 above = block_excl_scan(w0 + w1, &c.total, sh);
  c.bin = -1;
  c.above = c.weight = 0;
  c.target = 0;
  if (c.total == 0) return c;
  u64 target = target_of(c.total);
  target = target < 1 ? 1 : (target > c.total ? c.total : target);
  c.target = target;
  if (w0 && above < target && target <= above + w0) sh.cross = {bin_at(p0), above, w0};
  else if (w1 && above + w0 < target && target <= above + w0 + w1) sh.cross = {bin_at(p1), above + w0, w1};
  __syncthreads();
  c.bin = sh.cross.bin;
  c.above = sh.cross.above;
  c.weight = sh.cross.weight;
  __syncthreads();
  return c;
}

struct Selected {
  uint32_t key;  // the element's key where the running weight reaches the target
  u64 above;     // weight of every member with a larger key
  u64 weight;    // weight of the members with exactly this key
};

// Radix select over s's members in descending key order: 11 + 11 + 10 bits.
// BY_INDEX: key = ~index (ascending index), members with x == only only.
template <bool MASS, bool BY_INDEX>
__device__ Selected radix_select(Shared& sh, const Source& s, const float* xs, float mx, u64 target, float only) {
  uint32_t prefix = 0, pmask = 0;
  Selected sel{0u, 0, 0};
  for (int level = 0; level < 3; ++level) {
    const int shift = level == 0 ? 21 : level == 1 ? 10 : 0, nbins = level < 2 ? 2048 : 1024;
    const uint32_t digit_mask = uint32_t(nbins - 1);
    histogram(
        sh, s, xs,
        [&](float x, int idx) {
          if (BY_INDEX && !(x == only)) return -1;
          const uint32_t key = BY_INDEX ? ~uint32_t(idx) : order_key(x);
          if ((key & pmask) != prefix) return -1;
          return int((key >> shift) & digit_mask);
        },
        [&](float x) -> u64 { return MASS ? mass_of(x, mx) : 1; });
    const u64 remaining = target - sel.above;
    const Crossing c = find_crossing(sh, nbins, true, [&](u64) { return remaining; });
    if (c.bin < 0) break;  // no member matches (not reached: the caller's target is inside the list)
    sel.above += c.above;
    sel.weight = c.weight;
    prefix |= uint32_t(c.bin) << shift;
    pmask |= digit_mask << shift;
  }
  sel.key = prefix;
  return sel;
}

// Writes, in ascending order, the indices of s's members in buckets
// <= last_bucket to out; returns how many (the same in every thread).
__device__ int compact(Shared& sh, const Source& s, const float* xs, float mx, int last_bucket, int* out) {
  int base = 0;
  const int tiles = tiles_of(s.count);
  for (int t = 0; t < tiles; ++t) {
    Items it;
    load_items(s, xs, t, it);
    int mine = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      it.in[j] = it.in[j] && bucket_of(it.x[j], mx) <= last_bucket;
      mine += it.in[j];
    }
    u64 total = 0;
    int at = base + int(block_excl_scan(u64(mine), &total, sh));
#pragma unroll
    for (int j = 0; j < kItems; ++j)
      if (it.in[j]) out[at++] = it.idx[j];
    base += int(total);
  }
  __syncthreads();  // the list is read by other threads next
  return base;
}

struct Drawn {
  int idx;    // candidate index, -1 when nothing finite is kept
  u64 total;  // mass of the kept candidates
};

// The first kept candidate (member, finite), ascending, whose running mass
// exceeds floor(u * total); the last kept one if rounding leaves it unreached.
__device__ Drawn draw(Shared& sh, const Source& s, const float* xs, float mx, double u) {
  const int tiles = tiles_of(s.count);
  int last = -1;
  for (int t = 0; t < tiles; ++t) {
    Items it;
    load_items(s, xs, t, it);
    u64 mine = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j)
      if (it.in[j] && it.x[j] > -INFINITY) {
        mine += mass_of(it.x[j], mx);
        last = it.idx[j];  // ascending: the last one seen is this thread's largest
      }
    const u64 tile_total = block_reduce(mine, SumOp{}, sh);
    if (threadIdx.x == 0) sh.tile_mass[t] = tile_total;
  }
  last = block_reduce(last, MaxOp{}, sh);  // also publishes tile_mass
  u64 total = 0;
  for (int t = 0; t < tiles; ++t) total += sh.tile_mass[t];
  Drawn d{last, total};
  if (last < 0 || total == 0) return d;
  const double scaled = u * double(total);
  if (!(scaled >= 0.0)) return d;  // NaN: the last kept
  const u64 target = scaled >= double(total) ? total : __double2ull_rd(scaled);
  if (target >= total) return d;
  int tc = 0;
  u64 before = 0;
  while (tc < tiles - 1 && before + sh.tile_mass[tc] <= target) before += sh.tile_mass[tc++];
  Items it;
  load_items(s, xs, tc, it);
  if (threadIdx.x == 0) sh.pick = -1;  // ordered before the finder's write by the scan's barriers
  u64 m[kItems], mine = 0;
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    m[j] = it.in[j] && it.x[j] > -INFINITY ? mass_of(it.x[j], mx) : 0;
    mine += m[j];
  }
  u64 tile_total = 0;
  const u64 excl = block_excl_scan(mine, &tile_total, sh);
  const u64 inner = target - before;  // < tile_total
  if (excl <= inner && inner < excl + mine) {
    u64 cum = excl;
    int pick = -1;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      cum += m[j];
      if (pick < 0 && m[j] && cum > inner) pick = it.idx[j];
    }
    sh.pick = pick;
  }
  __syncthreads();
  d.idx = sh.pick;
  __syncthreads();
  return d;
}

// The id of candidate c (segments in order); warp 0 walks them 32 at a time.
__device__ int candidate_id(Shared& sh, const SamplerSegment* seg, int segments, int c) {
  if (threadIdx.x < 32) {
    const int lane = int(threadIdx.x);
    if (lane == 0) sh.pick = -1;
    __syncwarp();
    int base = 0;
    for (int i0 = 0; i0 < segments; i0 += 32) {
      const int i = i0 + lane;
      const int begin = i < segments ? __ldg(&seg[i].id_begin) : 0;
      const int len = i < segments ? max(0, __ldg(&seg[i].id_end) - begin) : 0;
      int inc = len;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += y;
      }
      const int start = base + inc - len;
      const bool here = len > 0 && start <= c && c < start + len;
      if (here) sh.pick = begin + (c - start);
      if (__any_sync(0xffffffffu, here)) break;
      base += __shfl_sync(0xffffffffu, inc, 31);
    }
  }
  __syncthreads();
  const int id = sh.pick;
  __syncthreads();
  return id;
}

// ------------------------------------------------------------ greedy rows: the split first pass

// A greedy row (with at most kChunkSegments segments) is cut into C chunks:
// a fixed contiguous slice of its candidates, in candidate order, per
// 256-thread block, [n*j/C, n*(j+1)/C); a full row's raw normaliser is cut
// the same way over the ids [0, vocab). C is a function of the row alone
// (vocab for a full row, the candidate count otherwise), so a row's chunks,
// and the bits of its result, do not depend on the launch.
constexpr int kChunkThreads = 256;
constexpr int kChunkWarps = kChunkThreads / 32;
constexpr int kChunkItems = 8;                                   // elements per thread per pass
constexpr int kChunkSpan = kChunkThreads * kChunkItems;          // 2048: a chunk's candidates at most
constexpr int kMaxChunks = 128;                                  // blocks launched per row
constexpr int kChunkSegments = 1024;                             // more: the row's block does it all
constexpr int kSegsPerThread = kChunkSegments / kChunkThreads;   // 4, consecutive
static_assert(int64_t(kMaxChunks) * kChunkSpan > kMaxCandidates, "a chunk's candidates fit one pass");
static_assert(kMaxChunks % 32 == 0, "the combine's lanes take kMaxChunks / 32 chunks each");

// One chunk's partials: the best penalised candidate (largest value, lowest
// id; its raw logit for model_logprob), and two (max, sum of exp(x - max))
// pairs: the penalised candidates and the raw ids of its id slice.
struct alignas(16) Partial {
  float best_v;
  int best_id;
  float best_raw;
  float unused;
  float m_pen, s_pen, m_raw, s_raw;
};
// Per row, before its partials: what the combine needs besides them.
struct alignas(16) RowHeader {
  int n;               // candidates
  int fallback;        // the lowest candidate id (0 when none)
  int chunks;          // partials written (0 when n > max_candidates)
  float fallback_raw;  // logits[fallback] (full rows)
  int unused[4];
};
static_assert(sizeof(Partial) == 32 && sizeof(RowHeader) == 32, "32-byte slots");
constexpr size_t kRowPartialBytes = sizeof(RowHeader) + size_t(kMaxChunks) * sizeof(Partial);  // 4128
constexpr int kMaxRows = 0x7fffffff / kMaxChunks;  // the chunk grid's blocks fit an int

__host__ __device__ __forceinline__ bool is_greedy_row(float temperature, int top_k) {
  return temperature <= 0.0f || top_k == 1;
}
// Rows the chunk kernel takes (the row kernel then only combines them).
__device__ __forceinline__ bool split_row(const SamplerRow& r) {
  return is_greedy_row(r.temperature, r.top_k) && r.segments <= kChunkSegments;
}
// Chunks for `elements` (>= 0): ceil(elements / 2048) in [1, kMaxChunks].
__device__ __forceinline__ int chunks_for(int elements) {
  const int c = elements / kChunkSpan + (elements % kChunkSpan != 0);
  return c < 1 ? 1 : (c > kMaxChunks ? kMaxChunks : c);
}
__device__ __forceinline__ int slice_at(int total, int j, int chunks) {
  return int(int64_t(total) * j / chunks);
}

__device__ __forceinline__ Partial partial_empty() {
  Partial p;
  p.best_v = -INFINITY;
  p.best_id = kNone;
  p.best_raw = 0.0f;
  p.unused = 0.0f;
  p.m_pen = -INFINITY;
  p.s_pen = 0.0f;
  p.m_raw = -INFINITY;
  p.s_raw = 0.0f;
  return p;
}
// a then b: the better best (BestOp's rule: a total order, so any order of
// merging picks the same one), and the two log-sum-exp pairs.
__device__ __forceinline__ Partial partial_merge(Partial a, const Partial& b) {
  if (b.best_v > a.best_v || (b.best_v == a.best_v && b.best_id < a.best_id)) {
    a.best_v = b.best_v;
    a.best_id = b.best_id;
    a.best_raw = b.best_raw;
  }
  lse_merge_one(a.m_pen, a.s_pen, b.m_pen, b.s_pen);
  lse_merge_one(a.m_raw, a.s_raw, b.m_raw, b.s_raw);
  return a;
}
// Butterfly over the warp; lane 0's result is used (the same tree every run).
__device__ __forceinline__ Partial partial_warp_reduce(Partial p) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    Partial q;
    q.best_v = __shfl_xor_sync(0xffffffffu, p.best_v, o);
    q.best_id = __shfl_xor_sync(0xffffffffu, p.best_id, o);
    q.best_raw = __shfl_xor_sync(0xffffffffu, p.best_raw, o);
    q.unused = 0.0f;
    q.m_pen = __shfl_xor_sync(0xffffffffu, p.m_pen, o);
    q.s_pen = __shfl_xor_sync(0xffffffffu, p.s_pen, o);
    q.m_raw = __shfl_xor_sync(0xffffffffu, p.m_raw, o);
    q.s_raw = __shfl_xor_sync(0xffffffffu, p.s_raw, o);
    p = partial_merge(p, q);
  }
  return p;
}

// (max, sum of exp(x - max)) of v[0..7], in item order; -inf (and NaN) add nothing.
__device__ __forceinline__ void lse_of_items(const float (&v)[kChunkItems], float& m, float& s) {
  m = -INFINITY;
#pragma unroll
  for (int u = 0; u < kChunkItems; ++u) m = fmaxf(m, v[u]);
  s = 0.0f;
#pragma unroll
  for (int u = 0; u < kChunkItems; ++u) s += v[u] > -INFINITY ? __expf(v[u] - m) : 0.0f;
}

struct ChunkShared {
  int begin[kChunkSegments];
  int offset[kChunkSegments];
  int pre[kChunkSegments + 1];  // exclusive prefix of the lengths; pre[nseg] = n
  int scan[kChunkWarps];
  Partial warp[kChunkWarps];
};

// The segment holding candidate c (0 <= c < n): the last s with pre[s] <= c
// (non-empty: pre[s + 1] > c). s is a hint with pre[s] <= c.
__device__ __forceinline__ int segment_of(const ChunkShared& sh, int nseg, int c, int s) {
  if (sh.pre[s + 1] <= c) {
    int lo = s + 1, hi = nseg - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (sh.pre[mid] <= c) lo = mid;
      else hi = mid - 1;
    }
    s = lo;
  }
  return s;
}

// Grid: row_count * kMaxChunks blocks, block (r, j) = chunk j of row r. Rows
// that are not split_row, and chunks j >= C, return at once. Writes row r's
// header (block j = 0) and partial j, in the row's kRowPartialBytes slot.
__global__ void __launch_bounds__(kChunkThreads)
    greedy_chunks_kernel(const SamplerRow* rows, const SamplerSegment* segments, int max_candidates,
                         unsigned char* partials) {
  __shared__ ChunkShared sh;
  const int r = int(blockIdx.x / unsigned(kMaxChunks)), j = int(blockIdx.x % unsigned(kMaxChunks));
  const int t = int(threadIdx.x), lane = t & 31, warp = t >> 5;
  const SamplerRow row = rows[r];
  if (!split_row(row)) return;
  const int nseg = max(row.segments, 0);
  const bool full = row.full_row != 0 && row.vocab > 0;
  const int vocab = row.vocab;
  int chunks = full ? chunks_for(vocab) : 0;  // a full row's n <= vocab
  if (full && j >= chunks) return;
  const SamplerSegment* seg = segments + row.first_segment;
  const float* logits = row.logits;

  // The segments: one in registers; several staged with their prefix (loads first, the scan after the raw pass).
  int n = 0, begin0 = 0, offset0 = 0;
  int sbeg[kSegsPerThread], slen[kSegsPerThread], soff[kSegsPerThread];
  if (nseg == 1) {
    begin0 = __ldg(&seg[0].id_begin);
    n = max(0, __ldg(&seg[0].id_end) - begin0);
    offset0 = __ldg(&seg[0].logit_offset);
  } else if (nseg > 1) {
#pragma unroll
    for (int i = 0; i < kSegsPerThread; ++i) {
      const int s = t * kSegsPerThread + i;
      sbeg[i] = s < nseg ? __ldg(&seg[s].id_begin) : 0;
      slen[i] = s < nseg ? max(0, __ldg(&seg[s].id_end) - sbeg[i]) : 0;
      soff[i] = s < nseg ? __ldg(&seg[s].logit_offset) : 0;
    }
  }
  // Unmasked full row: candidate c is id c, the raw slice is the candidate slice.
  const bool dense = full && nseg == 1 && begin0 == 0 && n == vocab && offset0 == 0;

  float m_raw = -INFINITY, s_raw = 0.0f;
  if (full && !dense) {  // the raw normaliser over this chunk's ids (more than one pass past 128 * 2048 ids)
    const int r0 = slice_at(vocab, j, chunks), r1 = slice_at(vocab, j + 1, chunks);
    for (int b = r0; b < r1; b += kChunkSpan) {
      float v[kChunkItems];
#pragma unroll
      for (int u = 0; u < kChunkItems; ++u) {
        const int i = b + t + u * kChunkThreads;
        v[u] = i < r1 ? __ldg(logits + i) : -INFINITY;
      }
      float mb, sb;
      lse_of_items(v, mb, sb);
      lse_merge_one(m_raw, s_raw, mb, sb);
    }
  }

  if (nseg > 1) {
    int mine = 0;
#pragma unroll
    for (int i = 0; i < kSegsPerThread; ++i) mine += slen[i];
    int inc = mine;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, inc, o);
      if (lane >= o) inc += y;
    }
    if (lane == 31) sh.scan[warp] = inc;
    __syncthreads();
    int before = 0, total = 0;
#pragma unroll
    for (int w = 0; w < kChunkWarps; ++w) {
      const int s = sh.scan[w];
      before += w < warp ? s : 0;
      total += s;
    }
    int at = before + inc - mine;
#pragma unroll
    for (int i = 0; i < kSegsPerThread; ++i) {
      const int s = t * kSegsPerThread + i;
      if (s < nseg) {
        sh.pre[s] = at;
        sh.begin[s] = sbeg[i];
        sh.offset[s] = soff[i];
      }
      at += slen[i];
    }
    if (t == 0) sh.pre[nseg] = total;
    n = total;
    __syncthreads();  // the table is read by every thread next (sh.scan is not written again)
  }
  if (!full) {
    chunks = chunks_for(n);
    if (j >= chunks) return;
  }
  RowHeader* header = reinterpret_cast<RowHeader*>(partials + size_t(r) * kRowPartialBytes);
  if (n > max_candidates) {  // the row kernel reports id -1
    if (j == 0 && t == 0) *header = RowHeader{n, 0, 0, NAN, {0, 0, 0, 0}};
    return;
  }
  if (j == 0 && t == 0) {
    int fallback = 0;  // no candidate: id 0, as the CPU
    if (n > 0) fallback = nseg == 1 ? begin0 : sh.begin[segment_of(sh, nseg, 0, 0)];
    const float fraw = full && fallback >= 0 && fallback < vocab ? __ldg(logits + fallback) : NAN;
    *header = RowHeader{n, fallback, chunks, fraw, {0, 0, 0, 0}};
  }

  // This chunk's candidates: c = c0 + t + 256 u, ascending in u (so are the ids).
  const int c0 = slice_at(n, j, chunks), c1 = slice_at(n, j + 1, chunks);  // c1 - c0 <= kChunkSpan
  const float penalty = row.repetition_penalty;
  const bool penalise = row.seen != nullptr && penalty != 1.0f;
  float raw[kChunkItems];
  int cid[kChunkItems];
  uint32_t word[kChunkItems];
  int s = 0;
#pragma unroll
  for (int u = 0; u < kChunkItems; ++u) {
    const int c = c0 + t + u * kChunkThreads;
    int id = 0, at = 0;
    if (c < c1) {
      if (nseg == 1) {
        id = begin0 + c;
        at = offset0 + c;
      } else {
        s = segment_of(sh, nseg, c, s);
        const int local = c - sh.pre[s];
        id = sh.begin[s] + local;
        at = sh.offset[s] + local;
      }
    }
    cid[u] = id;
    raw[u] = c < c1 ? __ldg(logits + size_t(at)) : -INFINITY;
    word[u] = c < c1 && penalise ? __ldg(row.seen + (id >> 5)) : 0u;
  }
  Partial p = partial_empty();
  float x[kChunkItems];
#pragma unroll
  for (int u = 0; u < kChunkItems; ++u) {
    const bool in = c0 + t + u * kChunkThreads < c1;
    x[u] = (word[u] >> (cid[u] & 31)) & 1u ? penalised(raw[u], penalty) : raw[u];
    if (in && x[u] == x[u] && (x[u] > p.best_v || (x[u] == p.best_v && cid[u] < p.best_id))) {
      p.best_v = x[u];
      p.best_id = cid[u];
      p.best_raw = raw[u];
    }
  }
  lse_of_items(x, p.m_pen, p.s_pen);
  if (dense) lse_of_items(raw, m_raw, s_raw);
  p.m_raw = m_raw;
  p.s_raw = s_raw;

  p = partial_warp_reduce(p);
  if (lane == 0) sh.warp[warp] = p;
  __syncthreads();
  if (t == 0) {
    Partial acc = sh.warp[0];
#pragma unroll
    for (int w = 1; w < kChunkWarps; ++w) acc = partial_merge(acc, sh.warp[w]);
    reinterpret_cast<Partial*>(header + 1)[j] = acc;
  }
}

// The row kernel's part for a split row, warp 0 alone (no barrier): the
// header and the partials, merged in a fixed tree over the chunk index (lane
// l takes chunks l, l + 32, l + 64, l + 96 in that order, then the warp's
// butterfly), and the result as the one-block path writes it.
__device__ void combine_greedy(const SamplerRow& row, int max_candidates, const unsigned char* partials,
                               SamplerResult* out) {
  const int lane = int(threadIdx.x);
  const unsigned char* base = partials + size_t(blockIdx.x) * kRowPartialBytes;
  const RowHeader h = *reinterpret_cast<const RowHeader*>(base);
  const Partial* parts = reinterpret_cast<const Partial*>(base + sizeof(RowHeader));
  constexpr int kPerLane = kMaxChunks / 32;
  Partial acc = partial_empty();
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const Partial q = parts[lane + 32 * k];  // inside the row's slot; a chunk past h.chunks is ignored
    if (lane + 32 * k < h.chunks) acc = partial_merge(acc, q);
  }
  acc = partial_warp_reduce(acc);
  if (lane != 0) return;
  if (h.n > max_candidates) {
    *out = {-1, NAN, NAN};
    return;
  }
  const bool full = row.full_row != 0 && row.vocab > 0;
  int id = h.fallback;
  float raw = h.fallback_raw;
  double logprob = NAN;
  if (h.n > 0 && acc.best_v > -INFINITY) {
    id = acc.best_id;
    raw = acc.best_raw;
    logprob = double(acc.best_v) - double(acc.m_pen) - log(double(acc.s_pen));
  }
  double model = NAN;
  if (full && id >= 0 && id < row.vocab) model = double(raw) - (double(acc.m_raw) + log(double(acc.s_raw)));
  *out = {id, float(logprob), float(model)};
}

// ------------------------------------------------------------ the kernel

__global__ void __launch_bounds__(kThreads, 1)
    sample_rows_kernel(const SamplerRow* rows, const SamplerSegment* segments, int max_candidates, int stride,
                       float* workspace, const unsigned char* partials, SamplerResult* results) {
  __shared__ Shared sh;
  const SamplerRow row = rows[blockIdx.x];
  if (split_row(row)) {  // greedy_chunks_kernel did the pass; the same branch in every thread
    if (threadIdx.x < 32) combine_greedy(row, max_candidates, partials, results + blockIdx.x);
    return;
  }
  const SamplerSegment* seg = segments + row.first_segment;
  const int nseg = max(row.segments, 0);
  const bool full = row.full_row != 0 && row.vocab > 0;
  const float* logits = row.logits;

  // Candidates, and the first one (sample_token's fallback: the lowest allowed id).
  u64 count = 0;
  int first = kNone;
  for (int i = int(threadIdx.x); i < nseg; i += kThreads) {
    const int len = max(0, __ldg(&seg[i].id_end) - __ldg(&seg[i].id_begin));
    count += u64(len);
    if (len > 0 && i < first) first = i;
  }
  count = block_reduce(count, SumOp{}, sh);
  first = block_reduce(first, MinOp{}, sh);
  if (count > u64(max_candidates)) {
    if (threadIdx.x == 0) results[blockIdx.x] = {-1, NAN, NAN};
    return;
  }
  const int n = int(count);
  const int fallback_id = first < nseg ? __ldg(&seg[first].id_begin) : 0;  // no candidate: 0, as the CPU
  const float penalty = row.repetition_penalty;
  const bool penalise = row.seen != nullptr && penalty != 1.0f;
  const bool greedy = is_greedy_row(row.temperature, row.top_k);  // here: more than kChunkSegments segments

  int id = fallback_id;
  double logprob = NAN;
  Lse lse = lse_empty();
  auto raw_gaps = [&] {  // the raw normaliser's masked-out ids (full layout)
    if (full) for_each_element<true>(sh, seg, nseg, row.vocab, logits, [&](int, int, float raw) { lse_term(lse.m_raw, lse.s_raw, raw); });
  };

  if (greedy) {
    Best best{-INFINITY, kNone};
    for_each_element<false>(sh, seg, nseg, row.vocab, logits, [&](int, int cid, float raw) {
      const float x = penalise && seen_bit(row.seen, cid) ? penalised(raw, penalty) : raw;
      if (x == x && (x > best.v || (x == best.v && cid < best.id))) best = {x, cid};
      const float e = full ? lse_term(lse.m_raw, lse.s_raw, raw) : 0.0f;
      if (full && x == raw && lse.m_pen == lse.m_raw && x > -INFINITY) {
        lse.s_pen += e;  // unpenalised and the same reference: the same term
      } else {
        lse_term(lse.m_pen, lse.s_pen, x);
      }
    });
    raw_gaps();
    best = block_reduce(best, BestOp{}, sh);
    lse = block_reduce(lse, LseOp{}, sh);
    if (n > 0 && best.v > -INFINITY) {
      id = best.id;
      logprob = double(best.v) - double(lse.m_pen) - log(double(lse.s_pen));
    }
  } else {
    float* xs = workspace + size_t(blockIdx.x) * size_t(stride) * 3;
    int* list_a = reinterpret_cast<int*>(xs + stride);
    int* list_b = list_a + stride;
    const float temperature = row.temperature;
    const bool scale = temperature != 1.0f;
    float mx = -INFINITY;
    for_each_element<false>(sh, seg, nseg, row.vocab, logits, [&](int c, int cid, float raw) {
      float x = penalise && seen_bit(row.seen, cid) ? penalised(raw, penalty) : raw;
      if (scale) x = __fdiv_rn(x, temperature);
      xs[c] = x;
      mx = fmaxf(mx, x);
      if (full) lse_term(lse.m_raw, lse.s_raw, raw);
    });
    raw_gaps();
    mx = block_reduce(mx, MaxFloatOp{}, sh);  // its barriers publish xs
    lse = block_reduce(lse, LseOp{}, sh);
    if (n > 0 && mx > -INFINITY && mx < INFINITY) {
      Source src = all_of(nullptr, n);
      // top-k: keep x >= the k-th largest value (ties stay).
      if (row.top_k > 0 && row.top_k < n) {
        const u64 k = u64(row.top_k);
        histogram(sh, src, xs, [&](float x, int) { return bucket_of(x, mx); }, [](float) -> u64 { return 1; });
        const Crossing c = find_crossing(sh, kBins, false, [&](u64) { return k; });
        src = all_of(list_a, compact(sh, src, xs, mx, c.bin, list_a));
        const Selected kth = radix_select<false, false>(sh, src, xs, mx, k, 0.0f);
        src.lo = key_value(kth.key);
      }
      // top-p: keep, in descending (value, then lower id) order, each token
      // whose predecessors' mass is < top_p * total; the first always.
      if (row.top_p < 1.0f) {
        const double top_p = double(row.top_p);
        auto target_of = [&](u64 total) -> u64 {
          const double t = ceil(top_p * double(total));
          return t < 1.0 ? 1 : (t >= double(total) ? total : u64(t));
        };
        histogram(sh, src, xs, [&](float x, int) { return bucket_of(x, mx); }, [&](float x) { return mass_of(x, mx); });
        const Crossing c = find_crossing(sh, kBins, false, target_of);
        const u64 target = c.target;
        const Source cut_src = all_of(list_b, compact(sh, src, xs, mx, c.bin, list_b));
        const Selected cut = radix_select<true, false>(sh, cut_src, xs, mx, target, 0.0f);
        const float v = key_value(cut.key);
        const u64 q = mass_of(v, mx);
        int last_tie = kNone;
        if (q > 0) {
          const u64 ties = cut.weight / q, keep = (target - cut.above + q - 1) / q;  // 1 <= keep <= ties
          if (keep < ties) last_tie = int(~radix_select<false, true>(sh, cut_src, xs, mx, keep, v).key);
        }
        src = {list_b, cut_src.count, v, v, last_tie};
      }
      const Drawn d = draw(sh, src, xs, mx, row.uniform);
      if (d.idx >= 0) {
        id = candidate_id(sh, seg, nseg, d.idx);
        logprob = double(xs[d.idx]) - double(mx) - log(double(d.total) / kMassScale);
      }
    }
  }
  if (threadIdx.x == 0) {
    double model = NAN;
    if (full && id >= 0 && id < row.vocab)
      model = double(__ldg(logits + id)) - (double(lse.m_raw) + log(double(lse.s_raw)));
    results[blockIdx.x] = {id, float(logprob), float(model)};
  }
}

// mask_index null: every id into bitmask 0 (words may then be 0: no upper bound).
__global__ void mark_seen_kernel(uint32_t* masks, int words, const int32_t* mask_index, const int32_t* ids, int n) {
  const int i = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (i >= n) return;
  const int m = mask_index ? mask_index[i] : 0, id = ids[i];
  if (m < 0 || id < 0 || (words > 0 && int64_t(id) >= int64_t(words) * 32)) return;
  atomicOr(masks + size_t(m) * size_t(words) + size_t(id >> 5), 1u << (id & 31));
}

// Floats per row in each of the three workspace arrays (xs, two lists).
int padded_candidates(int max_candidates) { return (max_candidates + 7) / 8 * 8; }

// Bytes of the three arrays of `rows` rows (the partials follow them).
size_t row_regions_bytes(int rows, int max_candidates) {
  return size_t(rows) * 3 * size_t(padded_candidates(max_candidates)) * sizeof(float);
}

}  // namespace

size_t sampler_workspace_bytes(int rows, int max_candidates) {
  if (rows <= 0 || max_candidates <= 0) return 0;
  return row_regions_bytes(rows, max_candidates) + size_t(rows) * kRowPartialBytes;
}

Status sample_rows(const SamplerRow* rows, int row_count, const SamplerSegment* segments, int max_candidates,
                   void* workspace, SamplerResult* results, cudaStream_t stream) {
  if (row_count < 0) return invalid("sample_rows: expected row_count >= 0 but got " + std::to_string(row_count));
  if (row_count == 0) return Status::Ok();
  if (row_count > kMaxRows)
    return invalid("sample_rows: expected row_count <= " + std::to_string(kMaxRows) + " but got " + std::to_string(row_count));
  if (max_candidates < 1 || max_candidates > kMaxCandidates)
    return invalid("sample_rows: expected 1 <= max_candidates <= " + std::to_string(kMaxCandidates) + " but got " +
                   std::to_string(max_candidates));
  if (!rows) return invalid("sample_rows: expected a rows pointer but got null");
  if (!segments) return invalid("sample_rows: expected a segments pointer but got null");
  if (!results) return invalid("sample_rows: expected a results pointer but got null");
  if (!workspace) return invalid("sample_rows: expected a workspace pointer but got null");
  if (!aligned16(workspace)) return invalid("sample_rows: expected a 16-byte aligned workspace but got an unaligned pointer");
  // The partials after every row's arrays (16-byte aligned: a region is a multiple of 96 bytes).
  unsigned char* partials = static_cast<unsigned char*>(workspace) + row_regions_bytes(row_count, max_candidates);
  greedy_chunks_kernel<<<unsigned(row_count) * unsigned(kMaxChunks), kChunkThreads, 0, stream>>>(
      rows, segments, max_candidates, partials);
  REX_RETURN_IF_ERROR(check_launch("sample_rows (greedy chunks)"));
  sample_rows_kernel<<<unsigned(row_count), kThreads, 0, stream>>>(rows, segments, max_candidates,
                                                                   padded_candidates(max_candidates),
                                                                   static_cast<float*>(workspace), partials, results);
  return check_launch("sample_rows");
}

Status mark_seen(uint32_t* seen_masks, int words_per_mask, const int32_t* mask_index, const int32_t* ids, int n,
                 cudaStream_t stream) {
  if (n < 0) return invalid("mark_seen: expected n >= 0 but got " + std::to_string(n));
  if (n == 0) return Status::Ok();
  if (words_per_mask < 0)
    return invalid("mark_seen: expected words_per_mask >= 0 but got " + std::to_string(words_per_mask));
  if (mask_index && words_per_mask == 0)
    return invalid("mark_seen: expected words_per_mask > 0 with a mask_index array but got 0");
  if (!seen_masks) return invalid("mark_seen: expected a seen_masks pointer but got null");
  if (!ids) return invalid("mark_seen: expected an ids pointer but got null");
  constexpr int kMarkThreads = 256;
  mark_seen_kernel<<<unsigned((n + kMarkThreads - 1) / kMarkThreads), kMarkThreads, 0, stream>>>(
      seen_masks, words_per_mask, mask_index, ids, n);
  return check_launch("mark_seen");
}

}  // namespace rex::cuda
