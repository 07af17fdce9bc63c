// attention_prefill_bf16 (native/cuda/attention_prefill.cuh) against its CPU
// twin cpu::attention_causal_gqa (fp32 on the same bf16-exact inputs):
//  - the real shapes (16 q heads, 2 kv heads, head_dim 128, block_size 64,
//    q read in place from fused qkv rows of 2560): a prompt (past 0, n 1200)
//    and a chunk after it (past 1200, n 37); long ones (n 3000; past 4000 +
//    n 512);
//  - odd sizes (n 1, 63, 64, 65, ...; past not a multiple of anything),
//    block sizes 16 and 32, head_dim 64, group sizes 1 and 16;
//  - the cache is paged through a shuffled block table, and every cache row
//    that is not one of the sequence's keys holds NaN, so a read past the
//    sequence or through a wrong block shows; outputs poisoned with NaN;
//    a second launch must give the same bits; bad arguments fail.
// attention_prefill_varlen_bf16 (several sequences' rows in one call, a
// PrefillPlan's tile list) against cpu::attention_causal_gqa_varlen:
//  - segments of mixed lengths (1, 17, 64, 65, 300) and pasts (0, 5, 130,
//    1000), for head_dim 128, 64 and 32, each with its own block table in
//    one concatenated table (an entry of a NaN block between tables), all in
//    one shared pool of shuffled blocks; unused q rows between segments,
//    whose outputs must stay unwritten;
//  - every segment's rows are bit for bit those of attention_prefill_bf16
//    on that segment alone, and of a one-segment plan;
//  - the plan's tile list (host): cut and order; inconsistent segments fail
//    with kInvalidArgument, "expected ... but got ...";
//  - split keys (a PrefillSplit plan: shares of long tiles' keys and the
//    combine launch) against the CPU twin for head_dim 128, 64 and 32, and the
//    split plan's shares, slots and combines (host).
// Timing lines: median of 20 launches (cudaEvent, L2 flushed), with causal
// FLOPs (4 * q_heads * head_dim * sum_i (past + i + 1)) and bytes (q read,
// K/V read once, out written), TFLOP/s and GB/s; a table comes last.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "cpu/attention_prefill.h"
#include "cuda/attention_prefill.cuh"
#include "cuda_test_util.h"
#include "sampling/rng.h"

