// The single place that maps a backend name to an implementation: "cpu" is
// built in; other libraries (the CUDA backend) register a factory when their
// addon loads, so the core never links against them.
#include <chrono>
#include <map>
#include <mutex>

#include "cpu/cpu_backend.h"
#include "engine/backend.h"

namespace rex {

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, BackendFactory>& registry() {
  static std::map<std::string, BackendFactory> factories;
  return factories;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[name] = factory;
}

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options) {
  if (options.name == "cpu") return std::unique_ptr<Backend>(new cpu::CpuBackend(options));
  BackendFactory factory = nullptr;
  std::string known = "\"cpu\"";
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(options.name);
    if (it != registry().end()) factory = it->second;
    for (const auto& [name, f] : registry()) known += ", \"" + name + "\"";
  }
  if (factory) return factory(options);
  return Status(StatusCode::kInvalidArgument, "expected backend " + known + " but got \"" + options.name +
                "\"" + (options.name == "cuda" ? " (this build of the addon has no CUDA backend)" : ""));
}

Status check_prefill_image(const PrefillInput& in, int image_tokens, int hidden) {
  const int have = in.image->tokens();
  const int offset = in.image_part ? in.image_offset : 0;
  if (in.image->hidden() != hidden || offset < 0 || (in.image_part ? offset + image_tokens > have : have != image_tokens))
    return Status(StatusCode::kInvalidArgument,
                  "prefill: the prompt has " + std::to_string(image_tokens) + " image tokens from embedding " +
                      std::to_string(offset) + " but the image gives " + std::to_string(have) +
                      " embeddings of width " + std::to_string(in.image->hidden()));
  return Status::Ok();
}

Result<EncodedImage> Backend::encode_rgb(const uint8_t* rgb, int width, int height, const PreprocessOptions& options) {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  auto pre = preprocess_image(rgb, width, height, options);
  if (!pre.ok()) return pre.status();
  auto t1 = Clock::now();
  auto emb = encode_image(pre.value());
  if (!emb.ok()) return emb.status();
  EncodedImage out;
  out.embeddings = std::move(emb).value();
  out.grid_h = pre->grid_h;
  out.grid_w = pre->grid_w;
  out.preprocess_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  out.vision_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
  return out;
}

Status Backend::decode_sampled(const std::vector<DecodeRow>&, const std::vector<RowSampling>&, std::vector<SampledToken>*) {
  return Status(StatusCode::kInternal, std::string("backend ") + name() + " does not sample on its device");
}

Status Backend::prefill_sampled(const PrefillInput&, const RowSampling&, SampledToken*) {
  return Status(StatusCode::kInternal, std::string("backend ") + name() + " does not sample on its device");
}

Status Backend::prefill_batch(const std::vector<PrefillInput>&, float*) {
  return Status(StatusCode::kInternal, std::string("backend ") + name() + " does not batch prefills");
}

Status Backend::prefill_batch_sampled(const std::vector<PrefillInput>&, const std::vector<RowSampling>&,
                                      std::vector<SampledToken>*) {
  return Status(StatusCode::kInternal, std::string("backend ") + name() + " does not batch prefills on its device");
}

}  // namespace rex
