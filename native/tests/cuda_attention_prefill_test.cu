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
// Timing lines: median of 20 launches (cudaEvent, L2 flushed), with causal
// FLOPs (4 * q_heads * head_dim * sum_i (past + i + 1)) and bytes (q read,
// K/V read once, out written), TFLOP/s and GB/s; a table comes last.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
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
  dout.poison();
  CHECK_CUDA_SYNC();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  const std::vector<uint16_t> bits = dout.download();
  const double err = check_close(what, from_bf16_bits(bits), ref, kBf16Tolerance, [&](size_t i) {
    const int row = int(i / size_t(qd)), h = int(i % size_t(qd)) / hd, d = int(i % size_t(qd)) % hd;
    return "row " + std::to_string(row) + " (pos " + std::to_string(past + row) + ") head " + std::to_string(h) +
           " dim " + std::to_string(d);
  });
  dout.poison();
  CHECK_CUDA_SYNC();
  CHECK_OK(launch());
  CHECK_CUDA_SYNC();
  check_same_bits(what, bits, dout.download());
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

REX_TEST(prefill_summary) {
  if (skip_without_gpu()) return;
  print_table("attention_prefill_bf16");
}

}  // namespace
