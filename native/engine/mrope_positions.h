// M-RoPE position ids for a prompt with (at most) one image, as REXOMNI.md
// "M-RoPE positions" states them: text counts up on all three axes; the image's
// tokens take t = s, h = s + row, w = s + col (merged grid, raster order) with
// s the position the next text token would have had; text after the image
// resumes at max(all so far) + 1; decode steps continue from there.
#pragma once

#include <cstdint>
#include <vector>

#include "rex/status.h"

namespace rex {

struct MropePositions {
  int n = 0;
  std::vector<int32_t> ids;   // axis-major: t[0..n), h[0..n), w[0..n)
  int32_t next_position = 0;  // position of the first generated token (same on all axes)
  int32_t t(int i) const { return ids[size_t(i)]; }
  int32_t h(int i) const { return ids[size_t(n + i)]; }
  int32_t w(int i) const { return ids[size_t(2 * n + i)]; }
};

// merged_h x merged_w: the image's merged grid (grid_h/2 x grid_w/2). The
// image's tokens must be one contiguous run of image_token_id of exactly
// merged_h*merged_w ids; a prompt without image tokens needs merged_h*merged_w
// == 0. Errors: kInvalidArgument naming expected vs found counts.
Result<MropePositions> mrope_positions(const std::vector<int32_t>& ids, int32_t image_token_id,
                                       int merged_h, int merged_w);

// Position of the decode token that follows a token at `position`.
inline int32_t next_decode_position(int32_t position) { return position + 1; }

}  // namespace rex
