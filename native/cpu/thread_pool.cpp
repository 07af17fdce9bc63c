// See thread_pool.h. Work is handed out chunk by chunk under one mutex; chunks
// are coarse (one per thread, or a few), so the lock is not a bottleneck.
#include "cpu/thread_pool.h"

#include <algorithm>

namespace rex::cpu {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i + 1 < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t begin, int64_t end,
                              const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (end <= begin) return;
  const int64_t n = end - begin;
  grain = std::max<int64_t>(1, grain);
  // A few chunks per thread so uneven rows (e.g. causal attention) balance out.
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t(size()) * 4);
  if (workers_.empty() || chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t chunk = (n + chunks - 1) / chunks;
  chunks = (n + chunk - 1) / chunk;

  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &fn;
  job_begin_ = begin;
  job_end_ = end;
  job_chunk_ = chunk;
  job_chunks_ = static_cast<int>(chunks);
  next_chunk_ = 0;
  chunks_left_ = static_cast<int>(chunks);
  ++generation_;
  wake_.notify_all();
  // The caller works too.
  while (next_chunk_ < job_chunks_) {
    int c = next_chunk_++;
    lock.unlock();
    int64_t lo = job_begin_ + c * job_chunk_;
    fn(lo, std::min(job_end_, lo + job_chunk_));
    lock.lock();
    --chunks_left_;
  }
  done_.wait(lock, [this] { return chunks_left_ == 0; });
  job_ = nullptr;
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (job_ && generation_ != seen && next_chunk_ < job_chunks_); });
    if (stop_) return;
    seen = generation_;
    while (job_ && next_chunk_ < job_chunks_) {
      int c = next_chunk_++;
      const auto* fn = job_;
      int64_t lo = job_begin_ + c * job_chunk_;
      int64_t hi = std::min(job_end_, lo + job_chunk_);
      lock.unlock();
      (*fn)(lo, hi);
      lock.lock();
      if (--chunks_left_ == 0) done_.notify_all();
    }
  }
}

}  // namespace rex::cpu
