// The per-image bookkeeping that a batching backend's encode_rgb_batch shares:
// each image's preprocessing result either fails its own slot of `out`, or
// takes a slot with an EncodedImage (its patch grid and preprocessing time;
// embeddings come after the one vision pass) while the preprocessed image
// joins `pre` and its index joins `where` (pre[j] is image where[j]).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "rex/status.h"

namespace rex {

// `Pre` is any preprocessed image with grid_h and grid_w (PreprocessedImage on
// the host, a backend's device-side one). Returns whether the image was kept.
template <class Pre>
bool keep_preprocessed(Result<Pre>&& p, size_t index, std::vector<Result<EncodedImage>>& out, std::vector<Pre>& pre,
                       std::vector<size_t>& where, double preprocess_ms = 0) {
  if (!p.ok()) {
    out.push_back(p.status());
    return false;
  }
  EncodedImage e;
  e.grid_h = p->grid_h;
  e.grid_w = p->grid_w;
  e.preprocess_ms = preprocess_ms;
  out.push_back(std::move(e));
  pre.push_back(std::move(p).value());
  where.push_back(index);
  return true;
}

}  // namespace rex
