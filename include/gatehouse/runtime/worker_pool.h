// Threads for work that must stay off the shards (TLS handshakes, GSSAPI
// accepts). A bounded queue: submit() refuses when full, so a handshake storm
// is shed at the door instead of growing memory and latency.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace gatehouse::runtime {

struct Job {
  void (*run)(void* argument) = nullptr;
  void* argument = nullptr;
};

class WorkerPool {
 public:
  WorkerPool(uint32_t threads, uint32_t queue_capacity);
  ~WorkerPool();  // finishes queued jobs, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool submit(const Job& job);  // false: queue_capacity jobs already wait
  uint32_t queued() const;

 private:
  void run();

  const uint32_t queue_capacity_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace gatehouse::runtime
