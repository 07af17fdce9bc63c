// The decoder's input rows on the GPU: a gather of embedding-table rows by
// token id, with the vision encoder's output scattered in at the image
// tokens, written as the fp32 residual stream.
// CPU twin: native/cpu/embedding.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/bf16.cuh"
#include "rex/status.h"

namespace rex::cuda {

// For each row i < n: if image_index[i] >= 0, out[i] = float(image[image_index[i]])
// (image: [image_rows, hidden] bf16), else out[i] = float(table[ids[i]])
// (table: [vocab, hidden] bf16). image_index may be null (no image).
// Ids outside [0, vocab) write a NaN row (the host validates ids first).
Status embed_rows(const int32_t* ids, const int32_t* image_index, int n, const bf16* table, int vocab,
                  const bf16* image, int hidden, float* out, cudaStream_t stream);

}  // namespace rex::cuda
