// Threads for work that must stay off the shards (TLS handshakes, GSSAPI
// accepts). A bounded queue: submit() refuses when full. Two classes: a
// handshake already under way (its client waits on our answer) goes before a
// new one, so that during a reconnect storm sessions finish in arrival order
// instead of every first step running before any last step.
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

enum class JobClass : uint8_t { fresh, continuation };

class WorkerPool {
 public:
  WorkerPool(uint32_t threads, uint32_t queue_capacity);
  ~WorkerPool();  // finishes queued jobs, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool submit(const Job& job, JobClass job_class);  // false: queue_capacity jobs already wait

 private:
  void run();

  const uint32_t queue_capacity_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> continuations_;  // with fresh_: at most queue_capacity_ jobs
  std::deque<Job> fresh_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace gatehouse::runtime
