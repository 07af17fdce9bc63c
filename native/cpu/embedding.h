// The decoder's input rows: a gather of embedding-table rows by token id, with
// the vision encoder's output scattered in at the image tokens (fp32 tables).
// CPU twin of native/cuda/embedding.cuh.
#pragma once

#include <cstdint>

#include "rex/status.h"

namespace rex::cpu {

// For each row i < n: if image_index and image_index[i] >= 0,
// out[i] = image[image_index[i]] (image: [image_rows, hidden]); else
// out[i] = table[ids[i]] (table: [vocab, hidden]). image_index may be null (no
// image). kInvalidArgument, naming the row, for an id outside [0, vocab) in a
// row that reads the table, or an image_index at or beyond image_rows; out is
// then partly written. (The CUDA twin cannot report per row: it writes a NaN
// row for a bad id instead, after the host has validated the ids.)
Status embed_rows(const int32_t* ids, const int32_t* image_index, int n, const float* table, int vocab,
                  const float* image, int image_rows, int hidden, float* out);

}  // namespace rex::cpu
