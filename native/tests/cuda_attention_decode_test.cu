// attention_decode_bf16 (native/cuda/attention_decode.cuh) against its CPU
// twin cpu::attention_decode (fp32 on the same bf16-exact inputs):
//  - the real layout (16 q heads, 2 kv heads, head_dim 128, block_size 64,
//    q read in place from fused qkv rows of 2560) at batch 1, 3 and 8 with
//    lengths 1, 63, 64, 65, 1300, ... and num_splits from 1 to 128 (so some
//    splits get no keys), and batch 64 up to ~10k keys;
//  - block sizes 16 and 128, head_dim 64, group sizes 1 and 16;
//  - every sequence's blocks are scattered through one shuffled pool; rows
//    that hold no key, and the block-table entries past a sequence's end,
//    point at NaN; outputs and the workspace are poisoned with NaN;
//  - one CUDA graph captured at some lengths and replayed at others (the
//    launch shape must not depend on the lengths);
//  - a second launch must give the same bits; the cluster merge
//    (DecodeMerge::kCluster, splits <= 16) the combine launch's bits, and
//    with the rotary step inside (DecodeRope) the bits of mrope + attention,
//    output and cache; bad arguments fail.
// Timing lines: median of 20 launches (split + combine, cudaEvent, L2
// flushed), bytes = K/V read once (+ q, out, partials), GB/s against the
// 4.3 TB/s copy ceiling; a num_splits sweep at batch 1, 8, 16, 32, 64 and 128,
// each split count up to 16 also as one cluster launch ("cluster" lines).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "attention_test_util.h"
#include "cpu/attention_decode.h"
#include "cpu/rope.h"
#include "cuda/attention_decode.cuh"
#include "cuda/rope.cuh"
#include "cuda_test_util.h"
#include "sampling/rng.h"

namespace {

using rex::cuda::bf16;
using rex::cuda::PagedKv;
using namespace rex_test;
using namespace rex_test::attn;

uint64_t g_seed = 0x6463;  // advanced per draw

struct Layout {
  int q_heads = 16, kv_heads = 2, hd = 128, block_size = 64;
  int q_stride = (16 + 2 * 2) * 128;  // fused qkv row
};

// The tiny test checkpoint's decoder: 4 q heads, 2 kv heads, head_dim 32, fused qkv rows.
Layout tiny_layout() {
  Layout l;
  l.q_heads = 4;
  l.kv_heads = 2;
  l.hd = 32;
  l.q_stride = (4 + 2 * 2) * 32;
  return l;
}

// Host inputs of one batch (per-sequence contiguous caches) and their paged
// device copy, sized for `lens` (a later call may use shorter lengths).
struct DecodeBatch {
  Layout lay;
  std::vector<int> lens;
  std::vector<float> q;                        // [batch, q_stride]
  std::vector<std::vector<float>> k, v;        // [lens[b], kv_heads*hd]
  int max_blocks = 0;
  std::unique_ptr<DeviceArray<uint16_t>> dq, dk, dv;
  std::unique_ptr<DeviceArray<int32_t>> dtables, dlens;
  PagedKv cache;

