// Where one decode step's time goes, kernel by kernel: cudaEvents around
// each launch of an eager (ungraphed) step, summed per kernel kind, with the
// bytes each kind must move, so the table sets time against its floor.
// Turned on by REX_OMNI_PROFILE_STEP=<file>: the CUDA backend profiles its
// 32nd decode step at batch 1 and writes the table there as JSON (the
// benchmark reads it), and its 32nd of 8 and of 64 rows beside it
// (<file>.batch8.json, .batch64.json), each after the same step run once
// unprofiled (so no kernel's first eager launch pays its module load). Eager launches pay their launch gaps, so the sum is
// above a graphed step; the split between kernels is what it is for.
#pragma once

#include <cuda_runtime.h>

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

  // Marks the end of the previous kernel and the start of `kind`'s.
  void next(const std::string& kind, double bytes) {
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    cudaEventRecord(e, stream_);
    marks_.push_back({kind, e});
    bytes_[kind] += bytes;
  }

  // After the stream synchronised: JSON {"kernels":[{kind, us, launches, bytes}], "total_us"}.
  std::string json() {
    next("", 0);
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
             ",\"launches\":" + std::to_string(t.second) + ",\"bytes\":" + std::to_string(bytes_[order[i]]) + "}";
    }
    return out + "],\"total_us\":" + std::to_string(total) + "}";
  }

 private:
  cudaStream_t stream_;
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
  std::map<std::string, double> bytes_;
};

}  // namespace rex::cuda
