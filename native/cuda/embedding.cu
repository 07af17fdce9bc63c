// Token-embedding gather with the image scatter, written as the fp32
// residual stream. Why it is shaped so:
//  - Pure copy-with-widen: each output row reads one bf16 row (of the table,
//    or of the vision encoder's output) and writes it as fp32, 6 bytes per
//    element. One block per row (grid-stride over rows beyond the grid), the
//    row's source chosen once per block from ids / image_index, then 16-byte
//    bf16 loads and two 16-byte fp32 stores per 8 elements, coalesced.
//  - The image rows are scattered by index instead of a second kernel that
//    overwrites the table rows: the image tokens' table rows are never read.
//  - Measured on an H200 at copy speed (a cudaMemcpyAsync of the same bytes);
//    2 or 4 chunks per thread (fewer threads per row) were no faster.
//  - A bad id cannot be reported from the device without a sync, so it
//    writes a NaN row (the host validates ids before; NaN makes any miss
//    loud downstream). Widening is exact, so this kernel and the CPU twin
//    agree bit for bit.
#include "cuda/embedding.cuh"

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/pdl.cuh"
#include "cuda/elementwise.cuh"

namespace rex::cuda {
namespace {

constexpr unsigned kMaxGrid = 1u << 20;
constexpr int kEmbedChunksPerThread = 1;  // chunks each thread loads before it stores

// Block = row (grid-stride over rows). Each thread loads PER chunks (a block
// apart) before storing them.
template <int VEC, int PER>
__global__ void embed_rows_kernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ image_index, int n,
                                  const bf16* __restrict__ table, int vocab, const bf16* __restrict__ image,
                                  int hidden, float* __restrict__ out) {
  pdl_launch_dependents();  // lets the next kernel (a GEMV) start streaming its weights
  const int chunks = hidden / VEC;
  for (int row = blockIdx.x; row < n; row += gridDim.x) {
    const int img = image_index ? image_index[row] : -1;
    const int id = ids[row];
    const bf16* src = nullptr;
    if (img >= 0)
      src = image + size_t(img) * size_t(hidden);
    else if (id >= 0 && id < vocab)
      src = table + size_t(id) * size_t(hidden);
    float* dst = out + size_t(row) * size_t(hidden);
    for (int c0 = threadIdx.x; c0 < chunks; c0 += blockDim.x * PER) {
      float v[PER][VEC];
#pragma unroll
      for (int k = 0; k < PER; ++k) {
        const int c = c0 + k * int(blockDim.x);
        if (c < chunks) {
          if (src) {
            load_bf16<VEC>(src + size_t(c) * VEC, v[k]);
          } else {
#pragma unroll
            for (int i = 0; i < VEC; ++i) v[k][i] = __uint_as_float(0x7fc00000u);  // quiet NaN
          }
        }
      }
#pragma unroll
      for (int k = 0; k < PER; ++k) {
        const int c = c0 + k * int(blockDim.x);
        if (c < chunks) store_f32<VEC>(dst + size_t(c) * VEC, v[k]);
      }
    }
  }
}

template <int VEC, int PER = kEmbedChunksPerThread>
Status launch_embed(const int32_t* ids, const int32_t* image_index, int n, const bf16* table, int vocab,
                    const bf16* image, int hidden, float* out, cudaStream_t stream) {
  const int chunks = hidden / VEC;
  const unsigned threads = unsigned(std::min(1024, whole_warps((chunks + PER - 1) / PER)));
  const unsigned grid = unsigned(n) < kMaxGrid ? unsigned(n) : kMaxGrid;
  embed_rows_kernel<VEC, PER><<<grid, threads, 0, stream>>>(ids, image_index, n, table, vocab, image, hidden, out);
  return check_launch("embed_rows_kernel");
}

}  // namespace

Status embed_rows(const int32_t* ids, const int32_t* image_index, int n, const bf16* table, int vocab,
                  const bf16* image, int hidden, float* out, cudaStream_t stream) {
  if (n < 0) return invalid("embed_rows: expected n >= 0 but got " + std::to_string(n));
  if (hidden <= 0) return invalid("embed_rows: expected hidden > 0 but got " + std::to_string(hidden));
  if (vocab <= 0) return invalid("embed_rows: expected vocab > 0 but got " + std::to_string(vocab));
  if (n == 0) return Status::Ok();
  if (!ids) return invalid("embed_rows: expected an ids pointer but got null");
  if (!table) return invalid("embed_rows: expected a table pointer but got null");
  if (!out) return invalid("embed_rows: expected an out pointer but got null");
  if (image_index && !image)
    return invalid("embed_rows: expected an image pointer with image_index but got null");
  const bool vec = hidden % 8 == 0 && aligned16(table) && aligned16(out) && (!image || aligned16(image));
  return vec ? launch_embed<8>(ids, image_index, n, table, vocab, image, hidden, out, stream)
             : launch_embed<1>(ids, image_index, n, table, vocab, image, hidden, out, stream);
}

}  // namespace rex::cuda
