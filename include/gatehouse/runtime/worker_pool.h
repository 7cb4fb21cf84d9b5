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

#include "gatehouse/admin/metrics.h"
#include "gatehouse/runtime/runtime_types.h"

namespace gatehouse::runtime {

struct Job {
  void (*run)(void* argument) = nullptr;
  void* argument = nullptr;
  // Where `argument` goes once run: a message on the shard that handed the
  // job off (its inbox slot reserved at hand-off). nullptr: nowhere.
  Shard* answer_shard = nullptr;
  Mailbox* answer_to = nullptr;
  uint64_t submitted_us = 0;  // set by submit(): the job's latency counts its wait
};

enum class JobClass : uint8_t { fresh, continuation };

class WorkerPool {
 public:
  WorkerPool(uint32_t threads, uint32_t queue_capacity);
  ~WorkerPool();  // finishes queued jobs, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool submit(const Job& job, JobClass job_class);  // false: queue_capacity jobs already wait
  // For the admin endpoint: jobs waiting now; submit to done, wait included.
  uint32_t queued() const { return queued_.load(std::memory_order_relaxed); }
  const admin::Histogram& latency() const { return latency_; }

 private:
  void run();

  const uint32_t queue_capacity_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> continuations_;  // with fresh_: at most queue_capacity_ jobs
  std::deque<Job> fresh_;
  bool stopping_ = false;
  std::atomic<uint32_t> queued_{0};
  admin::Histogram latency_;
  std::vector<std::thread> threads_;
};

// From a shard: runs run(argument) on the pool, then hands `argument` back
// to `answer_to` on this shard as a message. The shard's inbox slot for the
// answer is reserved here, so the worker never waits for room. False (nothing
// submitted) when the pool's queue or the shard's inbox is full.
bool hand_off(WorkerPool& pool, JobClass job_class, Shard& shard, Mailbox& answer_to, void (*run)(void* argument),
              void* argument);

}  // namespace gatehouse::runtime