namespace {

using rex::cuda::bf16;
using rex::cuda::PagedKv;
using namespace rex_test;
using namespace rex_test::attn;

uint64_t g_seed = 0x7072;  // advanced per draw

// One launch into a poisoned output: its bits.
template <class Launch>
std::vector<uint16_t> poisoned_run(DeviceArray<uint16_t>& out, const Launch& launch) {
  out.poison();
  CHECK_CUDA_SYNC();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  return out.download();
}

struct PrefillShape {
  int n = 0, past = 0, q_heads = 16, kv_heads = 2, hd = 128, block_size = 64;
  int q_stride = 0;  // 0: q_heads*hd (contiguous)
  std::string label() const {
    return "n " + std::to_string(n) + " past " + std::to_string(past) + " h " + std::to_string(q_heads) + "/" +
           std::to_string(kv_heads) + " hd " + std::to_string(hd) + " bs " + std::to_string(block_size) +
           (q_stride ? " qs " + std::to_string(q_stride) : "");
  }
};

// A paged copy of a contiguous [total, kv_heads*hd] cache: logical block i of
// the sequence lives in physical block table[i] of a pool with spare blocks;
// every row that holds no key of the sequence is NaN.
struct PagedCache {
  std::vector<int32_t> table;
  std::vector<uint16_t> k_plane, v_plane;
};
PagedCache page(const std::vector<float>& k, const std::vector<float>& v, int total, int row_elems, int bs) {
  PagedCache pc;
  const int blocks = (total + bs - 1) / bs, physical = blocks + 3;
  std::vector<int32_t> perm(static_cast<size_t>(physical));
  std::iota(perm.begin(), perm.end(), 0);
  rex::Pcg32 rng(++g_seed);
  for (int i = physical - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[rng.next_u32() % uint32_t(i + 1)]);
  pc.table.assign(perm.begin(), perm.begin() + blocks);
  pc.k_plane.assign(size_t(physical) * bs * row_elems, 0xFFFF);  // bf16 NaN
  pc.v_plane.assign(pc.k_plane.size(), 0xFFFF);
  const std::vector<uint16_t> kb = to_bf16_bits(k), vb = to_bf16_bits(v);
  for (int t = 0; t < total; ++t) {
    const size_t row = size_t(rex::cuda::paged_row(pc.table.data(), bs, t));
    std::copy_n(&kb[size_t(t) * row_elems], row_elems, &pc.k_plane[row * row_elems]);
    std::copy_n(&vb[size_t(t) * row_elems], row_elems, &pc.v_plane[row * row_elems]);
  }
  return pc;
}

void check_prefill(const PrefillShape& sh, bool time_it, const std::string& name = "") {
  const int n = sh.n, past = sh.past, total = past + n, hd = sh.hd;
  const int qd = sh.q_heads * hd, kvd = sh.kv_heads * hd;
  const int q_stride = sh.q_stride ? sh.q_stride : qd;
  // q rows at q_stride: the columns past qd hold random values too (reading them would show).
  const std::vector<float> q_dev = random_bf16_values(size_t(n) * q_stride, ++g_seed, 2.5f);
  std::vector<float> q(size_t(n) * qd);
  for (int i = 0; i < n; ++i) std::copy_n(&q_dev[size_t(i) * q_stride], qd, &q[size_t(i) * qd]);
  const std::vector<float> k = random_bf16_values(size_t(total) * kvd, ++g_seed, 2.5f);
  const std::vector<float> v = random_bf16_values(size_t(total) * kvd, ++g_seed, 1.0f);

  std::vector<float> ref(size_t(n) * qd);
  auto t0 = std::chrono::steady_clock::now();
  rex::cpu::attention_causal_gqa(pool(), q.data(), n, past, k.data(), v.data(), sh.q_heads, sh.kv_heads, hd,
                                 ref.data());
  const double cpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const PagedCache pc = page(k, v, total, kvd, sh.block_size);
  DeviceArray<uint16_t> dq(to_bf16_bits(q_dev)), dk(pc.k_plane), dv(pc.v_plane), dout(size_t(n) * qd);
  DeviceArray<int32_t> dtable(pc.table);
  PagedKv cache;
  cache.k = dk.as<bf16>();
  cache.v = dv.as<bf16>();
  cache.block_size = sh.block_size;
  cache.kv_heads = sh.kv_heads;
  cache.head_dim = hd;
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  auto launch = [&] {
    return rex::cuda::attention_prefill_bf16(dq.as<bf16>(), q_stride, n, past, sh.q_heads, cache, dtable.ptr,
                                             dout.as<bf16>(), stream);
  };
  const std::string what = (name.empty() ? "" : name + ": ") + sh.label();
  const std::vector<uint16_t> bits = poisoned_run(dout, launch);
  const double err = check_close(what, from_bf16_bits(bits), ref, kBf16Tolerance, [&](size_t i) {
    const int row = int(i / size_t(qd)), h = int(i % size_t(qd)) / hd, d = int(i % size_t(qd)) % hd;
    return "row " + std::to_string(row) + " (pos " + std::to_string(past + row) + ") head " + std::to_string(h) +
           " dim " + std::to_string(d);
  });
  check_same_bits(what, bits, poisoned_run(dout, launch));
  if (time_it && !quick()) {
    const Timing t = time_launch([&] { (void)launch(); }, stream);
    CHECK_CUDA_SYNC();
    double keys = 0;
    for (int i = 0; i < n; ++i) keys += double(past + i + 1);
    const double flops = 4.0 * sh.q_heads * hd * keys;
    const double bytes = 2.0 * (2.0 * n * qd + 2.0 * double(total) * kvd);
    report_timing(name.empty() ? sh.label() : name, t, flops, bytes, err);
  }
  std::printf("    (cpu reference %.2f s)\n", cpu_s);
  cudaStreamDestroy(stream);
}

constexpr int kFusedQkvStride = (16 + 2 * 2) * 128;  // q | k | v of one fused QKV GEMM row

REX_TEST(prefill_real_prompt_and_chunk) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  PrefillShape prompt;
  prompt.n = 1200;
  prompt.q_stride = kFusedQkvStride;
  check_prefill(prompt, true, "prompt n 1200 past 0");
  PrefillShape chunk;
  chunk.n = 37;
  chunk.past = 1200;
  chunk.q_stride = kFusedQkvStride;
  check_prefill(chunk, true, "chunk n 37 past 1200");
}

REX_TEST(prefill_long) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  PrefillShape a;
  a.n = 3000;
  a.q_stride = kFusedQkvStride;
  check_prefill(a, true, "long n 3000 past 0");
  PrefillShape b;
  b.n = 512;
  b.past = 4000;
  check_prefill(b, true, "chunk n 512 past 4000");
}

REX_TEST(prefill_odd_sizes) {
  if (skip_without_gpu()) return;
  const int cases[][2] = {{1, 0}, {1, 5}, {1, 1299}, {2, 0}, {63, 0}, {64, 0}, {65, 0}, {127, 1}, {130, 100}, {37, 64}, {200, 3}};
  for (const auto& c : cases) {
    PrefillShape sh;
    sh.n = c[0];
    sh.past = c[1];
    check_prefill(sh, false);
  }
  for (int bs : {16, 32, 128}) {
    PrefillShape sh;
    sh.n = 150;
    sh.past = 77;
    sh.block_size = bs;
    sh.q_stride = kFusedQkvStride;
    check_prefill(sh, false);
  }
}

REX_TEST(prefill_other_head_layouts) {
  if (skip_without_gpu()) return;
  PrefillShape hd64;
  hd64.n = 150;
  hd64.past = 10;
  hd64.q_heads = 8;
  hd64.hd = 64;
  check_prefill(hd64, false);
  PrefillShape hd32;  // the tiny test checkpoint's decoder: 4 q heads, 2 kv heads, head_dim 32
  hd32.n = 97;
  hd32.past = 5;
  hd32.q_heads = 4;
  hd32.hd = 32;
  check_prefill(hd32, false);
  PrefillShape group1;
  group1.n = 100;
  group1.past = 33;
  group1.q_heads = 4;
  group1.kv_heads = 4;
  check_prefill(group1, false);
  PrefillShape group16;
  group16.n = 70;
  group16.past = 1;
  group16.q_heads = 16;
  group16.kv_heads = 1;
  check_prefill(group16, false);
}

