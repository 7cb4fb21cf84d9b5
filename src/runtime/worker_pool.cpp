#include "gatehouse/runtime/worker_pool.h"

#include <pthread.h>

#include <string>

#include "gatehouse/runtime/runtime.h"
#include "gatehouse/runtime/shard.h"

namespace gatehouse::runtime {

WorkerPool::WorkerPool(uint32_t threads, uint32_t queue_capacity) : queue_capacity_(queue_capacity) {
  for (uint32_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] {
      const std::string name = "gh-auth-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      run();
    });
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

bool WorkerPool::submit(const Job& job, JobClass job_class) {
  {
    std::lock_guard lock(mutex_);
    if (continuations_.size() + fresh_.size() >= queue_capacity_ || stopping_) return false;
    (job_class == JobClass::continuation ? continuations_ : fresh_).push_back(job);
    (job_class == JobClass::continuation ? continuations_ : fresh_).back().submitted_us = steady_us();
    queued_.store(static_cast<uint32_t>(continuations_.size() + fresh_.size()), std::memory_order_relaxed);
  }
  ready_.notify_one();
  return true;
}

void WorkerPool::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !continuations_.empty() || !fresh_.empty(); });
      std::deque<Job>& queue = continuations_.empty() ? fresh_ : continuations_;
      if (queue.empty()) return;  // stopping, and nothing left to do
      job = queue.front();
      queue.pop_front();
      queued_.store(static_cast<uint32_t>(continuations_.size() + fresh_.size()), std::memory_order_relaxed);
    }
    job.run(job.argument);
    latency_.observe_us(steady_us() - job.submitted_us);
    if (job.answer_to != nullptr) job.answer_shard->post_reserved({job.answer_to, 0, job.argument});
  }
}

bool hand_off(WorkerPool& pool, JobClass job_class, Shard& shard, Mailbox& answer_to, void (*run)(void* argument),
              void* argument) {
  if (!shard.reserve_post()) return false;
  if (pool.submit({run, argument, &shard, &answer_to}, job_class)) return true;
  shard.cancel_reservation();
  return false;
}

}  // namespace gatehouse::runtime
