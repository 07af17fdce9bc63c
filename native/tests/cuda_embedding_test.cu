// embed_rows (native/cuda/embedding.cuh) against the CPU twin
// (cpu::embed_rows): gathers of random bf16 tables by random ids, with the
// image rows scattered in through a shuffled image_index, at hidden 2048
// (text), 1280 and 100 (the scalar path), row counts 1, 3, 37, 1000 and the
// real prefill 1200. Ids outside the vocabulary in table rows must give a
// NaN row; an image row ignores its id. The widening is exact, so the check
// is bit for bit (the number of differing values is printed, expected 0).
// Outputs are poisoned with NaN first. Then the real 151936 x 2048 table
// (filled on the device), the bad-argument paths and timings at decode (1
// row) and prefill (1200 rows, 972 of them image rows).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cpu/embedding.h"
#include "cpu/thread_pool.h"
#include "cuda/embedding.cuh"
#include "cuda_test_util.h"
#include "cuda_timing.h"

namespace {

using rex::cuda::bf16;
using namespace rex_test;

uint64_t g_seed = 0x454d4244ull;  // advanced per draw: every check sees fresh inputs

// Random bf16 bit patterns of values in [-1, 1), from a hash of the index (device fill).
__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed ^ uint32_t(i >> 32) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    const float f = float(h >> 8) * (1.0f / 8388608.0f) - 1.0f;
    p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
}

std::vector<int32_t> shuffled(int n, uint64_t seed) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = i;
  rex::Pcg32 rng(seed);
  for (int i = n - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(rng.next_u32() % uint32_t(i + 1))]);
  return v;
}

