// The graphed decode step alone, on the CUDA backend, without the engine,
// Node or the Python peers: for kernel A/B runs that need the whole step
// (attention, rope and the sampler between the projections), in seconds
// rather than the five minutes of `npm run bench`.
//
//   decode_step_bench CHECKPOINT_DIR [--context N] [--steps N] [--batches 1,8,64]
//                     [--rows-per-sequence R] [--out FILE.json]
//
// For each batch size it fills that many slots with a CONTEXT-token prompt of
// fixed pseudo-random ids (one prefill each), then decodes greedily, one row
// per sequence (R rows: jump-forward's shape), with every step's token fed
// back: a few steps capture the graphs, then STEPS steps are timed on the
// host clock through the backend's own calls (each returns its tokens), so
// what is timed is what the engine's decode path runs, host work included. It prints one line
// per batch and writes JSON with the step's milliseconds, tokens/s and, at
// batch 1, the fraction of the weight-streaming roofline (the decoder's bf16
// weights over a measured device-to-device copy's bandwidth).
//
// scripts/kernel-ab.sh builds it once per compile-time variant of a kernel
// source and runs every variant in one device call.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "model/checkpoint.h"
#include "model/weights.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string dir, out;
  int context = 1200, steps = 64, rows_per_sequence = 1;
  std::vector<int> batches{1, 8, 64};
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "decode_step_bench: expected a value after %s\n", what);
        return nullptr;
      }
      return argv[++i];
    };
    const char* v = nullptr;
    if (a == "--context") {
      if (!(v = next("--context"))) return false;
      o->context = std::atoi(v);
    } else if (a == "--steps") {
      if (!(v = next("--steps"))) return false;
      o->steps = std::atoi(v);
    } else if (a == "--rows-per-sequence") {
      if (!(v = next("--rows-per-sequence"))) return false;
      o->rows_per_sequence = std::atoi(v);
    } else if (a == "--out") {
      if (!(v = next("--out"))) return false;
      o->out = v;
    } else if (a == "--batches") {
      if (!(v = next("--batches"))) return false;
      o->batches.clear();
      std::stringstream list(v);
      for (std::string item; std::getline(list, item, ',');) o->batches.push_back(std::atoi(item.c_str()));
    } else if (o->dir.empty()) {
      o->dir = a;
    } else {
      std::fprintf(stderr, "decode_step_bench: unexpected argument %s\n", a.c_str());
      return false;
    }
  }
  if (o->dir.empty() || o->context < 1 || o->steps < 1 || o->rows_per_sequence < 1 || o->batches.empty()) {
    std::fprintf(stderr,
                 "usage: decode_step_bench CHECKPOINT_DIR [--context N >= 1] [--steps N >= 1] [--batches 1,8,64] "
                 "[--rows-per-sequence R >= 1] [--out FILE.json]\n");
    return false;
  }
  for (int b : o->batches)
    if (b < 1) {
      std::fprintf(stderr, "decode_step_bench: expected batch sizes >= 1 but got %d\n", b);
      return false;
    }
  return true;
}

// Device-to-device copy bandwidth (read + write bytes over time), 256 MB, median of 9.
double copy_bandwidth() {
  const size_t bytes = size_t(256) << 20;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<float> ms;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i > 0) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a);
  cudaFree(b);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * double(bytes) / (ms[ms.size() / 2] * 1e-3);
}

struct BatchResult {
  int batch = 0, rows = 0;
  double step_ms = 0, tokens_per_s = 0;
};

