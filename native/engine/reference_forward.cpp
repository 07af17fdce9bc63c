// See reference_forward.h.
#include "engine/reference_forward.h"

namespace rex {

Result<ReferenceForward> run_reference_forward(Backend& backend, const ModelConfig& config,
                                               const PreprocessedImage* image,
                                               const std::vector<int32_t>& input_ids) {
  ReferenceForward out;
  std::unique_ptr<ImageEmbeddings> emb;
  int mh = 0, mw = 0;
  if (image) {
    auto enc = backend.encode_image(*image);
    if (!enc.ok()) return enc.status();
    emb = std::move(enc).value();
    REX_RETURN_IF_ERROR(emb->copy_to_host(&out.vision));
    out.vision_tokens = emb->tokens();
    mh = image->grid_h / config.vision.spatial_merge_size;
    mw = image->grid_w / config.vision.spatial_merge_size;
  }
  auto pos = mrope_positions(input_ids, config.image_token_id, mh, mw);
  if (!pos.ok()) return pos.status();
  out.positions = std::move(pos).value();
  auto slot = backend.acquire_slot(int(input_ids.size()));
  if (!slot.ok()) return slot.status();
  PrefillInput in;
  in.slot = slot.value();
  in.token_ids = input_ids.data();
  in.n = int(input_ids.size());
  in.positions = out.positions.ids.data();
  in.image = emb.get();
  in.image_token_id = config.image_token_id;
  out.last_logits.resize(size_t(backend.vocab_size()));
  Status st = backend.prefill(in, out.last_logits.data());
  backend.release(slot.value());
  if (!st.ok()) return st;
  return out;
}

}  // namespace rex