  DecodeBatch(const Layout& l, const std::vector<int>& lens_) : lay(l), lens(lens_) {
    const int batch = int(lens.size()), kvd = lay.kv_heads * lay.hd, bs = lay.block_size;
    q = random_bf16_values(size_t(batch) * lay.q_stride, ++g_seed, 2.5f);
    int total_blocks = 0;
    for (int len : lens) {
      k.push_back(random_bf16_values(size_t(len) * kvd, ++g_seed, 2.5f));
      v.push_back(random_bf16_values(size_t(len) * kvd, ++g_seed, 1.0f));
      const int blocks = (len + bs - 1) / bs;
      max_blocks = std::max(max_blocks, blocks);
      total_blocks += blocks;
    }
    max_blocks += 1;  // one entry past every sequence's end, pointing at NaN
    const int physical = total_blocks + 2;  // + two NaN blocks
    std::vector<int32_t> perm(static_cast<size_t>(physical));
    std::iota(perm.begin(), perm.end(), 0);
    rex::Pcg32 rng(++g_seed);
    for (int i = physical - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[rng.next_u32() % uint32_t(i + 1)]);
    const int32_t nan_block = perm[size_t(total_blocks)];
    std::vector<int32_t> tables(size_t(batch) * max_blocks, nan_block);
    std::vector<uint16_t> kp(size_t(physical) * bs * kvd, 0xFFFF), vp(kp.size(), 0xFFFF);  // bf16 NaN
    int next = 0;
    for (int b = 0; b < batch; ++b) {
      int32_t* table = &tables[size_t(b) * max_blocks];
      for (int i = 0; i < (lens[size_t(b)] + bs - 1) / bs; ++i) table[i] = perm[size_t(next++)];
      const std::vector<uint16_t> kb = to_bf16_bits(k[size_t(b)]), vb = to_bf16_bits(v[size_t(b)]);
      for (int t = 0; t < lens[size_t(b)]; ++t) {
        const size_t row = size_t(rex::cuda::paged_row(table, bs, t));
        std::copy_n(&kb[size_t(t) * kvd], kvd, &kp[row * kvd]);
        std::copy_n(&vb[size_t(t) * kvd], kvd, &vp[row * kvd]);
      }
    }
    dq = std::make_unique<DeviceArray<uint16_t>>(to_bf16_bits(q));
    dk = std::make_unique<DeviceArray<uint16_t>>(kp);
    dv = std::make_unique<DeviceArray<uint16_t>>(vp);
    dtables = std::make_unique<DeviceArray<int32_t>>(tables);
    dlens = std::make_unique<DeviceArray<int32_t>>(std::vector<int32_t>(lens.begin(), lens.end()));
    cache.k = dk->as<bf16>();
    cache.v = dv->as<bf16>();
    cache.block_size = bs;
    cache.kv_heads = lay.kv_heads;
    cache.head_dim = lay.hd;
  }
  int batch() const { return int(lens.size()); }