REX_TEST(prefill_bad_arguments) {
  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> q(size_t(64) * 2048), k(size_t(256) * 256), v(size_t(256) * 256), out(size_t(64) * 2048);
  DeviceArray<int32_t> table(std::vector<int32_t>{0, 1, 2, 3});
  PagedKv cache;
  cache.k = k.as<bf16>();
  cache.v = v.as<bf16>();
  cache.block_size = 64;
  cache.kv_heads = 2;
  cache.head_dim = 128;
  auto call = [&](PagedKv c, int q_stride, int n, int past, int q_heads, const bf16* qp) {
    return rex::cuda::attention_prefill_bf16(qp, q_stride, n, past, q_heads, c, table.ptr, out.as<bf16>(), 0);
  };
  auto expect_bad = [](const rex::Status& st, const char* what) {
    std::printf("  %-40s -> %s\n", what, st.ok() ? "ok (WRONG)" : st.message().c_str());
    CHECK(!st.ok());
    CHECK(st.code() == rex::StatusCode::kInvalidArgument);
    CHECK_CONTAINS(st.message(), "expected");
  };
  const bf16* qp = q.as<bf16>();
  PagedKv c80 = cache;
  c80.head_dim = 80;
  expect_bad(call(c80, 16 * 80, 8, 0, 16, qp), "head_dim 80");
  expect_bad(call(cache, 2048, -1, 0, 16, qp), "n -1");
  expect_bad(call(cache, 2048, 8, -1, 16, qp), "past -1");
  expect_bad(call(cache, 2048, 8, 0, 15, qp), "q_heads 15 with kv_heads 2");
  PagedKv c48 = cache;
  c48.block_size = 48;
  expect_bad(call(c48, 2048, 8, 0, 16, qp), "block_size 48");
  PagedKv c0 = cache;
  c0.kv_heads = 0;
  expect_bad(call(c0, 2048, 8, 0, 16, qp), "kv_heads 0");
  expect_bad(call(cache, 2047, 8, 0, 16, qp), "q_stride 2047");
  expect_bad(call(cache, 1024, 8, 0, 16, qp), "q_stride < q_heads*head_dim");
  expect_bad(call(cache, 2048, 8, 0, 16, nullptr), "null q");
  expect_bad(call(cache, 2048, 8, 0, 16, qp + 1), "misaligned q");
  CHECK_OK(call(cache, 2048, 0, 5, 16, qp));  // nothing to do
  CHECK_CUDA_SYNC();
}

// ---------------------------------------------------------------- varlen

struct VarlenCase {
  std::vector<std::array<int, 2>> segments;  // {n, past}
  std::vector<int> gap_after;                // unused q rows after each segment (missing: 0)
  int q_heads = 16, kv_heads = 2, hd = 128, block_size = 64;
  int q_stride = 0;  // 0: q_heads*hd
  int split_ctas = 0;  // > 0: the plan splits keys below this many CTAs (PrefillSplit)
  std::string label() const {
    std::string l = std::to_string(segments.size()) + " segments h " + std::to_string(q_heads) + "/" +
                    std::to_string(kv_heads) + " hd " + std::to_string(hd) + " bs " + std::to_string(block_size);
    if (q_stride) l += " qs " + std::to_string(q_stride);
    return split_ctas ? l + " split<" + std::to_string(split_ctas) : l;
  }
  rex::cuda::PrefillSplit split() const {
    return split_ctas ? rex::cuda::PrefillSplit{q_heads, hd, split_ctas} : rex::cuda::PrefillSplit{};
  }
};

// The rows [row0, row0 + rows) of a and b (rows of width elements) must be the same bits.
void check_rows_same_bits(const std::string& what, const std::vector<uint16_t>& a, int a_row0,
                          const std::vector<uint16_t>& b, int b_row0, int rows, int width) {
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < size_t(rows) * width; ++i)
    if (a[size_t(a_row0) * width + i] != b[size_t(b_row0) * width + i] && differ++ == 0) first = i;
  if (differ) {
    std::printf("    %s: %zu elements differ (first: row %zu dim %zu)\n", what.c_str(), differ, first / size_t(width),
                first % size_t(width));
    ::rex_test::fail(__FILE__, __LINE__, what + ": not the same bits");
  }
}

