// See embedding.h. Plain row copies: the result is exact (the CUDA twin
// widens bf16 rows, which is exact too, so the two must agree bit for bit).
#include "cpu/embedding.h"

#include <algorithm>
#include <string>

namespace rex::cpu {

Status embed_rows(const int32_t* ids, const int32_t* image_index, int n, const float* table, int vocab,
                  const float* image, int image_rows, int hidden, float* out) {
  if (n < 0 || hidden <= 0 || vocab <= 0)
    return Status(StatusCode::kInvalidArgument, "embed_rows: expected n >= 0, hidden > 0 and vocab > 0 but got n " +
                  std::to_string(n) + ", hidden " + std::to_string(hidden) + ", vocab " + std::to_string(vocab));
  if (n == 0) return Status::Ok();
  if (!ids || !table || !out || (image_index && !image))
    return Status(StatusCode::kInvalidArgument, "embed_rows: expected non-null ids, table, out (and image with "
                  "image_index) but got a null pointer");
  for (int i = 0; i < n; ++i) {
    const float* src;
    if (image_index && image_index[i] >= 0) {
      if (image_index[i] >= image_rows)
        return Status(StatusCode::kInvalidArgument, "embed_rows: row " + std::to_string(i) + " takes image row " +
                      std::to_string(image_index[i]) + " but the image has " + std::to_string(image_rows));
      src = image + size_t(image_index[i]) * hidden;
    } else {
      if (ids[i] < 0 || ids[i] >= vocab)
        return Status(StatusCode::kInvalidArgument, "token id " + std::to_string(ids[i]) + " at index " +
                      std::to_string(i) + " is outside the vocabulary (" + std::to_string(vocab) + ")");
      src = table + size_t(ids[i]) * hidden;
    }
    std::copy_n(src, hidden, out + size_t(i) * hidden);
  }
  return Status::Ok();
}

}  // namespace rex::cpu