int fail(const std::string& what, const rex::Status& st) {
  std::fprintf(stderr, "decode_step_bench: %s: %s\n", what.c_str(), st.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  auto ckpt = rex::Checkpoint::open(o.dir);
  if (!ckpt.ok()) return fail("opening " + o.dir, ckpt.status());
  auto weights = rex::bind_model_weights(*ckpt.value());
  if (!weights.ok()) return fail("binding the weights", weights.status());
  const rex::ModelConfig& config = ckpt.value()->config();
  const rex::TextConfig& t = config.text;
  rex::BackendOptions bo;
  bo.name = "cuda";
  bo.max_active_requests = *std::max_element(o.batches.begin(), o.batches.end());
  bo.batch_invariant = std::getenv("REX_BENCH_BATCH_INVARIANT") != nullptr;
  rex::cuda::CudaBackend backend(bo);
  if (rex::Status st = backend.prepare(config, weights.value()); !st.ok()) return fail("preparing the backend", st);

  const double bandwidth = copy_bandwidth();
  const double decoder_bytes = 2.0 * (double(t.num_layers) *
                                          (double(t.hidden_size) * (t.num_heads + 2 * t.num_kv_heads) * t.head_dim() +
                                           double(t.num_heads) * t.head_dim() * t.hidden_size +
                                           3.0 * double(t.intermediate_size) * t.hidden_size) +
                                      double(t.vocab_size) * t.hidden_size);
  const double floor_ms = bandwidth > 0 ? decoder_bytes / bandwidth * 1e3 : 0;
  std::printf("decode_step_bench: %s, context %d, %d timed steps, %d rows per sequence; copy %.3f TB/s, "
              "decoder weights %.3f GB -> floor %.3f ms/step\n",
              backend.info().device_name.c_str(), o.context, o.steps, o.rows_per_sequence, bandwidth / 1e12,
              decoder_bytes / 1e9, floor_ms);

  // The prompt: fixed pseudo-random text ids, positions 0..n-1 on all three axes.
  std::vector<int32_t> ids(static_cast<size_t>(o.context)), positions(static_cast<size_t>(3) * o.context);
  uint32_t state = 12345u;
  for (int i = 0; i < o.context; ++i) {
    state = state * 1664525u + 1013904223u;
    ids[size_t(i)] = int32_t(state % uint32_t(std::min(t.vocab_size, 150000)));
    for (int a = 0; a < 3; ++a) positions[size_t(a) * o.context + i] = i;
  }
  rex::RowSampling greedy;
  greedy.model_logprob = false;

  std::vector<BatchResult> results;
  for (int batch : o.batches) {
    const int warm = 4, capacity = o.context + (warm + o.steps + 1) * o.rows_per_sequence + 1;
    std::vector<rex::SlotId> slots;
    std::vector<int32_t> next(static_cast<size_t>(batch), 0);
    std::vector<int> length(static_cast<size_t>(batch), o.context);
    for (int s = 0; s < batch; ++s) {
      auto slot = backend.acquire_slot(capacity);
      if (!slot.ok()) return fail("a slot of " + std::to_string(capacity) + " tokens", slot.status());
      slots.push_back(slot.value());
      rex::PrefillInput in;
      in.slot = slot.value();
      in.token_ids = ids.data();
      in.n = o.context;
      in.positions = positions.data();
      rex::SampledToken first;
      if (rex::Status st = backend.prefill_sampled(in, greedy, &first); !st.ok()) return fail("the prefill", st);
      next[size_t(s)] = first.id;
    }
    const int rows = batch * o.rows_per_sequence;
    std::vector<rex::DecodeRow> step(static_cast<size_t>(rows));
    std::vector<rex::RowSampling> sampling(static_cast<size_t>(rows), greedy);
    std::vector<rex::SampledToken> out;
    auto run_step = [&]() -> rex::Status {
      for (int s = 0; s < batch; ++s)
        for (int r = 0; r < o.rows_per_sequence; ++r) {
          rex::DecodeRow& row = step[size_t(s * o.rows_per_sequence + r)];
          row.slot = slots[size_t(s)];
          row.token = next[size_t(s)];
          row.position = length[size_t(s)] + r;
        }
      REX_RETURN_IF_ERROR(backend.decode_sampled(step, sampling, &out));
      for (int s = 0; s < batch; ++s) {
        next[size_t(s)] = out[size_t((s + 1) * o.rows_per_sequence - 1)].id;
        length[size_t(s)] += o.rows_per_sequence;
      }
      return rex::Status::Ok();
    };
    for (int i = 0; i < warm; ++i)
      if (rex::Status st = run_step(); !st.ok()) return fail("a warm-up step", st);
    const auto t0 = Clock::now();
    for (int i = 0; i < o.steps; ++i)
      if (rex::Status st = run_step(); !st.ok()) return fail("a timed step", st);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / o.steps;
    for (rex::SlotId slot : slots) backend.release(slot);
    BatchResult r{batch, rows, ms, rows / (ms * 1e-3)};
    results.push_back(r);
    std::printf("STEP batch %2d (%3d rows): %.3f ms/step, %8.0f tokens/s%s\n", batch, rows, ms, r.tokens_per_s,
                batch == 1 && floor_ms > 0 ? (", " + std::to_string(floor_ms / ms).substr(0, 5) + " of the roofline").c_str()
                                           : "");
  }

  if (!o.out.empty()) {
    std::ofstream f(o.out);
    f << "{\n  \"device\": \"" << backend.info().device_name << "\",\n  \"context\": " << o.context
      << ",\n  \"steps\": " << o.steps << ",\n  \"rowsPerSequence\": " << o.rows_per_sequence
      << ",\n  \"copyBytesPerSecond\": " << bandwidth << ",\n  \"decoderWeightBytes\": " << decoder_bytes
      << ",\n  \"floorMsPerStep\": " << floor_ms << ",\n  \"batches\": [";
    for (size_t i = 0; i < results.size(); ++i) {
      const BatchResult& r = results[i];
      f << (i ? "," : "") << "\n    {\"batch\": " << r.batch << ", \"rows\": " << r.rows << ", \"stepMs\": " << r.step_ms
        << ", \"tokensPerSecond\": " << r.tokens_per_s;
      if (r.batch == 1 && floor_ms > 0) f << ", \"fractionOfRoofline\": " << floor_ms / r.step_ms;
      f << "}";
    }
    f << "\n  ]\n}\n";
  }
  return 0;
}