void check_varlen(const VarlenCase& vc, bool time_it, const std::string& name = "") {
  const int hd = vc.hd, qd = vc.q_heads * hd, kvd = vc.kv_heads * hd, bs = vc.block_size;
  const int q_stride = vc.q_stride ? vc.q_stride : qd;
  const int num_segments = int(vc.segments.size());
  const std::string what = (name.empty() ? "" : name + ": ") + vc.label();

  // Rows, segments, and each sequence's blocks in one shuffled pool.
  std::vector<rex::cuda::PrefillSegment> segs(static_cast<size_t>(num_segments));
  std::vector<rex::cpu::CausalSegment> cpu_segs(static_cast<size_t>(num_segments));
  std::vector<int> first_block(static_cast<size_t>(num_segments));
  int rows = 0, pool_blocks = 0, table_entries = 0;
  for (int s = 0; s < num_segments; ++s) {
    const int n = vc.segments[size_t(s)][0], past = vc.segments[size_t(s)][1];
    const int blocks = (past + n + bs - 1) / bs;
    segs[size_t(s)] = {rows, n, past, table_entries};
    rows += n + (size_t(s) < vc.gap_after.size() ? vc.gap_after[size_t(s)] : 0);
    first_block[size_t(s)] = pool_blocks;
    pool_blocks += blocks;
    table_entries += blocks + 1;  // + the NaN block between tables
  }
  const int physical = pool_blocks + 3;  // the last ones hold no key: all NaN
  std::vector<int32_t> perm(static_cast<size_t>(physical));
  std::iota(perm.begin(), perm.end(), 0);
  rex::Pcg32 rng(++g_seed);
  for (int i = physical - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[rng.next_u32() % uint32_t(i + 1)]);
  const int32_t nan_block = perm[size_t(physical - 1)];
  std::vector<int32_t> tables(size_t(table_entries), nan_block);
  std::vector<uint16_t> k_plane(size_t(physical) * bs * kvd, 0xFFFF), v_plane(k_plane.size(), 0xFFFF);
  std::vector<std::vector<float>> ks(static_cast<size_t>(num_segments)), vs(static_cast<size_t>(num_segments));
  for (int s = 0; s < num_segments; ++s) {
    const rex::cuda::PrefillSegment& g = segs[size_t(s)];
    const int total = g.past + g.n, blocks = (total + bs - 1) / bs;
    for (int b = 0; b < blocks; ++b) tables[size_t(g.table_offset + b)] = perm[size_t(first_block[size_t(s)] + b)];
    ks[size_t(s)] = random_bf16_values(size_t(total) * kvd, ++g_seed, 2.5f);
    vs[size_t(s)] = random_bf16_values(size_t(total) * kvd, ++g_seed, 1.0f);
    const std::vector<uint16_t> kb = to_bf16_bits(ks[size_t(s)]), vb = to_bf16_bits(vs[size_t(s)]);
    for (int t = 0; t < total; ++t) {
      const size_t row = size_t(rex::cuda::paged_row(&tables[size_t(g.table_offset)], bs, t));
      std::copy_n(&kb[size_t(t) * kvd], kvd, &k_plane[row * kvd]);
      std::copy_n(&vb[size_t(t) * kvd], kvd, &v_plane[row * kvd]);
    }
    cpu_segs[size_t(s)] = {g.row_start, g.n, g.past, ks[size_t(s)].data(), vs[size_t(s)].data()};
  }
  const std::vector<float> q_dev = random_bf16_values(size_t(rows) * q_stride, ++g_seed, 2.5f);
  std::vector<float> q(size_t(rows) * qd);
  for (int i = 0; i < rows; ++i) std::copy_n(&q_dev[size_t(i) * q_stride], qd, &q[size_t(i) * qd]);

  std::vector<float> ref(size_t(rows) * qd, 0.0f);
  rex::cpu::attention_causal_gqa_varlen(pool(), q.data(), cpu_segs, vc.q_heads, vc.kv_heads, hd, ref.data());

  DeviceArray<uint16_t> dq(to_bf16_bits(q_dev)), dk(k_plane), dv(v_plane), dout(size_t(rows) * qd),
      dalone(size_t(rows) * qd);
  DeviceArray<int32_t> dtables(tables);
  PagedKv cache;
  cache.k = dk.as<bf16>();
  cache.v = dv.as<bf16>();
  cache.block_size = bs;
  cache.kv_heads = vc.kv_heads;
  cache.head_dim = hd;
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);

  rex::cuda::PrefillPlan plan;
  CHECK_OK(plan.build(segs.data(), num_segments, rows, bs, table_entries, stream, vc.split()));
  int want_tiles = 0;
  for (const auto& g : segs) want_tiles += rex::cuda::prefill_tiles(g.n);
  if (vc.split_ctas) {  // the cases are chosen so that the keys split
    CHECK(plan.num_combines() > 0);
    CHECK(plan.num_tiles() > want_tiles);
  } else {
    CHECK_EQ(plan.num_tiles(), want_tiles);
  }
  auto launch = [&] {
    return rex::cuda::attention_prefill_varlen_bf16(dq.as<bf16>(), q_stride, plan, vc.q_heads, cache, dtables.ptr,
                                                    dout.as<bf16>(), stream);
  };
  const std::vector<uint16_t> bits = poisoned_run(dout, launch);
  const std::vector<float> got = from_bf16_bits(bits);

  // (a) every segment against the CPU twin; rows in no segment stay poisoned.
  double worst = 0;
  std::vector<bool> in_segment(size_t(rows), false);
  for (int s = 0; s < num_segments; ++s) {
    const rex::cuda::PrefillSegment& g = segs[size_t(s)];
    const size_t lo = size_t(g.row_start) * qd, hi = size_t(g.row_start + g.n) * qd;
    const std::vector<float> out_s(got.begin() + ptrdiff_t(lo), got.begin() + ptrdiff_t(hi));
    const std::vector<float> ref_s(ref.begin() + ptrdiff_t(lo), ref.begin() + ptrdiff_t(hi));
    const std::string seg_what = what + " segment " + std::to_string(s) + " (n " + std::to_string(g.n) + " past " +
                                 std::to_string(g.past) + ")";
    worst = std::max(worst, check_close(seg_what, out_s, ref_s, kBf16Tolerance, [&](size_t i) {
      const int row = int(i / size_t(qd)), h = int(i % size_t(qd)) / hd, d = int(i % size_t(qd)) % hd;
      return "row " + std::to_string(row) + " (pos " + std::to_string(g.past + row) + ") head " +
             std::to_string(h) + " dim " + std::to_string(d);
    }));
    for (int r = 0; r < g.n; ++r) in_segment[size_t(g.row_start + r)] = true;
  }
  size_t written_outside = 0;
  for (int r = 0; r < rows; ++r)
    if (!in_segment[size_t(r)])
      for (int e = 0; e < qd; ++e) written_outside += bits[size_t(r) * qd + size_t(e)] != 0xFFFF;
  if (written_outside) std::printf("    %zu outputs written in rows of no segment\n", written_outside);
  CHECK_EQ(written_outside, size_t(0));

  // (b) the same bits as each segment alone: the one-sequence call (q, table
  // and out pointers moved to the segment) and a one-segment plan. (Split
  // keys depend on the pass's tiles, so a split plan's rows are checked
  // against the CPU twin and for repeatability only.)
  for (int s = 0; s < num_segments && !vc.split_ctas; ++s) {
    const rex::cuda::PrefillSegment& g = segs[size_t(s)];
    const std::string seg_what = what + " segment " + std::to_string(s) + " alone";
    const std::vector<uint16_t> alone = poisoned_run(dalone, [&] {
      return rex::cuda::attention_prefill_bf16(dq.as<bf16>() + size_t(g.row_start) * q_stride, q_stride, g.n, g.past,
                                               vc.q_heads, cache, dtables.ptr + g.table_offset, dalone.as<bf16>(),
                                               stream);
    });
    check_rows_same_bits(seg_what + " (attention_prefill_bf16)", bits, g.row_start, alone, 0, g.n, qd);
    rex::cuda::PrefillPlan one;
    CHECK_OK(one.build(&g, 1, rows, bs, table_entries, stream));
    const std::vector<uint16_t> planned = poisoned_run(dalone, [&] {
      return rex::cuda::attention_prefill_varlen_bf16(dq.as<bf16>(), q_stride, one, vc.q_heads, cache, dtables.ptr,
                                                      dalone.as<bf16>(), stream);
    });
    check_rows_same_bits(seg_what + " (one-segment plan)", bits, g.row_start, planned, g.row_start, g.n, qd);
  }

  check_same_bits(what, bits, poisoned_run(dout, launch));

  if (time_it && !quick()) {
    const Timing t = time_launch([&] { (void)launch(); }, stream);
    // The same work as one call per segment, for comparison.
    const Timing apart = time_launch(
        [&] {
          for (const auto& g : segs)
            (void)rex::cuda::attention_prefill_bf16(dq.as<bf16>() + size_t(g.row_start) * q_stride, q_stride, g.n,
                                                    g.past, vc.q_heads, cache, dtables.ptr + g.table_offset,
                                                    dout.as<bf16>() + size_t(g.row_start) * qd, stream);
        },
        stream);
    CHECK_CUDA_SYNC();
    double keys = 0, kv_rows = 0;
    for (const auto& g : segs) {
      for (int i = 0; i < g.n; ++i) keys += double(g.past + i + 1);
      kv_rows += double(g.past + g.n);
    }
    const double flops = 4.0 * vc.q_heads * hd * keys;
    const double bytes = 2.0 * (2.0 * double(rows) * qd + 2.0 * kv_rows * kvd);
    const std::string label = name.empty() ? vc.label() : name;
    if (vc.split_ctas) {  // against the same plan unsplit
      rex::cuda::PrefillPlan whole;
      CHECK_OK(whole.build(segs.data(), num_segments, rows, bs, table_entries, stream));
      const Timing unsplit = time_launch(
          [&] {
            (void)rex::cuda::attention_prefill_varlen_bf16(dq.as<bf16>(), q_stride, whole, vc.q_heads, cache,
                                                           dtables.ptr, dout.as<bf16>(), stream);
          },
          stream);
      CHECK_CUDA_SYNC();
      report_timing(label + " split keys (" + std::to_string(plan.num_tiles()) + " tiles)", t, flops, bytes, worst);
      report_timing(label + " unsplit (" + std::to_string(whole.num_tiles()) + " tiles)", unsplit, flops, bytes, worst);
    } else {
      report_timing(label + " varlen", t, flops, bytes, worst);
      report_timing(label + " per segment", apart, flops, bytes, worst);
    }
  }
  cudaStreamDestroy(stream);
}