// n rows of width hidden from a vocab-row table; image_rows > 0 scatters that
// many image rows (a contiguous run, shuffled order); bad_ids puts ids
// outside the vocabulary into a few table rows (expect NaN rows) and into
// image rows (ignored).
void check_embed(int n, int hidden, int vocab, int image_rows, bool bad_ids, int out_offset = 0) {
  rex::Pcg32 rng(++g_seed);
  const std::vector<float> table = random_bf16_values(size_t(vocab) * hidden, ++g_seed);
  const std::vector<float> image = random_bf16_values(size_t(std::max(image_rows, 1)) * hidden, ++g_seed, 3.0f);
  std::vector<int32_t> ids(static_cast<size_t>(n)), index(static_cast<size_t>(n), -1);
  for (auto& id : ids) id = int32_t(rng.next_u32() % uint32_t(vocab));
  if (image_rows > 0) {
    const int start = (n - image_rows) / 2;
    const std::vector<int32_t> order = shuffled(image_rows, ++g_seed);
    for (int j = 0; j < image_rows; ++j) index[size_t(start + j)] = order[size_t(j)];
  }
  std::vector<int> nan_rows;
  if (bad_ids) {
    const int32_t bad[3] = {-1, vocab, INT_MAX};
    for (int k = 0; k < 3 && k < n; ++k) {
      const int r = int(rng.next_u32() % uint32_t(n));
      ids[size_t(r)] = bad[k];
      if (index[size_t(r)] < 0 && std::find(nan_rows.begin(), nan_rows.end(), r) == nan_rows.end()) nan_rows.push_back(r);
    }
  }
  DeviceArray<uint16_t> dtable(to_bf16_bits(table)), dimage(to_bf16_bits(image));
  DeviceArray<int32_t> dids(ids), dindex(index);
  DeviceArray<float> dout(size_t(n) * hidden + 4);
  dout.poison();
  CHECK_OK(rex::cuda::embed_rows(dids.ptr, image_rows > 0 ? dindex.ptr : nullptr, n, dtable.as<bf16>(), vocab,
                                 image_rows > 0 ? dimage.as<bf16>() : nullptr, hidden, dout.ptr + out_offset, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<float> all = dout.download();

  // CPU twin, with the bad ids of NaN rows replaced (the twin reports them instead).
  std::vector<int32_t> ids_ok = ids;
  for (int r : nan_rows) ids_ok[size_t(r)] = 0;
  std::vector<float> ref(size_t(n) * hidden);
  CHECK_OK(rex::cpu::embed_rows(ids_ok.data(), image_rows > 0 ? index.data() : nullptr, n, table.data(), vocab,
                                image.data(), image_rows, hidden, ref.data()));
  size_t differing = 0, nan_wrong = 0;
  std::vector<float> got, want;
  for (int r = 0; r < n; ++r) {
    const bool nan_row = std::find(nan_rows.begin(), nan_rows.end(), r) != nan_rows.end();
    for (int e = 0; e < hidden; ++e) {
      const float g = all[size_t(out_offset) + size_t(r) * hidden + e];
      if (nan_row) {
        nan_wrong += !std::isnan(g);
      } else {
        const float w = ref[size_t(r) * hidden + e];
        differing += !(g == w);
        got.push_back(g);
        want.push_back(w);
      }
    }
  }
  char what[200];
  std::snprintf(what, sizeof what, "embed_rows n=%d hidden=%d vocab=%d image_rows=%d%s%s", n, hidden, vocab, image_rows,
                bad_ids ? " bad ids" : "", out_offset ? " out+1 (scalar path)" : "");
  CHECK_REL_ERROR(what, got, want, kFp32Tolerance);
  std::printf("    %zu of %zu values differ from the CPU twin (expect 0); %zu NaN rows, %zu non-NaN values in them\n",
              differing, got.size(), nan_rows.size(), nan_wrong);
  CHECK_EQ(differing, size_t(0));
  CHECK_EQ(nan_wrong, size_t(0));
}

REX_TEST(embed_rows_matches_cpu) {
  if (skip_without_gpu()) return;
  for (int hidden : {2048, 1280})
    for (int n : {1, 3, 37, 1000}) {
      check_embed(n, hidden, 4099, 0, false);
      if (n >= 3) check_embed(n, hidden, 4099, n * 3 / 4, n >= 37);
    }
  check_embed(1200, 2048, 4099, 972, true);  // a prefill with one image
  check_embed(1, 2048, 4099, 1, false);      // a single image row
  check_embed(37, 100, 501, 20, true);       // hidden % 8 != 0: scalar path
  check_embed(37, 2048, 501, 20, true, 1);   // out unaligned: scalar path
}

// The real table: 151936 x 2048 bf16 (622 MB), ids over the whole vocabulary.
REX_TEST(embed_rows_real_vocabulary) {
  if (skip_without_gpu()) return;
  const int vocab = 151936, hidden = 2048, n = 1200;
  DeviceArray<uint16_t> table(size_t(vocab) * hidden);
  CHECK(table.ptr != nullptr);
  if (!table.ptr) return;
  fill_bf16_kernel<<<4096, 256>>>(table.ptr, table.count, 0x1234u);
  rex::Pcg32 rng(++g_seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = int32_t(rng.next_u32() % uint32_t(vocab));
  ids[0] = 0;
  ids[1] = vocab - 1;
  DeviceArray<int32_t> dids(ids);
  DeviceArray<float> out(size_t(n) * hidden);
  out.poison();
  CHECK_OK(rex::cuda::embed_rows(dids.ptr, nullptr, n, table.as<bf16>(), vocab, nullptr, hidden, out.ptr, nullptr));
  CHECK_CUDA_SYNC();
  const std::vector<float> got = out.download();
  std::vector<uint16_t> row(static_cast<size_t>(hidden));
  size_t differing = 0;
  for (int r = 0; r < n; ++r) {
    cudaMemcpy(row.data(), table.ptr + size_t(ids[size_t(r)]) * hidden, hidden * 2, cudaMemcpyDeviceToHost);
    for (int e = 0; e < hidden; ++e) differing += got[size_t(r) * hidden + e] != rex::bf16_bits_to_float(row[size_t(e)]);
  }
  std::printf("  embed_rows real table n=%d: %zu of %zu values differ from the table rows (expect 0)\n", n, differing,
              got.size());
  CHECK_EQ(differing, size_t(0));
}

REX_TEST(n_zero_is_a_no_op) {
  if (skip_without_gpu()) return;
  CHECK_OK(rex::cuda::embed_rows(nullptr, nullptr, 0, nullptr, 100, nullptr, 2048, nullptr, nullptr));
  CHECK_CUDA_SYNC();
}

REX_TEST(bad_arguments_return_status) {
  if (skip_without_gpu()) return;
  DeviceArray<int32_t> ids(4), index(4);
  DeviceArray<uint16_t> table(16 * 64), image(4 * 64);
  DeviceArray<float> out(4 * 64);
  const bf16* t = table.as<bf16>();
  using rex::cuda::embed_rows;
  expect_invalid(embed_rows(ids.ptr, nullptr, -1, t, 16, nullptr, 64, out.ptr, nullptr), "expected n >= 0");
  expect_invalid(embed_rows(ids.ptr, nullptr, 4, t, 16, nullptr, 0, out.ptr, nullptr), "expected hidden > 0");
  expect_invalid(embed_rows(ids.ptr, nullptr, 4, t, 0, nullptr, 64, out.ptr, nullptr), "expected vocab > 0");
  expect_invalid(embed_rows(nullptr, nullptr, 4, t, 16, nullptr, 64, out.ptr, nullptr), "expected an ids pointer");
  expect_invalid(embed_rows(ids.ptr, nullptr, 4, nullptr, 16, nullptr, 64, out.ptr, nullptr), "expected a table pointer");
  expect_invalid(embed_rows(ids.ptr, nullptr, 4, t, 16, nullptr, 64, nullptr, nullptr), "expected an out pointer");
  expect_invalid(embed_rows(ids.ptr, index.ptr, 4, t, 16, nullptr, 64, out.ptr, nullptr), "expected an image pointer");
  rex::Status st = embed_rows(ids.ptr, index.ptr, 4, t, 16, nullptr, 64, out.ptr, nullptr);
  std::printf("  e.g. %s\n", st.message().c_str());
  CHECK_CUDA_SYNC();
}

REX_TEST(timing) {
  if (skip_without_gpu()) return;
  const int vocab = 151936, hidden = 2048;
  DeviceArray<uint16_t> table(size_t(vocab) * hidden);
  if (!table.ptr) return;
  fill_bf16_kernel<<<4096, 256>>>(table.ptr, table.count, 0x777u);
  struct Shape { const char* name; int n, image_rows; };
  const Shape shapes[] = {{"text decode", 1, 0}, {"prefill", 1200, 972}};
  for (const Shape& s : shapes) {
    rex::Pcg32 rng(++g_seed);
    std::vector<int32_t> ids(static_cast<size_t>(s.n)), index(static_cast<size_t>(s.n), -1);
    for (auto& id : ids) id = int32_t(rng.next_u32() % uint32_t(vocab));
    const int start = 15;  // the image run after the chat preamble
    for (int j = 0; j < s.image_rows; ++j) index[size_t(start + j)] = j;
    DeviceArray<int32_t> dids(ids), dindex(index);
    DeviceArray<uint16_t> image(size_t(std::max(s.image_rows, 1)) * hidden);
    fill_bf16_kernel<<<1024, 256>>>(image.ptr, image.count, 0x999u);
    DeviceArray<float> out(size_t(s.n) * hidden);
    const std::string shape = std::string(s.name) + " " + std::to_string(s.n) + "x" + std::to_string(hidden) +
                              (s.image_rows ? " (" + std::to_string(s.image_rows) + " image)" : std::string());
    time_op("embed_rows", shape, double(s.n) * hidden * (2 + 4) + double(s.n) * (s.image_rows ? 8 : 4), no_prepare,
            [&](cudaStream_t st) {
              return rex::cuda::embed_rows(dids.ptr, s.image_rows ? dindex.ptr : nullptr, s.n, table.as<bf16>(), vocab,
                                           s.image_rows ? image.as<bf16>() : nullptr, hidden, out.ptr, st);
            });
  }
}

REX_TEST(zz_summary_table) { print_timing_table(); }

}  // namespace
