// See mrope_positions.h.
#include "engine/mrope_positions.h"

#include <algorithm>

namespace rex {

Result<MropePositions> mrope_positions(const std::vector<int32_t>& ids, int32_t image_token_id,
                                       int merged_h, int merged_w) {
  const int n = int(ids.size());
  const int expected = merged_h * merged_w;
  int first = -1, count = 0;
  for (int i = 0; i < n; ++i) {
    if (ids[size_t(i)] != image_token_id) continue;
    if (first < 0) first = i;
    else if (ids[size_t(i - 1)] != image_token_id)
      return Status(StatusCode::kInvalidArgument,
                    "M-RoPE positions: expected one contiguous run of image tokens but found a second at index " +
                    std::to_string(i));
    ++count;
  }
  if (count != expected)
    return Status(StatusCode::kInvalidArgument, "M-RoPE positions: expected " + std::to_string(expected) +
                  " image tokens (" + std::to_string(merged_h) + "x" + std::to_string(merged_w) +
                  " merged grid) but the prompt has " + std::to_string(count));
  MropePositions p;
  p.n = n;
  p.ids.assign(size_t(3) * n, 0);
  int32_t next = 0;  // the position the next text token takes
  for (int i = 0; i < n;) {
    if (i == first) {
      const int32_t s = next;
      int32_t max_pos = s;
      for (int r = 0; r < merged_h; ++r)
        for (int c = 0; c < merged_w; ++c, ++i) {
          p.ids[size_t(i)] = s;
          p.ids[size_t(n + i)] = s + r;
          p.ids[size_t(2 * n + i)] = s + c;
          max_pos = std::max({max_pos, s + r, s + c});
        }
      next = max_pos + 1;
      continue;
    }
    p.ids[size_t(i)] = p.ids[size_t(n + i)] = p.ids[size_t(2 * n + i)] = next++;
    ++i;
  }
  p.next_position = next;
  return p;
}

}  // namespace rex