REX_TEST(prefill_varlen_mixed_segments) {
  if (skip_without_gpu()) return;
  VarlenCase real;  // the real shapes, q read in place from fused qkv rows
  real.segments = {{17, 1000}, {1, 0}, {300, 5}, {64, 130}, {65, 0}, {1, 1000}, {65, 5}, {300, 130}};
  real.gap_after = {0, 3, 0, 0, 1};
  real.q_stride = kFusedQkvStride;
  check_varlen(real, false);
  VarlenCase hd64;
  hd64.segments = {{65, 5}, {1, 1000}, {300, 0}, {17, 130}, {64, 0}};
  hd64.gap_after = {2};
  hd64.q_heads = 8;
  hd64.hd = 64;
  hd64.block_size = 16;
  check_varlen(hd64, false);
  VarlenCase hd32;  // the tiny test checkpoint's decoder
  hd32.segments = {{1, 5}, {97, 0}, {40, 130}};
  hd32.q_heads = 4;
  hd32.hd = 32;
  hd32.block_size = 32;
  check_varlen(hd32, false);
  VarlenCase one;  // a lone segment, all 4 q heads on one kv head
  one.segments = {{130, 77}};
  one.q_heads = 4;
  one.kv_heads = 1;
  check_varlen(one, false);
}

