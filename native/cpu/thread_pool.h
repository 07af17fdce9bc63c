// A small fixed thread pool for the CPU backend. The only operation is a
// blocking parallel_for over an index range, split into contiguous chunks:
// every op in this backend is "the same work on many independent rows", so
// nothing fancier (futures, work stealing) is needed. The calling thread takes
// a share of the work, so a pool of size 1 runs everything inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rex::cpu {

class ThreadPool {
 public:
  // threads <= 0: std::thread::hardware_concurrency().
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(lo, hi) on disjoint chunks covering [begin, end); returns when all
  // are done. Chunks are at least `grain` long. Not re-entrant: fn must not
  // call parallel_for on the same pool.
  void parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)>& fn,
                    int64_t grain = 1);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_begin_ = 0, job_end_ = 0, job_chunk_ = 0;
  int job_chunks_ = 0;
  int next_chunk_ = 0;
  int chunks_left_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace rex::cpu
