// Where one call's time goes, kernel by kernel: cudaEvents around each
// launch of an eager (ungraphed) call, summed per kernel kind, with the bytes
// each kind must move and the FLOPs it computes, so the table sets time
// against both floors (bandwidth and the GEMM rate).
//
// Turned on by environment variables read by the CUDA backend:
//  - REX_OMNI_PROFILE_STEP=<file>: its 32nd decode step at batch 1, written
//    there as JSON (the benchmark reads it), and its 32nd of 8 and of 64 rows
//    beside it (<file>.batch8.json, .batch64.json), each after the same step
//    run once unprofiled (so no kernel's first eager launch pays its module
//    load). Eager launches pay their launch gaps, so the sum is above a
//    graphed step; the split between kernels is what it is for.
//  - REX_OMNI_PROFILE_PREFILL=<file>: one text prefill (TextRunner::prefill),
//    the second call of at least 512 rows (the first warms the kernels'
//    module loads and cuBLASLt's plan caches), written there with "rows" and
//    "past"; and the second vision encoder pass of at least 1024 patches,
//    written to <file minus .json>.vision.json with "patches", "images" and
//    "windows". Both compute their normal results; the profile only records
//    events between the launches.
// A mark costs nothing when profiling is off: the runners' mark() checks a
// null StepProfile pointer (set only for the profiled call).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace rex::cuda {

class StepProfile {
 public:
  explicit StepProfile(cudaStream_t stream) : stream_(stream) {}
  ~StepProfile() {
    for (auto& m : marks_) cudaEventDestroy(m.second);
  }
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;

  // Marks the end of the previous kernel and the start of `kind`'s, which
  // moves `bytes` and computes `flops` (2 per multiply-add; 0: not counted).
  void next(const std::string& kind, double bytes, double flops = 0) {
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    cudaEventRecord(e, stream_);
    marks_.push_back({kind, e});
    bytes_[kind] += bytes;
    flops_[kind] += flops;
  }
  // Marks the end of the last kernel (right after its launch, before any
  // host sync, so the sync's latency stays out of the last kind's time).
  // json() calls it when nobody did.
  void end() {
    if (!ended_) next("", 0);
    ended_ = true;
  }
  // A number beside the kernels in the JSON (the call's shape: rows, past, ...).
  void field(const std::string& key, double value) { fields_.push_back({key, value}); }

  // JSON {"kernels":[{kind, us, launches, bytes, flops}], "total_us", fields...}.
  // Waits for the end mark.
  std::string json() {
    end();
    cudaEventSynchronize(marks_.back().second);
    std::map<std::string, std::pair<double, int>> time;
    std::vector<std::string> order;
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i].second, marks_[i + 1].second);
      auto& t = time[marks_[i].first];
      if (t.second == 0) order.push_back(marks_[i].first);
      t.first += 1e3 * ms;
      t.second += 1;
    }
    double total = 0;
    std::string out = "{\"kernels\":[";
    for (size_t i = 0; i < order.size(); ++i) {
      const auto& t = time[order[i]];
      total += t.first;
      out += (i ? "," : "") + std::string("{\"kind\":\"") + order[i] + "\",\"us\":" + std::to_string(t.first) +
             ",\"launches\":" + std::to_string(t.second) + ",\"bytes\":" + number(bytes_[order[i]]) +
             ",\"flops\":" + number(flops_[order[i]]) + "}";
    }
    out += "],\"total_us\":" + std::to_string(total);
    for (const auto& [key, value] : fields_) out += ",\"" + key + "\":" + number(value);
    return out + "}";
  }

  // Writes json() to path (best effort: a profile that cannot be written is dropped).
  void write(const std::string& path) {
    const std::string text = json();
    if (FILE* f = std::fopen(path.c_str(), "w")) {
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    }
  }

 private:
  static std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    return buf;
  }

  cudaStream_t stream_;
  bool ended_ = false;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::map<std::string, double> bytes_, flops_;
  std::vector<std::pair<std::string, double>> fields_;
};

// A file beside a profile's: "<path minus .json><suffix>.json".
inline std::string profile_sibling(const std::string& path, const std::string& suffix) {
  const std::string ext = ".json";
  const bool has_ext = path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
  return (has_ext ? path.substr(0, path.size() - ext.size()) : path) + suffix + ext;
}

}  // namespace rex::cuda