// Split keys (PrefillSplit): shares of long tiles' keys in CTAs of their
// own, merged by the combine kernel; against the CPU twin, rows of no
// segment untouched, the same bits twice.
REX_TEST(prefill_split_keys) {
  if (skip_without_gpu()) return;
  VarlenCase question;  // a cached image's question: 216 rows after 987 cached keys
  question.segments = {{216, 987}};
  question.q_stride = kFusedQkvStride;
  question.split_ctas = 528;
  check_varlen(question, false);
  VarlenCase chunk;  // a short chunk after a long past, and a prompt from 0
  chunk.segments = {{37, 1200}, {130, 0}};
  chunk.gap_after = {2};
  chunk.q_stride = kFusedQkvStride;
  chunk.split_ctas = 528;
  check_varlen(chunk, false);
  VarlenCase mixed = chunk;  // many segments, a target that splits every long tile
  mixed.segments = {{17, 1000}, {1, 0}, {300, 5}, {64, 130}, {65, 0}, {1, 1000}};
  mixed.gap_after = {0, 3, 0, 1};
  mixed.split_ctas = 4096;
  check_varlen(mixed, false);
  VarlenCase hd64;
  hd64.segments = {{65, 700}, {9, 129}};
  hd64.q_heads = 8;
  hd64.hd = 64;
  hd64.block_size = 16;
  hd64.split_ctas = 1024;
  check_varlen(hd64, false);
  VarlenCase hd32;  // the tiny test checkpoint's decoder
  hd32.segments = {{40, 300}};
  hd32.q_heads = 4;
  hd32.hd = 32;
  hd32.block_size = 32;
  hd32.split_ctas = 256;
  check_varlen(hd32, false);
}

REX_TEST(prefill_split_keys_timing) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  for (const int target : {264, 528, 1056}) {
    VarlenCase question;
    question.segments = {{216, 987}};
    question.q_stride = kFusedQkvStride;
    question.split_ctas = target;
    check_varlen(question, true, "question n 216 past 987 split<" + std::to_string(target));
  }
  VarlenCase chunk;
  chunk.segments = {{37, 1200}};
  chunk.q_stride = kFusedQkvStride;
  chunk.split_ctas = 528;
  check_varlen(chunk, true, "chunk n 37 past 1200 split<528");
  VarlenCase prompt;
  prompt.segments = {{987, 0}};
  prompt.q_stride = kFusedQkvStride;
  prompt.split_ctas = 528;
  check_varlen(prompt, true, "prompt n 987 past 0 split<528");
}

REX_TEST(prefill_varlen_batch_timing) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  VarlenCase batch;  // four requests' prefill chunks in one pass
  batch.segments = {{512, 0}, {300, 1000}, {37, 1200}, {256, 4000}};
  batch.q_stride = kFusedQkvStride;
  check_varlen(batch, true, "4 chunks (512|300|37|256)");
}