  // The CPU twin at lengths `at` (each <= the built length).
  std::vector<float> reference(const std::vector<int>& at) const {
    std::vector<const float*> kp, vp;
    for (int b = 0; b < batch(); ++b) {
      kp.push_back(k[size_t(b)].data());
      vp.push_back(v[size_t(b)].data());
    }
    std::vector<float> ref(size_t(batch()) * lay.q_heads * lay.hd);
    rex::cpu::attention_decode(pool(), q.data(), lay.q_stride, batch(), lay.q_heads, lay.kv_heads, lay.hd, kp, vp,
                               at, ref.data());
    return ref;
  }
  void set_lens(const std::vector<int>& at) {
    const std::vector<int32_t> l(at.begin(), at.end());
    cudaMemcpy(dlens->ptr, l.data(), l.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
  }
  double kv_bytes(const std::vector<int>& at) const {
    double keys = 0;
    for (int len : at) keys += len;
    return keys * lay.kv_heads * lay.hd * 2.0 * 2.0;
  }
};

// Copies n values with one block: slow on purpose, so that a kernel launched
// overlapped after it starts long before it ends.
__global__ void copy_bits_one_block(const uint16_t* in, uint16_t* out, size_t n) {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) out[i] = in[i];
}

std::string lens_label(const std::vector<int>& lens) {
  std::string s = "batch " + std::to_string(lens.size()) + " lens";
  for (size_t i = 0; i < lens.size() && i < 8; ++i) s += " " + std::to_string(lens[i]);
  if (lens.size() > 8) s += " ...";
  return s;
}

struct Launcher {
  DecodeBatch& db;
  int num_splits;
  rex::cuda::DecodeMerge merge;
  DeviceArray<float> ws;
  DeviceArray<uint16_t> out;
  Launcher(DecodeBatch& d, int splits, rex::cuda::DecodeMerge m = rex::cuda::DecodeMerge::kCombineLaunch)
      : db(d), num_splits(splits), merge(m),
        ws(rex::cuda::attention_decode_workspace_floats(d.batch(), d.lay.q_heads, d.lay.hd, splits)),
        out(size_t(d.batch()) * d.lay.q_heads * d.lay.hd) {}
  rex::Status operator()(cudaStream_t stream) {
    return rex::cuda::attention_decode_bf16(db.dq->as<bf16>(), db.lay.q_stride, db.batch(), db.lay.q_heads, db.cache,
                                            db.dtables->ptr, db.max_blocks, db.dlens->ptr, num_splits, ws.ptr,
                                            out.as<bf16>(), stream, merge);
  }
};

double compare(const std::string& what, const DecodeBatch& db, const std::vector<float>& out,
               const std::vector<float>& ref) {
  const int qd = db.lay.q_heads * db.lay.hd, hd = db.lay.hd;
  return check_close(what, out, ref, kBf16Tolerance, [&](size_t i) {
    const int b = int(i / size_t(qd));
    return "seq " + std::to_string(b) + " (len " + std::to_string(db.lens[size_t(b)]) + ") head " +
           std::to_string(int(i % size_t(qd)) / hd) + " dim " + std::to_string(int(i % size_t(qd)) % hd);
  });
}

// Checks one batch at each num_splits; times the ones asked for.
void check_decode(const Layout& lay, const std::vector<int>& lens, const std::vector<int>& splits_list,
                  bool time_it, const std::string& name = "") {
  DecodeBatch db(lay, lens);
  auto t0 = std::chrono::steady_clock::now();
  const std::vector<float> ref = db.reference(lens);
  const double cpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  for (int splits : splits_list) {
    Launcher run(db, splits);
    const std::string what = (name.empty() ? "" : name + ": ") + lens_label(lens) + " h " +
                             std::to_string(lay.q_heads) + "/" + std::to_string(lay.kv_heads) + " hd " +
                             std::to_string(lay.hd) + " bs " + std::to_string(lay.block_size) + " splits " +
                             std::to_string(splits);
    run.out.poison();
    run.ws.poison();
    CHECK_CUDA_SYNC();
    CHECK_OK(run(stream));
    CHECK_CUDA_SYNC();
    const std::vector<uint16_t> bits = run.out.download();
    const double err = compare(what, db, from_bf16_bits(bits), ref);
    run.out.poison();
    run.ws.poison();
    CHECK_CUDA_SYNC();
    CHECK_OK(run(stream));
    CHECK_CUDA_SYNC();
    check_same_bits(what, bits, run.out.download());
    // The cluster merge (splits <= 16): the combine launch's bits, in one launch.
    std::unique_ptr<Launcher> clustered;
    if (splits <= rex::cuda::kMaxClusterSplits) {
      clustered = std::make_unique<Launcher>(db, splits, rex::cuda::DecodeMerge::kCluster);
      clustered->out.poison();
      CHECK_CUDA_SYNC();
      CHECK_OK((*clustered)(stream));
      CHECK_CUDA_SYNC();
      check_same_bits(what + " cluster merge", bits, clustered->out.download());
      // Launched overlapped (programmatic dependent launch) right after a slow
      // kernel that writes its q (one block): it must wait for it. The same bits.
      DeviceArray<uint16_t> q_copy(db.dq->count);
      q_copy.poison();
      clustered->out.poison();
      CHECK_CUDA_SYNC();
      copy_bits_one_block<<<1, 128, 0, stream>>>(db.dq->ptr, q_copy.ptr, db.dq->count);
      CHECK_OK(rex::cuda::attention_decode_bf16(q_copy.as<bf16>(), lay.q_stride, db.batch(), lay.q_heads, db.cache,
                                                db.dtables->ptr, db.max_blocks, db.dlens->ptr, splits,
                                                clustered->ws.ptr, clustered->out.as<bf16>(), stream,
                                                rex::cuda::DecodeMerge::kCluster, nullptr, /*overlap_previous=*/true));
      CHECK_CUDA_SYNC();
      check_same_bits(what + " cluster merge, overlapped", bits, clustered->out.download());
    }
    if (time_it && !quick()) {
      const Timing t = time_launch([&] { (void)run(stream); }, stream);
      CHECK_CUDA_SYNC();
      const double partial_bytes = 2.0 * double(run.ws.count) * 4.0;  // written once, read once
      const double bytes = db.kv_bytes(lens) + 2.0 * 2.0 * db.batch() * lay.q_heads * lay.hd + partial_bytes;
      double keys = 0;
      for (int len : lens) keys += len;
      const double flops = 4.0 * lay.q_heads * lay.hd * keys;
      report_timing((name.empty() ? lens_label(lens) : name) + " splits " + std::to_string(splits), t, flops, bytes,
                    err);
      std::printf("    (K/V alone: %.2f MB, %.1f GB/s)\n", db.kv_bytes(lens) / 1e6,
                  db.kv_bytes(lens) / (t.median_ms * 1e-3) / 1e9);
      if (clustered) {
        const Timing tc = time_launch([&] { (void)(*clustered)(stream); }, stream);
        CHECK_CUDA_SYNC();
        report_timing((name.empty() ? lens_label(lens) : name) + " splits " + std::to_string(splits) + " cluster", tc,
                      flops, bytes - partial_bytes, err);
      }
    }
  }
  std::printf("    (cpu reference %.2f s)\n", cpu_s);
  cudaStreamDestroy(stream);
}

// The rotary step inside the attention (DecodeRope, cluster merge) against
// mrope_qkv_to_cache_bf16 then the same attention, bit for bit: the output
// and the whole cache after the call. The rows of the newest keys start as
// NaN in the fused call's cache, so a read before the write shows. q is the
// raw fused qkv row (q | k | v heads).
void check_rope_in_attention(const Layout& lay, const std::vector<int>& lens, int splits, const std::string& name) {
  DecodeBatch db(lay, lens);
  const int batch = db.batch(), half = lay.hd / 2;
  std::vector<int32_t> positions(size_t(3) * batch);
  std::vector<int32_t> dest(static_cast<size_t>(batch));
  const std::vector<int32_t> tables = db.dtables->download();
  for (int b = 0; b < batch; ++b) {
    const int newest = lens[size_t(b)] - 1;
    positions[size_t(b)] = newest + 3 * b;  // t, h, w differ, so each section takes its own axis
    positions[size_t(batch + b)] = newest / 2 + b;
    positions[size_t(2 * batch + b)] = 4100 + newest;
    dest[size_t(b)] = int32_t(rex::cuda::paged_row(&tables[size_t(b) * db.max_blocks], lay.block_size, newest));
  }
  const rex::cuda::MropeSection section{half / 4, (half - half / 4) / 2, half - half / 4 - (half - half / 4) / 2};
  DeviceArray<int32_t> dpos(positions), ddest(dest);
  DeviceArray<float> dfreq(rex::cpu::rotary_inv_freq(1000000.0f, lay.hd));
  const std::vector<uint16_t> qkv = db.dq->download(), k = db.dk->download(), v = db.dv->download();
  std::vector<uint16_t> k_poisoned = k, v_poisoned = v;
  const size_t kvd = size_t(lay.kv_heads) * lay.hd;
  for (int32_t row : dest) {
    std::fill_n(&k_poisoned[size_t(row) * kvd], kvd, uint16_t(0xFFFF));
    std::fill_n(&v_poisoned[size_t(row) * kvd], kvd, uint16_t(0xFFFF));
  }
  DeviceArray<uint16_t> q_ref(qkv), k_ref(k), v_ref(v), q_raw(qkv), k_fused(k_poisoned), v_fused(v_poisoned);
  DeviceArray<float> ws(rex::cuda::attention_decode_workspace_floats(batch, lay.q_heads, lay.hd, splits));
  DeviceArray<uint16_t> out_ref(size_t(batch) * lay.q_heads * lay.hd), out_fused(out_ref.count);
  out_ref.poison();
  out_fused.poison();
  PagedKv ref_cache = db.cache, fused_cache = db.cache;
  ref_cache.k = k_ref.as<bf16>();
  ref_cache.v = v_ref.as<bf16>();
  fused_cache.k = k_fused.as<bf16>();
  fused_cache.v = v_fused.as<bf16>();
  CHECK_OK(rex::cuda::mrope_qkv_to_cache_bf16(q_ref.as<bf16>(), batch, lay.q_heads, lay.kv_heads, lay.hd, dpos.ptr,
                                              dfreq.ptr, section, ddest.ptr,
                                              rex::cuda::KvPlane{k_ref.as<bf16>(), v_ref.as<bf16>()}, 0));
  CHECK_OK(rex::cuda::attention_decode_bf16(q_ref.as<bf16>(), lay.q_stride, batch, lay.q_heads, ref_cache,
                                            db.dtables->ptr, db.max_blocks, db.dlens->ptr, splits, ws.ptr,
                                            out_ref.as<bf16>(), 0, rex::cuda::DecodeMerge::kCluster));
  rex::cuda::DecodeRope rope;
  rope.positions = dpos.ptr;
  rope.inv_freq = dfreq.ptr;
  rope.section_t = section.t;
  rope.section_h = section.h;
  rope.dest_rows = ddest.ptr;
  rope.k = k_fused.as<bf16>();
  rope.v = v_fused.as<bf16>();
  // Overlapped (programmatic dependent launch) right after the kernel that wrote the reference.
  CHECK_OK(rex::cuda::attention_decode_bf16(q_raw.as<bf16>(), lay.q_stride, batch, lay.q_heads, fused_cache,
                                            db.dtables->ptr, db.max_blocks, db.dlens->ptr, splits, ws.ptr,
                                            out_fused.as<bf16>(), 0, rex::cuda::DecodeMerge::kCluster, &rope,
                                            /*overlap_previous=*/true));
  CHECK_CUDA_SYNC();
  const std::string what = name + ": " + lens_label(lens) + " hd " + std::to_string(lay.hd) + " splits " +
                           std::to_string(splits) + " rotary in the attention";
  check_same_bits(what + " (output)", out_ref.download(), out_fused.download());
  check_same_bits(what + " (k cache)", k_ref.download(), k_fused.download());
  check_same_bits(what + " (v cache)", v_ref.download(), v_fused.download());
  std::printf("  %s: bits as mrope + attention\n", what.c_str());
}

REX_TEST(decode_rope_in_attention) {
  if (skip_without_gpu()) return;
  const Layout lay;
  check_rope_in_attention(lay, {1}, 1, "real layout");
  check_rope_in_attention(lay, {1300}, 16, "real layout");
  check_rope_in_attention(lay, {1, 63, 64, 65, 1300, 17, 640, 2049}, 16, "real layout");
  check_rope_in_attention(lay, {64, 65, 200}, 4, "real layout");
  check_rope_in_attention(tiny_layout(), {1, 40, 129}, 3, "hd 32");
  Layout hd64;
  hd64.q_heads = 8;
  hd64.kv_heads = 2;
  hd64.hd = 64;
  hd64.q_stride = (8 + 2 * 2) * 64;
  check_rope_in_attention(hd64, {1, 100, 257}, 8, "hd 64");
}

REX_TEST(decode_real_layout_small_batches) {
  if (skip_without_gpu()) return;
  const Layout lay;
  check_decode(lay, {1}, {1, 4, 16}, false);
  check_decode(lay, {1300}, {1, 2, 7, 16, 32, 64, 128}, false);
  check_decode(lay, {1, 63, 64}, {1, 3, 16, 64}, false);
  check_decode(lay, {1, 63, 64, 65, 1300, 17, 640, 2049}, {1, 5, 16, 64}, false);
}

REX_TEST(decode_other_layouts) {
  if (skip_without_gpu()) return;
  Layout bs16;
  bs16.block_size = 16;
  check_decode(bs16, {5, 16, 17, 333}, {1, 8}, false);
  Layout bs128;
  bs128.block_size = 128;
  check_decode(bs128, {129, 1, 700}, {3, 16}, false);
  Layout hd64;
  hd64.q_heads = 8;
  hd64.kv_heads = 2;
  hd64.hd = 64;
  hd64.q_stride = 8 * 64;
  check_decode(hd64, {1, 100, 257}, {1, 8}, false);
  check_decode(tiny_layout(), {1, 40, 129}, {1, 3}, false);
  Layout g1;
  g1.q_heads = 4;
  g1.kv_heads = 4;
  g1.q_stride = 4 * 128 + 8;
  check_decode(g1, {90, 3}, {1, 4}, false);
  Layout g16;
  g16.q_heads = 16;
  g16.kv_heads = 1;
  g16.q_stride = 16 * 128;
  check_decode(g16, {200, 64, 1}, {1, 8}, false);
}

// One graph, captured once, replayed at other lengths: right at every one.
REX_TEST(decode_graph_replay_at_new_lengths) {
  if (skip_without_gpu()) return;
  const Layout lay;
  const std::vector<int> built = {1300, 64, 700, 2049};
  DecodeBatch db(lay, built);
  Launcher run(db, 16);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  // A first direct call (as the backend's warm-up would) before capture.
  CHECK_OK(run(stream));
  CHECK_CUDA_SYNC();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK_OK(run(stream));
  CHECK(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
  CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  const std::vector<std::vector<int>> steps = {{1, 1, 1, 1}, {65, 63, 64, 1}, {1300, 64, 700, 2049}, {1000, 2, 699, 17}};
  for (const auto& at : steps) {
    db.set_lens(at);
    run.out.poison();
    run.ws.poison();
    CHECK_CUDA_SYNC();
    CHECK(cudaGraphLaunch(exec, stream) == cudaSuccess);
    CHECK_CUDA_SYNC();
    const std::vector<float> ref = db.reference(at);
    compare("graph replay at " + lens_label(at), db, from_bf16_bits(run.out.download()), ref);
  }
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

REX_TEST(decode_timing_sweeps) {
  if (skip_without_gpu() || skip_in_quick_mode()) return;
  const Layout lay;
  check_decode(lay, {1300}, {1, 4, 16, 32, 64, 128}, true, "b1 len 1300");
  check_decode(lay, {10000}, {16, 32, 64, 128}, true, "b1 len 10000");
  check_decode(lay, {1, 63, 64, 65, 1300, 17, 640, 2049}, {4, 8, 16, 32}, true, "b8 mixed");
  check_decode(lay, std::vector<int>(8, 1300), {4, 8, 16, 32}, true, "b8 len 1300");
  check_decode(lay, std::vector<int>(16, 1300), {4, 8, 16}, true, "b16 len 1300");
  check_decode(lay, std::vector<int>(32, 1300), {2, 4, 8, 16}, true, "b32 len 1300");
  check_decode(lay, std::vector<int>(64, 1300), {1, 2, 4, 8, 16}, true, "b64 len 1300");
  check_decode(lay, std::vector<int>(128, 1300), {2, 4, 8, 16}, true, "b128 len 1300");
  check_decode(lay, std::vector<int>(64, 4096), {1, 2, 4, 8}, true, "b64 len 4096");
  std::vector<int> mixed;
  rex::Pcg32 rng(++g_seed);
  for (int i = 0; i < 64; ++i) mixed.push_back(1 + int(rng.next_u32() % 10000u));
  check_decode(lay, mixed, {2, 4, 8}, true, "b64 lens 1..10000");
  // The serving benchmark's spread: 600-1900 keys (prompts of 622-1427 tokens, answers up to 440).
  std::vector<int> serving;
  for (int i = 0; i < 128; ++i) serving.push_back(600 + int(rng.next_u32() % 1301u));
  check_decode(lay, std::vector<int>(serving.begin(), serving.begin() + 64), {2, 4, 8, 16}, true, "b64 lens 600..1900");
  check_decode(lay, serving, {2, 4, 8, 16}, true, "b128 lens 600..1900");
}

REX_TEST(decode_bad_arguments) {
  if (skip_without_gpu()) return;
  DeviceArray<uint16_t> q(size_t(4) * 2560), k(size_t(256) * 256), v(size_t(256) * 256), out(size_t(4) * 2048);
  DeviceArray<int32_t> tables(std::vector<int32_t>{0, 1, 2, 3}), lens(std::vector<int32_t>{1, 2, 3, 4});
  DeviceArray<float> ws(rex::cuda::attention_decode_workspace_floats(4, 16, 128, 4));
  PagedKv cache;
  cache.k = k.as<bf16>();
  cache.v = v.as<bf16>();
  cache.block_size = 64;
  cache.kv_heads = 2;
  cache.head_dim = 128;
  auto call = [&](PagedKv c, int q_stride, int batch, int q_heads, int max_blocks, int splits, float* w) {
    return rex::cuda::attention_decode_bf16(q.as<bf16>(), q_stride, batch, q_heads, c, tables.ptr, max_blocks,
                                            lens.ptr, splits, w, out.as<bf16>(), 0);
  };
  auto expect_bad = [](const rex::Status& st, const char* what) {
    std::printf("  %-40s -> %s\n", what, st.ok() ? "ok (WRONG)" : st.message().c_str());
    CHECK(!st.ok());
    CHECK(st.code() == rex::StatusCode::kInvalidArgument);
    CHECK_CONTAINS(st.message(), "expected");
  };
  PagedKv c80 = cache;
  c80.head_dim = 80;
  expect_bad(call(c80, 2560, 4, 16, 1, 4, ws.ptr), "head_dim 80");
  expect_bad(call(cache, 2560, -1, 16, 1, 4, ws.ptr), "batch -1");
  expect_bad(call(cache, 2560, 4, 16, 1, 0, ws.ptr), "num_splits 0");
  expect_bad(call(cache, 2560, 4, 16, 0, 4, ws.ptr), "max_blocks 0");
  expect_bad(call(cache, 2560, 4, 15, 1, 4, ws.ptr), "q_heads 15");
  expect_bad(call(cache, 2560, 4, 16, 1, 4, nullptr), "null workspace");
  expect_bad(call(cache, 2561, 4, 16, 1, 4, ws.ptr), "q_stride 2561");
  PagedKv c48 = cache;
  c48.block_size = 48;
  expect_bad(call(c48, 2560, 4, 16, 1, 4, ws.ptr), "block_size 48");
  PagedKv c1 = cache;
  c1.kv_heads = 1;
  expect_bad(call(c1, 4096, 4, 32, 1, 4, ws.ptr), "32 q heads per kv head");
  expect_bad(rex::cuda::attention_decode_bf16(q.as<bf16>(), 2560, 4, 16, cache, tables.ptr, 1, lens.ptr, 17, ws.ptr,
                                              out.as<bf16>(), 0, rex::cuda::DecodeMerge::kCluster),
             "cluster merge with 17 splits");
  {
    DeviceArray<int32_t> ids(std::vector<int32_t>(12, 0));
    DeviceArray<float> freq(std::vector<float>(64, 1.0f));
    rex::cuda::DecodeRope rope;
    rope.positions = ids.ptr;
    rope.inv_freq = freq.ptr;
    rope.section_t = 16;
    rope.section_h = 24;
    rope.dest_rows = ids.ptr;
    rope.k = k.as<bf16>();
    rope.v = v.as<bf16>();
    auto with_rope = [&](const rex::cuda::DecodeRope& r, rex::cuda::DecodeMerge merge, int q_stride) {
      return rex::cuda::attention_decode_bf16(q.as<bf16>(), q_stride, 4, 16, cache, tables.ptr, 1, lens.ptr, 4, ws.ptr,
                                              out.as<bf16>(), 0, merge, &r);
    };
    expect_bad(with_rope(rope, rex::cuda::DecodeMerge::kCombineLaunch, 2560), "rotary without the cluster merge");
    expect_bad(rex::cuda::attention_decode_bf16(q.as<bf16>(), 2560, 4, 16, cache, tables.ptr, 1, lens.ptr, 4, ws.ptr,
                                                out.as<bf16>(), 0, rex::cuda::DecodeMerge::kCombineLaunch, nullptr, true),
               "overlapped without the cluster merge");
    expect_bad(with_rope(rope, rex::cuda::DecodeMerge::kCluster, 2048), "rotary with q_stride 2048 (q alone)");
    rex::cuda::DecodeRope wide = rope;
    wide.section_h = 60;
    expect_bad(with_rope(wide, rex::cuda::DecodeMerge::kCluster, 2560), "rotary sections 16 + 60 > 64");
    rex::cuda::DecodeRope other = rope;
    other.k = nullptr;
    expect_bad(with_rope(other, rex::cuda::DecodeMerge::kCluster, 2560), "rotary k plane not the cache's");
  }
  CHECK_EQ(rex::cuda::attention_decode_workspace_floats(4, 16, 128, 4), size_t(4) * 16 * 4 * 130);
  CHECK_EQ(rex::cuda::attention_decode_workspace_floats(0, 16, 128, 4), size_t(0));
  CHECK_OK(call(cache, 2560, 0, 16, 1, 4, ws.ptr));  // an empty batch is fine
  CHECK_CUDA_SYNC();
}

REX_TEST(decode_summary) {
  if (skip_without_gpu()) return;
  print_table("attention_decode_bf16");
}

}  // namespace