// The plan's tiles, host only: cut into 64-row tiles, ordered by keys seen
// (longest first, ties in segment order); one segment gives the order the
// one-sequence kernel runs (its last tile first).
REX_TEST(prefill_varlen_plan_tiles) {
  using rex::cuda::PrefillSegment;
  using rex::cuda::PrefillTile;
  std::vector<PrefillTile> tiles;
  const PrefillSegment one{3, 300, 7, 2};
  CHECK_OK(rex::cuda::plan_prefill_tiles(&one, 1, 303, 64, 7, &tiles));
  CHECK_EQ(tiles.size(), size_t(5));
  for (size_t i = 0; i < tiles.size(); ++i) {
    const int q0 = int(tiles.size() - 1 - i) * 64;
    CHECK_EQ(tiles[i].row0, 3 + q0);
    CHECK_EQ(tiles[i].rows, std::min(64, 300 - q0));
    CHECK_EQ(tiles[i].pos0, 7 + q0);
    CHECK_EQ(tiles[i].table_offset, 2);
  }
  const PrefillSegment mixed[] = {
      {0, 17, 1000, 0}, {17, 1, 0, 17}, {20, 300, 5, 18}, {320, 64, 130, 23}, {384, 65, 0, 27}};
  CHECK_OK(rex::cuda::plan_prefill_tiles(mixed, 5, 449, 64, 29, &tiles));
  CHECK_EQ(tiles.size(), size_t(1 + 1 + 5 + 1 + 2));
  int covered = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    covered += tiles[i].rows;
    if (i > 0) CHECK(tiles[i - 1].pos0 + tiles[i - 1].rows >= tiles[i].pos0 + tiles[i].rows);
  }
  CHECK_EQ(covered, 17 + 1 + 300 + 64 + 65);
  CHECK_EQ(tiles.front().pos0, 1000);  // segment 0 sees the most keys
  CHECK_EQ(tiles.back().pos0 + tiles.back().rows, 1);  // segment 1's one row sees one key
}

// A split plan, host only: every tile's keys covered once, in contiguous
// shares of at least kMinKeyTiles key tiles; partial slots 0 .. P-1 each
// once, a combine per split tile; longest share first; no split once the
// tiles alone reach the target.
REX_TEST(prefill_split_plan) {
  using rex::cuda::PrefillCombine;
  using rex::cuda::PrefillSegment;
  using rex::cuda::PrefillSplit;
  using rex::cuda::PrefillTile;
  const PrefillSegment question{0, 216, 987, 0};  // 4 tiles seeing 1051 .. 1203 keys: 17, 18, 19, 19 key tiles
  const PrefillSplit split{16, 128, 528};         // 4 x 16 = 64 CTAs: up to ceil(528 / 64) = 9 shares a tile
  std::vector<PrefillTile> tiles;
  std::vector<PrefillCombine> combines;
  CHECK_OK(rex::cuda::plan_prefill_tiles(&question, 1, 216, 64, 19, &tiles, split, &combines));
  CHECK_EQ(combines.size(), size_t(4));
  CHECK_EQ(tiles.size(), size_t(8 + 9 + 9 + 9));
  std::vector<int> slot_seen(tiles.size(), 0);
  for (size_t i = 0; i < tiles.size(); ++i) {
    const PrefillTile& t = tiles[i];
    CHECK(t.partial >= 0 && t.partial < int(tiles.size()));
    ++slot_seen[size_t(t.partial)];
    CHECK(t.key_end - t.key_begin >= PrefillSplit::kMinKeyTiles);
    if (i > 0) CHECK(tiles[i - 1].key_end - tiles[i - 1].key_begin >= t.key_end - t.key_begin);
  }
  for (int seen : slot_seen) CHECK_EQ(seen, 1);
  for (const PrefillCombine& c : combines) {
    // Its shares: slots first_partial .. + partials, keys 0 .. all its rows see, in order.
    int next_key = 0;
    for (int p = 0; p < c.partials; ++p) {
      const auto share = std::find_if(tiles.begin(), tiles.end(), [&](const PrefillTile& t) { return t.partial == c.first_partial + p; });
      CHECK(share != tiles.end());
      CHECK_EQ(share->row0, c.row0);
      CHECK_EQ(share->rows, c.rows);
      CHECK_EQ(share->key_begin, next_key);
      next_key = share->key_end;
    }
    CHECK_EQ(next_key, (987 + c.row0 + c.rows + 63) / 64);
  }
  // 32 tiles x 16 heads = 512 CTAs: not short of a 512 target, so nothing splits.
  const PrefillSegment long_prompt{0, 2048, 0, 0};
  CHECK_OK(rex::cuda::plan_prefill_tiles(&long_prompt, 1, 2048, 64, 32, &tiles, PrefillSplit{16, 128, 512}, &combines));
  CHECK_EQ(tiles.size(), size_t(32));
  CHECK(combines.empty());
  for (const PrefillTile& t : tiles) CHECK_EQ(t.partial, -1);
  // A split plan needs somewhere to put its combines.
  const rex::Status st = rex::cuda::plan_prefill_tiles(&question, 1, 216, 64, 19, &tiles, split, nullptr);
  std::printf("  %-44s -> %s\n", "split plan without a combine vector", st.ok() ? "ok (WRONG)" : st.message().c_str());
  expect_invalid(st, "expected a combine vector");
  CHECK_EQ(rex::cuda::prefill_partial_floats(35, 16, 128), size_t(35) * 16 * 64 * 130);
  CHECK_EQ(rex::cuda::prefill_partial_floats(0, 16, 128), size_t(0));
}

REX_TEST(prefill_varlen_bad_segments) {
  using rex::cuda::PrefillSegment;
  auto expect_bad = [](const rex::Status& st, const char* what) {
    std::printf("  %-44s -> %s\n", what, st.ok() ? "ok (WRONG)" : st.message().c_str());
    expect_invalid(st, "expected");
    CHECK_CONTAINS(st.message(), " but got ");
  };
  // Two good segments (rows 0..9 and 10..29 of 40, tables at 0 and 2 of 4 entries of 64 tokens)
  // and one case per way of being wrong.
  auto plan = [](std::vector<PrefillSegment> segs, int rows = 40, int bs = 64, int entries = 4) {
    std::vector<rex::cuda::PrefillTile> tiles;
    rex::Status st = rex::cuda::plan_prefill_tiles(segs.data(), int(segs.size()), rows, bs, entries, &tiles);
    CHECK(st.ok() || tiles.empty());
    return st;
  };
  const PrefillSegment a{0, 10, 60, 0}, b{10, 20, 5, 2};
  CHECK_OK(plan({a, b}));
  expect_bad(plan({a, {10, 0, 5, 2}}), "n 0");
  expect_bad(plan({a, {10, -3, 5, 2}}), "n -3");
  expect_bad(plan({a, {10, 20, -1, 2}}), "past -1");
  expect_bad(plan({a, {10, 20, INT_MAX - 5, 2}}, 40, 64, 1 << 30), "past + n past INT_MAX");
  expect_bad(plan({a, {30, 20, 5, 2}}), "rows past the end");
  expect_bad(plan({{-1, 1, 5, 0}, b}), "row_start -1");
  expect_bad(plan({a, {5, 20, 5, 2}}), "overlapping rows");
  expect_bad(plan({b, a}), "segments out of row order");
  expect_bad(plan({a, {10, 20, 5, -1}}), "table_offset -1");
  expect_bad(plan({a, {10, 20, 200, 2}}), "blocks past the table's end");
  expect_bad(plan({a, b}, 40, 48), "block_size 48");
  expect_bad(plan({a, b}, -1), "rows -1");
  expect_bad(plan({a, b}, 40, 64, -1), "table_entries -1");
  expect_bad(plan({{0, 65535 * 64 + 1, 0, 0}}, INT_MAX, 1 << 22, 1), "more than 65535 tiles");
  std::vector<rex::cuda::PrefillTile> tiles;
  expect_bad(rex::cuda::plan_prefill_tiles(nullptr, 2, 40, 64, 4, &tiles), "null segments");
  expect_bad(rex::cuda::plan_prefill_tiles(&a, -1, 40, 64, 4, &tiles), "num_segments -1");

  // A plan whose build failed (or never ran) is refused by the call, before any device work.
  rex::cuda::PrefillPlan p;
  PagedKv cache;
  cache.block_size = 64;
  cache.kv_heads = 2;
  cache.head_dim = 128;
  const PrefillSegment bad_seg{0, 0, 0, 0};
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(nullptr, 2048, p, 16, cache, nullptr, nullptr, 0),
             "plan never built");
  expect_bad(p.build(&bad_seg, 1, 40, 64, 4, 0), "build with n 0");
  CHECK(!p.built());
  CHECK_EQ(p.num_tiles(), 0);
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(nullptr, 2048, p, 16, cache, nullptr, nullptr, 0),
             "plan whose build failed");
  expect_bad(p.reserve(-1), "reserve -1");
  CHECK_OK(p.build(nullptr, 0, 0, 32, 0, 0));  // an empty batch: nothing uploaded, nothing to do
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(nullptr, 2048, p, 16, cache, nullptr, nullptr, 0),
             "cache block_size not the plan's");
  PagedKv c80 = cache;
  c80.head_dim = 80;
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(nullptr, 16 * 80, p, 16, c80, nullptr, nullptr, 0),
             "head_dim 80");
  PagedKv c32 = cache;
  c32.block_size = 32;
  CHECK_OK(rex::cuda::attention_prefill_varlen_bf16(nullptr, 2048, p, 16, c32, nullptr, nullptr, 0));

  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> q(size_t(40) * 2048), k(size_t(256) * 256), v(size_t(256) * 256), out(size_t(40) * 2048);
  DeviceArray<int32_t> table(std::vector<int32_t>{0, 1, 2, 3});
  cache.k = k.as<bf16>();
  cache.v = v.as<bf16>();
  const PrefillSegment good[] = {a, b};
  CHECK_OK(p.build(good, 2, 40, 64, 4, 0));
  CHECK_CUDA_SYNC();
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(q.as<bf16>(), 2048, p, 15, cache, table.ptr, out.as<bf16>(), 0),
             "q_heads 15 with kv_heads 2");
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(q.as<bf16>(), 2047, p, 16, cache, table.ptr, out.as<bf16>(), 0),
             "q_stride 2047");
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(nullptr, 2048, p, 16, cache, table.ptr, out.as<bf16>(), 0),
             "null q");
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(q.as<bf16>(), 2048, p, 16, cache, nullptr, out.as<bf16>(), 0),
             "null block_tables");
  expect_bad(rex::cuda::attention_prefill_varlen_bf16(q.as<bf16>() + 1, 2048, p, 16, cache, table.ptr,
                                                      out.as<bf16>(), 0),
             "misaligned q");
  CHECK_CUDA_SYNC();
}

REX_TEST(prefill_summary) {
  if (skip_without_gpu()) return;
  print_table("attention_prefill_bf16");
}

}  // namespace
